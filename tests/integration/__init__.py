"""Tests across processes and real transports."""
