"""A lean BER codec for exactly the SNMPv1/v2c messages the probe engine and lab agent use.

Messages are ``SEQUENCE { version INTEGER, community OCTET STRING, PDU }`` where the PDU is a
GetRequest, GetNextRequest, Response, SetRequest, GetBulkRequest, InformRequest, SNMPv2-Trap or
Report (``[0..8] IMPLICIT SEQUENCE { request-id, error-status | non-repeaters, error-index |
max-repetitions, SEQUENCE OF VarBind }``). Varbind values are the SMIv2 types: INTEGER, OCTET
STRING, NULL, OBJECT IDENTIFIER, IpAddress, Counter32, Gauge32, TimeTicks, Opaque, Counter64 and
the exceptions noSuchObject, noSuchInstance and endOfMibView.

Why not pyasn1: it costs ~1 ms per response, two orders of magnitude above what 10,000 probes/s
on one core allows. ``tests/probes/test_ber_properties.py`` proves this codec agrees with
pysnmp/pyasn1 on encode and decode.

Decoding is strict where it protects the engine (definite lengths only, every length inside the
datagram, nothing after the message, at most 4 length octets) and lenient where real agents are
sloppy: unsigned application types (Counter32, Gauge32, TimeTicks, Counter64) read their
content octets as an unsigned number, as net-snmp does, so a buggy agent that sends Counter32
4294967295 as ``FF FF FF FF`` (no leading zero) still gives the right value. Any violation
raises :class:`BerError`; callers treat that datagram as malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Universal and SNMP application/context tags.
INTEGER: Final = 0x02
OCTET_STRING: Final = 0x04
NULL: Final = 0x05
OBJECT_IDENTIFIER: Final = 0x06
SEQUENCE: Final = 0x30
IP_ADDRESS: Final = 0x40
COUNTER32: Final = 0x41
GAUGE32: Final = 0x42
TIMETICKS: Final = 0x43
OPAQUE: Final = 0x44
COUNTER64: Final = 0x46
NO_SUCH_OBJECT: Final = 0x80
NO_SUCH_INSTANCE: Final = 0x81
END_OF_MIB_VIEW: Final = 0x82

GET_REQUEST: Final = 0xA0
GET_NEXT_REQUEST: Final = 0xA1
RESPONSE: Final = 0xA2
SET_REQUEST: Final = 0xA3
GET_BULK_REQUEST: Final = 0xA5
INFORM_REQUEST: Final = 0xA6
SNMPV2_TRAP: Final = 0xA7
REPORT: Final = 0xA8

VERSION_1: Final = 0
VERSION_2C: Final = 1

PDU_TYPES: Final = frozenset(
    {
        GET_REQUEST,
        GET_NEXT_REQUEST,
        RESPONSE,
        SET_REQUEST,
        GET_BULK_REQUEST,
        INFORM_REQUEST,
        SNMPV2_TRAP,
        REPORT,
    }
)
EXCEPTION_TAGS: Final = frozenset({NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW})
_UNSIGNED_BITS: Final = {COUNTER32: 32, GAUGE32: 32, TIMETICKS: 32, COUNTER64: 64}
_BYTES_TAGS: Final = frozenset({OCTET_STRING, IP_ADDRESS, OPAQUE})

Oid = tuple[int, ...]
Value = int | bytes | Oid | None
VarBind = tuple[Oid, int, Value]
"""(OID, value tag, value): ints for INTEGER and the unsigned types, bytes for OCTET STRING,
IpAddress and Opaque, a tuple for OBJECT IDENTIFIER, None for NULL and the exceptions."""


class BerError(ValueError):
    """The octets are not a well-formed SNMP message this codec understands."""


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded SNMPv1/v2c message.

    For GetBulkRequest, ``error_status`` holds non-repeaters and ``error_index``
    max-repetitions, as on the wire.
    """

    version: int
    community: bytes
    pdu_type: int
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[VarBind]


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A decoded message whose varbind OIDs are left as their BER content octets.

    The engine compares those octets with the ones it sent instead of decoding OIDs, which is
    the costliest part of a response.
    """

    version: int
    community: bytes
    pdu_type: int
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[bytes, int, Value]]


# --- encoding -----------------------------------------------------------------------------


def encode_length(length: int) -> bytes:
    """Return the BER definite length octets of ``length`` (short form below 128)."""
    if length < 0x80:
        return bytes((length,))
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def encode_tlv(tag: int, content: bytes) -> bytes:
    """Return tag, length and content octets."""
    return bytes((tag,)) + encode_length(len(content)) + content


def integer_content(value: int) -> bytes:
    """Return the minimal two's-complement content octets of a signed integer."""
    size = (value.bit_length() if value >= 0 else (~value).bit_length()) // 8 + 1
    return value.to_bytes(size, "big", signed=True)


