"""SNMPv3 (USM authPriv) probes through pysnmp's asyncio API.

The same probe as the v2c path (see :mod:`probes.snmp`): one GET of sysUpTime and the WAN
interface's 64-bit counters, status and speed, a 32-bit fallback, and ifName resolution cached
in ``if_index_cache``. pysnmp does the USM work (engine-id discovery, key localisation,
HMAC and AES); it costs ~1 ms of CPU per response, which is fine for the few sites that use v3.

Authentication protocols: SHA (HMAC-SHA-96, also ``SHA1``), SHA224, SHA256, SHA384, SHA512 and
MD5; privacy protocols: AES (AES-128-CFB, also ``AES128``), AES192, AES256 (the key extension
of draft-blumenthal, as net-snmp's ``AES-192``/``AES-256``), AES192C/AES256C (the Reeder
"Cisco" extension) and DES. pysnmp's USM error indications map to ``auth`` (unknown user, wrong
digest, decryption error, unsupported security level, not in time window), no answer maps to
``timeout``. pysnmp reports neither ICMP port-unreachable nor an unreachable host, so a closed
port on a v3 target is a ``timeout`` too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pysnmp.hlapi.v3arch.asyncio import (
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    get_cmd,
    usm3DESEDEPrivProtocol,
    usmAesBlumenthalCfb192Protocol,
    usmAesBlumenthalCfb256Protocol,
    usmAesCfb128Protocol,
    usmAesCfb192Protocol,
    usmAesCfb256Protocol,
    usmDESPrivProtocol,
    usmHMAC128SHA224AuthProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC256SHA384AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
)
from pysnmp.hlapi.v3arch.asyncio import next_cmd as getnext_cmd
from pysnmp.proto import errind, rfc1902, rfc1905

from probes.model import ErrorClass, SnmpOutcome, SnmpTarget
from probes.snmp_oids import (
    IF_DESCR,
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_HIGH_SPEED,
    IF_IN_OCTETS,
    IF_NAME,
    IF_OPER_STATUS,
    IF_OUT_OCTETS,
    IF_SPEED,
    SYS_UPTIME,
)

AUTH_PROTOCOLS: Final[dict[str, Any]] = {
    "MD5": usmHMACMD5AuthProtocol,
    "SHA": usmHMACSHAAuthProtocol,
    "SHA1": usmHMACSHAAuthProtocol,
    "SHA224": usmHMAC128SHA224AuthProtocol,
    "SHA256": usmHMAC192SHA256AuthProtocol,
    "SHA384": usmHMAC256SHA384AuthProtocol,
    "SHA512": usmHMAC384SHA512AuthProtocol,
}
PRIV_PROTOCOLS: Final[dict[str, Any]] = {
    "DES": usmDESPrivProtocol,
    "3DES": usm3DESEDEPrivProtocol,
    "AES": usmAesCfb128Protocol,
    "AES128": usmAesCfb128Protocol,
    "AES192": usmAesBlumenthalCfb192Protocol,
    "AES256": usmAesBlumenthalCfb256Protocol,
    "AES192C": usmAesCfb192Protocol,
    "AES256C": usmAesCfb256Protocol,
}
_AUTH_ERRORS: Final = (
    errind.UnknownUserName,
    errind.WrongDigest,
    errind.DecryptionError,
    errind.AuthenticationError,
    errind.AuthenticationFailure,
    errind.UnknownSecurityName,
    errind.UnsupportedSecurityLevel,
    errind.NotInTimeWindow,
    errind.UnsupportedAuthProtocol,
    errind.UnsupportedPrivProtocol,
    errind.NoAuthentication,
    errind.NoEncryption,
)
MAX_WALK_ROWS: Final = 1024


class _Failure(Exception):
    """Ends one v3 probe with an error class (never escapes this module)."""

    def __init__(self, error: ErrorClass, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


def _protocol_name(value: str) -> str:
    return value.upper().replace("-", "").replace("_", "")


def _user_data(target: SnmpTarget) -> UsmUserData:
    creds = target.v3
    if creds is None or not creds.user:
        raise _Failure(ErrorClass.CONFIG, "SNMPv3 site without a USM user")
    auth = AUTH_PROTOCOLS.get(_protocol_name(creds.auth_proto))
    priv = PRIV_PROTOCOLS.get(_protocol_name(creds.priv_proto))
    if auth is None:
        raise _Failure(
            ErrorClass.CONFIG,
            f"unknown v3 auth protocol {creds.auth_proto!r} "
            f"(use one of {', '.join(AUTH_PROTOCOLS)})",
        )
    if priv is None:
        raise _Failure(
            ErrorClass.CONFIG,
            f"unknown v3 privacy protocol {creds.priv_proto!r} "
            f"(use one of {', '.join(PRIV_PROTOCOLS)})",
        )
    if not creds.auth_key or not creds.priv_key:
        raise _Failure(ErrorClass.CONFIG, "SNMPv3 authPriv needs both an auth and a priv key")
    if len(creds.auth_key) < 8 or len(creds.priv_key) < 8:
        raise _Failure(ErrorClass.CONFIG, "SNMPv3 pass phrases must have at least 8 characters")
    return UsmUserData(
        creds.user,
        authKey=creds.auth_key,
        privKey=creds.priv_key,
        authProtocol=auth,
        privProtocol=priv,
    )


def _check(error_indication: Any, error_status: Any, error_index: Any, what: str) -> None:
    if error_indication is not None:
        if isinstance(error_indication, errind.RequestTimedOut):
            raise _Failure(
                ErrorClass.TIMEOUT,
                f"no answer to {what} (a wrong privacy key looks the same: agents drop "
                "what they cannot decrypt)",
            )
        if isinstance(error_indication, _AUTH_ERRORS):
            raise _Failure(ErrorClass.AUTH, f"SNMPv3 USM: {error_indication}")
        raise _Failure(ErrorClass.BAD_RESPONSE, f"{what}: {error_indication}")
    if error_status and int(error_status):
        raise _Failure(
            ErrorClass.BAD_RESPONSE,
            f"agent answered {what} with error-status {error_status.prettyPrint()} "
            f"at varbind {int(error_index)}",
        )


def _is_exception(value: Any) -> bool:
    return isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance | rfc1905.EndOfMibView)


class _V3Prober:
    """Probes v3 targets with one pysnmp engine."""

    def __init__(
        self, *, timeout: float, retries: int, if_index_cache: dict[tuple[int, str], int]
    ) -> None:
        self.engine = SnmpEngine()
        self.timeout = timeout
        self.retries = retries
        self.cache = if_index_cache

    async def probe(self, target: SnmpTarget) -> SnmpOutcome:
        """Probe one target; every failure becomes an outcome."""
        try:
            return await self._probe(target)
        except _Failure as failure:
            return SnmpOutcome(
                site_id=target.site_id,
                ts=datetime.now(UTC),
                ok=False,
                error=failure.error,
                error_detail=failure.detail,
                if_index=target.if_index,
            )
        except OSError as exc:
            return SnmpOutcome(
                site_id=target.site_id,
                ts=datetime.now(UTC),
                ok=False,
                error=ErrorClass.UNREACHABLE,
                error_detail=f"{target.host}: {exc.strerror or exc}",
            )
        except Exception as exc:  # a pysnmp bug must not end the whole round
            return SnmpOutcome(
                site_id=target.site_id,
                ts=datetime.now(UTC),
                ok=False,
                error=ErrorClass.INTERNAL,
                error_detail=f"pysnmp failed: {type(exc).__name__}: {exc}",
            )

    async def _probe(self, target: SnmpTarget) -> SnmpOutcome:
        user = _user_data(target)
        context = ContextData(contextName=target.v3.context if target.v3 is not None else "")
        try:
            transport = await UdpTransportTarget.create(
                (target.host, target.port), timeout=self.timeout, retries=self.retries
            )
        except Exception as exc:  # pysnmp wraps resolution errors in its own exception types
            raise _Failure(
                ErrorClass.UNREACHABLE, f"cannot resolve {target.host!r}: {exc}"
            ) from exc
        if_index = target.if_index
        if if_index is None:
            if not target.if_name:
                raise _Failure(ErrorClass.CONFIG, "no WAN interface (ifIndex or ifName) given")
            key = (target.site_id, target.if_name)
            if_index = self.cache.get(key)
            if if_index is None:
                if_index = await self._resolve(user, transport, context, target.if_name)
                self.cache[key] = if_index
        started = asyncio.get_running_loop().time()
        values = await self._get(user, transport, context, if_index, 64)
        bits: Literal[32, 64] = 64
        high_speed: int | None = None
        oper = values[3]
        if _is_exception(oper):
            raise _Failure(
                ErrorClass.NO_SUCH_INTERFACE, f"the agent has no interface with ifIndex {if_index}"
            )
        if _is_exception(values[1]) or _is_exception(values[2]):
            if isinstance(values[4], rfc1902.Gauge32):
                high_speed = int(values[4])
            started = asyncio.get_running_loop().time()
            values = await self._get(user, transport, context, if_index, 32)
            bits = 32
            if high_speed is None and isinstance(values[4], rfc1902.Gauge32):
                high_speed = int(values[4]) // 1_000_000
        elif isinstance(values[4], rfc1902.Gauge32):
            high_speed = int(values[4])
        latency_ms = (asyncio.get_running_loop().time() - started) * 1000.0
        counter = rfc1902.Counter64 if bits == 64 else rfc1902.Counter32
        uptime, v_in, v_out, oper = values[0], values[1], values[2], values[3]
        if not isinstance(uptime, rfc1902.TimeTicks) or not isinstance(oper, rfc1902.Integer):
            raise _Failure(
                ErrorClass.BAD_RESPONSE, "sysUpTime is not TimeTicks or ifOperStatus not INTEGER"
            )
        if not isinstance(v_in, counter) or not isinstance(v_out, counter):
            raise _Failure(ErrorClass.BAD_RESPONSE, f"interface counters are not Counter{bits}")
        return SnmpOutcome(
            site_id=target.site_id,
            ts=datetime.now(UTC),
            ok=True,
            latency_ms=latency_ms,
            if_index=if_index,
            sys_uptime=int(uptime),
            in_octets=int(v_in),
            out_octets=int(v_out),
            counter_bits=bits,
            oper_status=int(oper),
            high_speed_mbps=high_speed,
        )

    async def _get(
        self, user: UsmUserData, transport: Any, context: ContextData, if_index: int, bits: int
    ) -> list[Any]:
        columns: tuple[tuple[int, ...], ...]
        if bits == 64:
            columns = (IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS, IF_OPER_STATUS, IF_HIGH_SPEED)
        else:
            columns = (IF_IN_OCTETS, IF_OUT_OCTETS, IF_OPER_STATUS, IF_SPEED)
        oids = [SYS_UPTIME, *((*column, if_index) for column in columns)]
        indication, status, index, varbinds = await get_cmd(
            self.engine,
            user,
            transport,
            context,
            *(ObjectType(ObjectIdentity(oid)) for oid in oids),
            lookupMib=False,
        )
        what = "the GET" if bits == 64 else "the 32-bit GET"
        _check(indication, status, index, what)
        if len(varbinds) != len(oids) or any(
            tuple(vb[0]) != oid for vb, oid in zip(varbinds, oids, strict=False)
        ):
            raise _Failure(ErrorClass.BAD_RESPONSE, "answer's varbinds are not the OIDs asked for")
        return [vb[1] for vb in varbinds]

    async def _resolve(
        self, user: UsmUserData, transport: Any, context: ContextData, name: str
    ) -> int:
        seen: list[str] = []
        for column, label in ((IF_NAME, "ifName"), (IF_DESCR, "ifDescr")):
            cursor: tuple[int, ...] = column
            seen.clear()
            for _ in range(MAX_WALK_ROWS):
                indication, status, index, varbinds = await getnext_cmd(
                    self.engine,
                    user,
                    transport,
                    context,
                    ObjectType(ObjectIdentity(cursor)),
                    lookupMib=False,
                )
                _check(indication, status, index, f"the {label} walk")
                if not varbinds:
                    break
                oid = tuple(varbinds[0][0])
                value = varbinds[0][1]
                if _is_exception(value) or oid[: len(column)] != column:
                    break
                if oid <= cursor:
                    raise _Failure(ErrorClass.BAD_RESPONSE, f"the {label} walk did not advance")
                cursor = oid
                text = bytes(value).decode("utf-8", "replace")
                seen.append(text)
                if text == name and len(oid) == len(column) + 1:
                    return int(oid[-1])
            if seen:
                shown = ", ".join(repr(n) for n in seen[:12])
                raise _Failure(
                    ErrorClass.NO_SUCH_INTERFACE,
                    f"no interface has {label} {name!r} (the agent lists {len(seen)}: {shown})",
                )
        raise _Failure(ErrorClass.NO_SUCH_INTERFACE, f"the agent lists no interfaces ({name!r})")

    def close(self) -> None:
        """Release pysnmp's transports."""
        self.engine.close_dispatcher()


