"""swarmnet.averaging: compressed, fault-tolerant decentralized averaging over any ``Transport``.

Class to file:

* **Averager (averager.py)**: ``start()``, ``step(tensors, round_id=, weight=)`` -> ``Outcome``, ``statistics()``.
* **AveragingConfig, MatchmakingConfig, DeadlineConfig (config.py)**.
* **Matchmaker (matchmaking.py)**: group formation through the DHT; GroupJoin, the signed join record
  (seeking.py); storing and reading join records (join_records.py); a member's answers to a leader
  (answers.py); the cut into runs in each round's order (runs.py).
* **GroupRound (allreduce.py)**: reduce-scatter / tally / all-gather / recovery of one round;
  **RoundReport (report.py)**: what it found out; **RoundExchange (exchange.py)**: turn order, waits and
  tally, shared by both modes; **PartSender (parts.py)**: our parts of a pass (the send side, over
  **Contributions (contributions.py)**); **OwnRange (own_range.py)**: reducing and streaming our own range
  (the reduce side); **ResultCollector (collect.py)**: the others' results and the books; sparse all-gather
  mode (allgather.py).
* **aggregate, AggregationConfig (robust.py)**: mean, trimmed mean, median, centered clip.
* **RoundLobby, LobbyLimits (lobby.py)**: data that reaches us before our round of its group started waits
  for it, within bounds per caller and overall.
* **ThroughputModel, Arrivals (deadlines.py)**; **Inbox (inbox.py)**; wire messages (messages.py);
  **Group, partition, schema_id (group.py)**; flat vectors and where their error-feedback residuals live in
  an ``ErrorFeedback`` (vectors.py); **FeedbackWatch, keep_schema (feedback_state.py)**: residual statistics
  and checkpointed residuals' checks.
* **Outcome, AveragerStatistics (outcome.py)**; **Pacer (pacer.py)**: the uplink cap (``pace_mbps``).
* **ResultCheck (plausible.py)**: whether a reducer's result is plausible under a robust rule.
"""

from swarmnet.averaging.averager import Averager
from swarmnet.averaging.config import AveragingConfig, DeadlineConfig, MatchmakingConfig
from swarmnet.averaging.group import Group, partition, schema_id
from swarmnet.averaging.outcome import AveragerStatistics, Outcome
from swarmnet.averaging.robust import AggregationConfig, aggregate

__all__ = [
    "AggregationConfig",
    "Averager",
    "AveragerStatistics",
    "AveragingConfig",
    "DeadlineConfig",
    "Group",
    "MatchmakingConfig",
    "Outcome",
    "aggregate",
    "partition",
    "schema_id",
]
