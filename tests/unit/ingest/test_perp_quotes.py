"""The leading perpetual's bookTicker: JSON on the futures stream -> in-band SBE frame -> the job's PerpQuoteEvent."""

import asyncio
import json
from decimal import Decimal

import pytest

from btcpred.adapters.loaders.base import CapturedEvent
from btcpred.common.config import load_settings
from btcpred.ingest.ingestor import INVALID, PERP_INVALID, Ingestor, aggregate
from btcpred.ingest.perp_quotes import PerpQuoteError, perp_stream_url, quote_event
from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import BestBidAskEvent, PerpQuoteEvent, TradeEntry, TradesEvent
from btcpred.udfs.records import decode_record
from rig.simulator.exchange import perp_book_ticker_json
from rig.simulator.server import with_perp_quotes

# a real USD-M bookTicker message (usdm_btcusdt_20240808_ws.gz, first quote), raw-stream form
MESSAGE = {
    "e": "bookTicker",
    "u": 5123107839020,
    "s": "BTCUSDT",
    "b": "61800.20",
    "B": "2.507",
    "a": "61800.30",
    "A": "2.510",
    "T": 1723161256312,
    "E": 1723161256313,
}


def make_ingestor(tmp_path, **env):
    settings = load_settings(
        environ={
            "BTCPRED_KINESIS__ENDPOINT": "",
            "BTCPRED_EXCHANGE__PERP_WS_URL": "ws://x/futures",
            "BTCPRED_INGESTOR__DEAD_LETTER_PATH": str(tmp_path / "dlq.jsonl"),
            **env,
        }
    )
    return Ingestor(settings, kinesis_client=object())


def test_a_book_ticker_becomes_the_spot_symbols_quote_with_exact_decimals():
    event = quote_event(MESSAGE, "BTCUSDT", "BTCUSDT")
    assert event == BestBidAskEvent(
        "BTCUSDT", 1723161256313000, 5123107839020, 6180020000000, 250700000, 6180030000000, 251000000
    )
    assert quote_event({"stream": "btcusdt@bookTicker", "data": MESSAGE}, "BTCUSDT", "BTCUSDT") == event  # combined form
    assert quote_event({**MESSAGE, "s": "BTCUSD_PERP"}, "BTCUSDT", "btcusd_perp").symbol == "BTCUSDT"  # keyed to spot
    assert perp_stream_url("wss://fstream.binance.com/", "BTCUSDT") == "wss://fstream.binance.com/ws/btcusdt@bookTicker"


@pytest.mark.parametrize(
    "message, reason",
    [
        ({**MESSAGE, "e": "depthUpdate"}, "not a bookTicker"),
        ({k: v for k, v in MESSAGE.items() if k != "E"}, r"without \['E'\]"),
        ({**MESSAGE, "s": "ETHUSDT"}, "subscribed to BTCUSDT"),
        ({**MESSAGE, "b": "61,800.2"}, "does not parse"),
        ({**MESSAGE, "a": "0.00"}, "quote prices 6180020000000/0 e8 not in"),
        ({**MESSAGE, "a": "61800.1"}, "crossed quote: bid 6180020000000 >= ask 6180010000000"),
        ({**MESSAGE, "B": "-1"}, "quote quantities -100000000/251000000 e8 not in"),
        ({**MESSAGE, "E": 2**70}, "event time 1180591620717411303424000 µs not in"),
        ({**MESSAGE, "E": 1.5e12}, "field E = '1500000000000.0' is not an integer"),
        ({**MESSAGE, "u": True}, "field u = 'True' is not an integer"),
        ({**MESSAGE, "a": "1" + "0" * 15}, r"quote prices .* not in \(0, int64\]"),
        ([1, 2], "not a bookTicker"),
    ],
)
def test_a_message_that_is_not_a_usable_book_ticker_says_why(message, reason):
    with pytest.raises(PerpQuoteError, match=reason):
        quote_event(message, "BTCUSDT", "BTCUSDT")


def test_the_ingestor_puts_it_in_band_and_the_job_reads_a_perp_quote(tmp_path):
    ing = make_ingestor(tmp_path)
    asyncio.run(ing.handle_perp_text(json.dumps(MESSAGE)))
    symbol, env = ing.queue.get_nowait()
    assert symbol == "BTCUSDT" and env.source is envelope.Source.PERP_QUOTE
    assert env.frame == sbe.encode(quote_event(MESSAGE, "BTCUSDT", "BTCUSDT"))  # the bytes of an SBE 10001 frame
    (record,) = aggregate([(symbol, env)], max_frames=10)
    decoded = decode_record(record.data.decode(), 0)
    assert not decoded.dead_letters and decoded.decoded["PerpQuoteEvent"] == 1 and decoded.decoded["BestBidAskEvent"] == 0
    (event,) = decoded.batches[0].events
    assert event == PerpQuoteEvent("BTCUSDT", 1723161256313000, 5123107839020, 6180020000000, 250700000, 6180030000000, 251000000)


