"""Keyed state written by an earlier version of the code restores in this one, and goes on exactly.

Savepoints and checkpoints hold ``SymbolState`` as PyFlink's state coder wrote it (cloudpickle),
and pickles name every class by module path: the book, the synchroniser, the trade buffer, the
book and quote histories. ``tests/data/state/`` keeps such blobs as written by earlier commits
(see ``BLOBS``); each must restore into the current classes with its book, windows and
histories intact, and cut the same features as a state that never left memory. A class moved
to another module keeps its old path importable (``btcpred.udfs.legacy_paths``) until no blob (and no
savepoint in use) names it.

Write a new blob (after a layout change, keeping the old ones): ``python -m
tests.unit.udfs.test_symbol_state_blob --write <commit>``.
"""

from __future__ import annotations

import io
import pickle
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from btcpred.udfs.events import TradesEvent
from btcpred.udfs.features import DEEP_OFI_FEATURES
from btcpred.udfs.long_context import CONTEXT_FEATURES
from btcpred.udfs.symbol_state import STATE_FORMAT, SymbolState
from tests.conftest import REPO, SPOT_SLICE, USDM_SLICE

BLOB_DIR = REPO / "tests" / "data" / "state"
BLOBS = {  # file -> the state_format it was written in
    # commit 5ac3811: SymbolState in flink_jobs/hot_path_state.py, before state_format existed
    # commit 02cb312: in udfs/symbol_state.py, the last layout before the one package (btcpred.udfs.legacy_paths)
    "symbol_state_5ac3811.pickle": 0,
    "symbol_state_02cb312.pickle": 1,
}
N_EVENTS = 6_000  # events in the blob's state: the capture's first 6,000 of spot and perpetual, merged
MORE_EVENTS = 3_000  # then applied to the restored and the in-memory state alike
INTERVAL_US = 500_000
WATERMARK_LAG_US = 200_000


def capture_events() -> list:
    from btcpred.batch.recordings import identify

    recording = replace(identify(SPOT_SLICE), perp=identify(USDM_SLICE))  # the first 60 s: prefixes of the captures
    events = []
    for event in recording.events():
        events.append(event)
        if len(events) == N_EVENTS + MORE_EVENTS:
            return events
    raise AssertionError("capture shorter than the test needs")


class Driver:
    """What the job does with a state: records applied, timers registered, boundaries cut as the
    watermark passes them."""

    def __init__(self, state: SymbolState, clock_us: int = 0) -> None:
        self.state, self.clock_us, self.writes = state, clock_us, []

    def apply(self, events: list) -> None:
        for event in events:
            self.state.on_batch([event], [0], INTERVAL_US)
            t = event.transact_time_us if isinstance(event, TradesEvent) else event.event_time_us
            self.clock_us = max(self.clock_us, t)
            due = sorted(b for b in self.state.pending_timers if b <= self.clock_us - WATERMARK_LAG_US)
            for boundary in due:
                self.writes += self.state.on_boundary(boundary, 0, INTERVAL_US)
                nxt = self.state.following_timer(boundary, INTERVAL_US)
                del nxt  # registered in pending_timers; fired when the watermark passes it


def built_state(events: list) -> Driver:
    driver = Driver(SymbolState("BTCUSDT"))
    driver.apply(events)
    return driver


class _FieldsOnly(pickle.Unpickler):
    """Unpickles a state blob's outer SymbolState as its raw field tuple (nested objects as usual)."""

    def find_class(self, module: str, name: str):
        if name == "_restore" and module in ("udfs.pickling", "btcpred.udfs.pickling"):
            return lambda cls, fields: pickle.loads(fields)
        return super().find_class(module, name)


def written_tuple(blob: bytes) -> tuple:
    return _FieldsOnly(io.BytesIO(blob)).load()


def same_state(a: SymbolState, b: SymbolState) -> None:
    assert a.sync.book == b.sync.book and a.sync.valid == b.sync.valid
    assert list(a.sync.recent) == list(b.sync.recent)
    assert list(a.history.entries) == list(b.history.entries)
    assert a.trades.points == b.trades.points
    for name in ("times", "bids", "asks", "bid_qtys", "ask_qtys", "ofi"):
        assert getattr(a.quotes, name) == getattr(b.quotes, name), name
        assert getattr(a.perp, name) == getattr(b.perp, name), name
    assert (a.last_diff_time_us, a.last_boundary_us, a.pending_timers) == (
        b.last_diff_time_us,
        b.last_boundary_us,
        b.pending_timers,
    )


@pytest.mark.parametrize("name", sorted(BLOBS))
def test_state_written_by_an_earlier_commit_restores_and_continues_exactly(name):
    events = capture_events()
    blob = (BLOB_DIR / name).read_bytes()
    restored = pickle.loads(blob)  # what a restore from a savepoint does
    assert SymbolState.written_format(written_tuple(blob)) == BLOBS[name] and restored.state_format == STATE_FORMAT
    reference = built_state(events[:N_EVENTS])
    same_state(restored, reference.state)
    assert len(restored.perp) > 0 and len(restored.quotes) > 0 and restored.sync.book is not None
    resumed = Driver(restored, reference.clock_us)
    resumed.apply(events[N_EVENTS:])
    reference.writes.clear()
    reference.apply(events[N_EVENTS:])
    same_state(resumed.state, reference.state)
    cuts = [w.fields for w in resumed.writes if w.key.startswith("feathist:")]
    expected = [w.fields for w in reference.writes if w.key.startswith("feathist:")]
    assert len(cuts) > 10 and len(cuts) == len(expected)
    # what the old state had continues exactly; what it lacked (the multi-level flow and the long
    # context, appended since) is absent, never a partial sum, until its look-back has passed
    later = set(DEEP_OFI_FEATURES + CONTEXT_FEATURES)
    for got, want in zip(cuts, expected):
        assert set(want) - set(got) <= later
        assert got == {k: v for k, v in want.items() if k in got}
    assert any("perp_lead_5s_bp" in fields for fields in cuts)  # the perpetual's history came through the restore
    assert any("ofi_l10_norm_5s" in fields for fields in cuts)  # and the new flow joined once 5 s had passed


def write_blob(commit: str) -> Path:
    import cloudpickle

    path = BLOB_DIR / f"symbol_state_{commit}.pickle"
    BLOB_DIR.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cloudpickle.dumps(built_state(capture_events()[:N_EVENTS]).state))  # PyFlink's state coder
    return path


if __name__ == "__main__":
    if sys.argv[1:2] != ["--write"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m tests.unit.udfs.test_symbol_state_blob --write <commit>")
    print(write_blob(sys.argv[2]))


def test_a_state_of_a_newer_format_is_refused_not_misread():
    from btcpred.udfs.pickling import _restore

    state = SymbolState("BTCUSDT")._pickled_state()
    index = SymbolState.__slots__.index("state_format")
    newer = state[:index] + (STATE_FORMAT + 1,) + state[index + 1 :]
    with pytest.raises(ValueError, match="newer than this code"):
        _restore(SymbolState, pickle.dumps(newer))
    assert SymbolState.written_format(state) == STATE_FORMAT and SymbolState.written_format(state[:index]) == 0
