"""The Kinesis record format between the ingestor and the Flink job.

A record carries one or more exchange frames of one symbol, each with what only
the receiver knows: the local receipt time and where the frame came from.
Binary layout (little-endian)::

    version 1 (one frame):      u8 1 | u8 source | i64 receipt_time_us | SBE frame
    version 2 (one source):     u8 2 | u8 source | u16 count | count x (i64 receipt_time_us | u32 length | SBE frame)
    version 3 (mixed sources):  u8 3 | u16 count | count x (u8 source | i64 receipt_time_us | u32 length | SBE frame)

Aggregation (as the Kinesis Producer Library does) exists for throughput: the
per-record cost in Kinesis and in PyFlink dwarfs the per-frame work, so the
ingestor packs the frames that arrive within its linger window into one record.
Spot frames and the perpetual's quotes arrive interleaved on two connections; version 3
lets one record carry both in arrival order (version 2 needed a record per source, twice
the records per linger window once the perpetual was on). A batch of one source is still
written as version 2, byte for byte what the job read before version 3: a job must be
able to read version 3 before an ingestor writes it (deploy the job first).

Records travel base64-encoded because PyFlink 1.20 wraps only a string
deserialization schema for the Kinesis consumer; base64 keeps the bytes exact.
"""

from __future__ import annotations

import base64
import binascii
import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

SINGLE_VERSION = 1
BATCH_VERSION = 2
MIXED_VERSION = 3
MAX_FRAMES_PER_RECORD = 0xFFFF
_SINGLE_PREFIX = struct.Struct("<BBq")
_BATCH_PREFIX = struct.Struct("<BBH")
_ENTRY_PREFIX = struct.Struct("<qI")
_MIXED_PREFIX = struct.Struct("<BH")
_MIXED_ENTRY_PREFIX = struct.Struct("<BqI")


class Source(enum.IntEnum):
    WEBSOCKET = 0  # live stream frame
    REST_SNAPSHOT = 1  # REST depth snapshot re-encoded as SBE 10002, injected in band
    # the leading perpetual's bookTicker (JSON on the futures stream) re-encoded as SBE 10001 under
    # the spot symbol it leads (``btcpred/ingest/perp_quotes.py``); the job reads it as a PerpQuoteEvent
    PERP_QUOTE = 2


@dataclass(frozen=True, slots=True)
class Envelope:
    source: Source
    receipt_time_us: int
    frame: bytes


class EnvelopeError(ValueError):
    """The record is not an envelope this code understands."""


def pack(envelope: Envelope) -> bytes:
    return _SINGLE_PREFIX.pack(SINGLE_VERSION, int(envelope.source), envelope.receipt_time_us) + envelope.frame


def pack_batch(envelopes: Sequence[Envelope]) -> bytes:
    """One record for frames in arrival order: version 1 for a single frame, 2 for one source, 3 for mixed."""
    if len(envelopes) == 1:
        return pack(envelopes[0])
    if not 0 < len(envelopes) <= MAX_FRAMES_PER_RECORD:
        raise ValueError(f"{len(envelopes)} frames per record (1..{MAX_FRAMES_PER_RECORD})")
    source = envelopes[0].source
    if any(e.source != source for e in envelopes):
        parts = [_MIXED_PREFIX.pack(MIXED_VERSION, len(envelopes))]
        for e in envelopes:
            parts.append(_MIXED_ENTRY_PREFIX.pack(int(e.source), e.receipt_time_us, len(e.frame)))
            parts.append(e.frame)
        return b"".join(parts)
    parts = [_BATCH_PREFIX.pack(BATCH_VERSION, int(source), len(envelopes))]
    for e in envelopes:
        parts.append(_ENTRY_PREFIX.pack(e.receipt_time_us, len(e.frame)))
        parts.append(e.frame)
    return b"".join(parts)


def _source(value: int) -> Source:
    try:
        return Source(value)
    except ValueError:
        raise EnvelopeError(f"unknown source {value}") from None


def unpack(raw: bytes) -> list[Envelope]:
    if len(raw) < 2:
        raise EnvelopeError(f"record of {len(raw)} bytes is too short for an envelope")
    version = raw[0]
    if version == SINGLE_VERSION:
        if len(raw) < _SINGLE_PREFIX.size:
            raise EnvelopeError(f"record of {len(raw)} bytes is shorter than the {_SINGLE_PREFIX.size}-byte prefix")
        _, source, receipt = _SINGLE_PREFIX.unpack_from(raw)
        return [Envelope(_source(source), receipt, bytes(raw[_SINGLE_PREFIX.size :]))]
    if version == MIXED_VERSION:
        return _unpack_mixed(raw)
    if version != BATCH_VERSION:
        raise EnvelopeError(f"envelope format {version}, expected {SINGLE_VERSION}, {BATCH_VERSION} or {MIXED_VERSION}")
    if len(raw) < _BATCH_PREFIX.size:
        raise EnvelopeError("aggregated record shorter than its prefix")
    _, source, count = _BATCH_PREFIX.unpack_from(raw)
    src = _source(source)
    pos = _BATCH_PREFIX.size
    out = []
    for i in range(count):
        if pos + _ENTRY_PREFIX.size > len(raw):
            raise EnvelopeError(f"aggregated record truncated at frame {i} of {count}")
        receipt, length = _ENTRY_PREFIX.unpack_from(raw, pos)
        pos += _ENTRY_PREFIX.size
        if pos + length > len(raw):
            raise EnvelopeError(f"frame {i} of {count} runs past the record end")
        out.append(Envelope(src, receipt, bytes(raw[pos : pos + length])))
        pos += length
    return _whole(out, raw, pos, count)


def _unpack_mixed(raw: bytes) -> list[Envelope]:
    if len(raw) < _MIXED_PREFIX.size:
        raise EnvelopeError("aggregated record shorter than its prefix")
    _, count = _MIXED_PREFIX.unpack_from(raw)
    pos = _MIXED_PREFIX.size
    out = []
    for i in range(count):
        if pos + _MIXED_ENTRY_PREFIX.size > len(raw):
            raise EnvelopeError(f"aggregated record truncated at frame {i} of {count}")
        source, receipt, length = _MIXED_ENTRY_PREFIX.unpack_from(raw, pos)
        pos += _MIXED_ENTRY_PREFIX.size
        if pos + length > len(raw):
            raise EnvelopeError(f"frame {i} of {count} runs past the record end")
        out.append(Envelope(_source(source), receipt, bytes(raw[pos : pos + length])))
        pos += length
    return _whole(out, raw, pos, count)


def _whole(out: list[Envelope], raw: bytes, pos: int, count: int) -> list[Envelope]:
    if pos != len(raw):
        raise EnvelopeError(f"{len(raw) - pos} bytes after the last of {count} frames")
    return out


def to_text(envelope: Envelope) -> str:
    return base64.b64encode(pack(envelope)).decode("ascii")


def batch_to_text(envelopes: Sequence[Envelope]) -> str:
    return base64.b64encode(pack_batch(envelopes)).decode("ascii")


def from_text(text: str) -> list[Envelope]:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError(f"record is not base64: {exc}") from None
    return unpack(raw)
