"""The lab SNMP agent's compiled fast path answers exactly as the Python agent does.

Every answer of ``lab/native/snmp_fast.c`` is compared byte for byte with the Python
responder's for the same datagram, address and time: the probes' GETs for every site of an
inventory with every behaviour, at random times (reboots, wraps, flaps), and hypothesis-drawn
varbind lists, request-ids and malformed variants. What the C code leaves to Python is only
checked to be left; the share it answers is checked too, so these tests cannot pass by
comparing Python with itself.
"""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.inventory import LabInventory, inventory_from_rows, lab_address
from lab.native import load_library
from lab.native.snmp_fast import SILENT, SnmpFastPath
from lab.snmp_agent import _Responder, running_snmp_agent
from probes import ber
from probes.model import SnmpTarget
from probes.snmp import probe_snmp_many_sync
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

SITES = 3000
COLUMNS = (IF_SPEED, IF_OPER_STATUS, IF_IN_OCTETS, IF_OUT_OCTETS, IF_DESCR)
X_COLUMNS = (IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS, IF_HIGH_SPEED, IF_NAME)


def _rows() -> list[dict[str, str]]:
    rows = []
    for i in range(SITES):
        named = i % 17 == 0
        rows.append(
            {
                "site_key": f"NAT{i:06d}",
                "mgmt_ip": lab_address(i),
                "snmp_community": ("public", "conectado-lab", "c" * 60)[i % 3],
                "wan_if_index": "" if named else str(1 + i % 9),
                "wan_if_name": "GigabitEthernet0/1" if named else "",
                "bw_down_mbps": str((10, 100, 1000, 10_000, 0.5)[i % 5]),
                "bw_up_mbps": str((5, 50, 500, 20_000, 0.2)[i % 5]),
            }
        )
    return rows


@pytest.fixture(scope="module")
def inventory() -> LabInventory:
    return inventory_from_rows(_rows())


@pytest.fixture(scope="module")
def fast(inventory: LabInventory) -> SnmpFastPath:
    path = SnmpFastPath.for_inventory(inventory)
    assert path is not None
    return path


def get(
    community: str, request_id: int, oids: list[tuple[int, ...]], pdu: int = ber.GET_REQUEST
) -> bytes:
    return ber.encode_message(
        community=community.encode(),
        pdu_type=pdu,
        request_id=request_id,
        varbinds=[(oid, ber.NULL, None) for oid in oids],
    )


def probe_oids(inventory: LabInventory, i: int) -> list[tuple[int, ...]]:
    """What the probe engine asks a site for (64-bit agents, and the 32-bit fallback)."""
    w = inventory.wan_index(i)
    if inventory.behaviour(i).counter_bits == 64:
        return [
            SYS_UPTIME,
            (*IF_HC_IN_OCTETS, w),
            (*IF_HC_OUT_OCTETS, w),
            (*IF_OPER_STATUS, w),
            (*IF_HIGH_SPEED, w),
        ]
    return [
        SYS_UPTIME,
        (*IF_IN_OCTETS, w),
        (*IF_OUT_OCTETS, w),
        (*IF_OPER_STATUS, w),
        (*IF_SPEED, w),
    ]


def compare(inventory: LabInventory, fast: SnmpFastPath, data: bytes, i: int, now: float) -> str:
    """Check one datagram to site i both ways; return what the C code did."""
    destination = lab_address(i)
    packed = bytes(int(part) for part in destination.split("."))
    python = _Responder(inventory)
    expected = python.answer(data, packed, now)
    got = fast.answer(data, packed, now)
    if got is None:
        return "handed"
    if got == SILENT:
        assert expected is None, f"site {i}: C silent, Python answered"
        assert python.stats.silent_down == 1
        return "silent"
    assert expected is not None, f"site {i}: C answered, Python silent"
    payload, delay = expected
    assert delay == 0.0
    assert got == payload, f"site {i} at {now!r}: C {got.hex()} != Python {payload.hex()}"
    return "answered"


def test_the_library_is_built_and_matches_its_python_side() -> None:
    # make builds it before the tests; a broken build must fail here, not fall back quietly.
    assert load_library("snmp_fast") is not None


