"""GetRecords is retried on the same iterator while the endpoint is down, each failure counted, until it
answers; once the archiver stops, a failing read ends the shard's loop instead of retrying for ever."""
from botocore.exceptions import EndpointConnectionError

from btcpred.common.config import load_settings
from btcpred.reliability import sbe_archiver
from btcpred.reliability.sbe_archiver import READ_ERRORS, SbeArchiver


class DownThenUp:
    """A Kinesis client whose GetRecords fails ``failures`` times, then answers."""

    def __init__(self, failures: int, archiver_to_stop: SbeArchiver | None = None) -> None:
        self.failures, self.iterators, self.archiver_to_stop = failures, [], archiver_to_stop

    def get_records(self, ShardIterator: str, Limit: int) -> dict:
        self.iterators.append(ShardIterator)
        if len(self.iterators) <= self.failures:
            if self.archiver_to_stop is not None:
                self.archiver_to_stop.stopping = True  # SIGTERM arrives while the endpoint is down
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:4567")
        return {"Records": [], "NextShardIterator": "next"}


def archiver(kinesis) -> SbeArchiver:
    return SbeArchiver(load_settings("local", environ={}), kinesis=kinesis, lake=object())


def test_a_read_is_retried_on_the_same_iterator_until_the_endpoint_answers(monkeypatch):
    monkeypatch.setattr(sbe_archiver, "READ_RETRY_S", 0.0)
    before = READ_ERRORS._value.get()
    kinesis = DownThenUp(failures=3)
    assert archiver(kinesis)._get_records("it-1") == {"Records": [], "NextShardIterator": "next"}
    assert kinesis.iterators == ["it-1"] * 4 and READ_ERRORS._value.get() - before == 3


def test_a_failing_read_while_stopping_ends_the_loop():
    kinesis = DownThenUp(failures=10)
    arch = archiver(kinesis)
    kinesis.archiver_to_stop = arch
    assert arch._get_records("it-1") is None and kinesis.iterators == ["it-1"]
