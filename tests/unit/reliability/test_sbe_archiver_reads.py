"""GetRecords is retried on the same iterator while the endpoint is down, each failure counted, until it
answers; once the archiver stops, a failing read ends the shard's loop instead of retrying for ever."""

from botocore.exceptions import EndpointConnectionError

from btcpred.common.config import load_settings
from btcpred.reliability import sbe_archiver
from btcpred.reliability.sbe_archiver import CAUGHT_UP, READ_ERRORS, SbeArchiver


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


class Pages:
    """A one-shard Kinesis client answering GetRecords with ``pages`` in turn; the archiver stops after the last."""

    def __init__(self, pages: list[dict], arch: SbeArchiver | None = None) -> None:
        self.pages, self.arch, self.caught_up_seen = pages, arch, []
        self.clock = 100.0  # wall time; each read takes a second of it

    def time(self) -> float:
        return self.clock

    def get_shard_iterator(self, **_) -> dict:
        return {"ShardIterator": "it-0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict:
        self.caught_up_seen.append(CAUGHT_UP.labels("shard-pages")._value.get())
        page = self.pages.pop(0)
        self.clock += 1.0
        if not self.pages:
            self.arch.stopping = True
        return {"NextShardIterator": f"after-{ShardIterator}", **page}


class NoObjects:
    """A lake with nothing archived yet that accepts what the shard's loop writes."""

    def keys(self, prefix: str) -> list[str]:
        return []

    def get_bytes_if_present(self, key: str) -> bytes | None:
        return self.checkpoints.get(key)

    def get_with_etag(self, key: str):
        return None  # no lease yet

    def put_if(self, key: str, data: bytes, etag: str | None) -> str:
        return "etag"  # the lease's conditional writes always win here

    def put_bytes(self, key: str, data: bytes) -> None:
        self.checkpoints[key] = data

    def __init__(self) -> None:
        self.tables: dict[str, list[str]] = {}  # object key -> its rows' symbols
        self.checkpoints: dict[str, bytes] = {}

    def put_table(self, key, table) -> None:
        self.tables[key] = table.column("symbol").to_pylist()


def test_caught_up_is_when_a_read_that_reached_the_tip_was_asked(monkeypatch):
    """A full page may have more behind it even when its lag says 0 (the emulator always says 0), and a
    page with lag has more behind it: only a short page at lag 0 proves everything put before it was read."""
    record = {"SequenceNumber": "1", "Data": b"not an envelope"}
    kinesis = Pages(
        [
            {"Records": [record, record], "MillisBehindLatest": 0},  # a full page (Limit 2)
            {"Records": [record], "MillisBehindLatest": 5_000},  # short, but the shard holds more
            {"Records": [record], "MillisBehindLatest": 0},  # the tip: asked at 102
            {"Records": [], "MillisBehindLatest": 0},  # the tip again: asked at 103
        ]
    )
    arch = SbeArchiver(load_settings("local", environ={}), kinesis=kinesis, lake=NoObjects(), records_per_call=2)
    kinesis.arch = arch
    monkeypatch.setattr(sbe_archiver.time, "time", kinesis.time)
    CAUGHT_UP.labels("shard-pages").set(0)
    assert arch.run_shard("shard-pages") == 4  # every record read is written on stopping
    assert kinesis.caught_up_seen == [0, 0, 0, 102]
    assert CAUGHT_UP.labels("shard-pages")._value.get() == 103


def test_each_record_is_archived_under_its_partition_keys_symbol():
    """The ingestor keys each record by its symbol; a stream carrying several symbols archives each under
    its own prefix. A key that cannot name a folder (another producer's) lands under the served symbol."""
    settings = load_settings("local", environ={"BTCPRED_EXCHANGE__SYMBOLS": "BTCUSDT,ETHUSDT"})
    records = [
        {"SequenceNumber": str(i), "Data": b"not an envelope", "PartitionKey": key}
        for i, key in enumerate(["BTCUSDT", "ETHUSDT", "ETHUSDT", "../etc", ""], start=1)
    ]
    kinesis = Pages([{"Records": records, "MillisBehindLatest": 0}, {"Records": [], "MillisBehindLatest": 0}])
    lake = NoObjects()
    arch = SbeArchiver(settings, kinesis=kinesis, lake=lake)
    kinesis.arch = arch
    assert arch.run_shard("shard-0") == 5
    by_prefix = {key.split("/")[2]: symbols for key, symbols in lake.tables.items()}
    assert by_prefix == {"BTCUSDT": ["BTCUSDT"] * 3, "ETHUSDT": ["ETHUSDT"] * 2}
