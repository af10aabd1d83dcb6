"""Large simulations on the in-memory transport, in virtual time.

* **ChurnConfig, ChurnReport, simulate_churn (churn.py)**: peers join, heartbeat, leave or die,
  and an observer checks that the membership it reads matches the ground truth.
"""

from swarmnet.simulation.churn import ChurnConfig, ChurnReport, simulate_churn

__all__ = ["ChurnConfig", "ChurnReport", "simulate_churn"]
