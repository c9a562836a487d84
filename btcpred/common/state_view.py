"""The hot state of one symbol as an operator reads it: what inference sees, with every age spelled out.

Read with the least-privileged users that can see it (inference: ``ob:``, ``tr:``, ``feat:``,
``reanchor:``; the re-anchor service's: ``gaps:``, ``reanchors:``); nothing is written. Values are
shown as stored; a field that does not parse is shown as found, never dropped.
"""

from __future__ import annotations

from datetime import datetime, timezone

from btcpred.udfs import redis_schema as rs

WINDOWS = ("1s", "5s")
RECENT = 5  # gaps and re-anchors listed


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _age_s(now_us: int, stamp: str | None) -> float | None:
    t = _float(stamp)
    return round((now_us - t) / 1e6, 3) if t else None


def _iso(stamp: str | None) -> str | None:
    """An exchange time in µs as UTC ISO 8601: a replay's data time is years old, so its age on the
    wall clock says nothing; the time itself says which data is shown."""
    t = _float(stamp)
    if not t:
        return None
    try:
        return datetime.fromtimestamp(t / 1e6, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None  # shown as found in the values, never a crash


def hot_state_view(reader, symbol: str, now_us: int, log_reader=None) -> dict:
    """``reader``: a Redis client that may read ob:, tr:, feat: and reanchor: (decoded responses);
    ``log_reader``: one that may read gaps: and reanchors: (None: not shown)."""
    ob = reader.hgetall(rs.ob_key(symbol))
    feat = reader.hgetall(rs.feat_key(symbol))
    view: dict = {
        "symbol": symbol,
        "book": {
            "present": bool(ob),
            "valid": _float(ob.get("book_valid")) == 1.0,  # "1" as the job writes it; "1.0" is the same
            "last_update_id": ob.get("last_update_id"),
            "best_bid": ob.get("best_bid"),
            "best_ask": ob.get("best_ask"),
            "spread": ob.get("spread"),
            "event_time": _iso(ob.get("ts_us")),
            "event_age_s": _age_s(now_us, ob.get("ts_us")),
            "levels": sum(1 for i in range(1, rs.BOOK_DEPTH + 1) if (_float(ob.get(f"bid{i}_q")) or 0) > 0),
        },
        "reanchor_lock": reader.get(rs.reanchor_key(symbol)),
        "trades": {w: reader.hgetall(rs.trade_key(symbol, w)) for w in WINDOWS},
        "features": {
            "present": bool(feat),
            "data_time": _iso(feat.get("ts")),
            "data_time_age_s": _age_s(now_us, feat.get("ts")),
            "written_age_s": _age_s(now_us, feat.get("emitted_at_us")),
            "market_age_s": _age_s(now_us, feat.get("market_wall_us")),
            "values": {k: v for k, v in sorted(feat.items()) if k not in ("ts", "emitted_at_us", "market_wall_us")},
        },
    }
    if log_reader is not None:
        view["recent_gaps"] = [dict(f, id=i) for i, f in log_reader.xrevrange(rs.gap_stream_key(symbol), count=RECENT)]
        view["recent_reanchors"] = [dict(f, id=i) for i, f in log_reader.xrevrange(rs.reanchor_log_key(symbol), count=RECENT)]
    return view


def render(view: dict) -> str:
    b, f = view["book"], view["features"]
    lines = [
        f"{view['symbol']}",
        f"  book      {'valid' if b['valid'] else 'INVALID' if b['present'] else 'ABSENT'}  "
        f"bid {b['best_bid']}  ask {b['best_ask']}  spread {b['spread']}  levels {b['levels']}  "
        f"last update id {b['last_update_id']}  event time {b['event_time']} ({b['event_age_s']} s before now)",
        f"  re-anchor lock: {view['reanchor_lock'] or 'none'}",
    ]
    for w, t in view["trades"].items():
        lines.append(
            f"  trades {w:3s} count {t.get('count', '-')}  vol {t.get('vol', '-')}  signed {t.get('signed_vol', '-')}  "
            f"vwap-mid {t.get('vwap_minus_mid', '-')}"
        )
    lines.append(
        f"  features  {'present' if f['present'] else 'ABSENT'}: data time {f['data_time']}, market age "
        f"{f['market_age_s']} s (the data time on our clock: what serving calls fresh), written {f['written_age_s']} s ago"
    )
    lines += [f"    {k:28s} {v}" for k, v in f["values"].items()]
    for name in ("recent_gaps", "recent_reanchors"):
        if name in view:
            lines.append(f"  {name.replace('_', ' ')}: {len(view[name])}")
            lines += [f"    {entry}" for entry in view[name]]
    return "\n".join(lines)
