"""Real SNMP agents for tests (net-snmp snmpd, snmpsim) and a misbehaving fake at the edge."""

from __future__ import annotations

import heapq
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from probes import ber
from probes.snmp_oids import (
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

SNMPD = "/usr/sbin/snmpd"
SNMPSIM = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "snmpsim-command-responder"

V3_USERS = {
    # user: (auth proto (snmpd, ours), auth key, priv proto (snmpd, ours), priv key)
    "shaaes": (("SHA", "SHA"), "authpass123", ("AES", "AES"), "privpass123"),
    "sha256aes256": (("SHA-256", "SHA256"), "authpass256", ("AES-256", "AES256"), "privpass256"),
}


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def get_once(host: str, port: int, community: str, oid: tuple[int, ...], wait: float = 0.3):
    """One plain v2c GET (used to wait for a daemon to answer)."""
    message = ber.encode_message(
        community=community.encode(),
        pdu_type=ber.GET_REQUEST,
        request_id=4242,
        varbinds=[(oid, ber.NULL, None)],
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.sendto(message, (host, port))
        try:
            return ber.decode_message(sock.recv(65536))
        except TimeoutError:
            return None


def wait_until_answers(
    host: str, port: int, community: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited: {log.read_text()[-2000:]}")
        if get_once(host, port, community, SYS_UPTIME) is not None:
            return
    raise RuntimeError(f"agent did not answer in 30 s: {log.read_text()[-2000:]}")


@dataclass
class Daemon:
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def running_snmpd(workdir: Path) -> Iterator[Daemon]:
    """net-snmp's snmpd on 127.0.0.1 with community ``public`` and two v3 authPriv users."""
    port = free_udp_port()
    persist = workdir / "persist"
    persist.mkdir(parents=True, exist_ok=True)
    lines = [
        f"agentAddress udp:127.0.0.1:{port}",
        "rocommunity public 127.0.0.1",
        "[snmp] serverRecvBuf 4194304",
        "[snmp] serverSendBuf 4194304",
    ]
    for user, ((auth, _), auth_key, (priv, _), priv_key) in V3_USERS.items():
        lines.append(f'createUser {user} {auth} "{auth_key}" {priv} "{priv_key}"')
        lines.append(f"rouser {user} priv")
    conf = workdir / "snmpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = workdir / "snmpd.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                SNMPD,
                "-f",
                "-Lo",
                "-C",
                "-c",
                str(conf),
                "-p",
                str(workdir / "snmpd.pid"),
                f"--persistentDir={persist}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MIBS": ""},
        )
    daemon = Daemon("127.0.0.1", port, proc, log)
    try:
        wait_until_answers("127.0.0.1", port, "public", proc, log)
        yield daemon
    finally:
        daemon.stop()


SNMPREC = {
    # A 32-bit-only agent (no ifXTable): ifInOctets at its maximum, a 100 Mbps ifSpeed.
    "bits32": [
        ("1.3.6.1.2.1.1.3.0", 67, "123456"),
        ("1.3.6.1.2.1.2.2.1.2.1", 4, "lo"),
        ("1.3.6.1.2.1.2.2.1.2.2", 4, "ether1"),
        ("1.3.6.1.2.1.2.2.1.5.1", 66, "10000000"),
        ("1.3.6.1.2.1.2.2.1.5.2", 66, "100000000"),
        ("1.3.6.1.2.1.2.2.1.8.1", 2, "1"),
        ("1.3.6.1.2.1.2.2.1.8.2", 2, "1"),
        ("1.3.6.1.2.1.2.2.1.10.1", 65, "0"),
        ("1.3.6.1.2.1.2.2.1.10.2", 65, "4294967295"),
        ("1.3.6.1.2.1.2.2.1.16.1", 65, "0"),
        ("1.3.6.1.2.1.2.2.1.16.2", 65, "12345"),
    ],
    # A 64-bit agent at the Counter64 edges, WAN named like a Cisco port at ifIndex 7.
    "hc": [
        ("1.3.6.1.2.1.1.3.0", 67, "4294967295"),
        ("1.3.6.1.2.1.2.2.1.2.1", 4, "Null0"),
        ("1.3.6.1.2.1.2.2.1.2.7", 4, "GigabitEthernet0/1"),
        ("1.3.6.1.2.1.2.2.1.5.7", 66, "4294967295"),
        ("1.3.6.1.2.1.2.2.1.8.1", 2, "1"),
        ("1.3.6.1.2.1.2.2.1.8.7", 2, "2"),
        ("1.3.6.1.2.1.2.2.1.10.7", 65, "1"),
        ("1.3.6.1.2.1.2.2.1.16.7", 65, "2"),
        ("1.3.6.1.2.1.31.1.1.1.1.1", 4, "Nu0"),
        ("1.3.6.1.2.1.31.1.1.1.1.7", 4, "GigabitEthernet0/1"),
        ("1.3.6.1.2.1.31.1.1.1.6.7", 70, str(2**64 - 1)),
        ("1.3.6.1.2.1.31.1.1.1.10.7", 70, str(2**63)),
        ("1.3.6.1.2.1.31.1.1.1.15.7", 66, "10000"),
    ],
}
SNMPSIM_V3 = ("simuser", "authpass123", "privpass123")


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in oid.split("."))


