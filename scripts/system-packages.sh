#!/usr/bin/env bash
# Install the Debian packages Conectado needs, or say exactly which ones are missing.
# Usage: scripts/system-packages.sh demo|test
set -euo pipefail
need=(postgresql-15 postgresql-15-postgis-3 postgresql-client-15 gcc libc6-dev)
if [ "${1:-demo}" = "test" ]; then
  need+=(snmpd snmp chromium docker-compose nginx-light wrk)
fi
missing=()
for pkg in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Conectado needs these Debian packages, which are not installed:" >&2
  echo "    sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's snmpd package may start a system agent on port 161; our tests run their own.
