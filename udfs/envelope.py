"""The Kinesis record format between the ingestor and the Flink job.

One record = one exchange frame plus what only the receiver knows: the local
receipt time and where the frame came from. Binary layout (little-endian)::

    u8 format_version (=1) | u8 source | i64 receipt_time_us | SBE frame bytes

The record travels base64-encoded because PyFlink 1.20 wraps only a string
deserialization schema for the Kinesis consumer; base64 keeps the SBE bytes
exact through it.
"""
from __future__ import annotations

import base64
import binascii
import enum
import struct
from dataclasses import dataclass

FORMAT_VERSION = 1
_PREFIX = struct.Struct("<BBq")


class Source(enum.IntEnum):
    WEBSOCKET = 0  # live stream frame
    REST_SNAPSHOT = 1  # REST depth snapshot re-encoded as SBE 10002, injected in band


@dataclass(frozen=True, slots=True)
class Envelope:
    source: Source
    receipt_time_us: int
    frame: bytes


class EnvelopeError(ValueError):
    """The record is not an envelope this code understands."""


def pack(envelope: Envelope) -> bytes:
    return _PREFIX.pack(FORMAT_VERSION, int(envelope.source), envelope.receipt_time_us) + envelope.frame


def unpack(raw: bytes) -> Envelope:
    if len(raw) < _PREFIX.size:
        raise EnvelopeError(f"record of {len(raw)} bytes is shorter than the {_PREFIX.size}-byte prefix")
    version, source, receipt = _PREFIX.unpack_from(raw)
    if version != FORMAT_VERSION:
        raise EnvelopeError(f"envelope format {version}, expected {FORMAT_VERSION}")
    try:
        src = Source(source)
    except ValueError:
        raise EnvelopeError(f"unknown source {source}") from None
    return Envelope(src, receipt, bytes(raw[_PREFIX.size :]))


def to_text(envelope: Envelope) -> str:
    return base64.b64encode(pack(envelope)).decode("ascii")


def from_text(text: str) -> Envelope:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError(f"record is not base64: {exc}") from None
    return unpack(raw)
