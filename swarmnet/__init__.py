"""swarmnet: train and serve models on a DHT-coordinated swarm of volunteer machines.

Modules of the protocol core (class to file):

* **Identity (identity.py)**: a peer's Ed25519 key and the peer id derived from it.
* **Record, RecordVerifier (records.py)**: signed, typed, versioned DHT values.
* **KeyFamily, family_of (keyspace.py)**: the DHT keys the protocol uses and the kind, size and
  lifetime bounds of their records, which storage nodes and readers enforce.
* **Transport (transport/)**: DHT and RPC, real (hivemind) or in-memory.
* **Swarm, PeerInfo (membership.py)**: announcing this peer and listing live ones.
* **errors.py**: the exception hierarchy; **clock.py**: wall and virtual time.

* **hardware.py**: what a peer's machine offers; **units.py**: human-readable quantities.
* **proto/**: the federated wire protocol; **testing/**: the public in-memory swarm kit.

Subpackages linked in from the other top-level folders: ``swarmnet.peers`` (the volunteer
daemon), ``swarmnet.compression``, ``swarmnet.kernels``, ``swarmnet.coordinator``. Imports point
down: kernels <- compression <- this core <- peers, coordinator <- cli (docs/architecture.md).
"""

from swarmnet.version import PROTOCOL_VERSION, __version__

__all__ = ["PROTOCOL_VERSION", "__version__"]
