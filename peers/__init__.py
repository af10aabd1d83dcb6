"""swarmnet.peers: the volunteer peer daemon.

* **DaemonConfig, run_daemon (daemon.py)**: the peer lifecycle: probe, join, heartbeat, leave.
* **serve_link_probe, measure_upload_mbps (link_probe.py)**: upload bandwidth measured against a peer.
* **PeerTelemetry (telemetry.py)**: what a running peer reports as telemetry.
* **TrainerRoleConfig, run_trainer (trainer_role.py)**: the ``trainer`` role: a DiLoCo replica trained on the swarm.
* **save, restore (trainer_checkpoints.py)**: a trainer's replica in and out of checkpoints.
* **ProgressDisplay (trainer_progress.py)**: how a trainer shows progress: a progress bar, log lines or JSON lines.

What a peer's machine has and how fast it computes is probed by ``swarmnet.hardware``.
"""
