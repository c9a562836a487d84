"""The ingestor's dead letters: a bounded spill that counts what it drops, and a replay that puts the
records Kinesis refused back in order, never twice, leaving refused frames where they are."""

import base64

import pytest

from btcpred.adapters.kinesis_writer import Record
from btcpred.ingest.dead_letters import DROPPED, DeadLetterSpill, read_entries, replay


class CapturingWriter:
    def __init__(self, fail_after: int | None = None) -> None:
        self.put_records: list[Record] = []
        self.fail_after = fail_after

    def put(self, records) -> None:
        if self.fail_after is not None and len(self.put_records) + len(records) > self.fail_after:
            raise RuntimeError("Kinesis still down")
        self.put_records.extend(records)


def record(i: int) -> Record:
    return Record(f"v2|record {i:03d}".encode(), "BTCUSDT" if i % 2 else "ETHUSDT")


def test_the_spill_rotates_within_its_bound_and_counts_what_it_drops(tmp_path):
    probe = DeadLetterSpill(tmp_path / "probe.jsonl", max_bytes=10_000, files=1)
    probe.record(record(0), "kinesis_put_failed")
    line = probe.path.stat().st_size  # every line of this test has this length
    spill = DeadLetterSpill(tmp_path / "ingest.jsonl", max_bytes=3 * line + 10, files=3)
    before = DROPPED.labels("record")._value.get()
    for i in range(20):
        spill.record(record(i), "kinesis_put_failed")
    files = spill.oldest_first()
    assert [p.name for p in files] == ["ingest.jsonl.2", "ingest.jsonl.1", "ingest.jsonl"]
    kept = [base64.b64decode(e["record"]) for p in files for e in read_entries(p)]
    # three lines a file: 20 records fill 7 files in turn, the last 3 are kept (12..17 full, 18..19)
    assert kept == [record(i).data for i in range(12, 20)]
    assert DROPPED.labels("record")._value.get() - before == 12
    assert sum(p.stat().st_size for p in files) <= 3 * (3 * line + 10)


def test_replay_puts_records_back_oldest_first_and_keeps_refused_frames(tmp_path):
    spill = DeadLetterSpill(tmp_path / "ingest.jsonl", max_bytes=10_000_000, files=4)
    spill.record(record(1), "kinesis_put_failed")
    spill.frame(b"\x12\x00", "truncated: need 8 bytes")
    spill._rotate()  # an older file ...
    spill.record(record(2), "writer_error: OSError")
    spill.record(record(3), "kinesis_put_failed")  # ... and the current one
    writer = CapturingWriter()
    assert replay(spill, writer) == {"files": 2, "records_replayed": 3, "records_replayable": 3, "frames_kept": 1}
    assert writer.put_records == [record(1), record(2), record(3)]  # bytes and partition keys, in order
    assert spill.oldest_first() == [] and replay(spill, CapturingWriter()) == {
        "files": 0,
        "records_replayed": 0,
        "records_replayable": 0,
        "frames_kept": 0,
    }  # never twice
    done = sorted(p.name for p in tmp_path.iterdir())
    assert all(".replayed-" in name for name in done) and len(done) == 2
    frames = [e for p in tmp_path.iterdir() for e in read_entries(p) if "frame_hex" in e]
    assert frames[0]["frame_hex"] == "1200"  # kept for inspection


def test_a_replay_interrupted_by_kinesis_is_picked_up_by_the_next(tmp_path):
    spill = DeadLetterSpill(tmp_path / "ingest.jsonl", max_bytes=10_000_000, files=4)
    for i in range(5):
        spill.record(record(i), "kinesis_put_failed")
    with pytest.raises(RuntimeError):
        replay(spill, CapturingWriter(fail_after=0), batch=2)
    spill.record(record(5), "kinesis_put_failed")  # the ingestor goes on spilling meanwhile
    writer = CapturingWriter()
    assert replay(spill, writer)["records_replayed"] == 6
    assert writer.put_records == [record(i) for i in range(6)]
