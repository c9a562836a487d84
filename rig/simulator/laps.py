"""A capture replayed lap after lap, each lap later in time and higher in ids than the one before.

A soak needs the real data for longer than it lasts. Replaying it unchanged would send the job
event times and update ids from the past; each lap is therefore shifted: times by the capture's
span plus a second, rounded up to whole minutes, depth update ids and trade ids past the previous lap's. A lap does not continue
the previous lap's book (its first diff leaves a gap in the update ids), so every lap boundary is
a sequence gap that the reliability path heals with a REST snapshot of the new lap's book, as it
would after a real disconnect. Synthetic only in its offsets: every price, size and interval is
the capture's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from btcpred.adapters.loaders.base import CapturedEvent
from btcpred.udfs.events import BestBidAskEvent, DepthDiffEvent, DepthSnapshotEvent, PerpQuoteEvent, TradesEvent

ID_MARGIN = 1_000  # update ids skipped between laps: the first diff of a lap is always a gap
TIME_GRID_US = 60_000_000  # a lap moves by whole minutes: every 500 ms and 2 s boundary cuts the same data each lap


@dataclass(frozen=True, slots=True)
class LapStep:
    """How much one lap moves times (µs), depth update ids and trade ids."""

    time_us: int
    update_id: int
    trade_id: int


def lap_step(events: list[CapturedEvent]) -> LapStep:
    times = [c.receipt_time_us for c in events] + [_event_time(c.event) for c in events]
    ids = [i for c in events for i in _update_ids(c.event)]
    trade_ids = [t.trade_id for c in events if isinstance(c.event, TradesEvent) for t in c.event.trades]
    span = lambda values: max(values) - min(values) + 1 if values else 0  # noqa: E731
    time_step = -(-(span(times) + 1_000_000) // TIME_GRID_US) * TIME_GRID_US
    return LapStep(time_step, span(ids) + ID_MARGIN, span(trade_ids))


def shifted(events: list[CapturedEvent], lap: int, step: LapStep) -> list[CapturedEvent]:
    """The capture as lap ``lap`` (0 = unchanged) plays it."""
    if lap == 0:
        return events
    dt, du, dtr = lap * step.time_us, lap * step.update_id, lap * step.trade_id
    return [CapturedEvent(c.receipt_time_us + dt, _shift(c.event, dt, du, dtr)) for c in events]


def _event_time(event) -> int:
    return event.transact_time_us if isinstance(event, TradesEvent) else event.event_time_us


def _update_ids(event) -> tuple[int, ...]:
    if isinstance(event, DepthDiffEvent):
        return event.first_update_id, event.last_update_id
    if isinstance(event, (DepthSnapshotEvent, BestBidAskEvent, PerpQuoteEvent)):
        return (event.book_update_id,)
    return ()


def _shift(event, dt: int, du: int, dtr: int):
    if isinstance(event, TradesEvent):
        trades = tuple(dataclasses.replace(t, trade_id=t.trade_id + dtr) for t in event.trades)
        return dataclasses.replace(
            event, event_time_us=event.event_time_us + dt, transact_time_us=event.transact_time_us + dt, trades=trades
        )
    if isinstance(event, DepthDiffEvent):
        return dataclasses.replace(
            event,
            event_time_us=event.event_time_us + dt,
            first_update_id=event.first_update_id + du,
            last_update_id=event.last_update_id + du,
        )
    return dataclasses.replace(event, event_time_us=event.event_time_us + dt, book_update_id=event.book_update_id + du)
