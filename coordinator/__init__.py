"""swarmnet.coordinator: the federated round service (gRPC), aggregation strategies and the monitor.

The service arrives with the federated-LoRA issue, the web monitor with the monitoring issue.
"""

__all__: list[str] = []