def _credential_key(target: SnmpTarget) -> tuple[str, ...]:
    creds = target.v3
    if creds is None:
        return ("",)
    return (
        creds.user,
        creds.auth_proto,
        creds.auth_key or "",
        creds.priv_proto,
        creds.priv_key or "",
    )


class V3Batch:
    """SNMPv3 probes of many targets, set up before the event loop gets busy.

    pysnmp keeps one key set per USM user name in an engine, so targets that share a user name
    with different keys cannot be in flight together on one engine. Targets are grouped into
    phases where each user name has one key set; phases run one after another on each of up to
    ``MAX_ENGINES`` engines, and the engines run in parallel. Creating an engine blocks for
    ~0.2 s, which is why it happens here and not in the middle of a round.
    """

    MAX_ENGINES: Final = 4

    def __init__(
        self,
        targets: Sequence[SnmpTarget],
        *,
        timeout: float,
        retries: int,
        concurrency: int,
        if_index_cache: dict[tuple[int, str], int],
    ) -> None:
        self.targets = list(targets)
        self.concurrency = concurrency
        phase_of_key: dict[tuple[str, ...], int] = {}
        phases_of_user: dict[str, int] = {}
        self.phases: list[list[int]] = []
        for pos, target in enumerate(self.targets):
            key = _credential_key(target)
            phase = phase_of_key.get(key)
            if phase is None:
                phase = phases_of_user.get(key[0], 0)
                phases_of_user[key[0]] = phase + 1
                phase_of_key[key] = phase
            while len(self.phases) <= phase:
                self.phases.append([])
            self.phases[phase].append(pos)
        engines = max(1, min(self.MAX_ENGINES, len(self.phases)))
        self.probers = [
            _V3Prober(timeout=timeout, retries=retries, if_index_cache=if_index_cache)
            for _ in range(engines if self.targets else 0)
        ]

    async def run(
        self, on_outcome: Callable[[SnmpOutcome], None] | None = None
    ) -> list[SnmpOutcome]:
        """One outcome per target (same order); never raises for a target's failure."""
        results: list[SnmpOutcome | None] = [None] * len(self.targets)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(prober: _V3Prober, pos: int) -> None:
            async with gate:
                outcome = await prober.probe(self.targets[pos])
            results[pos] = outcome
            if on_outcome is not None:
                on_outcome(outcome)

        async def lane(index: int) -> None:
            prober = self.probers[index]
            for phase in self.phases[index :: len(self.probers)]:
                await asyncio.gather(*(one(prober, pos) for pos in phase))

        try:
            await asyncio.gather(*(lane(i) for i in range(len(self.probers))))
        finally:
            for prober in self.probers:
                prober.close()
        return [r for r in results if r is not None]
