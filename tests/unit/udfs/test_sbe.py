"""SBE codec against frames built byte by byte from stream_1_0.xml."""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from btcpred.udfs import sbe
from btcpred.udfs.events import BestBidAskEvent, DepthDiffEvent, DepthSnapshotEvent, TradeEntry, TradesEvent
from btcpred.udfs.sbe import DecodeError, DecodeErrorKind


def header(block_length: int, template: int, schema: int = 1, version: int = 0) -> bytes:
    return struct.pack("<HHHH", block_length, template, schema, version)


def symbol(text: str = "BTCUSDT") -> bytes:
    return bytes([len(text)]) + text.encode()


def hand_built_trade(extra_root: bytes = b"", extra_entry: bytes = b"", version: int = 0) -> bytes:
    root = struct.pack("<qqbb", 1723161255343000, 1723161255342000, -2, -5) + extra_root
    entry = struct.pack("<qqqB", 3735683259, 6183763, 2000, 1) + extra_entry
    group = struct.pack("<HI", 25 + len(extra_entry), 1) + entry
    return header(18 + len(extra_root), 10000, version=version) + root + group + symbol()


EXPECTED_TRADE = TradesEvent(
    symbol="BTCUSDT",
    event_time_us=1723161255343000,
    transact_time_us=1723161255342000,
    trades=(TradeEntry(3735683259, 6183763000000, 2000000, True),),  # 61837.63, 0.02000
)


def test_trade_frame_decodes_with_exponents_scaled_to_e8():
    assert sbe.decode(hand_built_trade()) == EXPECTED_TRADE


def test_frame_with_larger_block_lengths_from_a_newer_version_still_decodes():
    frame = hand_built_trade(extra_root=b"\x07" * 8, extra_entry=b"\x09" * 4, version=1)
    assert sbe.decode(frame) == EXPECTED_TRADE


def test_best_bid_ask_frame_field_order_matches_schema():
    root = struct.pack("<qqbbqqqq", 1_000_000, 50093239212, -2, -8, 6183763, 378826000, 6183764, 154698000)
    frame = header(50, 10001) + root + symbol()
    assert sbe.decode(frame) == BestBidAskEvent(
        "BTCUSDT", 1_000_000, 50093239212, 6183763000000, 378826000, 6183764000000, 154698000
    )


def test_depth_diff_frame_with_group16_levels():
    root = struct.pack("<qqqbb", 5, 100, 104, -2, -8)
    bids = struct.pack("<HH", 16, 2) + struct.pack("<qq", 6183763, 378826000) + struct.pack("<qq", 6173017, 0)
    asks = struct.pack("<HH", 16, 1) + struct.pack("<qq", 6183764, 160520000)
    frame = header(26, 10003) + root + bids + asks + symbol()
    assert sbe.decode(frame) == DepthDiffEvent(
        "BTCUSDT",
        5,
        100,
        104,
        bids=((6183763000000, 378826000), (6173017000000, 0)),
        asks=((6183764000000, 160520000),),
    )


def test_depth_snapshot_frame_and_encoder_produce_identical_bytes():
    root = struct.pack("<qqbb", 7, 42, -8, -8)
    bids = struct.pack("<HH", 16, 1) + struct.pack("<qq", 6183763000000, 1)
    asks = struct.pack("<HH", 16, 0)
    frame = header(18, 10002) + root + bids + asks + symbol()
    event = DepthSnapshotEvent("BTCUSDT", 7, 42, ((6183763000000, 1),), ())
    assert sbe.decode(frame) == event
    assert sbe.encode(event) == frame


def test_truncated_frame_is_a_typed_error():
    frame = hand_built_trade()
    for cut in (0, 3, 8, 20, 30, len(frame) - 1):
        result = sbe.decode(frame[:cut])
        assert isinstance(result, DecodeError), cut
        assert result.kind == DecodeErrorKind.TRUNCATED


def test_wrong_schema_and_unknown_template_are_typed_errors():
    frame = bytearray(hand_built_trade())
    frame[4:6] = struct.pack("<H", 2)
    assert sbe.decode(bytes(frame)).kind == DecodeErrorKind.WRONG_SCHEMA
    unknown = header(18, 12345) + b"\x00" * 18
    result = sbe.decode(unknown)
    assert result.kind == DecodeErrorKind.UNKNOWN_TEMPLATE and result.template_id == 12345


def test_block_length_shorter_than_schema_is_rejected():
    frame = bytearray(hand_built_trade())
    frame[0:2] = struct.pack("<H", 10)
    assert sbe.decode(bytes(frame)).kind == DecodeErrorKind.BLOCK_TOO_SHORT


def test_version_zero_frame_with_trailing_bytes_is_rejected():
    assert sbe.decode(hand_built_trade() + b"\x00").kind == DecodeErrorKind.TRAILING_BYTES


