"""SWARM parallelism: which stage each pipeline server holds, and when it moves (docs/swarm.md).

The decisions here are pure functions over plain load tables, so the daemon, the simulation and the
experiments share them unchanged.
"""

from swarmnet.swarm.join import choose_stage_to_join, neediest_stage
from swarmnet.swarm.load import LoadBounds, ServerLoad, StageLoad, StageView, sanitize
from swarmnet.swarm.optimum import balanced_optimum, greedy_assignment
from swarmnet.swarm.rebalance import Move, MoveHistory, RebalanceConfig, plan_move, plan_period

__all__ = [
    "LoadBounds",
    "Move",
    "MoveHistory",
    "RebalanceConfig",
    "ServerLoad",
    "StageLoad",
    "StageView",
    "balanced_optimum",
    "choose_stage_to_join",
    "greedy_assignment",
    "neediest_stage",
    "plan_move",
    "plan_period",
    "sanitize",
]
