"""The lean BER codec agrees with pysnmp/pyasn1 on encode and decode (hypothesis)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1905

from probes import ber

V2C: Any = api.v2c

PDU_CLASSES: dict[int, Any] = {
    ber.GET_REQUEST: V2C.GetRequestPDU,
    ber.GET_NEXT_REQUEST: V2C.GetNextRequestPDU,
    ber.RESPONSE: V2C.ResponsePDU,
    ber.SET_REQUEST: V2C.SetRequestPDU,
    ber.GET_BULK_REQUEST: V2C.GetBulkRequestPDU,
    ber.INFORM_REQUEST: V2C.InformRequestPDU,
    ber.SNMPV2_TRAP: V2C.SNMPv2TrapPDU,
    ber.REPORT: V2C.ReportPDU,
}
INT32 = st.integers(-(2**31), 2**31 - 1)
UINT32 = st.integers(0, 2**32 - 1)
COUNTER64_EDGES = [0, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]
INT_EDGES = [0, -1, 127, 128, -128, -129, 255, 256, 2**31 - 1, -(2**31), -(2**23), -32768]

arcs = st.integers(0, 2**32 - 1)
oids = st.one_of(
    st.tuples(st.integers(0, 1), st.integers(0, 39)),
    st.tuples(st.just(2), st.integers(0, 2**32 - 81)),
).flatmap(
    lambda head: st.lists(st.one_of(st.integers(0, 200), arcs), min_size=0, max_size=130).map(
        lambda tail: (*head, *tail)
    )
)


def value_strategy() -> st.SearchStrategy[tuple[int, ber.Value]]:
    return st.one_of(
        st.tuples(st.just(ber.INTEGER), st.one_of(INT32, st.sampled_from(INT_EDGES))),
        st.tuples(st.just(ber.OCTET_STRING), st.binary(max_size=600)),
        st.tuples(st.just(ber.NULL), st.none()),
        st.tuples(st.just(ber.OBJECT_IDENTIFIER), oids),
        st.tuples(st.just(ber.IP_ADDRESS), st.binary(min_size=4, max_size=4)),
        st.tuples(st.just(ber.COUNTER32), st.one_of(UINT32, st.sampled_from([0, 2**32 - 1]))),
        st.tuples(st.just(ber.GAUGE32), UINT32),
        st.tuples(st.just(ber.TIMETICKS), UINT32),
        st.tuples(st.just(ber.OPAQUE), st.binary(max_size=300)),
        st.tuples(
            st.just(ber.COUNTER64),
            st.one_of(st.integers(0, 2**64 - 1), st.sampled_from(COUNTER64_EDGES)),
        ),
        st.tuples(st.sampled_from(sorted(ber.EXCEPTION_TAGS)), st.none()),
    )


varbinds = st.lists(
    st.tuples(oids, value_strategy()).map(lambda t: (t[0], t[1][0], t[1][1])), max_size=12
)
messages = st.builds(
    ber.Message,
    version=st.just(ber.VERSION_2C),
    community=st.binary(max_size=300),
    pdu_type=st.sampled_from(sorted(PDU_CLASSES)),
    request_id=st.one_of(INT32, st.sampled_from(INT_EDGES)),
    error_status=st.integers(0, 18),
    error_index=st.integers(0, 2**31 - 1),
    varbinds=varbinds,
)


def pyasn1_value(tag: int, value: ber.Value) -> Any:
    if tag == ber.INTEGER:
        return V2C.Integer(value)
    if tag == ber.OCTET_STRING:
        return V2C.OctetString(value)
    if tag == ber.NULL:
        return V2C.Null("")
    if tag == ber.OBJECT_IDENTIFIER:
        return V2C.ObjectIdentifier(value)
    if tag == ber.IP_ADDRESS:
        return V2C.IpAddress(value)
    if tag == ber.COUNTER32:
        return V2C.Counter32(value)
    if tag == ber.GAUGE32:
        return V2C.Gauge32(value)
    if tag == ber.TIMETICKS:
        return V2C.TimeTicks(value)
    if tag == ber.OPAQUE:
        return V2C.Opaque(value)
    if tag == ber.COUNTER64:
        return V2C.Counter64(value)
    return {
        ber.NO_SUCH_OBJECT: rfc1905.noSuchObject,
        ber.NO_SUCH_INSTANCE: rfc1905.noSuchInstance,
        ber.END_OF_MIB_VIEW: rfc1905.endOfMibView,
    }[tag]


def pyasn1_message(message: ber.Message) -> Any:
    pdu = PDU_CLASSES[message.pdu_type]()
    if message.pdu_type == ber.GET_BULK_REQUEST:
        V2C.apiBulkPDU.set_defaults(pdu)
        V2C.apiBulkPDU.set_non_repeaters(pdu, message.error_status)
        V2C.apiBulkPDU.set_max_repetitions(pdu, message.error_index)
    else:
        V2C.apiPDU.set_defaults(pdu)
        V2C.apiPDU.set_error_status(pdu, message.error_status)
        V2C.apiPDU.set_error_index(pdu, message.error_index)
    V2C.apiPDU.set_request_id(pdu, message.request_id)
    V2C.apiPDU.set_varbinds(
        pdu, [(oid, pyasn1_value(tag, value)) for oid, tag, value in message.varbinds]
    )
    msg = V2C.Message()
    V2C.apiMessage.set_defaults(msg)
    V2C.apiMessage.set_community(msg, message.community)
    V2C.apiMessage.set_pdu(msg, pdu)
    return msg


def from_pyasn1(msg: Any) -> ber.Message:
    pdu = V2C.apiMessage.get_pdu(msg)
    pdu_type = next(tag for tag, cls in PDU_CLASSES.items() if pdu.tagSet == cls.tagSet)
    result: list[ber.VarBind] = []
    for oid, value in V2C.apiPDU.get_varbinds(pdu):
        first = value.tagSet[0]
        tag = first.tagClass | first.tagFormat | first.tagId
        if tag in (ber.NULL, *ber.EXCEPTION_TAGS):
            plain: ber.Value = None
        elif tag in (ber.OCTET_STRING, ber.IP_ADDRESS, ber.OPAQUE):
            plain = bytes(value)
        elif tag == ber.OBJECT_IDENTIFIER:
            plain = tuple(value)
        else:
            plain = int(value)
        result.append((tuple(oid), tag, plain))
    # Positions 1 and 2: error-status/index, or non-repeaters/max-repetitions for GetBulk.
    status = int(pdu.getComponentByPosition(1))
    index = int(pdu.getComponentByPosition(2))
    return ber.Message(
        version=int(V2C.apiMessage.get_version(msg)),
        community=bytes(V2C.apiMessage.get_community(msg)),
        pdu_type=pdu_type,
        request_id=int(V2C.apiPDU.get_request_id(pdu)),
        error_status=status,
        error_index=index,
        varbinds=result,
    )


def ours(message: ber.Message) -> bytes:
    return ber.encode_message(
        community=message.community,
        pdu_type=message.pdu_type,
        request_id=message.request_id,
        varbinds=message.varbinds,
        error_status=message.error_status,
        error_index=message.error_index,
    )


def pyasn1_is_minimal(message: ber.Message) -> bool:
    """pyasn1 0.6 encodes -2^(8k-1) (e.g. -128, -2^31) with a redundant leading 0xFF."""
    ints = [message.request_id, message.error_status, message.error_index]
    ints += [v for _, tag, v in message.varbinds if tag == ber.INTEGER and isinstance(v, int)]
    return not any(v < 0 and (-v) & (-v - 1) == 0 and (-v).bit_length() % 8 == 0 for v in ints)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(messages)
@example(
    ber.Message(1, b"public", ber.RESPONSE, -1, 0, 0, [((1, 3, 6, 1), ber.COUNTER64, 2**64 - 1)])
)
def test_encode_matches_pyasn1(message: ber.Message) -> None:
    theirs = encoder.encode(pyasn1_message(message))
    mine = ours(message)
    if pyasn1_is_minimal(message):
        assert mine == theirs
    # Whatever the octets, pyasn1 reads our encoding back as the same message.
    decoded, rest = decoder.decode(mine, asn1Spec=V2C.Message())
    assert rest == b""
    assert from_pyasn1(decoded) == message


@PROPERTY
@given(messages)
def test_decode_matches_pyasn1(message: ber.Message) -> None:
    theirs = encoder.encode(pyasn1_message(message))
    assert ber.decode_message(theirs) == message
    decoded, _ = decoder.decode(theirs, asn1Spec=V2C.Message())
    assert ber.decode_message(theirs) == from_pyasn1(decoded)


@pytest.mark.parametrize("value", COUNTER64_EDGES)
def test_counter64_edges_exact(value: int) -> None:
    message = ber.Message(
        1, b"c", ber.RESPONSE, 1, 0, 0, [((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 2), 0x46, value)]
    )
    encoded = ours(message)
    assert encoded == encoder.encode(pyasn1_message(message))
    assert ber.decode_message(encoded).varbinds[0][2] == value


@pytest.mark.parametrize("value", [-128, -32768, -(2**23), -(2**31)])
def test_negative_powers_are_minimal_where_pyasn1_is_not(value: int) -> None:
    content = ber.integer_content(value)
    assert content[0] & 0x80 and len(content) == (-value).bit_length() // 8
    message = ber.Message(1, b"c", ber.GET_REQUEST, value, 0, 0, [])
    theirs = encoder.encode(pyasn1_message(message))
    assert theirs != ours(message)  # pyasn1 pads with 0xFF; both decode to the same value
    assert ber.decode_message(theirs) == ber.decode_message(ours(message)) == message


def test_long_lengths_and_large_arcs() -> None:
    big_oid = (1, 3, 6, 1, 4, 1, 2**32 - 1, 2**31, 16383, 16384, *range(100, 400))
    message = ber.Message(
        1,
        b"x" * 256,
        ber.RESPONSE,
        -(2**31) + 1,
        0,
        0,
        [(big_oid, ber.OCTET_STRING, b"y" * 30_000), ((1, 3, 6), ber.OPAQUE, b"z" * 40_000)],
    )
    encoded = ours(message)
    assert encoded[1] == 0x83  # three length octets for a > 65,535-octet message
    assert encoded == encoder.encode(pyasn1_message(message))
    assert ber.decode_message(encoded) == message


def test_template_splices_request_ids() -> None:
    oids = [(1, 3, 6, 1, 2, 1, 1, 3, 0), (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 7)]
    template = ber.RequestTemplate(b"public", ber.GET_REQUEST, oids)
    for rid in (ber.REQUEST_ID_MIN, 0x12345678, ber.REQUEST_ID_MAX, 0, 5, -7, 2**20):
        built = template.build(rid)
        expected = ber.Message(
            1, b"public", ber.GET_REQUEST, rid, 0, 0, [(o, ber.NULL, None) for o in oids]
        )
        assert built == ours(expected)
        assert ber.peek_request_id(built) == rid
    bulk = ber.RequestTemplate(b"p", ber.GET_BULK_REQUEST, oids[:1], max_repetitions=16)
    assert ber.decode_message(bulk.build(0x01020304)).error_index == 16


@settings(max_examples=200, deadline=None)
@given(messages, st.data())
def test_truncated_or_corrupted_input_raises_only_ber_error(message: ber.Message, data) -> None:
    encoded = ours(message)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(ber.BerError):
        ber.decode_message(encoded[:cut])
    with pytest.raises(ber.BerError):
        ber.decode_message(encoded + b"\x00")
    position = data.draw(st.integers(0, len(encoded) - 1))
    flipped = bytearray(encoded)
    flipped[position] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(ber.BerError):
        ber.decode_message(bytes(flipped))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_another_exception(garbage: bytes) -> None:
    with contextlib.suppress(ber.BerError):
        ber.decode_message(garbage)
    ber.peek_request_id(garbage)


def test_lenient_unsigned_without_leading_zero() -> None:
    # Counter32 4294967295 sent by a sloppy agent as FF FF FF FF (no leading zero octet).
    varbind = b"\x30\x0b\x06\x03\x2b\x06\x01\x41\x04\xff\xff\xff\xff"
    pdu = b"\x02\x01\x01\x02\x01\x00\x02\x01\x00\x30" + bytes((len(varbind),)) + varbind
    body = b"\x02\x01\x01\x04\x01c\xa2" + bytes((len(pdu),)) + pdu
    message = ber.decode_message(b"\x30" + bytes((len(body),)) + body)
    assert message.varbinds == [((1, 3, 6, 1), ber.COUNTER32, 2**32 - 1)]


@pytest.mark.parametrize(
    "bad",
    [
        b"\x30\x80\x02\x01\x01\x00\x00",  # indefinite length
        b"\x30\x85\x00\x00\x00\x00\x05",  # five length octets
        b"\x30\x03\x02\x01",  # length past the end
        b"\x30\x03\x02\x00\x00",  # empty INTEGER
    ],
)
def test_rejects_forms_snmp_never_uses(bad: bytes) -> None:
    with pytest.raises(ber.BerError):
        ber.decode_message(bad)


@PROPERTY
@given(messages, st.data())
def test_match_varbinds_agrees_with_the_full_decoder(message: ber.Message, data) -> None:
    encoded = ours(message)
    header = ber.decode_header(encoded)
    raw = ber.decode_raw(encoded)
    assert header[:6] == (
        raw.version,
        raw.community,
        raw.pdu_type,
        raw.request_id,
        raw.error_status,
        raw.error_index,
    )
    tlvs = tuple(ber.encode_oid(oid) for oid, _, _ in message.varbinds)
    matched = ber.match_varbinds(encoded, header[6], tlvs)
    if matched is not None:
        assert matched == [(tag, value) for _, tag, value in raw.varbinds]
    # Asking for other names, or fewer, never matches.
    other = ber.encode_oid((1, 3, 9, 9))
    if tlvs:
        assert ber.match_varbinds(encoded, header[6], tlvs[:-1]) is None
        if tlvs[0] != other:
            assert ber.match_varbinds(encoded, header[6], (other, *tlvs[1:])) is None
    # Corrupted datagrams: whatever match_varbinds accepts, the full decoder accepts alike.
    position = data.draw(st.integers(0, len(encoded) - 1))
    flipped = bytearray(encoded)
    flipped[position] ^= data.draw(st.integers(1, 255))
    corrupted = bytes(flipped)
    try:
        fields = ber.decode_header(corrupted)
    except ber.BerError:
        return
    again = ber.match_varbinds(corrupted, fields[6], tlvs)
    if again is not None:
        full = ber.decode_raw(corrupted)
        assert again == [(tag, value) for _, tag, value in full.varbinds]
        assert [oid for oid, _, _ in full.varbinds] == [
            ber.oid_content(o) for o, _, _ in message.varbinds
        ]


def test_match_varbinds_on_a_typical_answer() -> None:
    varbinds: list[ber.VarBind] = [
        ((1, 3, 6, 1, 2, 1, 1, 3, 0), ber.TIMETICKS, 4242),
        ((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 3), ber.COUNTER64, 2**64 - 1),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 3), ber.NO_SUCH_INSTANCE, None),
    ]
    encoded = ours(ber.Message(1, b"public", ber.RESPONSE, 77, 0, 0, varbinds))
    header = ber.decode_header(encoded)
    tlvs = tuple(ber.encode_oid(oid) for oid, _, _ in varbinds)
    assert ber.match_varbinds(encoded, header[6], tlvs) == [(t, v) for _, t, v in varbinds]
    with pytest.raises(ber.BerError):
        ber.decode_header(encoded[:20])
