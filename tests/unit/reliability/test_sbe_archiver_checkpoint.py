"""A storage error on the checkpoint is never "no checkpoint": the archiver that read a 403 as a missing
checkpoint deleted its shard's whole archive (issue 28). Only S3's definite 404 means "never archived",
and objects with no checkpoint at all are refused unless the operator asks for the bootstrap."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from btcpred.adapters.lake import Lake
from btcpred.common.config import load_settings
from btcpred.reliability.sbe_archiver import DISCARDED, CheckpointError, SbeArchiver

SETTINGS = load_settings("local", environ={})
CHECKPOINT = "bronze/sbe/_checkpoints/{stream}/shardId-000000000000.json"
SHARD = "shardId-000000000000"


class MemoryLake:
    """The lake's surface the archiver uses, in memory; ``fail_reads`` makes every read raise it."""

    def __init__(self, objects: dict[str, bytes], fail_reads: ClientError | None = None) -> None:
        self.objects, self.fail_reads, self.deleted = dict(objects), fail_reads, []

    def get_bytes_if_present(self, key: str) -> bytes | None:
        if self.fail_reads is not None:
            raise self.fail_reads
        return self.objects.get(key)

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def put_bytes(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    def delete(self, key: str) -> None:
        self.deleted.append(key)
        del self.objects[key]


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


def archived_objects(archiver: SbeArchiver, firsts: list[int]) -> dict[str, bytes]:
    prefix = archiver.object_prefix(SHARD)
    return {f"bronze/sbe/BTCUSDT/year=2024/month=08/day=08/hour=00/{prefix}{first}.parquet": b"PAR1" for first in firsts}


def archiver_on(lake, **kwargs) -> SbeArchiver:
    return SbeArchiver(SETTINGS, kinesis=object(), lake=lake, **kwargs)


@pytest.mark.parametrize("status,code", [(403, "AccessDenied"), (503, "SlowDown"), (500, "InternalError")])
def test_a_checkpoint_read_error_fails_the_start_and_deletes_nothing(status, code):
    probe = archiver_on(None)
    lake = MemoryLake(archived_objects(probe, [100, 200, 300]), fail_reads=client_error(status, code))
    arch = archiver_on(lake)
    with pytest.raises(ClientError):
        arch.discard_uncommitted(SHARD)
    assert lake.deleted == [] and len(lake.objects) == 3


def test_objects_without_any_checkpoint_are_refused_not_deleted():
    probe = archiver_on(None)
    lake = MemoryLake(archived_objects(probe, [100, 200]))
    with pytest.raises(CheckpointError, match="2 archived objects .* no checkpoint"):
        archiver_on(lake).discard_uncommitted(SHARD)
    assert lake.deleted == [] and len(lake.objects) == 2


def test_the_operators_bootstrap_discards_them_counts_them_and_writes_the_origin():
    probe = archiver_on(None)
    lake = MemoryLake(archived_objects(probe, [100, 200]))
    before = DISCARDED.labels(SHARD)._value.get()
    assert archiver_on(lake, discard_uncheckpointed=True).discard_uncommitted(SHARD) == 2
    assert DISCARDED.labels(SHARD)._value.get() - before == 2
    origin = json.loads(lake.objects[CHECKPOINT.format(stream=SETTINGS.kinesis.stream)])
    assert origin["sequence_number"] is None


def test_a_shard_never_archived_gets_its_origin_before_any_object():
    lake = MemoryLake({})
    arch = archiver_on(lake)
    assert arch.discard_uncommitted(SHARD) == 0
    assert arch.checkpoint(SHARD) is None and list(lake.objects) == [CHECKPOINT.format(stream=SETTINGS.kinesis.stream)]


def test_only_objects_after_the_checkpoint_are_discarded():
    probe = archiver_on(None)
    objects = archived_objects(probe, [100, 200, 300])
    objects[CHECKPOINT.format(stream=SETTINGS.kinesis.stream)] = json.dumps({"sequence_number": "250"}).encode()
    lake = MemoryLake(objects)
    assert archiver_on(lake).discard_uncommitted(SHARD) == 1
    assert [k.rsplit("-", 1)[-1] for k in lake.deleted] == ["300.parquet"]


@pytest.mark.parametrize("body", [b"{not json", b'{"at": 1}', b'{"sequence_number": "12ab"}', b'{"sequence_number": 7}'])
def test_a_malformed_checkpoint_is_an_error_not_a_start_from_scratch(body):
    probe = archiver_on(None)
    objects = archived_objects(probe, [100])
    objects[CHECKPOINT.format(stream=SETTINGS.kinesis.stream)] = body
    lake = MemoryLake(objects)
    with pytest.raises(CheckpointError):
        archiver_on(lake).discard_uncommitted(SHARD)
    assert lake.deleted == []


# ---- the Lake itself, on a real boto3 client whose responses botocore's Stubber supplies


def stubbed_lake() -> tuple[Lake, Stubber]:
    lake = Lake.__new__(Lake)
    lake.bucket = "b"
    lake.client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return lake, Stubber(lake.client)


@pytest.mark.parametrize("status,code", [(403, "403"), (503, "503"), (400, "400")])
def test_exists_raises_on_anything_but_a_404(status, code):
    lake, stub = stubbed_lake()
    stub.add_client_error("head_object", service_error_code=code, http_status_code=status)
    with stub, pytest.raises(ClientError):
        lake.exists("k")


def test_exists_is_false_on_a_404_and_get_if_present_none_on_no_such_key():
    lake, stub = stubbed_lake()
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    with stub:
        assert lake.exists("k") is False
        assert lake.get_bytes_if_present("k") is None


def test_ensure_bucket_does_not_create_on_a_403():
    lake, stub = stubbed_lake()
    stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
    with stub, pytest.raises(ClientError):
        lake.ensure_bucket()
    stub.assert_no_pending_responses()
