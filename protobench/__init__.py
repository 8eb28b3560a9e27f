"""protobench: benchmark hyperspherical prototype classifiers (DL2PA and its baselines).

``import protobench as pb`` gives the Python API (docs/api.md): ``pb.load_results``, ``pb.report``,
``pb.compare`` and ``pb.export``, imported on first use so that importing the package stays instant.
"""

from __future__ import annotations

from typing import Any

from protobench.core.version import __version__

__all__ = ["__version__", "compare", "export", "load_results", "report"]
#: The API's functions, found in protobench/api.py on first use.
API = ("compare", "export", "load_results", "report")


def __getattr__(name: str) -> Any:
    if name in API:
        from protobench import api

        return getattr(api, name)
    raise AttributeError(f"module 'protobench' has no attribute '{name}'")