def unsigned_content(value: int) -> bytes:
    """Return the content octets of an unsigned value (a leading 0 when the top bit is set)."""
    if value < 0:
        raise BerError(f"unsigned value {value} is negative")
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def oid_content(oid: Oid) -> bytes:
    """Return the content octets of an OBJECT IDENTIFIER (at least two arcs)."""
    if len(oid) < 2:
        raise BerError(f"OID {oid} needs at least two arcs")
    first, second = oid[0], oid[1]
    if first > 2 or (first < 2 and second > 39) or second < 0:
        raise BerError(f"OID {oid} has invalid first arcs")
    out = bytearray()
    for arc in (first * 40 + second, *oid[2:]):
        if arc < 0:
            raise BerError(f"OID {oid} has a negative arc")
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = bytearray()
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        chunk[0] &= 0x7F
        chunk.reverse()
        out += chunk
    return bytes(out)


def encode_oid(oid: Oid) -> bytes:
    """Return a complete OBJECT IDENTIFIER TLV."""
    return encode_tlv(OBJECT_IDENTIFIER, oid_content(oid))


def parse_oid(text: str) -> Oid:
    """Return the arcs of a dotted OID such as ``1.3.6.1.2.1.1.3.0`` (a leading dot is fine)."""
    try:
        return tuple(int(part) for part in text.strip().lstrip(".").split("."))
    except ValueError as exc:
        raise BerError(f"{text!r} is not a dotted OID") from exc


def encode_value(tag: int, value: Value) -> bytes:
    """Return the TLV of one varbind value of type ``tag``."""
    if tag == INTEGER:
        if not isinstance(value, int):
            raise BerError("INTEGER needs an int")
        return encode_tlv(INTEGER, integer_content(value))
    if tag in _UNSIGNED_BITS:
        if not isinstance(value, int) or value >> _UNSIGNED_BITS[tag]:
            raise BerError(f"value {value!r} does not fit tag 0x{tag:02x}")
        return encode_tlv(tag, unsigned_content(value))
    if tag in _BYTES_TAGS:
        if not isinstance(value, bytes):
            raise BerError(f"tag 0x{tag:02x} needs bytes")
        return encode_tlv(tag, value)
    if tag == OBJECT_IDENTIFIER:
        if not isinstance(value, tuple):
            raise BerError("OBJECT IDENTIFIER needs a tuple of arcs")
        return encode_oid(value)
    if tag == NULL or tag in EXCEPTION_TAGS:
        return bytes((tag, 0))
    raise BerError(f"unsupported value tag 0x{tag:02x}")


def encode_varbinds(varbinds: list[VarBind]) -> bytes:
    """Return the ``SEQUENCE OF VarBind`` TLV."""
    body = b"".join(
        encode_tlv(SEQUENCE, encode_oid(oid) + encode_value(tag, value))
        for oid, tag, value in varbinds
    )
    return encode_tlv(SEQUENCE, body)


def encode_message(
    *,
    community: bytes,
    pdu_type: int,
    request_id: int,
    varbinds: list[VarBind],
    error_status: int = 0,
    error_index: int = 0,
    version: int = VERSION_2C,
) -> bytes:
    """Return one complete SNMPv1/v2c message (for GetBulk pass non-repeaters/max-repetitions
    as ``error_status``/``error_index``)."""
    if pdu_type not in PDU_TYPES:
        raise BerError(f"unsupported PDU type 0x{pdu_type:02x}")
    pdu = encode_tlv(
        pdu_type,
        encode_tlv(INTEGER, integer_content(request_id))
        + encode_tlv(INTEGER, integer_content(error_status))
        + encode_tlv(INTEGER, integer_content(error_index))
        + encode_varbinds(varbinds),
    )
    return encode_tlv(
        SEQUENCE,
        encode_tlv(INTEGER, integer_content(version)) + encode_tlv(OCTET_STRING, community) + pdu,
    )


REQUEST_ID_MIN: Final = 0x0080_0000
REQUEST_ID_MAX: Final = 0x7FFF_FFFF
"""Request-ids in this range always take four content octets, so a precomputed request can
take any of them by splicing four bytes."""


