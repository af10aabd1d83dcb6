"""Tests of swarmnet.compression."""
