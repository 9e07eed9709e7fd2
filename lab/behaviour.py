"""Deterministic behaviour of one simulated site, shared by the lab SNMP and HTTP agents.

Everything about a site follows from its ``site_key`` (hashed with BLAKE2b) and its contracted
bandwidth, so every agent process, every test and every restart sees the same site doing the
same thing at the same wall-clock time. Nothing here keeps state: traffic counters, uptime and
up/down are pure functions of ``now`` (Unix seconds).

The mix (fractions of sites, drawn independently from the hash):

- ``down`` 3 %: never answers (SNMP silence; the HTTP agent resets or stays silent);
- ``flap_period_s`` 1 %: up for the first half of every 2-6 minute period, down for the second;
- ``slow_delay_s`` 2 %: answers after 1.2-1.8 s (close to the 2 s SNMP timeout);
- ``wan_oper_status`` 2 % = 2 (WAN interface down: the site answers but is degraded);
- ``counter_bits`` 5 % = 32 (agent without ifHC* counters: ifInOctets/ifOutOctets only);
- ``reboot_period_s``: every 2-6 days for most sites, every 3-10 minutes for 1 % ("fast
  rebooters", so tests see reboots within minutes); a reboot resets sysUpTime and counters;
- ``http_status`` 1 % = 500 or 503;
- ``tls_fault`` for 30 % of https sites: ``expired`` or ``wrong_host`` certificate.

Traffic: inbound (download) and outbound (upload) rates follow a diurnal cosine peaking at
20:00 UTC (14:00 in central Mexico) with a per-site mean of 10-50 % of the contracted rate and
an amplitude below the mean, so the rate is always within ``(0, bw]``. Counters are the exact
integral of the rate since the last boot (closed form), plus a start offset: 32-bit agents
start at a random point of the 2^32 range (so wraps come soon) and 0.5 % of 64-bit agents start
a few hours of traffic short of 2^64 (so the 64-bit wrap is exercised too); the others start at
0, as real agents do after a boot.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Final, Literal

DAY_S: Final = 86_400.0
PEAK_UTC_S: Final = 20 * 3600.0
OMEGA: Final = 2.0 * math.pi / DAY_S
_TICKS_MOD: Final = 1 << 32

DOWN_SHARE: Final = 0.03
FLAP_SHARE: Final = 0.01
SLOW_SHARE: Final = 0.02
WAN_DOWN_SHARE: Final = 0.02
COUNTER32_SHARE: Final = 0.05
FAST_REBOOT_SHARE: Final = 0.01
HTTP_ERROR_SHARE: Final = 0.01
TLS_FAULT_SHARE: Final = 0.30
COUNTER64_NEAR_WRAP_SHARE: Final = 0.005

TlsFault = Literal["expired", "wrong_host"]


def site_seed(site_key: str) -> bytes:
    """Return the 64-byte BLAKE2b digest every draw of a site comes from."""
    return hashlib.blake2b(
        site_key.encode("utf-8"), digest_size=64, person=b"conectado-lab"
    ).digest()


def _uniforms(digest: bytes) -> list[float]:
    """Sixteen independent uniforms in [0, 1) from the digest's first 32 bytes (16 bits each)."""
    return [int.from_bytes(digest[i : i + 2], "big") / 65536.0 for i in range(0, 32, 2)]


