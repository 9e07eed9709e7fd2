"""Probing: SNMP and HTTP transports and the round runner; targets in, outcomes out, no DB."""
