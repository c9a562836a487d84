"""Raw SBE frames from Kinesis (kinesalite) to bronze parquet (moto): nothing lost, nothing doubled, across a crash."""

import json
import time

import pyarrow.compute as pc
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from btcpred.adapters.kinesis_writer import ensure_stream
from btcpred.adapters.lake import Lake
from btcpred.reliability.sbe_archiver import TASK_FAILURES, SbeArchiver
from btcpred.udfs import envelope, sbe
from tests.integration.conftest import put_real_frames

pytestmark = pytest.mark.integration


def archived(lake: Lake):
    tables = [lake.get_table(k) for k in lake.keys("bronze/sbe/BTCUSDT/")]
    keys = [
        (seq, idx)
        for t in tables
        for seq, idx in zip(t.column("sequence_number").to_pylist(), t.column("frame_index").to_pylist())
    ]
    return tables, keys


def test_every_frame_archived_once_even_after_a_crash_before_the_checkpoint(stream_settings, spot_events):
    settings, client = stream_settings
    stream = settings.kinesis.stream
    lake = Lake(settings.s3)
    sent = put_real_frames(client, stream, spot_events[:3000])
    client.put_record(StreamName=stream, Data=b"not an envelope", PartitionKey="BTCUSDT")

    # first run "crashes": objects written, checkpoint never saved
    crashing = SbeArchiver(settings, kinesis=client, lake=lake, flush_rows=1000, records_per_call=25)
    crashing.flush = lambda shard, buf, write_checkpoint=True: SbeArchiver.flush(crashing, shard, buf, write_checkpoint=False)
    shard = crashing.shards()[0]
    crashing.run_shard(shard, stop_after_idle_s=0.5)
    assert crashing.checkpoint(shard) is None and len(lake.keys("bronze/sbe/BTCUSDT/")) >= 3

    # the restarted archiver re-reads from the start with other batch sizes: objects are replaced, not doubled
    SbeArchiver(settings, kinesis=client, lake=lake, flush_rows=700, records_per_call=40).run_shard(shard, stop_after_idle_s=0.5)
    sent += put_real_frames(client, stream, spot_events[3000:4000])
    SbeArchiver(settings, kinesis=client, lake=lake, flush_rows=700).run_shard(shard, stop_after_idle_s=0.5)

    tables, keys = archived(lake)
    assert len(keys) == len(set(keys)) == sent + 1  # every frame plus the one bad record, once each
    raw = sum(pc.sum(pc.equal(t.column("template_id"), -1)).as_py() or 0 for t in tables)
    assert raw == 1
    frames = [
        f for t in tables for f, tid in zip(t.column("frame").to_pylist(), t.column("template_id").to_pylist()) if tid != -1
    ]
    assert sorted(frames) == sorted(sbe.encode(c.event) for c in spot_events[:4000])  # the bytes, exactly
    assert all("/hour=" in k for k in lake.keys("bronze/sbe/BTCUSDT/"))


def test_every_shard_of_a_two_shard_stream_is_archived_with_its_own_checkpoint(stream_settings, spot_events):
    """The template's stream has 2 shards: one archiver takes them all, each frame once."""
    settings, client = stream_settings
    stream = f"{settings.kinesis.stream}-2"
    settings = settings.model_copy(update={"kinesis": settings.kinesis.model_copy(update={"stream": stream})})
    ensure_stream(client, stream, 2)
    try:
        shards = client.list_shards(StreamName=stream)["Shards"]
        captured = spot_events[:2000]
        for i in range(0, len(captured), 20):  # alternate the records between the two shards
            text = envelope.batch_to_text(
                [
                    envelope.Envelope(envelope.Source.WEBSOCKET, c.receipt_time_us, sbe.encode(c.event))
                    for c in captured[i : i + 20]
                ]
            )
            target = shards[(i // 20) % 2]["HashKeyRange"]["StartingHashKey"]
            client.put_record(StreamName=stream, Data=text.encode(), PartitionKey="BTCUSDT", ExplicitHashKey=target)
        lake = Lake(settings.s3)
        archiver = SbeArchiver(settings, kinesis=client, lake=lake, flush_rows=500)
        assert archiver.run(stop_after_idle_s=0.5) == len(captured)
        assert all(archiver.checkpoint(s["ShardId"]) for s in shards)
        tables = [lake.get_table(k) for k in lake.keys("bronze/sbe/BTCUSDT/") if f"/{stream}." in k]
        by_shard = {}
        for t in tables:
            for shard_id, frame in zip(t.column("shard_id").to_pylist(), t.column("frame").to_pylist()):
                by_shard.setdefault(shard_id, []).append(frame)
        assert sorted(len(v) for v in by_shard.values()) == [1000, 1000]
        assert sorted(f for v in by_shard.values() for f in v) == sorted(sbe.encode(c.event) for c in captured)
    finally:
        client.delete_stream(StreamName=stream)


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_):
        yield self.data


def failing_checkpoint_reads(lake: Lake, status: int, code: str) -> None:
    """S3 answers every GET or HEAD of a checkpoint with ``status``: the bytes a 403 (a policy or KMS
    slip, rotated credentials) or a 503 puts on the wire, parsed by botocore as from real S3."""
    body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>injected</Message></Error>".encode()

    def answer(request, **_):
        if "/_checkpoints/" in request.url and request.method in ("GET", "HEAD"):
            return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Body(body))
        return None

    lake.client.meta.events.register("before-send.s3", answer)