# ----------------------------------------------------------------------------- properties
prices = st.integers(min_value=0, max_value=2**62 // 10**8).map(lambda v: v * 100)  # multiple of 1e-6
qtys = st.integers(min_value=0, max_value=2**40)
ids = st.integers(min_value=0, max_value=2**62)
times = st.integers(min_value=0, max_value=2**62)
symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=20)
levels = st.lists(st.tuples(prices, qtys), max_size=30).map(tuple)

trades_events = st.builds(
    TradesEvent,
    symbols,
    times,
    times,
    st.lists(st.builds(TradeEntry, ids, prices, qtys, st.booleans()), max_size=10).map(tuple),
)
bba_events = st.builds(BestBidAskEvent, symbols, times, ids, prices, qtys, prices, qtys)
diff_events = st.builds(DepthDiffEvent, symbols, times, ids, ids, levels, levels)
snapshot_events = st.builds(DepthSnapshotEvent, symbols, times, ids, levels, levels)


@given(st.one_of(trades_events, bba_events, diff_events, snapshot_events), st.sampled_from([-8, -6]))
def test_encode_decode_round_trip(event, exponent):
    assert sbe.decode(sbe.encode(event, exponent, -8)) == event


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data):
    result = sbe.decode(data)
    assert isinstance(result, (DecodeError, TradesEvent, BestBidAskEvent, DepthDiffEvent, DepthSnapshotEvent))


@given(st.one_of(trades_events, diff_events), st.data())
def test_mutated_real_frames_never_raise(event, data):
    frame = bytearray(sbe.encode(event))
    for _ in range(data.draw(st.integers(1, 5))):
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    sbe.decode(bytes(frame[:cut]))


# ----------------------------------------------------------------------------- bestBidAsk defects
BBA_ROOT = struct.pack("<qqbbqqqq", 1_000_000, 50093239212, -2, -8, 6183763, 378826000, 6183764, 154698000)


def test_a_best_bid_ask_frame_decodes_to_its_values_and_each_defect_is_named():
    event = sbe.decode(header(50, 10001) + BBA_ROOT + symbol())
    assert isinstance(event, BestBidAskEvent)
    # prices at exponent -2, quantities at -8, in e8 units
    assert (event.event_time_us, event.book_update_id) == (1_000_000, 50093239212)
    assert (event.bid_price_e8, event.bid_qty_e8) == (6183763 * 10**6, 378826000)
    assert (event.ask_price_e8, event.ask_qty_e8) == (6183764 * 10**6, 154698000)
    assert sbe.template_of(b"\x32\x00\x11") is None
    cases = {
        DecodeErrorKind.WRONG_SCHEMA: header(50, 10001, schema=2) + BBA_ROOT + symbol(),
        DecodeErrorKind.BLOCK_TOO_SHORT: header(49, 10001) + BBA_ROOT[:49] + symbol(),
        DecodeErrorKind.TRUNCATED: header(50, 10001) + BBA_ROOT + symbol()[:-2],
        DecodeErrorKind.TRAILING_BYTES: header(50, 10001) + BBA_ROOT + symbol() + b"\x00",
        DecodeErrorKind.BAD_SYMBOL: header(50, 10001) + BBA_ROOT + symbol("\x01\x02"),
    }
    assert {kind: sbe.decode(frame).kind for kind, frame in cases.items()} == {k: k for k in cases}


# ----------------------------------------------------------------------------- peek (before key_by)
@given(st.one_of(trades_events, bba_events, diff_events, snapshot_events))
def test_peek_reads_what_decode_reads_without_building_the_event(event):
    frame = sbe.encode(event)
    assert sbe.peek(frame) == (sbe.template_of(frame), event.event_time_us, event.symbol)


@given(st.one_of(trades_events, diff_events, snapshot_events), st.data())
def test_peek_refuses_every_frame_whose_structure_decode_refuses(event, data):
    """Structure (lengths, groups, symbol, trailing bytes) is peek's to check: a frame it passes
    can fail decoding only on its values (an exponent), never on its shape."""
    frame = bytearray(sbe.encode(event))
    for _ in range(data.draw(st.integers(1, 5))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    frame = bytes(frame[: data.draw(st.integers(0, len(frame)))])
    decoded, peeked = sbe.decode(frame), sbe.peek(frame)
    if isinstance(peeked, DecodeError):  # (decode may name another defect it met first: a bad exponent)
        assert isinstance(decoded, DecodeError)
    elif isinstance(decoded, DecodeError):
        assert decoded.kind is DecodeErrorKind.BAD_EXPONENT
    else:
        assert peeked == (sbe.template_of(frame), decoded.event_time_us, decoded.symbol)


def test_peek_passes_a_bad_exponent_that_decode_refuses():
    frame = header(50, 10001) + struct.pack("<qqbbqqqq", 7, 1, -40, -8, 1, 1, 1, 1) + symbol()
    assert sbe.peek(frame) == (10001, 7, "BTCUSDT")
    assert sbe.decode(frame).kind is DecodeErrorKind.BAD_EXPONENT
