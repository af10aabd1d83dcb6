"""swarmnet.coordinator.strategies: federated aggregation and server optimizers as plain functions.

A round: ``aggregate = aggregate_updates(updates, config)``, then
``params, state = server_step(params, aggregate, state, config)``. Function to file:

* **ClientUpdate, ServerState, StrategyConfig, check_updates (base.py)**: the inputs, the state
  kept between rounds (its tensors save as safetensors by name), the config, the input checks.
* **weighted_mean, sgd_step (fedavg.py)**: FedAvg's sample-weighted mean and the server SGD step.
* **trimmed_mean (trimmed_mean.py)**, **centered_clip (centered_clip.py)**: Byzantine-robust
  rules, both ``swarmnet.averaging.robust`` underneath.
* **adam_step (fedadam.py)**, **yogi_step (fedyogi.py)**: Reddi et al. 2021's adaptive servers.
* **samples_cap, cap_weights, secure_samples_cap (weights.py)**: no claimed sample count weighs more than twice the
  round's median claim, in every rule.
* **aggregate_updates, server_step, strategy_config, STRATEGY_NAMES (apply.py)**: dispatch on the
  config, and the presets ``fedavg``, ``fedadam``, ``fedyogi``, ``trimmed_mean``, ``centered_clip``.
"""

from swarmnet.coordinator.strategies.apply import STRATEGY_NAMES, aggregate_updates, server_step, strategy_config
from swarmnet.coordinator.strategies.base import ClientUpdate, ServerState, StrategyConfig, check_updates
from swarmnet.coordinator.strategies.centered_clip import centered_clip
from swarmnet.coordinator.strategies.fedadam import adam_step
from swarmnet.coordinator.strategies.fedavg import sgd_step, weighted_mean
from swarmnet.coordinator.strategies.fedyogi import yogi_step
from swarmnet.coordinator.strategies.trimmed_mean import trimmed_mean
from swarmnet.coordinator.strategies.weights import WEIGHT_CAP_MEDIANS, cap_weights, samples_cap, secure_samples_cap

__all__ = [
    "STRATEGY_NAMES",
    "WEIGHT_CAP_MEDIANS",
    "ClientUpdate",
    "ServerState",
    "StrategyConfig",
    "adam_step",
    "aggregate_updates",
    "cap_weights",
    "centered_clip",
    "check_updates",
    "samples_cap",
    "secure_samples_cap",
    "server_step",
    "sgd_step",
    "strategy_config",
    "trimmed_mean",
    "weighted_mean",
    "yogi_step",
]
