import pytest

from btcpred.udfs import envelope
from btcpred.udfs.envelope import Envelope, EnvelopeError, Source


def test_single_frame_bytes_on_the_wire():
    env = Envelope(Source.REST_SNAPSHOT, 0x0102030405060708, b"\xaa\xbb")
    assert envelope.pack(env) == b"\x01\x01" + bytes.fromhex("0807060504030201") + b"\xaa\xbb"
    assert envelope.from_text(envelope.to_text(env)) == [env]


def test_aggregated_record_bytes_on_the_wire():
    a = Envelope(Source.WEBSOCKET, 1, b"\xaa")
    b = Envelope(Source.WEBSOCKET, 2, b"\xbb\xcc")
    raw = envelope.pack_batch([a, b])
    assert raw == (
        b"\x02\x00\x02\x00"
        + (1).to_bytes(8, "little")
        + (1).to_bytes(4, "little")
        + b"\xaa"
        + (2).to_bytes(8, "little")
        + (2).to_bytes(4, "little")
        + b"\xbb\xcc"
    )
    assert envelope.from_text(envelope.batch_to_text([a, b])) == [a, b]
    assert envelope.pack_batch([a]) == envelope.pack(a)  # one frame stays compact


def test_mixed_source_record_bytes_on_the_wire():
    """Version 3: the source moves into each entry, so spot frames and the perpetual's quotes share a record."""
    a = Envelope(Source.WEBSOCKET, 1, b"\xaa")
    b = Envelope(Source.PERP_QUOTE, 0x0102, b"\xbb\xcc")
    raw = envelope.pack_batch([a, b])
    assert raw == (
        b"\x03\x02\x00"
        + b"\x00"
        + (1).to_bytes(8, "little")
        + (1).to_bytes(4, "little")
        + b"\xaa"
        + b"\x02"
        + bytes.fromhex("0201000000000000")
        + (2).to_bytes(4, "little")
        + b"\xbb\xcc"
    )
    assert envelope.unpack(raw) == [a, b]
    assert envelope.from_text(envelope.batch_to_text([b, a, a])) == [b, a, a]
    assert envelope.pack_batch([a, a])[0] == envelope.BATCH_VERSION  # one source: version 2 as before, byte for byte


@pytest.mark.parametrize(
    "text, message",
    [
        ("not base64!", "not base64"),
        ("AQ==", "too short"),
        ("AQEA", "shorter than"),
        ("BAAAAAAAAAAAAA==", "format 4"),
        ("AwEACQEAAAAAAAAAAQAAAKo=", "unknown source 9"),
        ("AwIAAAEAAAAAAAAAAQAAAKo=", "truncated at frame 1 of 2"),
        ("AwEAAAEAAAAAAAAABQAAAKo=", "runs past"),
        ("AQkAAAAAAAAAAA==", "unknown source 9"),
        ("AgACAAEAAAAAAAAAAQAAAKo=", "truncated at frame 1 of 2"),
        ("AgABAAEAAAAAAAAABQAAAKo=", "runs past"),
    ],
)
def test_bad_records_raise_envelope_error(text, message):
    with pytest.raises(EnvelopeError, match=message):
        envelope.from_text(text)
