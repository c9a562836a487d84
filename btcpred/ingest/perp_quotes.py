"""The leading perpetual's best bid/ask (USD-M futures ``<symbol>@bookTicker``) as in-band frames.

Binance's futures streams are JSON only; the spot side speaks SBE. Each bookTicker message is
re-encoded as an SBE BestBidAskStreamEvent (10001) under the *spot* symbol it leads and put in
the spot stream's records with ``Source.PERP_QUOTE``: it lands on the spot symbol's key, in the
same keyed state, and the job's one decoder reads it (as a ``PerpQuoteEvent``, so it can never be
taken for the spot top). Prices keep their exact decimals (e8 units, no float round trip).
"""
from __future__ import annotations

from collections.abc import Mapping

from btcpred.adapters.loaders.base import parse_units
from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import BestBidAskEvent

REQUIRED_FIELDS = ("u", "b", "B", "a", "A", "E")


class PerpQuoteError(ValueError):
    """A futures message that is not a usable bookTicker (dead-lettered with this reason)."""


def perp_stream_url(base_url: str, perp_symbol: str) -> str:
    """The raw stream of one symbol's bookTicker: ``wss://fstream.binance.com/ws/btcusdt@bookTicker``."""
    return f"{base_url.rstrip('/')}/ws/{perp_symbol.lower()}@bookTicker"


def quote_event(message: Mapping, spot_symbol: str, perp_symbol: str) -> BestBidAskEvent:
    """A bookTicker message (raw or combined-stream form) as the spot symbol's quote event."""
    data = message.get("data", message) if isinstance(message, Mapping) else None
    if not isinstance(data, Mapping) or data.get("e", "bookTicker") != "bookTicker":
        raise PerpQuoteError(f"not a bookTicker message: {str(message)[:120]}")
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if missing:
        raise PerpQuoteError(f"bookTicker without {missing}")
    if str(data.get("s", perp_symbol)).upper() != perp_symbol.upper():
        raise PerpQuoteError(f"bookTicker of {data.get('s')}, subscribed to {perp_symbol}")
    try:
        event = BestBidAskEvent(spot_symbol, int(data["E"]) * 1000, int(data["u"]), parse_units(str(data["b"])),
                                parse_units(str(data["B"])), parse_units(str(data["a"])), parse_units(str(data["A"])))
    except (TypeError, ValueError) as exc:
        raise PerpQuoteError(f"bookTicker field does not parse: {exc}") from None
    if event.bid_price_e8 <= 0 or event.ask_price_e8 <= 0:
        raise PerpQuoteError(f"bookTicker with a non-positive price: {data['b']} / {data['a']}")
    return event


def perp_quote_envelope(message: Mapping, spot_symbol: str, perp_symbol: str, receipt_time_us: int) -> envelope.Envelope:
    return envelope.Envelope(envelope.Source.PERP_QUOTE, receipt_time_us,
                             sbe.encode(quote_event(message, spot_symbol, perp_symbol)))
