import pytest

from udfs import envelope
from udfs.envelope import Envelope, EnvelopeError, Source


def test_bytes_on_the_wire():
    env = Envelope(Source.REST_SNAPSHOT, 0x0102030405060708, b"\xaa\xbb")
    assert envelope.pack(env) == b"\x01\x01" + bytes.fromhex("0807060504030201") + b"\xaa\xbb"
    assert envelope.from_text(envelope.to_text(env)) == env


@pytest.mark.parametrize("text, message", [
    ("not base64!", "not base64"),
    ("AQ==", "shorter than"),
    ("AgAAAAAAAAAAAA==", "format 2"),
    ("AQkAAAAAAAAAAA==", "unknown source 9"),
])
def test_bad_records_raise_envelope_error(text, message):
    with pytest.raises(EnvelopeError, match=message):
        envelope.from_text(text)
