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
    assert raw == (b"\x02\x00\x02\x00"
                   + (1).to_bytes(8, "little") + (1).to_bytes(4, "little") + b"\xaa"
                   + (2).to_bytes(8, "little") + (2).to_bytes(4, "little") + b"\xbb\xcc")
    assert envelope.from_text(envelope.batch_to_text([a, b])) == [a, b]
    assert envelope.pack_batch([a]) == envelope.pack(a)  # one frame stays compact


def test_batch_refuses_mixed_sources():
    with pytest.raises(ValueError, match="share a source"):
        envelope.pack_batch([Envelope(Source.WEBSOCKET, 1, b"x"), Envelope(Source.REST_SNAPSHOT, 1, b"y")])


@pytest.mark.parametrize("text, message", [
    ("not base64!", "not base64"),
    ("AQ==", "too short"),
    ("AQEA", "shorter than"),
    ("AwAAAAAAAAAAAA==", "format 3"),
    ("AQkAAAAAAAAAAA==", "unknown source 9"),
    ("AgACAAEAAAAAAAAAAQAAAKo=", "truncated at frame 1 of 2"),
    ("AgABAAEAAAAAAAAABQAAAKo=", "runs past"),
])
def test_bad_records_raise_envelope_error(text, message):
    with pytest.raises(EnvelopeError, match=message):
        envelope.from_text(text)
