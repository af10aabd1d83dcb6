"""Tests of swarmnet.kernels."""