@contextmanager
def running_snmpsim() -> Iterator[Daemon]:
    """snmpsim serving the SNMPREC data files (community = file name), with a v3 user."""
    workdir = Path(tempfile.mkdtemp(prefix="conectado-snmpsim-"))
    data = workdir / "data"
    cache = workdir / "cache"
    data.mkdir()
    cache.mkdir()
    for name, records in SNMPREC.items():
        rows = sorted(records, key=lambda r: _oid_key(r[0]))
        (data / f"{name}.snmprec").write_text("".join(f"{o}|{t}|{v}\n" for o, t, v in rows))
    port = free_udp_port()
    log = workdir / "snmpsim.log"
    user, auth_key, priv_key = SNMPSIM_V3
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(SNMPSIM),
                f"--data-dir={data}",
                f"--cache-dir={cache}",
                f"--agent-udpv4-endpoint=127.0.0.1:{port}",
                f"--v3-user={user}",
                f"--v3-auth-key={auth_key}",
                "--v3-auth-proto=SHA",
                f"--v3-priv-key={priv_key}",
                "--v3-priv-proto=AES",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SNMPSIM_ALLOW_ROOT": "true"},
        )
    daemon = Daemon("127.0.0.1", port, proc, log)
    try:
        wait_until_answers("127.0.0.1", port, "hc", proc, log)
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- a misbehaving agent at the network edge --------------------------------------------------

GOOD_VALUES = {
    "uptime": 4242,
    "in": 2**40 + 17,
    "out": 2**35 + 3,
    "oper": 1,
    "speed": 100,
}


def _good_varbinds(oids: list[tuple[int, ...]]) -> list[ber.VarBind]:
    values: list[ber.VarBind] = []
    for oid in oids:
        column = oid[:-1]
        if oid == SYS_UPTIME:
            values.append((oid, ber.TIMETICKS, GOOD_VALUES["uptime"]))
        elif column == IF_HC_IN_OCTETS:
            values.append((oid, ber.COUNTER64, GOOD_VALUES["in"]))
        elif column == IF_HC_OUT_OCTETS:
            values.append((oid, ber.COUNTER64, GOOD_VALUES["out"]))
        elif column == IF_IN_OCTETS:
            values.append((oid, ber.COUNTER32, GOOD_VALUES["in"] & 0xFFFFFFFF))
        elif column == IF_OUT_OCTETS:
            values.append((oid, ber.COUNTER32, GOOD_VALUES["out"] & 0xFFFFFFFF))
        elif column == IF_OPER_STATUS:
            values.append((oid, ber.INTEGER, GOOD_VALUES["oper"]))
        elif column == IF_HIGH_SPEED:
            values.append((oid, ber.GAUGE32, GOOD_VALUES["speed"]))
        elif column == IF_SPEED:
            values.append((oid, ber.GAUGE32, GOOD_VALUES["speed"] * 1_000_000))
        else:
            values.append((oid, ber.NO_SUCH_OBJECT, None))
    return values