class RequestTemplate:
    """A request message precomputed once; :meth:`build` splices in a request-id.

    ``build`` costs one bytes join for ids in ``REQUEST_ID_MIN..REQUEST_ID_MAX`` (four content
    octets) and falls back to a full encode for any other id.
    """

    __slots__ = ("_args", "_prefix", "_suffix", "community", "oid_contents", "oid_tlvs")

    def __init__(
        self,
        community: bytes,
        pdu_type: int,
        oids: list[Oid],
        *,
        non_repeaters: int = 0,
        max_repetitions: int = 0,
    ) -> None:
        varbinds: list[VarBind] = [(oid, NULL, None) for oid in oids]
        self._args = (community, pdu_type, varbinds, non_repeaters, max_repetitions)
        marker = REQUEST_ID_MIN | 0x5A5A5A
        message = self._full(marker)
        needle = b"\x02\x04" + marker.to_bytes(4, "big")
        at = message.index(needle) + 2
        self._prefix = message[:at]
        self._suffix = message[at + 4 :]
        self.community = community
        self.oid_contents: tuple[bytes, ...] = tuple(oid_content(oid) for oid in oids)
        self.oid_tlvs: tuple[bytes, ...] = tuple(encode_oid(oid) for oid in oids)

    def _full(self, request_id: int) -> bytes:
        community, pdu_type, varbinds, first, second = self._args
        return encode_message(
            community=community,
            pdu_type=pdu_type,
            request_id=request_id,
            varbinds=varbinds,
            error_status=first,
            error_index=second,
        )

    def parts(self) -> tuple[bytes, bytes]:
        """The message's octets before and after the four request-id content octets."""
        return self._prefix, self._suffix

    def build(self, request_id: int) -> bytes:
        """Return the message with ``request_id``."""
        if REQUEST_ID_MIN <= request_id <= REQUEST_ID_MAX:
            return self._prefix + request_id.to_bytes(4, "big") + self._suffix
        return self._full(request_id)


# --- decoding -----------------------------------------------------------------------------


