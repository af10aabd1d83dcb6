"""swarmnet.coordinator: the federated round service (gRPC), aggregation strategies and the monitor."""

__all__: list[str] = []
