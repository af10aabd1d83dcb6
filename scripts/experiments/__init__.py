"""Experiment scripts: each reproduces a published comparison at small scale and writes JSON, a table and a plot."""
