"""swarmnet.coordinator: the federated round service (gRPC), its aggregation strategies and the monitor.

* **server.py**: ``CoordinatorServer``, the gRPC server and the round engine on one asyncio loop
* **rpc.py**: the gRPC surface: raw bytes in, parsed and guarded calls to the servicer, statuses out
* **service.py**: the servicer: authentication, field and stream bounds, in front of the round engine
* **rounds.py**: ``RoundEngine``, the loop that waits for clients, samples, opens, gathers and closes rounds
* **rounds_signal.py**: the engine's condition variable and stop flag, shared by every wait
* **rounds_open.py**: the draw, the round's config and a secure round's coordinates
* **rounds_config.py**: the ``RoundConfig`` sent with each task
* **rounds_phases.py**: gathering a round's updates, plainly or through the secure phases
* **rounds_close.py**: a round's aggregate, its history record and the state saved after it
* **rounds_requests.py**: the clients' long polls, updates and secure-aggregation messages
* **open_round.py**: one open round and the checks every submitted update passes
* **secagg_round.py**: the coordinator's side of one securely aggregated round
* **secagg_unmask.py**: the secure-aggregation threshold, and removing the masks from the sum
* **aggregation.py**: a closed round's accepted updates into the next global adapter
* **finite.py**: only finite state becomes the global adapter
* **sampling.py**: who takes part in a round
* **registry.py**: registered clients: key-possession proof, session tokens, liveness
* **sessions.py**: the session tokens a registered client shows on every call
* **revocations.py**: the operator's revocation list
* **replay.py**: registration nonces accepted, kept on disk while a replay could work
* **request_limits.py**: bounds on every request field
* **concurrency.py**: caps on the calls a client (or everyone together) may have open at once
* **rejection.py**: ``Rejected``, a refused request with the gRPC status the client gets
* **config.py**: the coordinator's settings, one frozen dataclass per concern
* **store.py**: the durable state: global adapter, strategy state, history, registry, secret
* **journal.py**: an append-only JSON-lines file, compacted now and then
* **atomic.py**: atomic file replacement in the state directory
* **history.py**: ``RoundRecord``, what happened in each round
* **telemetry.py**: the coordinator's round status as telemetry for the swarm monitor
* **strategies/**: federated aggregation and server optimizers as plain functions
* **monitor/**: the swarm monitoring web page, its JSON API and Prometheus metrics
"""

__all__: list[str] = []