@dataclass(frozen=True, slots=True)
class SiteBehaviour:
    """What one simulated site does; every method is a pure function of ``now`` (Unix s)."""

    site_key: str
    counter_bits: Literal[32, 64]
    down: bool
    flap_period_s: float | None
    flap_phase_s: float
    slow_delay_s: float
    wan_oper_status: int
    reboot_period_s: float
    reboot_phase_s: float
    in_mean_bps: float
    in_amp_bps: float
    out_mean_bps: float
    out_amp_bps: float
    counter_offset: int
    high_speed_mbps: int
    http_status: int
    tls_fault: TlsFault | None

    @property
    def fast_rebooter(self) -> bool:
        """True when the site reboots every few minutes (for tests of reboot handling)."""
        return self.reboot_period_s < 3600.0

    def answers(self, now: float) -> bool:
        """Return whether the site answers at all at ``now`` (down and flapping sites do not)."""
        if self.down:
            return False
        if self.flap_period_s is None:
            return True
        position = (now - self.flap_phase_s) % self.flap_period_s
        return position < self.flap_period_s / 2.0

    def last_boot(self, now: float) -> float:
        """Return the Unix time of the most recent boot at or before ``now``."""
        period = self.reboot_period_s
        return now - ((now - self.reboot_phase_s) % period)

    def sys_uptime(self, now: float) -> int:
        """Return sysUpTime at ``now`` in TimeTicks (hundredths of a second, modulo 2^32)."""
        return int((now - self.last_boot(now)) * 100.0) % _TICKS_MOD

    def octets(self, now: float) -> tuple[int, int]:
        """Return (in, out) octet counters of the WAN interface at ``now``, wrapped to the width."""
        boot = self.last_boot(now)
        elapsed = now - boot
        wave = (math.sin(OMEGA * (now - PEAK_UTC_S)) - math.sin(OMEGA * (boot - PEAK_UTC_S))) / (
            OMEGA
        )
        in_bits = self.in_mean_bps * elapsed + self.in_amp_bps * wave
        out_bits = self.out_mean_bps * elapsed + self.out_amp_bps * wave
        mask = (1 << self.counter_bits) - 1
        return (
            (self.counter_offset + int(in_bits / 8.0)) & mask,
            (self.counter_offset + int(out_bits / 8.0)) & mask,
        )

    def rates_bps(self, now: float) -> tuple[float, float]:
        """Return the instantaneous (in, out) rates in bits/s at ``now`` (counters integrate it)."""
        wave = math.cos(OMEGA * (now - PEAK_UTC_S))
        return (
            self.in_mean_bps + self.in_amp_bps * wave,
            self.out_mean_bps + self.out_amp_bps * wave,
        )

    @property
    def if_speed_bps(self) -> int:
        """ifSpeed (Gauge32, bits/s) as a 32-bit agent reports it: capped at 2^32-1."""
        return min(self.high_speed_mbps * 1_000_000, _TICKS_MOD - 1)


def behaviour_for(
    site_key: str, bw_down_mbps: float, bw_up_mbps: float, *, https: bool = False
) -> SiteBehaviour:
    """Return the deterministic behaviour of site ``site_key`` with its contracted bandwidth."""
    digest = site_seed(site_key)
    u = _uniforms(digest)
    bw_down = max(float(bw_down_mbps), 0.1) * 1e6
    bw_up = max(float(bw_up_mbps), 0.1) * 1e6
    counter_bits: Literal[32, 64] = 32 if u[4] < COUNTER32_SHARE else 64
    fast = u[5] < FAST_REBOOT_SHARE
    reboot_period = (180.0 + u[6] * 420.0) if fast else (2 * DAY_S + u[6] * 4 * DAY_S)
    in_mean = bw_down * (0.10 + 0.40 * u[7])
    out_mean = bw_up * (0.10 + 0.40 * u[8])
    # Amplitude as a share of the mean: the rate stays within (0.1 * mean, 0.95 * bw].
    amp_share = 0.2 + 0.7 * u[9]
    counter_seed = int.from_bytes(digest[32:40], "big")
    if counter_bits == 32:
        offset = counter_seed & 0xFFFF_FFFF
    elif u[11] < COUNTER64_NEAR_WRAP_SHARE:
        # A few hours of mean download traffic short of the 64-bit wrap.
        offset = (1 << 64) - int(in_mean / 8.0 * (3600.0 + (counter_seed % 7200)))
    else:
        offset = 0
    http_status = 200
    if u[12] < HTTP_ERROR_SHARE:
        http_status = 500 if u[12] < HTTP_ERROR_SHARE / 2 else 503
    tls_fault: TlsFault | None = None
    if https and u[13] < TLS_FAULT_SHARE:
        tls_fault = "expired" if u[13] < TLS_FAULT_SHARE / 2 else "wrong_host"
    return SiteBehaviour(
        site_key=site_key,
        counter_bits=counter_bits,
        down=u[0] < DOWN_SHARE,
        flap_period_s=(120.0 + u[14] * 240.0) if u[1] < FLAP_SHARE else None,
        flap_phase_s=u[15] * 360.0,
        slow_delay_s=(1.2 + 0.6 * u[10]) if u[2] < SLOW_SHARE else 0.0,
        wan_oper_status=2 if u[3] < WAN_DOWN_SHARE else 1,
        reboot_period_s=reboot_period,
        reboot_phase_s=int.from_bytes(digest[40:44], "big") / 2**32 * reboot_period,
        in_mean_bps=in_mean,
        in_amp_bps=in_mean * amp_share,
        out_mean_bps=out_mean,
        out_amp_bps=out_mean * amp_share,
        counter_offset=offset,
        high_speed_mbps=max(1, math.ceil(max(bw_down, bw_up) / 1e6)),
        http_status=http_status,
        tls_fault=tls_fault,
    )
