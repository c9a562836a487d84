"""An independent reading of the raw capture for end-to-end checks (shares no code with udfs/).

Books are rebuilt with Decimal from the JSON strings; every feature is recomputed
from its textbook definition, as documented in btcpred/udfs/features.py.
"""

from __future__ import annotations

import gzip
import json
import math
from decimal import Decimal


def load_raw(path):
    snapshot, diffs, trades = None, [], []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            msg = json.loads(line.split(" ", 1)[1])
            data = msg.get("data", msg)
            if "lastUpdateId" in data:
                snapshot = data
            elif data.get("e") == "depthUpdate":
                diffs.append(data)
            elif data.get("e") == "trade":
                trades.append(data)
    return snapshot, diffs, trades


def book_tops(snapshot, diffs):
    """(event time ms, best bid, best ask, bid depth at 1/5/10 levels, ask depth) after each applied diff."""
    bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
    asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
    tops = []
    for d in diffs:
        if d["u"] <= snapshot["lastUpdateId"]:
            continue
        for side, rows in ((bids, d["b"]), (asks, d["a"])):
            for p, q in rows:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        top_b = sorted(bids.items(), reverse=True)[:10]
        top_a = sorted(asks.items())[:10]
        depth = lambda levels: tuple(float(sum(q for _, q in levels[:n])) for n in (1, 5, 10))  # noqa: E731
        tops.append((d["E"], float(top_b[0][0]), float(top_a[0][0]), depth(top_b), depth(top_a)))
    return tops


def features_at(snapshot, diffs, trades, time_ms):
    tops = book_tops(snapshot, diffs)
    index = max(i for i, t in enumerate(tops) if t[0] <= time_ms)
    _, bid, ask, bd, ad = tops[index]
    mid = (bid + ask) / 2

    def mid_at(t):
        row = [x for x in tops if x[0] <= t][-1]
        return (row[1] + row[2]) / 2

    def in_window(seconds):
        return [i for i, t in enumerate(tops) if time_ms - seconds * 1000 < t[0] <= time_ms and i > 0]

    def ofi(i):
        _, pb, pa, pbd, pad = tops[i - 1]
        _, b, a, nbd, nad = tops[i]
        return (nbd[0] if b >= pb else 0) - (pbd[0] if b <= pb else 0) - (nad[0] if a <= pa else 0) + (pad[0] if a >= pa else 0)

    def mid_of(i):
        return (tops[i][1] + tops[i][2]) / 2

    def window(seconds):
        sel = [t for t in trades if time_ms - seconds * 1000 < t["T"] <= time_ms]
        vol = sum(float(t["q"]) for t in sel)
        signed = sum(float(t["q"]) * (-1 if t["m"] else 1) for t in sel)
        vwap = sum(float(t["p"]) * float(t["q"]) for t in sel) / vol if vol else None
        return {
            "count": len(sel),
            "buys": sum(1 for t in sel if not t["m"]),  # the buyer took: not the maker
            "vol": vol,
            "signed_vol": signed,
            "vwap_minus_mid": (vwap - mid) if vwap is not None else 0.0,
            "last_ts_us": max((t["T"] for t in sel), default=0) * 1000,
        }

    tr_1s, tr_5s = window(1), window(5)
    imbalance = lambda b, a: (b - a) / (b + a)  # noqa: E731
    return {
        "mid": mid,
        "spread_bp": (ask - bid) / mid * 1e4,
        "depth_imbalance_1": imbalance(bd[0], ad[0]),
        "depth_imbalance_5": imbalance(bd[1], ad[1]),
        "depth_imbalance_10": imbalance(bd[2], ad[2]),
        "microprice_minus_mid": (bid * ad[0] + ask * bd[0]) / (bd[0] + ad[0]) - mid,
        "ret_1s": math.log(mid / mid_at(time_ms - 1000)),
        "ret_5s": math.log(mid / mid_at(time_ms - 5000)),
        "ofi_1s": sum(ofi(i) for i in in_window(1)),
        "ofi_2s": sum(ofi(i) for i in in_window(2)),
        "ofi_5s": sum(ofi(i) for i in in_window(5)),
        "realized_vol_5s": math.sqrt(sum(math.log(mid_of(i) / mid_of(i - 1)) ** 2 for i in in_window(5))),
        "trade_intensity_5s": tr_5s["count"] / 5,
        "signed_flow_1s": tr_1s["signed_vol"] / tr_1s["vol"] if tr_1s["vol"] else 0.0,
        "signed_flow_5s": tr_5s["signed_vol"] / tr_5s["vol"] if tr_5s["vol"] else 0.0,
        "count_imbalance_1s": (2 * tr_1s["buys"] - tr_1s["count"]) / tr_1s["count"] if tr_1s["count"] else 0.0,
        "count_imbalance_5s": (2 * tr_5s["buys"] - tr_5s["count"]) / tr_5s["count"] if tr_5s["count"] else 0.0,
        "tr_1s": tr_1s,
        "tr_5s": tr_5s,
    }


def load_perp_quotes(path):
    """(event time ms, update id, bid, ask) of every bookTicker of a futures capture, in stream order."""
    quotes = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            data = json.loads(line.split(" ", 1)[1])
            data = data.get("data", data)
            if data.get("e") == "bookTicker":
                quotes.append((data["E"], data["u"], Decimal(data["b"]), Decimal(data["a"])))
    return quotes


def perp_leads_at(snapshot, diffs, quotes, time_ms):
    """perp_lead_{1s,5s}_bp: the perpetual's log mid change minus spot's over the horizon, in bp,
    each mid the one in force at the time (the newest update with event time <= it)."""
    tops = book_tops(snapshot, diffs)

    def spot_mid(t):
        row = [x for x in tops if x[0] <= t][-1]
        return (row[1] + row[2]) / 2

    def perp_mid(t):
        _, _, bid, ask = max((q for q in quotes if q[0] <= t), key=lambda q: q[1])
        return float((bid + ask) / 2)

    return {
        f"perp_lead_{s}s_bp": (
            math.log(perp_mid(time_ms) / perp_mid(time_ms - s * 1000))
            - math.log(spot_mid(time_ms) / spot_mid(time_ms - s * 1000))
        )
        * 1e4
        for s in (1, 5)
    }
