"""swarmnet.coordinator.monitor: the swarm monitoring web page."""
