"""Benchmarks behind ``tools/benchmark.py``: each prints a table and writes it under ``docs/``."""
