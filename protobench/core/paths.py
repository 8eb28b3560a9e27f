"""Where protobench keeps caches and looks for data."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from protobench.core.errors import UserError


def cache_dir() -> Path:
    """The user cache dir: $PROTOBENCH_CACHE, else $XDG_CACHE_HOME/protobench, else ~/.cache/protobench."""
    if env := os.environ.get("PROTOBENCH_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "protobench"


def user_data_dir() -> Path:
    """The per-user data dir inside the cache, where downloads land by default."""
    return cache_dir() / "data"


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` all or nothing: ``write`` fills a temp file in the same folder, which is
    flushed to disk and renamed over ``path``; readers (and a crash) see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: Path, what: str) -> None:
    """Fail before any computation if ``path`` cannot be written; ``what`` names it in the message (``--out``)."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; give a file name")
    if not folder.is_dir():
        raise UserError(f"cannot write {what} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write {what} {path}: permission denied")
