"""The federated wire protocol (package ``swarmnet.federated.v1``): the contract the client SDK and the
coordinator both import, and any other client implements from ``PROTOCOL.md``."""
