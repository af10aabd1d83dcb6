"""swarmnet.diloco: DiLoCo and Streaming DiLoCo on the swarm.

* **DiLoCoConfig, InnerConfig, OuterConfig (config.py)**: H, fragments, overlap, mixing, codec, optimizers.
* **Replica (replica.py)**: one replica's math without networking (inner AdamW, pseudo-gradients,
  outer Nesterov step); **FlatParameters (flat.py)**: parameters as views of one vector, fragments.
* **SwarmTrainer, TrainerConfig (trainer.py)**: the trainer on a ``Transport``; **Progress, TrainerStatistics
  (reports.py)**: what it reports.
* **StateSync, GlobalState (state_sync.py)**: published state digests, verified transfer.
* **Consensus, choose (consensus.py)**: which announced state the swarm agrees on, by counting distinct announcers.
* **PaceBound (pace.py)**: how far ahead another trainer can plausibly be; claims beyond it are ignored.
* **converging, settled (closing.py)**: when a trainer at its last step may stop: the peers that ended with it
  hold one state.
* **ProgressBoard (progress.py)**: which sync point other trainers reached; stop early only behind most of them.
* **save_checkpoint, load_latest, CheckpointConfig (checkpoint.py)**: atomic safetensors checkpoints.
"""

from swarmnet.diloco.config import DiLoCoConfig, InnerConfig, OuterConfig
from swarmnet.diloco.flat import FlatParameters
from swarmnet.diloco.replica import Replica
from swarmnet.diloco.reports import Progress, TrainerStatistics
from swarmnet.diloco.state_sync import GlobalState, StateSync, StateSyncConfig, StateSyncError
from swarmnet.diloco.trainer import SwarmTrainer, TrainerConfig

__all__ = [
    "DiLoCoConfig",
    "FlatParameters",
    "GlobalState",
    "InnerConfig",
    "OuterConfig",
    "Progress",
    "Replica",
    "StateSync",
    "StateSyncConfig",
    "StateSyncError",
    "SwarmTrainer",
    "TrainerConfig",
    "TrainerStatistics",
]