def _header(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """Check the tag at ``pos`` and return (content start, content end)."""
    if pos + 2 > end:
        raise BerError(f"truncated before tag 0x{tag:02x} at offset {pos}")
    if data[pos] != tag:
        raise BerError(f"expected tag 0x{tag:02x} at offset {pos}, found 0x{data[pos]:02x}")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise BerError(f"unsupported length form 0x{length:02x} at offset {pos - 1}")
        if pos + count > end:
            raise BerError(f"truncated length at offset {pos}")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    stop = pos + length
    if stop > end:
        raise BerError(f"length {length} at offset {pos} runs past the end")
    return pos, stop


def _any_header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Return (tag, content start, content end) of the TLV at ``pos`` (single-octet tags)."""
    if pos + 2 > end:
        raise BerError(f"truncated TLV at offset {pos}")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise BerError(f"multi-octet tag at offset {pos}")
    start, stop = _header(data, pos, end, tag)
    return tag, start, stop


def _integer(data: bytes, pos: int, end: int) -> tuple[int, int]:
    start, stop = _header(data, pos, end, INTEGER)
    if stop == start:
        raise BerError(f"empty INTEGER at offset {pos}")
    if stop - start > 9:
        raise BerError(f"INTEGER of {stop - start} octets at offset {pos}")
    return int.from_bytes(data[start:stop], "big", signed=True), stop


def decode_oid(content: bytes) -> Oid:
    """Return the arcs of OBJECT IDENTIFIER content octets."""
    if not content:
        raise BerError("empty OBJECT IDENTIFIER")
    arcs: list[int] = []
    arc = 0
    fresh = True
    for byte in content:
        if fresh and byte == 0x80:
            raise BerError("OBJECT IDENTIFIER arc with a leading 0x80 octet")
        arc = (arc << 7) | (byte & 0x7F)
        if byte & 0x80:
            fresh = False
        else:
            arcs.append(arc)
            arc = 0
            fresh = True
    if not fresh:
        raise BerError("OBJECT IDENTIFIER ends inside an arc")
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def _value(tag: int, data: bytes, start: int, stop: int) -> Value:
    """Return the Python value of a varbind value's content."""
    if tag == INTEGER:
        if stop == start or stop - start > 9:
            raise BerError(f"INTEGER of {stop - start} octets at offset {start}")
        return int.from_bytes(data[start:stop], "big", signed=True)
    bits = _UNSIGNED_BITS.get(tag)
    if bits is not None:
        if stop == start:
            raise BerError(f"empty unsigned value at offset {start}")
        value = int.from_bytes(data[start:stop], "big")
        if value >> bits:
            raise BerError(f"value {value} too large for tag 0x{tag:02x} at offset {start}")
        return value
    if tag in _BYTES_TAGS:
        if tag == IP_ADDRESS and stop - start != 4:
            raise BerError(f"IpAddress of {stop - start} octets at offset {start}")
        return data[start:stop]
    if tag == NULL or tag in EXCEPTION_TAGS:
        if stop != start:
            raise BerError(f"non-empty NULL/exception at offset {start}")
        return None
    if tag == OBJECT_IDENTIFIER:
        return decode_oid(data[start:stop])
    raise BerError(f"unsupported value tag 0x{tag:02x} at offset {start}")


def decode_header(data: bytes) -> tuple[int, bytes, int, int, int, int, int]:
    """Check a message's framing and return (version, community, PDU type, request-id,
    error-status, error-index, offset of the first varbind); raise BerError if malformed.

    Every length up to the varbind list is checked against the datagram; the varbinds
    themselves are left to :func:`match_varbinds` or :func:`decode_raw`.
    """
    try:
        return _header_fields(data)
    except IndexError as exc:
        raise BerError("truncated message") from exc


def _header_fields(data: bytes) -> tuple[int, bytes, int, int, int, int, int]:
    # Hot path of the engine: TLV headers are parsed inline (no call per TLV). A header that
    # runs past its container always yields ``stop > limit``; reads past the datagram raise
    # IndexError, which decode_raw turns into BerError.
    end = len(data)
    if data[0] != SEQUENCE:
        raise BerError("not a SEQUENCE")
    length = data[1]
    pos = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise BerError("unsupported message length form")
        length = int.from_bytes(data[2 : 2 + count], "big")
        pos = 2 + count
    if pos + length != end:
        raise BerError("message length does not match the datagram")

    # version INTEGER
    if data[pos] != INTEGER:
        raise BerError(f"expected INTEGER version at offset {pos}")
    length = data[pos + 1]
    pos += 2
    if length & 0x80 or length == 0 or length > 9 or pos + length > end:
        raise BerError("bad version INTEGER")
    version = int.from_bytes(data[pos : pos + length], "big", signed=True)
    pos += length

    # community OCTET STRING
    if data[pos] != OCTET_STRING:
        raise BerError(f"expected OCTET STRING community at offset {pos}")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise BerError("unsupported community length form")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    stop = pos + length
    if stop > end:
        raise BerError("community runs past the end")
    community = data[pos:stop]
    pos = stop

    # PDU
    pdu_type = data[pos]
    if pdu_type not in PDU_TYPES:
        raise BerError(f"unsupported PDU type 0x{pdu_type:02x}")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise BerError("unsupported PDU length form")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length != end:
        raise BerError("PDU length does not match the message")

    # request-id, error-status, error-index
    ints = [0, 0, 0]
    for k in range(3):
        if data[pos] != INTEGER:
            raise BerError(f"expected INTEGER at offset {pos}")
        length = data[pos + 1]
        pos += 2
        if length & 0x80 or length == 0 or length > 9 or pos + length > end:
            raise BerError(f"bad INTEGER at offset {pos - 2}")
        ints[k] = int.from_bytes(data[pos : pos + length], "big", signed=True)
        pos += length

    # varbind list
    if data[pos] != SEQUENCE:
        raise BerError(f"expected the varbind list at offset {pos}")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise BerError("unsupported varbind list length form")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length != end:
        raise BerError("varbind list length does not match the PDU")
    return version, community, pdu_type, ints[0], ints[1], ints[2], pos


def _decode(data: bytes) -> RawMessage:
    version, community, pdu_type, request_id, error_status, error_index, pos = _header_fields(data)
    end = len(data)
    varbinds: list[tuple[bytes, int, Value]] = []
    append = varbinds.append
    unsigned_bits = _UNSIGNED_BITS
    bytes_tags = _BYTES_TAGS
    while pos < end:
        # varbind SEQUENCE
        if data[pos] != SEQUENCE:
            raise BerError(f"expected a varbind at offset {pos}")
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4:
                raise BerError("unsupported varbind length form")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        vb_stop = pos + length
        if vb_stop > end:
            raise BerError(f"varbind at offset {pos} runs past the end")
        # name OBJECT IDENTIFIER
        if data[pos] != OBJECT_IDENTIFIER:
            raise BerError(f"expected an OBJECT IDENTIFIER at offset {pos}")
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4:
                raise BerError("unsupported OID length form")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        stop = pos + length
        if length == 0 or stop > vb_stop:
            raise BerError(f"bad OBJECT IDENTIFIER at offset {pos}")
        name = data[pos:stop]
        pos = stop
        # value
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise BerError(f"multi-octet tag at offset {pos}")
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4:
                raise BerError("unsupported value length form")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        stop = pos + length
        if stop != vb_stop:
            raise BerError(f"varbind value at offset {pos} does not end the varbind")
        bits = unsigned_bits.get(tag)
        if bits is not None:
            if length == 0:
                raise BerError(f"empty unsigned value at offset {pos}")
            number = data[pos] if length == 1 else int.from_bytes(data[pos:stop], "big")
            if number >> bits:
                raise BerError(f"value too large for tag 0x{tag:02x} at offset {pos}")
            append((name, tag, number))
        elif tag == INTEGER:
            if length == 0 or length > 9:
                raise BerError(f"INTEGER of {length} octets at offset {pos}")
            append((name, tag, int.from_bytes(data[pos:stop], "big", signed=True)))
        elif tag in bytes_tags:
            if tag == IP_ADDRESS and length != 4:
                raise BerError(f"IpAddress of {length} octets at offset {pos}")
            append((name, tag, data[pos:stop]))
        else:
            append((name, tag, _value(tag, data, pos, stop)))
        pos = stop
    return RawMessage(version, community, pdu_type, request_id, error_status, error_index, varbinds)


def match_varbinds(
    data: bytes, pos: int, oid_tlvs: tuple[bytes, ...]
) -> list[tuple[int, Value]] | None:
    """Return (tag, value) per varbind when the list at ``pos`` names exactly ``oid_tlvs`` (OID
    TLVs, in order) with short-form lengths and simple values, and ends the datagram.

    None means "something else": the caller decodes the message in full to tell a malformed
    datagram from an answer that is not what was asked. When this returns values,
    :func:`decode_raw` would return the same ones (property-tested).
    """
    end = len(data)
    values: list[tuple[int, Value]] = []
    append = values.append
    unsigned_bits = _UNSIGNED_BITS
    for oid_tlv in oid_tlvs:
        if pos + 2 > end or data[pos] != SEQUENCE:
            return None
        stop = pos + 2 + data[pos + 1]  # a long-form length makes stop overshoot: rejected below
        if data[pos + 1] & 0x80 or stop > end or not data.startswith(oid_tlv, pos + 2):
            return None
        at = pos + 2 + len(oid_tlv)
        if at + 2 > stop:
            return None
        tag = data[at]
        length = data[at + 1]
        at += 2
        if at + length != stop:
            return None
        bits = unsigned_bits.get(tag)
        if bits is not None:
            if length == 0:
                return None
            number = int.from_bytes(data[at:stop], "big")
            if number >> bits:
                return None
            append((tag, number))
        elif tag == INTEGER:
            if length == 0 or length > 9:
                return None
            append((tag, int.from_bytes(data[at:stop], "big", signed=True)))
        elif tag in EXCEPTION_TAGS or tag == NULL:
            if length:
                return None
            append((tag, None))
        elif tag in (OCTET_STRING, OPAQUE) or (tag == IP_ADDRESS and length == 4):
            append((tag, data[at:stop]))
        else:
            return None
        pos = stop
    return values if pos == end else None


def decode_raw(data: bytes) -> RawMessage:
    """Decode a message, leaving varbind OIDs as content octets; raise BerError if malformed."""
    try:
        return _decode(data)
    except IndexError as exc:  # defensive: every index is bounds-checked above
        raise BerError("truncated message") from exc


def decode_message(data: bytes) -> Message:
    """Decode a message completely; raise BerError if it is malformed."""
    raw = decode_raw(data)
    return Message(
        raw.version,
        raw.community,
        raw.pdu_type,
        raw.request_id,
        raw.error_status,
        raw.error_index,
        [(decode_oid(oid), tag, value) for oid, tag, value in raw.varbinds],
    )


def _container_start(data: bytes, pos: int, tag: int) -> int:
    """Return where the content of the constructed TLV at ``pos`` starts (its end unchecked)."""
    if data[pos] != tag:
        raise BerError(f"expected tag 0x{tag:02x} at offset {pos}")
    length = data[pos + 1]
    return pos + 2 + ((length & 0x7F) if length & 0x80 else 0)


def peek_request_id(data: bytes) -> int | None:
    """Return the request-id of a possibly truncated message, or None when unreadable."""
    try:
        end = len(data)
        pos = _container_start(data, 0, SEQUENCE)
        _, pos = _integer(data, pos, end)
        _, pos = _header(data, pos, end, OCTET_STRING)
        if data[pos] not in PDU_TYPES:
            return None
        pos = _container_start(data, pos, data[pos])
        request_id, _ = _integer(data, pos, end)
    except (BerError, IndexError):
        return None
    return request_id
