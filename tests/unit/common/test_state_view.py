"""What ``btcpred state show`` makes of the hot state: times told as times, ages from hand values."""

import pytest

from btcpred.common.state_view import hot_state_view, render

pytestmark = pytest.mark.unit

NOW_US = 1_796_631_306_000_000  # 2026-12-07T08:15:06Z
DATA_US = 1_723_161_331_409_000  # 2024-08-08T23:55:31.409Z: a replay's data time


class HashReader:
    """Pure stand-in for the Redis reads the view makes (hgetall, get), keyed as the job writes."""

    def __init__(self, hashes: dict[str, dict[str, str]]) -> None:
        self.hashes = hashes

    def hgetall(self, key: str) -> dict[str, str]:
        return self.hashes.get(key, {})

    def get(self, key: str) -> str | None:
        return None


def test_a_replays_data_time_is_shown_as_a_time_and_freshness_from_the_market_clock():
    reader = HashReader(
        {
            "ob:{BTCUSDT}": {"ts_us": str(DATA_US - 650_000), "last_update_id": "7", "book_valid": "1", "bid1_q": "0.5"},
            "feat:{BTCUSDT}": {
                "ts": str(DATA_US),
                "emitted_at_us": str(NOW_US - 348_000),
                "market_wall_us": str(NOW_US - 756_000),
                "mid": "61809.645",
            },
        }
    )
    view = hot_state_view(reader, "BTCUSDT", NOW_US)
    assert view["book"]["event_time"] == "2024-08-08T23:55:30.759Z" and view["book"]["levels"] == 1
    assert view["features"]["data_time"] == "2024-08-08T23:55:31.409Z"
    assert view["features"]["market_age_s"] == 0.756 and view["features"]["written_age_s"] == 0.348
    assert view["features"]["data_time_age_s"] == round((NOW_US - DATA_US) / 1e6, 3)  # 2.3 years: kept, not shown
    text = render(view)
    assert "event time 2024-08-08T23:55:30.759Z" in text
    assert "data time 2024-08-08T23:55:31.409Z, market age 0.756 s" in text and "written 0.348 s ago" in text
    assert "    mid                          61809.645" in text


def test_a_stamp_that_is_no_time_is_shown_as_none_and_its_hash_still_as_found():
    reader = HashReader({"feat:{BTCUSDT}": {"ts": "9" * 30, "mid": "x"}, "ob:{BTCUSDT}": {"ts_us": "soon"}})
    view = hot_state_view(reader, "BTCUSDT", NOW_US)
    assert view["features"]["data_time"] is None and view["book"]["event_time"] is None
    assert view["features"]["values"]["mid"] == "x"
    assert "data time None" in render(view)