def test_a_bad_book_ticker_is_a_counted_dead_letter_and_nothing_goes_to_kinesis(tmp_path):
    ing = make_ingestor(tmp_path)
    before = INVALID.labels(PERP_INVALID)._value.get()
    asyncio.run(ing.handle_perp_text("{not json"))
    asyncio.run(ing.handle_perp_text(json.dumps({**MESSAGE, "b": "x"})))
    # what ended the reader before (issue 28): Python's JSON takes Infinity; int64 overflow on re-encoding
    asyncio.run(ing.handle_perp_text(json.dumps(MESSAGE).replace('"E": 1723161256313', '"E": Infinity')))
    asyncio.run(ing.handle_perp_text(json.dumps({**MESSAGE, "u": 2**64})))
    assert ing.queue.empty() and INVALID.labels(PERP_INVALID)._value.get() == before + 4
    reasons = [json.loads(line)["reason"] for line in ing.spill.path.read_text().splitlines()]
    assert "JSON constant Infinity is not a number the exchange sends" in reasons[2]
    assert "book update id 18446744073709551616 not in [0, int64]" in reasons[3]
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "dlq.jsonl").read_text().splitlines()]
    assert [r.split(":")[0] for r in reasons] == [PERP_INVALID] * 4 and "does not parse" in reasons[1]


def test_a_perp_record_holding_anything_but_a_best_bid_ask_is_a_dead_letter():
    trade = sbe.encode(TradesEvent("BTCUSDT", 5, 4, (TradeEntry(1, 100, 2, False),)))
    text = envelope.batch_to_text([envelope.Envelope(envelope.Source.PERP_QUOTE, 1, trade)])
    decoded = decode_record(text, 0)
    assert not decoded.batches and decoded.dead_letters[0].fields["reason"].startswith("envelope: a perpetual quote")


def test_perp_quotes_share_the_records_of_the_spot_frames_they_interleave_with_in_arrival_order():
    ws = lambda i: ("BTCUSDT", envelope.Envelope(envelope.Source.WEBSOCKET, i, bytes([i])))  # noqa: E731
    perp = lambda i: ("BTCUSDT", envelope.Envelope(envelope.Source.PERP_QUOTE, i, bytes([i])))  # noqa: E731
    W, P = envelope.Source.WEBSOCKET, envelope.Source.PERP_QUOTE
    records = aggregate([ws(1), perp(2), ws(3), perp(4), perp(5), ws(6), ws(7)], max_frames=6)
    assert [r.data[:4] for r in records] == [b"AwYA", b"AQAH"]  # base64 of version 3 x 6 frames, then version 1
    decoded = [[(e.source, e.receipt_time_us) for e in envelope.from_text(r.data.decode())] for r in records]
    assert decoded == [[(W, 1), (P, 2), (W, 3), (P, 4), (P, 5), (W, 6)], [(W, 7)]]


def test_readiness_waits_for_the_perpetual_stream_where_one_is_configured(tmp_path):
    ing = make_ingestor(tmp_path)
    ing.connected = True
    assert ing.readiness() == (False, "perpetual bookTicker stream not connected")
    ing.perp_connected = True
    assert ing.readiness() == (True, "streaming")
    assert make_ingestor(tmp_path, BTCPRED_EXCHANGE__PERP_WS_URL="").settings.exchange.perp_ws_url in (None, "")


def test_the_simulator_serves_what_the_ingestor_reads_back_and_merges_by_receipt_time():
    quote = PerpQuoteEvent("BTCUSDT", 1723161256313000, 5123107839020, 6180020000000, 250700000, 6180030000000, 251000000)
    text = perp_book_ticker_json(quote, "BTCUSDT")
    served = json.loads(text)
    assert {k: served[k] for k in ("e", "u", "s", "E")} == {k: MESSAGE[k] for k in ("e", "u", "s", "E")}
    assert all(Decimal(served[k]) == Decimal(MESSAGE[k]) for k in "bBaA")  # exact decimals, zero-padded to 8 places
    assert quote_event(served, "BTCUSDT", "BTCUSDT") == quote_event(MESSAGE, "BTCUSDT", "BTCUSDT")
    spot = [CapturedEvent(t, TradesEvent("BTCUSDT", t, t, (TradeEntry(t, 1, 1, False),))) for t in (10, 30)]
    perp = [CapturedEvent(t, BestBidAskEvent("BTCUSDT", t, t, 1, 1, 2, 1)) for t in (5, 20, 40)]
    merged = with_perp_quotes(spot, perp)
    assert [(type(c.event).__name__, c.receipt_time_us) for c in merged] == [
        ("PerpQuoteEvent", 5),
        ("TradesEvent", 10),
        ("PerpQuoteEvent", 20),
        ("TradesEvent", 30),
        ("PerpQuoteEvent", 40),
    ]


class ScriptedSocket:
    """A WebSocket answering ``receive`` from a script, then timing out (a silent exchange)."""

    def __init__(self, messages):
        self.messages = list(messages)

    async def receive(self, timeout):
        if not self.messages:
            raise asyncio.TimeoutError
        return self.messages.pop(0)


def test_a_connection_ends_with_its_reason_and_every_text_message_is_handled(tmp_path):
    import time

    import aiohttp

    ing = make_ingestor(tmp_path)
    text = lambda data: aiohttp.WSMessage(aiohttp.WSMsgType.TEXT, data, None)  # noqa: E731
    far = time.monotonic() + 3600
    silent = ScriptedSocket([text(json.dumps(MESSAGE)), text("{bad"), text(json.dumps({**MESSAGE, "u": MESSAGE["u"] + 1}))])
    assert asyncio.run(ing._read_perp_connection(silent, None, far)) == "silent"
    assert ing.queue.qsize() == 2 and len((tmp_path / "dlq.jsonl").read_text().splitlines()) == 1
    closed = ScriptedSocket([aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, 1000, None), text(json.dumps(MESSAGE))])
    assert asyncio.run(ing._read_perp_connection(closed, None, far)) == "closed" and ing.queue.qsize() == 2
    assert asyncio.run(ing._read_connection(ScriptedSocket([]), None, time.monotonic() - 1)) == "rotate"
