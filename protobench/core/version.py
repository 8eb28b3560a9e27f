"""protobench's version: one place, read by the records, ``--version`` and the package's metadata."""

__version__ = "0.1.0"
