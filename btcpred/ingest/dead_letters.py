"""The ingestor's dead letters: a bounded, rotated spill on local disk, and the command that puts
the records Kinesis refused back into the stream, in order.

    python -m btcpred.ingest.dead_letters replay [--config local] [--dry-run]

Two kinds of entry land here, one JSON line each:

* frames the exchange sent that fail decoding or ``event_rules`` (``frame_hex``): kept for
  inspection, never replayed (the job would refuse them again);
* whole Kinesis records the writer gave up on (a Kinesis outage longer than its retry floor:
  ``record`` and ``partition_key``). Until replayed they are missing from the hot path *and*
  from bronze, the training data; ``replay`` puts them back, oldest file and line first.

The spill is ``path`` plus at most ``files - 1`` rotated files (``path.1`` newest); a file passes
``max_bytes`` and rotates. The oldest rotated file is deleted when one more would not fit, and
every record in it is counted in ``ingest_dead_letters_dropped_total``: bounded disk, loss visible.

``replay`` first renames every spill file aside (the ingestor opens the file per write, so its
next dead letter starts a new one), replays them, then renames each ``.replayed``: a file is
never replayed twice. The records are late for the job (its windows have closed: they count as
late or stale there), but the SBE archiver files them in bronze like any other record.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
from prometheus_client import Counter

from btcpred.adapters.kinesis_writer import KinesisWriter, Record
from btcpred.common import entry_point
from btcpred.common.config import aws_client_kwargs, load_settings

log = logging.getLogger("dead_letters")

WRITTEN = Counter("ingest_dead_letters_total", "Dead letters spilled to local disk", ["kind"])
DROPPED = Counter(
    "ingest_dead_letters_dropped_total", "Dead letters deleted with the oldest spill file when the spill was full", ["kind"]
)
for _kind in ("frame", "record"):  # at 0 from the start
    WRITTEN.labels(_kind), DROPPED.labels(_kind)
REPLAYABLE = "record"  # the kind of entry ``replay`` puts back into Kinesis


class DeadLetterSpill:
    """Append-only JSON lines in at most ``files`` files of about ``max_bytes`` each."""

    def __init__(self, path: Path, max_bytes: int, files: int) -> None:
        if files < 1 or max_bytes < 1:
            raise ValueError("a spill needs at least one file of at least one byte")
        self.path, self.max_bytes, self.files = Path(path), max_bytes, files

    def rotated(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def frame(self, frame: bytes, reason: str, receipt_time_us: int | None = None) -> None:
        """A frame that will not be replayed (it fails decoding or the rules)."""
        self._write(
            "frame", {"receipt_time_us": receipt_time_us or time.time_ns() // 1000, "reason": reason, "frame_hex": frame.hex()}
        )

    def record(self, record: Record, reason: str) -> None:
        """A Kinesis record the writer gave up on: ``replay`` puts it back."""
        self._write(
            REPLAYABLE,
            {
                "receipt_time_us": time.time_ns() // 1000,
                "reason": reason,
                "kind": REPLAYABLE,
                "partition_key": record.partition_key,
                "record": base64.b64encode(record.data).decode("ascii"),
            },
        )

    def _write(self, kind: str, entry: dict) -> None:
        line = json.dumps(entry) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
            self._rotate()
        with self.path.open("a") as fh:
            fh.write(line)
        WRITTEN.labels(kind).inc()

    def _rotate(self) -> None:
        oldest = self.rotated(self.files - 1) if self.files > 1 else self.path
        if oldest.exists():
            for entry in read_entries(oldest):
                DROPPED.labels(entry.get("kind", "frame")).inc()
            log.error("dead-letter spill full: deleting %s", oldest)
            oldest.unlink()
        for index in range(self.files - 2, 0, -1):
            if self.rotated(index).exists():
                self.rotated(index).rename(self.rotated(index + 1))
        if self.files > 1 and self.path.exists():
            self.path.rename(self.rotated(1))

    def oldest_first(self) -> list[Path]:
        return [p for p in [*(self.rotated(i) for i in range(self.files - 1, 0, -1)), self.path] if p.exists()]


def read_entries(path: Path) -> Iterator[dict]:
    """The file's entries; a line that does not parse (a write cut short) is skipped, logged."""
    with path.open() as fh:
        for number, line in enumerate(fh, 1):
            try:
                yield json.loads(line)
            except ValueError:
                log.warning("%s:%d is not a dead letter (cut short?): skipped", path, number)


def replay(spill: DeadLetterSpill, writer: KinesisWriter, batch: int = 500) -> dict:
    """Put every replayable record of the spill back into Kinesis, oldest first (``--dry-run`` counts in ``main``)."""
    stamp = time.time_ns()  # names sort in time order and never meet an earlier replay's
    # an interrupted replay's files first (their records may reach Kinesis twice: the job counts a
    # trade once and a diff or quote by its update id, so a second copy changes nothing there)
    taken = sorted(spill.path.parent.glob(f"{spill.path.name}.replaying-*"))
    for i, path in enumerate(spill.oldest_first()):
        aside = path.with_name(f"{spill.path.name}.replaying-{stamp}-{i:03d}")
        os.replace(path, aside)
        taken.append(aside)
    replayed = kept = 0
    for path in taken:
        pending: list[Record] = []
        for entry in read_entries(path):
            if entry.get("kind") != REPLAYABLE:
                kept += 1
                continue
            pending.append(Record(base64.b64decode(entry["record"]), entry["partition_key"]))
        for start in range(0, len(pending), batch):
            writer.put(pending[start : start + batch])  # raises if Kinesis is still down: the file stays aside
        replayed += len(pending)
        os.replace(path, path.with_name(path.name.replace(".replaying-", ".replayed-")))
    return {"files": len(taken), "records_replayed": replayed, "records_replayable": replayed, "frames_kept": kept}


def spill_for(settings) -> DeadLetterSpill:
    cfg = settings.ingestor
    return DeadLetterSpill(Path(cfg.dead_letter_path), cfg.dead_letter_max_bytes, cfg.dead_letter_files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["replay"])
    entry_point.add_config(parser)
    parser.add_argument("--dry-run", action="store_true", help="count what would be replayed, put nothing")
    args = parser.parse_args(argv)
    entry_point.setup_logging()
    settings = load_settings(args.config)
    spill = spill_for(settings)
    if args.dry_run:
        counts = {"files": len(spill.oldest_first()), "records_replayable": 0, "frames_kept": 0}
        for path in spill.oldest_first():
            for entry in read_entries(path):
                counts["records_replayable" if entry.get("kind") == REPLAYABLE else "frames_kept"] += 1
        print(json.dumps(counts))
        return 0
    writer = KinesisWriter(
        boto3.client("kinesis", **aws_client_kwargs(settings.kinesis)),
        settings.kinesis.stream,
        settings.ingestor.max_put_attempts,
    )
    print(json.dumps(replay(spill, writer)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
