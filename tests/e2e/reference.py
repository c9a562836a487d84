"""An independent reading of the raw capture for end-to-end checks (shares no code with udfs/)."""
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


def book_at(snapshot, diffs, time_ms):
    """Book after every diff with event time <= time_ms (diffs already in the snapshot skipped)."""
    bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
    asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
    for d in diffs:
        if d["u"] <= snapshot["lastUpdateId"]:
            continue
        if d["E"] > time_ms:
            break
        for side, rows in ((bids, d["b"]), (asks, d["a"])):
            for p, q in rows:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
    return bids, asks


def features_at(snapshot, diffs, trades, time_ms):
    bids, asks = book_at(snapshot, diffs, time_ms)
    top_b = sorted(bids.items(), reverse=True)[:10]
    top_a = sorted(asks.items())[:10]
    bid, ask = float(top_b[0][0]), float(top_a[0][0])
    mid = (bid + ask) / 2
    bq, aq = float(sum(q for _, q in top_b)), float(sum(q for _, q in top_a))

    def mid_at(t):
        b, a = book_at(snapshot, diffs, t)
        return (float(max(b)) + float(min(a))) / 2

    def window(seconds):
        sel = [t for t in trades if time_ms - seconds * 1000 < t["T"] <= time_ms]
        vol = sum(float(t["q"]) for t in sel)
        signed = sum(float(t["q"]) * (-1 if t["m"] else 1) for t in sel)
        vwap = sum(float(t["p"]) * float(t["q"]) for t in sel) / vol if vol else None
        return {"count": len(sel), "vol": vol, "signed_vol": signed,
                "vwap_minus_mid": (vwap - mid) if vwap is not None else 0.0,
                "last_ts_us": max((t["T"] for t in sel), default=0) * 1000}

    return {
        "mid": mid,
        "spread_bp": (ask - bid) / mid * 1e4,
        "vol_imbalance": (bq - aq) / (bq + aq),
        "ret_1s": math.log(mid / mid_at(time_ms - 1000)),
        "ret_5s": math.log(mid / mid_at(time_ms - 5000)),
        "tr_1s": window(1),
        "tr_5s": window(5),
    }
