"""A decision of the online contest, as the inference service writes it to ``pred:contest:{symbol}``
and the retraining job reads it back to put it on record (``btcpred.batch.contest_record``).

One definition for the writer and both readers (the service acts on its own decisions after a
restart): a process layer may not import another, so it lives here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

ACTIONS = ("promote", "demote")


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict of the always-valid test on this market: ``promote`` a challenger over the champion,
    or ``demote`` a champion that turned worse than persistence."""

    action: str  # "promote" | "demote"
    model_version: str
    versus: str  # the champion it beat, or "persistence"
    market: str
    data_time_ms: int  # the feature time of the row that closed the deciding block
    figures: dict

    def fields(self) -> dict[str, str]:
        """As a ``pred:contest:`` stream entry."""
        return {
            "action": self.action,
            "model_version": self.model_version,
            "versus": self.versus,
            "market": self.market,
            "data_time_ms": str(self.data_time_ms),
            "figures": json.dumps(self.figures),
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Decision:
        """From a stream entry; ``ValueError`` for one that is not a decision (never acted on)."""
        try:
            action = fields["action"]
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r}")
            figures = json.loads(fields["figures"])
            if not isinstance(figures, dict):
                raise ValueError("figures are not an object")
            return cls(
                action,
                fields["model_version"],
                fields["versus"],
                fields["market"],
                int(fields["data_time_ms"]),
                figures,
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a contest decision: {exc}") from exc
