"""The SBE archive in the lake read back: an hour range's Kinesis records, rebuilt from the archived
frames in stream order per shard, as the job consumed them (bronze ``sbe/``, written by
``btcpred/reliability/sbe_archiver.py``; keys from ``btcpred/udfs/lake_layout.py``). The backfill job and the
archive's feature builder (``btcpred/batch/archive.py``) both read it here."""

from __future__ import annotations

from collections import defaultdict

from btcpred.adapters.lake import Lake
from btcpred.udfs import envelope
from btcpred.udfs import lake_layout as layout
from btcpred.udfs.lake_layout import HOUR_US


def hour_prefixes(symbol: str, start_us: int, end_us: int) -> list[str]:
    return [layout.sbe_hour_prefix(symbol, t) for t in range(start_us // HOUR_US * HOUR_US, end_us + 1, HOUR_US)]


def archived_hours(lake: Lake, symbol: str, stream: str) -> list[int]:
    """Start (µs) of every receipt hour holding frames of ``stream``, in order."""
    hours = {layout.hour_of(key) for key in lake.keys(layout.sbe_symbol_prefix(symbol)) if layout.is_stream_object(key, stream)}
    return sorted(h for h in hours if h is not None)


def archived_records(lake: Lake, stream: str, symbol: str, start_us: int, end_us: int) -> list[str]:
    """The range's Kinesis records, rebuilt from the archive's frames, in stream order per shard."""
    frames: dict[tuple[str, int], list[tuple[int, int, int, int, bytes]]] = defaultdict(list)
    for prefix in hour_prefixes(symbol, start_us, end_us):
        for key in lake.keys(prefix):
            if not layout.is_stream_object(key, stream):
                continue
            t = lake.get_table(key).to_pydict()
            for shard, seq, idx, receipt, source, template, frame in zip(
                t["shard_id"],
                t["sequence_number"],
                t["frame_index"],
                t["receipt_time_us"],
                t["source"],
                t["template_id"],
                t["frame"],
            ):
                frames[(shard, int(seq))].append((idx, receipt, source, template, frame))
    records = []
    for (_, _), rows in sorted(frames.items()):
        rows.sort()
        if not start_us <= rows[0][1] <= end_us:
            continue
        if rows[0][3] == -1:  # kept whole: not an envelope; the job dead-letters it again
            records.append(rows[0][4].decode("ascii", errors="replace"))
            continue
        records.append(
            envelope.batch_to_text(
                [envelope.Envelope(envelope.Source(src), receipt, frame) for _, receipt, src, _, frame in rows]
            )
        )
    return records
