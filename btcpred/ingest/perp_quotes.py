"""The leading perpetual's best bid/ask (USD-M futures ``<symbol>@bookTicker``) as in-band frames.

Binance's futures streams are JSON only; the spot side speaks SBE. Each bookTicker message is
re-encoded as an SBE BestBidAskStreamEvent (10001) under the *spot* symbol it leads and put in
the spot stream's records with ``Source.PERP_QUOTE``: it lands on the spot symbol's key, in the
same keyed state, and the job's one decoder reads it (as a ``PerpQuoteEvent``, so it can never be
taken for the spot top). Prices keep their exact decimals (e8 units, no float round trip).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from btcpred.adapters.loaders.base import parse_units
from btcpred.udfs import envelope, event_rules, sbe
from btcpred.udfs.events import BestBidAskEvent

REQUIRED_FIELDS = ("u", "b", "B", "a", "A", "E")


class PerpQuoteError(ValueError):
    """A futures message that is not a usable bookTicker (dead-lettered with this reason)."""


def _no_constant(name: str) -> object:
    raise PerpQuoteError(f"JSON constant {name} is not a number the exchange sends")


def parse_json(text: str) -> object:
    """``json.loads`` refusing ``Infinity``, ``-Infinity`` and ``NaN`` (Python's parser takes them)."""
    return json.loads(text, parse_constant=_no_constant)


def _integer(data: Mapping, name: str) -> int:
    value = data[name]
    if type(value) is not int:  # a float, a bool or a string: not what the exchange sends here
        raise PerpQuoteError(f"bookTicker field {name} = {str(value)[:40]!r} is not an integer")
    return value


def perp_stream_url(base_url: str, perp_symbol: str) -> str:
    """The raw stream of one symbol's bookTicker: ``wss://fstream.binance.com/ws/btcusdt@bookTicker``."""
    return f"{base_url.rstrip('/')}/ws/{perp_symbol.lower()}@bookTicker"


def quote_event(
    message: Mapping,
    spot_symbol: str,
    perp_symbol: str,
    receipt_time_us: int | None = None,
    max_lead_us: int = event_rules.DEFAULT_MAX_LEAD_US,
) -> BestBidAskEvent:
    """A bookTicker message (raw or combined-stream form) as the spot symbol's quote event; any
    value the exchange would not send is a ``PerpQuoteError`` (dead-lettered), never an exception
    that ends the reader."""
    data = message.get("data", message) if isinstance(message, Mapping) else None
    if not isinstance(data, Mapping) or data.get("e", "bookTicker") != "bookTicker":
        raise PerpQuoteError(f"not a bookTicker message: {str(message)[:120]}")
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if missing:
        raise PerpQuoteError(f"bookTicker without {missing}")
    if str(data.get("s", perp_symbol)).upper() != perp_symbol.upper():
        raise PerpQuoteError(f"bookTicker of {data.get('s')}, subscribed to {perp_symbol}")
    try:
        event = BestBidAskEvent(
            spot_symbol,
            _integer(data, "E") * 1000,
            _integer(data, "u"),
            parse_units(str(data["b"])),
            parse_units(str(data["B"])),
            parse_units(str(data["a"])),
            parse_units(str(data["A"])),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise PerpQuoteError(f"bookTicker field does not parse: {exc}") from None
    problem = event_rules.problem(event, receipt_time_us, max_lead_us)
    if problem is not None:  # the rules every edge applies (a crossed top, a size < 0, a time ahead, int64)
        raise PerpQuoteError(f"bookTicker refused: {problem}")
    return event


def perp_quote_envelope(
    message: Mapping, spot_symbol: str, perp_symbol: str, receipt_time_us: int, max_lead_us: int = event_rules.DEFAULT_MAX_LEAD_US
) -> envelope.Envelope:
    return envelope.Envelope(
        envelope.Source.PERP_QUOTE,
        receipt_time_us,
        sbe.encode(quote_event(message, spot_symbol, perp_symbol, receipt_time_us, max_lead_us)),
    )