class FakeAgent:
    """A UDP 'agent' on 127.0.0.1 whose community picks how it misbehaves.

    ``good``, ``silent``, ``truncated``, ``garbage``, ``garbage-then-good``,
    ``wrong-rid-then-good``, ``huge``, ``huge-then-good``, ``error-status``, ``wrong-varbinds``,
    ``wrong-types``, ``no-hc`` (32-bit only), ``wrong-source``, ``wrong-community``,
    ``report-pdu``, ``walk-loop``, ``delay-<ms>`` (good, after a delay).
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._stop = threading.Event()
        self._delayed: list[tuple[float, int, bytes, tuple[str, int]]] = []
        self._seq = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        self.other.close()

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        with suppress(OSError):
            self.sock.sendto(data, addr)

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = 0.05
            if self._delayed:
                timeout = max(0.0, min(timeout, self._delayed[0][0] - time.monotonic()))
            readable, _, _ = select.select([self.sock], [], [], timeout)
            if readable:
                while True:
                    try:
                        data, addr = self.sock.recvfrom(65536)
                    except BlockingIOError:
                        break
                    self.requests += 1
                    self._handle(data, addr)
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                _, _, data, addr = heapq.heappop(self._delayed)
                self.in_flight -= 1
                self._send(data, addr)

    def _reply(
        self,
        request: ber.Message,
        varbinds: list[ber.VarBind],
        *,
        community: bytes | None = None,
        pdu_type: int = ber.RESPONSE,
        request_id: int | None = None,
        error_status: int = 0,
        error_index: int = 0,
    ) -> bytes:
        return ber.encode_message(
            community=community or request.community,
            pdu_type=pdu_type,
            request_id=request.request_id if request_id is None else request_id,
            varbinds=varbinds,
            error_status=error_status,
            error_index=error_index,
        )

    def _handle(self, data: bytes, addr: tuple[str, int]) -> None:
        request = ber.decode_message(data)
        mode = request.community.decode()
        oids = [vb[0] for vb in request.varbinds]
        good = self._reply(request, _good_varbinds(oids))
        if request.pdu_type == ber.GET_BULK_REQUEST:
            if mode == "walk-loop":
                self._send(self._reply(request, [((*IF_NAME, 1), ber.OCTET_STRING, b"x")]), addr)
            else:
                self._send(
                    self._reply(
                        request,
                        [
                            ((*IF_NAME, 5), ber.OCTET_STRING, b"wan0"),
                            ((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 2, 1), ber.INTEGER, 0),
                        ],
                    ),
                    addr,
                )
            return
        if mode == "good":
            self._send(good, addr)
        elif mode == "silent":
            return
        elif mode == "truncated":
            self._send(good[: len(good) // 2], addr)
        elif mode == "garbage":
            self._send(os.urandom(80), addr)
        elif mode == "garbage-then-good":
            self._send(b"\x30\x82\xff\xff" + os.urandom(40), addr)
            self._send(good, addr)
        elif mode == "wrong-rid-then-good":
            self._send(
                self._reply(request, _good_varbinds(oids), request_id=request.request_id ^ 0x55),
                addr,
            )
            self._send(good, addr)
        elif mode in ("huge", "huge-then-good"):
            big = self._reply(request, [((1, 3, 6, 1), ber.OCTET_STRING, b"h" * 60_000)])
            self._send(big, addr)
            if mode == "huge-then-good":
                self._send(good, addr)
        elif mode == "error-status":
            self._send(
                self._reply(request, _good_varbinds(oids), error_status=5, error_index=2), addr
            )
        elif mode == "wrong-varbinds":
            self._send(self._reply(request, _good_varbinds(list(reversed(oids)))), addr)
        elif mode == "wrong-types":
            bad = [
                (o, ber.OCTET_STRING, b"12") if o[:-1] == IF_HC_IN_OCTETS else (o, t, v)
                for o, t, v in _good_varbinds(oids)
            ]
            self._send(self._reply(request, bad), addr)
        elif mode == "no-hc":
            answer = [
                (o, ber.NO_SUCH_OBJECT, None)
                if o[:-1] in (IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS, IF_HIGH_SPEED)
                else (o, t, v)
                for o, t, v in _good_varbinds(oids)
            ]
            self._send(self._reply(request, answer), addr)
        elif mode == "wrong-source":
            with suppress(OSError):
                self.other.sendto(good, addr)
        elif mode == "wrong-community":
            self._send(self._reply(request, _good_varbinds(oids), community=b"other"), addr)
        elif mode == "report-pdu":
            self._send(self._reply(request, _good_varbinds(oids), pdu_type=ber.REPORT), addr)
        elif mode.startswith("delay-"):
            delay = int(mode.split("-")[1]) / 1000.0
            self._seq += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._seq, good, addr))
