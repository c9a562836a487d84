"""SBE codec for Binance spot market-data streams, schema id 1, version 0.

Layout follows ``shared/spec/binance/stream_1_0.xml`` (little-endian):
an 8-byte message header (blockLength, templateId, schemaId, version), the root
block, repeating groups (each with its own blockLength), then the ``symbol``
varString8. Decoding honours every blockLength it reads, so a frame from a newer
schema version with fields appended to a block still decodes.

``decode`` never raises: bad bytes come back as a :class:`DecodeError` so the
caller can dead-letter the frame and keep the stream alive.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from btcpred.udfs.events import (
    BestBidAskEvent,
    DepthDiffEvent,
    DepthSnapshotEvent,
    Level,
    MarketEvent,
    PerpQuoteEvent,
    TradeEntry,
    TradesEvent,
)

SCHEMA_ID = 1
SCHEMA_VERSION = 0

TEMPLATE_TRADES = 10000
TEMPLATE_BEST_BID_ASK = 10001
TEMPLATE_DEPTH_SNAPSHOT = 10002
TEMPLATE_DEPTH_DIFF = 10003

_HEADER = struct.Struct("<HHHH")
_GROUP32 = struct.Struct("<HI")  # groupSizeEncoding
_GROUP16 = struct.Struct("<HH")  # groupSize16Encoding

_TRADES_BLOCK = struct.Struct("<qqbb")
_TRADE_ENTRY = struct.Struct("<qqqB")
_BBA_BLOCK = struct.Struct("<qqbbqqqq")
_SNAPSHOT_BLOCK = struct.Struct("<qqbb")
_DIFF_BLOCK = struct.Struct("<qqqbb")
_LEVEL_ENTRY = struct.Struct("<qq")
_VAR8_LENGTH = struct.Struct("<B")

_UNIT_EXPONENT = -8  # events carry e8 units
_MIN_EXPONENT = -18
_MAX_EXPONENT = 18


class DecodeErrorKind(enum.Enum):
    TRUNCATED = "truncated"
    WRONG_SCHEMA = "wrong_schema"
    UNKNOWN_TEMPLATE = "unknown_template"
    BLOCK_TOO_SHORT = "block_too_short"
    BAD_EXPONENT = "bad_exponent"
    BAD_SYMBOL = "bad_symbol"
    TRAILING_BYTES = "trailing_bytes"


@dataclass(frozen=True, slots=True)
class DecodeError:
    kind: DecodeErrorKind
    detail: str
    template_id: int | None = None


class _Invalid(Exception):
    """Internal control flow only; never escapes :func:`decode`."""

    def __init__(self, kind: DecodeErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: struct.Struct, advance: int | None = None) -> tuple:
        """Read ``fmt`` at the cursor, then move by ``advance`` (the wire blockLength)."""
        step = fmt.size if advance is None else advance
        if self.pos + max(step, fmt.size) > len(self.buf):
            raise _Invalid(
                DecodeErrorKind.TRUNCATED, f"need {max(step, fmt.size)} bytes at {self.pos}, have {len(self.buf) - self.pos}"
            )
        values = fmt.unpack_from(self.buf, self.pos)
        self.pos += step
        return values

    def block(self, fmt: struct.Struct, block_length: int, what: str) -> tuple:
        if block_length < fmt.size:
            raise _Invalid(DecodeErrorKind.BLOCK_TOO_SHORT, f"{what} blockLength {block_length} < {fmt.size}")
        return self.take(fmt, block_length)

    def group(self, dim: struct.Struct, entry: struct.Struct, what: str) -> list[tuple]:
        block_length, count = self.take(dim)
        if block_length < entry.size:
            raise _Invalid(DecodeErrorKind.BLOCK_TOO_SHORT, f"{what} entry blockLength {block_length} < {entry.size}")
        if self.pos + block_length * count > len(self.buf):
            raise _Invalid(DecodeErrorKind.TRUNCATED, f"{what}: {count} entries of {block_length} bytes exceed frame")
        return [self.take(entry, block_length) for _ in range(count)]

    def skip_group(self, dim: struct.Struct, entry: struct.Struct, what: str) -> None:
        """``group`` without reading the entries: the same checks, the cursor past them."""
        block_length, count = self.take(dim)
        if block_length < entry.size:
            raise _Invalid(DecodeErrorKind.BLOCK_TOO_SHORT, f"{what} entry blockLength {block_length} < {entry.size}")
        if self.pos + block_length * count > len(self.buf):
            raise _Invalid(DecodeErrorKind.TRUNCATED, f"{what}: {count} entries of {block_length} bytes exceed frame")
        self.pos += block_length * count

    def symbol(self) -> str:
        (length,) = self.take(_VAR8_LENGTH)
        if self.pos + length > len(self.buf):
            raise _Invalid(DecodeErrorKind.TRUNCATED, "symbol runs past frame end")
        raw = self.buf[self.pos : self.pos + length]
        self.pos += length
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Invalid(DecodeErrorKind.BAD_SYMBOL, f"symbol is not UTF-8: {exc}") from None
        if not text or not text.isprintable():
            raise _Invalid(DecodeErrorKind.BAD_SYMBOL, f"symbol {text!r} is empty or unprintable")
        return text


def _to_units(mantissa: int, exponent: int) -> int:
    """Mantissa * 10**exponent expressed in e8 units, refusing precision loss."""
    if not _MIN_EXPONENT <= exponent <= _MAX_EXPONENT:
        raise _Invalid(DecodeErrorKind.BAD_EXPONENT, f"exponent {exponent} out of range")
    shift = exponent - _UNIT_EXPONENT
    if shift >= 0:
        return mantissa * 10**shift
    divisor = 10**-shift
    if mantissa % divisor:
        raise _Invalid(DecodeErrorKind.BAD_EXPONENT, f"{mantissa}e{exponent} is finer than 1e-8")
    return mantissa // divisor


def _levels(rows: list[tuple], price_exp: int, qty_exp: int) -> tuple[Level, ...]:
    return tuple((_to_units(p, price_exp), _to_units(q, qty_exp)) for p, q in rows)


def _decode_trades(r: _Reader, block_length: int) -> TradesEvent:
    event_time, transact_time, pe, qe = r.block(_TRADES_BLOCK, block_length, "trades")
    rows = r.group(_GROUP32, _TRADE_ENTRY, "trades")
    trades = tuple(
        TradeEntry(trade_id=tid, price_e8=_to_units(p, pe), qty_e8=_to_units(q, qe), is_buyer_maker=bool(m))
        for tid, p, q, m in rows
    )
    return TradesEvent(r.symbol(), event_time, transact_time, trades)


def _decode_best_bid_ask(r: _Reader, block_length: int) -> BestBidAskEvent:
    et, uid, pe, qe, bp, bq, ap, aq = r.block(_BBA_BLOCK, block_length, "bestBidAsk")
    return BestBidAskEvent(
        symbol=r.symbol(),
        event_time_us=et,
        book_update_id=uid,
        bid_price_e8=_to_units(bp, pe),
        bid_qty_e8=_to_units(bq, qe),
        ask_price_e8=_to_units(ap, pe),
        ask_qty_e8=_to_units(aq, qe),
    )


def _decode_snapshot(r: _Reader, block_length: int) -> DepthSnapshotEvent:
    et, uid, pe, qe = r.block(_SNAPSHOT_BLOCK, block_length, "depthSnapshot")
    bids = _levels(r.group(_GROUP16, _LEVEL_ENTRY, "bids"), pe, qe)
    asks = _levels(r.group(_GROUP16, _LEVEL_ENTRY, "asks"), pe, qe)
    return DepthSnapshotEvent(r.symbol(), et, uid, bids, asks)


def _decode_diff(r: _Reader, block_length: int) -> DepthDiffEvent:
    et, first, last, pe, qe = r.block(_DIFF_BLOCK, block_length, "depthDiff")
    bids = _levels(r.group(_GROUP16, _LEVEL_ENTRY, "bids"), pe, qe)
    asks = _levels(r.group(_GROUP16, _LEVEL_ENTRY, "asks"), pe, qe)
    return DepthDiffEvent(r.symbol(), et, first, last, bids, asks)


R = TypeVar("R")
_DECODERS: dict[int, Callable[[_Reader, int], MarketEvent]] = {
    TEMPLATE_TRADES: _decode_trades,
    TEMPLATE_BEST_BID_ASK: _decode_best_bid_ask,
    TEMPLATE_DEPTH_SNAPSHOT: _decode_snapshot,
    TEMPLATE_DEPTH_DIFF: _decode_diff,
}


def _read(frame: bytes, readers: Mapping[int, Callable[[_Reader, int], R]]) -> R | DecodeError:
    """Header and schema checks, the template's reader, then the end-of-frame check.

    ``readers`` maps templateId to a function of (reader, blockLength); what it returns
    is the result. A defect in any step comes back as a DecodeError, never raised.
    """
    reader = _Reader(bytes(frame))
    template_id: int | None = None
    try:
        block_length, template_id, schema_id, version = reader.take(_HEADER)
        if schema_id != SCHEMA_ID:
            return DecodeError(
                DecodeErrorKind.WRONG_SCHEMA, f"schemaId {schema_id} (version {version}), expected {SCHEMA_ID}", template_id
            )
        read = readers.get(template_id)
        if read is None:
            return DecodeError(DecodeErrorKind.UNKNOWN_TEMPLATE, f"templateId {template_id}", template_id)
        result = read(reader, block_length)
        if version == SCHEMA_VERSION and reader.pos != len(reader.buf):
            # Newer versions may append var data; version 0 frames must end exactly here.
            return DecodeError(DecodeErrorKind.TRAILING_BYTES, f"{len(reader.buf) - reader.pos} bytes after symbol", template_id)
        return result
    except _Invalid as exc:
        return DecodeError(exc.kind, exc.detail, template_id)


def _peek_trades(r: _Reader, block_length: int) -> tuple[int, int, str]:
    event_time = r.block(_TRADES_BLOCK, block_length, "trades")[0]
    r.skip_group(_GROUP32, _TRADE_ENTRY, "trades")
    return TEMPLATE_TRADES, event_time, r.symbol()


def _peek_best_bid_ask(r: _Reader, block_length: int) -> tuple[int, int, str]:
    event_time = r.block(_BBA_BLOCK, block_length, "bestBidAsk")[0]
    return TEMPLATE_BEST_BID_ASK, event_time, r.symbol()


def _peek_depth(template_id: int, fmt: struct.Struct, what: str):
    def peek(r: _Reader, block_length: int) -> tuple[int, int, str]:
        event_time = r.block(fmt, block_length, what)[0]
        r.skip_group(_GROUP16, _LEVEL_ENTRY, "bids")
        r.skip_group(_GROUP16, _LEVEL_ENTRY, "asks")
        return template_id, event_time, r.symbol()

    return peek


_PEEKERS: dict[int, Callable[[_Reader, int], tuple[int, int, str]]] = {
    TEMPLATE_TRADES: _peek_trades,
    TEMPLATE_BEST_BID_ASK: _peek_best_bid_ask,
    TEMPLATE_DEPTH_SNAPSHOT: _peek_depth(TEMPLATE_DEPTH_SNAPSHOT, _SNAPSHOT_BLOCK, "depthSnapshot"),
    TEMPLATE_DEPTH_DIFF: _peek_depth(TEMPLATE_DEPTH_DIFF, _DIFF_BLOCK, "depthDiff"),
}


def peek(frame: bytes) -> tuple[int, int, str] | DecodeError:
    """(templateId, eventTime µs, symbol) of a frame, with every structural check ``decode`` makes
    but no event built: what the job needs before ``key_by`` (whose key and when), leaving the
    decoding to the keyed operator. Values are not checked (a bad exponent passes here, not there)."""
    return _read(frame, _PEEKERS)


def decode(frame: bytes) -> MarketEvent | DecodeError:
    """Decode one SBE frame; any defect is returned as a DecodeError, never raised."""
    return _read(frame, _DECODERS)


def template_of(frame: bytes) -> int | None:
    """The header's templateId, or None for a frame too short to have a header."""
    return _HEADER.unpack_from(frame)[1] if len(frame) >= _HEADER.size else None


