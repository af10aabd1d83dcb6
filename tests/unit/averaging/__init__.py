"""Tests of swarmnet.averaging."""
