"""swarmnet.federated: the federated-LoRA client SDK and what it shares with the coordinator.

* **FederatedClient, ClientConfig (client.py)**: wrap a model (with a ``peft.LoraConfig``), train
  on a private loader, send compressed, signed, optionally masked updates.
* **Connection, TlsSettings (connection.py)**: the gRPC calls and their chunked streams.
* **LocalTrainer (local_training.py)**, **UpdateEncoder (update_encoder.py)**: local steps; DP,
  compression and error feedback on the way out.
* **secagg/**: pairwise-masked secure aggregation with dropout recovery; **secure_update.py**:
  how an update enters the finite field; **secure_round.py**: the client's four phases.
* **privacy.py**: clipping, Gaussian noise and the RDP accountant; **signing.py**: what is signed;
  **vector.py**: adapter tensors <-> flat vectors.
* **quickstart.py**: ``python -m swarmnet.federated.quickstart``, a coordinator and two clients on
  MiniLM end to end (README's client code is its excerpt); needs the ``federated`` extra.
"""

from swarmnet.federated.client import ClientConfig, ClientStatistics, FederatedClient, RoundResult
from swarmnet.federated.connection import Connection, TlsSettings

__all__ = ["ClientConfig", "ClientStatistics", "Connection", "FederatedClient", "RoundResult", "TlsSettings"]