def test_probe_gets_of_every_site_match_python_at_random_times(
    inventory: LabInventory, fast: SnmpFastPath
) -> None:
    rng = random.Random(7)
    seen = {"answered": 0, "silent": 0, "handed": 0}
    start = time.time()
    for i in range(len(inventory)):
        for now in (start, start + rng.uniform(0, 30 * 86_400), rng.uniform(0, 2e9)):
            data = get(
                inventory.communities[i], rng.randrange(-(2**31), 2**31), probe_oids(inventory, i)
            )
            seen[compare(inventory, fast, data, i, now)] += 1
    total = sum(seen.values())
    # Slow sites (2 %) go to Python; the rest is answered or silenced in C.
    assert seen["answered"] > 0.85 * total, seen
    assert seen["silent"] > 0.02 * total, seen
    assert seen["handed"] < 0.05 * total, seen


def test_every_interface_and_column_matches_python(
    inventory: LabInventory, fast: SnmpFastPath
) -> None:
    now = time.time()
    answered = 0
    for i in range(0, len(inventory), 7):
        w = inventory.wan_index(i)
        oids = [
            (*column, index)
            for column in (*COLUMNS, *X_COLUMNS)
            for index in (1, w, w + 1, w + 2, 200)
        ]
        for oid in oids:
            answered += (
                compare(inventory, fast, get(inventory.communities[i], 12345, [oid]), i, now)
                == "answered"
            )
    assert answered > 0


def test_what_python_must_decide_is_left_to_it(inventory: LabInventory, fast: SnmpFastPath) -> None:
    now = time.time()
    i = next(
        k
        for k in range(len(inventory))
        if inventory.behaviour(k).answers(now) and not inventory.behaviour(k).slow_delay_s
    )
    community = inventory.communities[i]
    oids = probe_oids(inventory, i)
    packed = bytes(int(part) for part in lab_address(i).split("."))
    assert fast.answer(get(community, 1, oids), packed, now) not in (None, SILENT)
    for data in (
        get("wrong", 1, oids),  # wrong community
        get(community, 1, oids, pdu=ber.GET_NEXT_REQUEST),
        get(community, 1, [(1, 3, 6, 1, 2, 1, 1, 5, 0)]),  # sysName: not a fast-path OID
        ber.encode_message(
            community=community.encode(),
            pdu_type=ber.GET_REQUEST,
            request_id=1,
            varbinds=[(SYS_UPTIME, ber.NULL, None)],
            version=ber.VERSION_1,
        ),
        get(community, 1, oids)[:-1],  # truncated
        b"\x30\x03\x02\x01\x01",
        b"",
    ):
        assert fast.answer(data, packed, now) is None
    assert fast.answer(get(community, 1, oids), bytes((10, 0, 0, 1)), now) is None  # not a lab site


OID_POOL = [
    SYS_UPTIME,
    *((*c, idx) for c in (*COLUMNS, *X_COLUMNS) for idx in (1, 2, 3, 4, 10, 127, 128, 300)),
    (1, 3, 6, 1, 2, 1, 1, 1, 0),
    (1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 2, 1),
    (1, 3, 6, 1, 2, 1, 2, 2, 1, 10),
]


@settings(max_examples=400, deadline=None)
@given(
    site=st.integers(0, SITES - 1),
    request_id=st.integers(-(2**63), 2**63 - 1),
    oids=st.lists(st.sampled_from(OID_POOL), min_size=1, max_size=20),
    now=st.floats(0, 4e9, allow_nan=False),
    cut=st.integers(0, 3),
)
def test_drawn_requests_match_python(
    inventory: LabInventory,
    fast: SnmpFastPath,
    site: int,
    request_id: int,
    oids: list[tuple[int, ...]],
    now: float,
    cut: int,
) -> None:
    data = get(inventory.communities[site], request_id, oids)
    compare(inventory, fast, data[: len(data) - cut] if cut else data, site, now)


def test_the_running_agent_answers_the_engine_from_c(inventory: LabInventory) -> None:
    positions = list(range(0, len(inventory), 3))
    with running_snmp_agent(inventory) as agent:
        targets = [
            SnmpTarget(
                site_id=i,
                host=lab_address(i),
                port=agent.port,
                community=inventory.communities[i],
                if_index=inventory.wan_if_indexes[i] or None,
                if_name=inventory.wan_if_names[i],
            )
            for i in positions
        ]
        outcomes = probe_snmp_many_sync(targets, timeout=0.5, retries=0)
    assert agent.fast is not None
    now = time.time()
    # Slow sites answer after 1.2-1.8 s, past this test's timeout.
    expected_up = sum(
        inventory.behaviour(i).answers(now) and not inventory.behaviour(i).slow_delay_s
        for i in positions
    )
    assert abs(sum(o.ok for o in outcomes) - expected_up) <= 5
    # The C path answered most of them (the agent merged its counters at the end).
    assert agent.stats.answered_native >= 0.9 * expected_up
    assert agent.stats.requests >= len(positions)
