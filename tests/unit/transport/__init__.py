"""Tests of the transports and of the contract every transport meets."""
