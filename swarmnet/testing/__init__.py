"""swarmnet.testing: test your code against an in-memory swarm, in virtual time.

* **MemoryNetwork, MemoryTransport, NetworkStatistics (swarmnet.transport.memory)**: a swarm of
  in-process peers sharing one DHT, with switches to kill peers and partition the swarm
* **FaultPlan (swarmnet.transport.faults)**: seeded message loss and one-way delay
* **run_virtual, VirtualTimeLoop, LoopClock (swarmnet.clock)**: an event loop whose clock jumps
  to the next timer, so an hour of heartbeats costs only the work it contains
* **poll_until, apoll_until (poll.py)**: wait for a condition with a deadline, never a guessed sleep
* **ChurnConfig, ChurnReport, simulate_churn (churn.py)**: thousands of peers join and leave while
  an observer checks the membership it reads against the ground truth
* **simulated_entries, simulated_peer_id, FEDERATED_RUN (simulated_telemetry.py)**: a simulated
  swarm's telemetry reports, for testing a consumer of telemetry without a network

Example (docs/testing.md has more)::

    from swarmnet.testing import FaultPlan, MemoryNetwork, apoll_until, run_virtual

    async def main() -> None:
        network = MemoryNetwork(faults=FaultPlan(seed=1, drop_rate=0.1, max_delay=0.05))
        alice, bob = network.add_peer(), network.add_peer()
        expires = network.clock.time() + 60
        await apoll_until(lambda: alice.store("greeting", b"hi", expires), timeout=30, what="a stored value")
        found = await apoll_until(lambda: bob.get("greeting"), timeout=30, what="bob reading the value")
        assert found[None].value == b"hi"

    run_virtual(main())
"""

from swarmnet.clock import LoopClock, VirtualTimeLoop, run_virtual
from swarmnet.testing.churn import ChurnConfig, ChurnReport, simulate_churn
from swarmnet.testing.poll import apoll_until, poll_until
from swarmnet.testing.simulated_telemetry import FEDERATED_RUN, simulated_entries, simulated_peer_id
from swarmnet.transport.faults import FaultPlan
from swarmnet.transport.memory import MemoryNetwork, MemoryTransport, NetworkStatistics

__all__ = [
    "FEDERATED_RUN",
    "ChurnConfig",
    "ChurnReport",
    "FaultPlan",
    "LoopClock",
    "MemoryNetwork",
    "MemoryTransport",
    "NetworkStatistics",
    "VirtualTimeLoop",
    "apoll_until",
    "poll_until",
    "run_virtual",
    "simulate_churn",
    "simulated_entries",
    "simulated_peer_id",
]
