"""The in-memory transport: a whole swarm of in-process peers in one event loop.

* **MemoryNetwork, NetworkStatistics (network.py)**: the swarm: a shared DHT, an RPC fabric with
  seeded loss and delay (``FaultPlan``), and switches to kill peers and partition the swarm.
* **MemoryTransport (transport.py)**: one peer's ``Transport`` on a ``MemoryNetwork``.
* **MemoryDHT (dht.py)**: the DHT's storage, with hivemind's replacement and expiry rules.
* link.py: one direction of an in-memory stream (ordered, delayed, lossy).

``swarmnet.testing`` gathers these with the virtual clock and polling helpers for tests.
"""

from swarmnet.transport.memory.dht import MemoryDHT
from swarmnet.transport.memory.network import MemoryNetwork, NetworkStatistics
from swarmnet.transport.memory.transport import MemoryTransport

__all__ = ["MemoryDHT", "MemoryNetwork", "MemoryTransport", "NetworkStatistics"]
