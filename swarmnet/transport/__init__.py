"""Transports: how a peer reaches the DHT and other peers.

* **Transport, StoredValue, TransportLimits (base.py)**: the interface the protocol core uses.
* **MemoryNetwork, MemoryTransport, FaultPlan (memory/, faults.py)**: in-process peers with a
  virtual clock and seeded faults, for protocol tests and simulations of thousands of peers.
* **HivemindTransport, HivemindConfig (hivemind_transport.py)**: the real one, over hivemind's
  Kademlia DHT and its go-libp2p daemon. Imported lazily: it pulls in hivemind and torch.
"""

from swarmnet.transport.base import StoredValue, StreamHandler, Transport, TransportLimits, UnaryHandler
from swarmnet.transport.faults import FaultPlan
from swarmnet.transport.memory import MemoryNetwork, MemoryTransport

__all__ = [
    "FaultPlan",
    "MemoryNetwork",
    "MemoryTransport",
    "StoredValue",
    "StreamHandler",
    "Transport",
    "TransportLimits",
    "UnaryHandler",
]
