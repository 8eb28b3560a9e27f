"""Micro-benchmarks of protobench's building blocks: ``python -m protobench.bench NAME``."""
