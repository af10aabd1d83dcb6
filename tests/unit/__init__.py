"""Unit tests: fast, in-process, no network."""
