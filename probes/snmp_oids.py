"""The IF-MIB and SNMPv2-MIB object identifiers one SNMP probe asks for."""

from __future__ import annotations

from typing import Final

SYS_UPTIME: Final = (1, 3, 6, 1, 2, 1, 1, 3, 0)
IF_DESCR: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
IF_SPEED: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1, 5)
IF_OPER_STATUS: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
IF_IN_OCTETS: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1, 10)
IF_OUT_OCTETS: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1, 16)
IF_NAME: Final = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
IF_HC_IN_OCTETS: Final = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6)
IF_HC_OUT_OCTETS: Final = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10)
IF_HIGH_SPEED: Final = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15)