# --------------------------------------------------------------------------- encode


def _from_units(units: int, exponent: int) -> int:
    shift = exponent - _UNIT_EXPONENT
    if shift <= 0:
        return units * 10**-shift
    divisor = 10**shift
    if units % divisor:
        raise ValueError(f"{units} e8 units not representable with exponent {exponent}")
    return units // divisor


def _header(block_length: int, template_id: int) -> bytes:
    return _HEADER.pack(block_length, template_id, SCHEMA_ID, SCHEMA_VERSION)


def _symbol(symbol: str) -> bytes:
    raw = symbol.encode("utf-8")
    if not 0 < len(raw) < 256:
        raise ValueError(f"symbol {symbol!r} must be 1..255 bytes")
    return bytes([len(raw)]) + raw


def _level_group(levels: tuple[Level, ...], pe: int, qe: int) -> bytes:
    if len(levels) > 0xFFFF:
        raise ValueError(f"{len(levels)} levels exceed groupSize16Encoding")
    parts = [_GROUP16.pack(_LEVEL_ENTRY.size, len(levels))]
    parts += [_LEVEL_ENTRY.pack(_from_units(p, pe), _from_units(q, qe)) for p, q in levels]
    return b"".join(parts)


def encode(event: MarketEvent, price_exponent: int = -8, qty_exponent: int = -8) -> bytes:
    """Encode an event as the exchange would send it (used by the simulator and tests)."""
    pe, qe = price_exponent, qty_exponent
    if isinstance(event, TradesEvent):
        body = _TRADES_BLOCK.pack(event.event_time_us, event.transact_time_us, pe, qe)
        group = _GROUP32.pack(_TRADE_ENTRY.size, len(event.trades)) + b"".join(
            _TRADE_ENTRY.pack(t.trade_id, _from_units(t.price_e8, pe), _from_units(t.qty_e8, qe), int(t.is_buyer_maker))
            for t in event.trades
        )
        return _header(_TRADES_BLOCK.size, TEMPLATE_TRADES) + body + group + _symbol(event.symbol)
    if isinstance(event, (BestBidAskEvent, PerpQuoteEvent)):  # a perpetual's quote travels as 10001 too
        body = _BBA_BLOCK.pack(
            event.event_time_us,
            event.book_update_id,
            pe,
            qe,
            _from_units(event.bid_price_e8, pe),
            _from_units(event.bid_qty_e8, qe),
            _from_units(event.ask_price_e8, pe),
            _from_units(event.ask_qty_e8, qe),
        )
        return _header(_BBA_BLOCK.size, TEMPLATE_BEST_BID_ASK) + body + _symbol(event.symbol)
    if isinstance(event, DepthSnapshotEvent):
        body = _SNAPSHOT_BLOCK.pack(event.event_time_us, event.book_update_id, pe, qe)
        groups = _level_group(event.bids, pe, qe) + _level_group(event.asks, pe, qe)
        return _header(_SNAPSHOT_BLOCK.size, TEMPLATE_DEPTH_SNAPSHOT) + body + groups + _symbol(event.symbol)
    if isinstance(event, DepthDiffEvent):
        body = _DIFF_BLOCK.pack(event.event_time_us, event.first_update_id, event.last_update_id, pe, qe)
        groups = _level_group(event.bids, pe, qe) + _level_group(event.asks, pe, qe)
        return _header(_DIFF_BLOCK.size, TEMPLATE_DEPTH_DIFF) + body + groups + _symbol(event.symbol)
    raise TypeError(f"cannot encode {type(event).__name__}")
