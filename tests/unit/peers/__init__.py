"""Tests of swarmnet.peers."""
