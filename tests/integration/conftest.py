"""Fixtures of the integration tests that read a Kinesis stream of their own."""

import uuid

import boto3
import pytest

from btcpred.adapters.kinesis_writer import KinesisWriter, ensure_stream
from btcpred.adapters.lake import Lake
from btcpred.common.config import aws_client_kwargs
from btcpred.ingest.ingestor import aggregate
from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import DepthSnapshotEvent


@pytest.fixture()
def stream_settings(isolated_settings):
    name = f"archiver-{uuid.uuid4().hex[:8]}"
    settings = isolated_settings.model_copy(update={"kinesis": isolated_settings.kinesis.model_copy(update={"stream": name})})
    client = boto3.client("kinesis", **aws_client_kwargs(settings.kinesis))
    ensure_stream(client, name, 1)
    Lake(settings.s3).ensure_bucket()
    yield settings, client
    client.delete_stream(StreamName=name)


def put_real_frames(client, stream, captured, per_record=20, receipt_shift_us: int = 0) -> int:
    """Real capture events, SBE-encoded, aggregated as the ingestor does (a REST snapshot as the
    snapshot injector puts it in band); returns frames put. ``receipt_shift_us`` moves the receipt
    stamps (our clock, not the exchange's data) to place them in other archive hours."""
    frames = [
        envelope.Envelope(
            envelope.Source.REST_SNAPSHOT if isinstance(c.event, DepthSnapshotEvent) else envelope.Source.WEBSOCKET,
            c.receipt_time_us + receipt_shift_us,
            sbe.encode(c.event),
        )
        for c in captured
    ]
    KinesisWriter(client, stream).put(aggregate([("BTCUSDT", f) for f in frames], per_record))
    return len(frames)
