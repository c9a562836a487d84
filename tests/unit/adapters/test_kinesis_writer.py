"""Per-record retry logic of the PutRecords writer (a scripted client stands in for Kinesis)."""

import pytest

from btcpred.adapters.kinesis_writer import MAX_BATCH_RECORDS, KinesisWriter, PutFailed, Record


class ScriptedKinesis:
    """Fails the records whose data is listed in ``fail_plan[attempt]``."""

    def __init__(self, fail_plan=None, raise_on=()):
        self.fail_plan = fail_plan or {}
        self.raise_on = set(raise_on)
        self.calls = []
        self.accepted = []

    def put_records(self, StreamName, Records):  # noqa: N803 (boto3 signature)
        attempt = len(self.calls)
        self.calls.append([r["Data"] for r in Records])
        if attempt in self.raise_on:
            raise ConnectionError("emulator restarting")
        failing = self.fail_plan.get(attempt, set())
        out = []
        for r in Records:
            if r["Data"] in failing:
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
            else:
                self.accepted.append(r["Data"])
                out.append({"SequenceNumber": str(len(self.accepted)), "ShardId": "shardId-0"})
        return {"FailedRecordCount": sum("ErrorCode" in o for o in out), "Records": out}


def records(n):
    return [Record(f"r{i}".encode(), "BTCUSDT") for i in range(n)]


def test_only_failed_records_are_resent():
    client = ScriptedKinesis({0: {b"r1", b"r3"}})
    KinesisWriter(client, "s", sleep=lambda _: None).put(records(5))
    assert client.calls == [[b"r0", b"r1", b"r2", b"r3", b"r4"], [b"r1", b"r3"]]
    assert sorted(client.accepted) == [b"r0", b"r1", b"r2", b"r3", b"r4"]


def test_request_error_retries_whole_batch():
    client = ScriptedKinesis(raise_on={0, 1})
    KinesisWriter(client, "s", sleep=lambda _: None).put(records(3))
    assert len(client.calls) == 3 and client.accepted == [b"r0", b"r1", b"r2"]


def test_gives_up_after_max_attempts_and_reports_the_records():
    client = ScriptedKinesis({i: {b"r2"} for i in range(10)})
    with pytest.raises(PutFailed) as err:
        KinesisWriter(client, "s", max_attempts=3, sleep=lambda _: None).put(records(4))
    assert [r.data for r in err.value.records] == [b"r2"]
    assert len(client.calls) == 3


def test_large_input_is_split_into_api_sized_batches():
    client = ScriptedKinesis()
    KinesisWriter(client, "s", sleep=lambda _: None).put(records(MAX_BATCH_RECORDS + 7))
    assert [len(c) for c in client.calls] == [MAX_BATCH_RECORDS, 7]
    assert client.accepted == [r.data for r in records(MAX_BATCH_RECORDS + 7)]


def test_keeps_retrying_until_the_minimum_back_off_time_has_passed():
    client = ScriptedKinesis(raise_on=set(range(1000)))
    slept: list[float] = []
    with pytest.raises(PutFailed):
        KinesisWriter(client, "s", max_attempts=3, sleep=slept.append, min_retry_s=10.0).put(records(2))
    assert sum(slept) >= 10.0 and sum(slept[:-1]) < 10.0  # stopped at the first attempt past the floor
    assert len(client.calls) == len(slept) + 1 > 3
