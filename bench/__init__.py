"""Benchmarks: `make bench` (bench/runner.py), `make bench-stock`, `make bench-plot`."""
