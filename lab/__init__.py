"""Simulated devices for tests, benchmarks and the demo.

``inventory`` reads the ``--lab`` inventory, ``behaviour`` is the deterministic per-site model
both agents share, ``snmp_agent`` and ``http_agent`` answer for every 127.x.y.z address of the
inventory, and ``runner`` starts and stops them in the background.
"""