@pytest.mark.parametrize("status,code", [(403, "AccessDenied"), (503, "SlowDown")])
def test_a_checkpoint_that_cannot_be_read_stops_the_shard_and_deletes_nothing(stream_settings, spot_events, status, code):
    settings, client = stream_settings
    stream = settings.kinesis.stream
    lake = Lake(settings.s3)
    sent = put_real_frames(client, stream, spot_events[:1500])
    first = SbeArchiver(settings, kinesis=client, lake=lake, flush_rows=500)
    shard = first.shards()[0]
    first.run_shard(shard, stop_after_idle_s=0.5)
    before = lake.keys("bronze/sbe/")

    denied = Lake(settings.s3)
    failing_checkpoint_reads(denied, status, code)
    with pytest.raises(ClientError) as raised:
        SbeArchiver(settings, kinesis=client, lake=denied, flush_rows=500).run_shard(shard, stop_after_idle_s=0.5)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert lake.keys("bronze/sbe/") == before  # nothing deleted, nothing written

    sent += put_real_frames(client, stream, spot_events[1500:2000])  # once S3 answers again: resumes, each frame once
    SbeArchiver(settings, kinesis=client, lake=lake, flush_rows=500).run_shard(shard, stop_after_idle_s=0.5)
    _, keys = archived(lake)
    assert len(keys) == len(set(keys)) == sent


def test_one_archiver_per_shard_a_second_waits_and_one_taken_over_writes_nothing(stream_settings, spot_events):
    """Two archivers on a shard would delete each other's uncommitted objects and checkpoint past them.
    The lease (S3 conditional writes, on moto) lets one write; a second waits; one whose lease was taken
    over stops before it writes an object."""
    from btcpred.reliability.shard_lease import LeaseHeld, LeaseLost, ShardLease
    from btcpred.udfs import lake_layout

    settings, client = stream_settings
    stream = settings.kinesis.stream
    lake = Lake(settings.s3)
    put_real_frames(client, stream, spot_events[:1000])
    first = SbeArchiver(settings, kinesis=client, lake=lake, flush_rows=300)
    shard = first.shards()[0]
    key = lake_layout.sbe_lease_key(stream, shard)

    holder = ShardLease(lake, key, "another-host", ttl_s=60.0)
    holder.acquire()
    with pytest.raises(LeaseHeld, match="held by another-host"):
        first.run_shard(shard, stop_after_idle_s=0.5)
    assert lake.keys("bronze/sbe/BTCUSDT/") == []  # it wrote nothing, deleted nothing

    # the holder's lease taken over while it runs (it stalled past its TTL): its next flush refuses to write
    stalled = SbeArchiver(settings, kinesis=client, lake=lake, flush_rows=300, lease_ttl_s=60.0)
    holder.release()
    real_flush = stalled.flush

    def flush_after_takeover(shard_id, buf, write_checkpoint=True):
        lake.put_bytes(key, b'{"owner": "usurper", "expires_at": 1e12}')  # another archiver's lease now
        return real_flush(shard_id, buf, write_checkpoint)

    stalled.flush = flush_after_takeover
    with pytest.raises(LeaseLost):
        stalled.run_shard(shard, stop_after_idle_s=0.5)
    assert lake.keys("bronze/sbe/BTCUSDT/") == []

    lake.put_bytes(key, b'{"owner": "usurper", "expires_at": 0}')  # the usurper stopped: its lease expired
    assert SbeArchiver(settings, kinesis=client, lake=lake).run_shard(shard, stop_after_idle_s=0.5) == 1000
    assert json.loads(lake.get_bytes(key))["expires_at"] == 0.0  # released on a clean stop


def test_a_standby_archiver_is_healthy_and_takes_over_when_the_lease_is_freed(stream_settings, spot_events):
    """Supervised, a second archiver on a held shard stands by: no failure, no red /health, no alert;
    it archives once the holder lets go."""
    import threading

    from btcpred.reliability.shard_lease import ShardLease
    from btcpred.udfs import lake_layout

    settings, client = stream_settings
    lake = Lake(settings.s3)
    sent = put_real_frames(client, settings.kinesis.stream, spot_events[:600])
    standby = SbeArchiver(settings, kinesis=client, lake=lake, flush_rows=300, flush_interval_s=0.5, lease_ttl_s=2.0)
    shard = standby.shards()[0]
    holder = ShardLease(lake, lake_layout.sbe_lease_key(settings.kinesis.stream, shard), "another-host", ttl_s=600.0)
    holder.acquire()
    failures_before = TASK_FAILURES.labels(shard)._value.get()
    thread = threading.Thread(target=standby.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while shard not in standby.standby and time.monotonic() < deadline:
            time.sleep(0.1)
        assert standby.standby == {shard} and standby.failing == {}
        assert lake.keys("bronze/sbe/BTCUSDT/") == []
        holder.release()
        deadline = time.monotonic() + 30
        while len(archived(lake)[1]) < sent and time.monotonic() < deadline:
            time.sleep(0.2)
        _, keys = archived(lake)
        assert len(keys) == len(set(keys)) == sent and standby.standby == set()
        assert TASK_FAILURES.labels(shard)._value.get() == failures_before and standby.failing == {}
    finally:
        standby.stopping = True
        thread.join(15)
