"""What happened in each round: the record the coordinator keeps, persists and reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["RoundRecord"]


@dataclass(frozen=True, kw_only=True)
class RoundRecord:
    """One finished round, completed or failed."""

    round: int
    outcome: Literal["completed", "failed"]
    reason: str = ""  # why a round failed, or notes (who was dropped) for a completed one
    selected: tuple[str, ...] = ()
    contributors: tuple[str, ...] = ()  # whose updates are in the aggregate
    uplink_bytes: int = 0  # update bytes received in the round
    seconds: float = 0.0  # from opening the round to the new global adapter
    train_loss: float = float("nan")  # sample-weighted mean of the clients' reported training loss
    global_version: int = 0  # the version after the round
    secure_aggregation: bool = False
    epsilon: float = 0.0  # differential-privacy epsilon spent so far (0 without DP)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""
        out = asdict(self)
        out["selected"], out["contributors"] = list(self.selected), list(self.contributors)
        if out["train_loss"] != out["train_loss"]:
            out["train_loss"] = None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoundRecord:
        """The inverse of ``to_json``."""
        loss = data.get("train_loss")
        return cls(
            round=int(data["round"]),
            outcome=data["outcome"],
            reason=str(data.get("reason", "")),
            selected=tuple(data.get("selected", ())),
            contributors=tuple(data.get("contributors", ())),
            uplink_bytes=int(data.get("uplink_bytes", 0)),
            seconds=float(data.get("seconds", 0.0)),
            train_loss=float("nan") if loss is None else float(loss),
            global_version=int(data.get("global_version", 0)),
            secure_aggregation=bool(data.get("secure_aggregation", False)),
            epsilon=float(data.get("epsilon", 0.0)),
        )
