"""Where protobench keeps caches and looks for data."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache dir: $PROTOBENCH_CACHE, else $XDG_CACHE_HOME/protobench, else ~/.cache/protobench."""
    if env := os.environ.get("PROTOBENCH_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "protobench"


def user_data_dir() -> Path:
    """The per-user data dir inside the cache, where downloads land by default."""
    return cache_dir() / "data"
