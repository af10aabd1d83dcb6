"""swarmnet's test suite."""
