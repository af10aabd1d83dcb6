"""swarmnet.peers: the volunteer peer daemon.

* **probe_resources, ResourceReport (probe.py)**: what this machine has and how fast it computes.
* **DaemonConfig, run_daemon (daemon.py)**: the peer lifecycle: probe, join, heartbeat, leave.
* **serve_link_probe, measure_upload_mbps (link_probe.py)**: upload bandwidth measured against a peer.
"""
