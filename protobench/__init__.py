"""protobench: benchmark hyperspherical prototype classifiers (DL2PA and its baselines)."""

__version__ = "0.1.0"
