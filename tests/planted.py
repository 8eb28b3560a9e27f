"""Plant a module file where a registry's discovery finds it (tests only): a temporary folder added to the
package's ``__path__``, so nothing under protobench/ is written and no list is edited. Everything it changes
(the package's path, the registry's entries and failures, ``sys.modules``) is undone when the test ends."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

from protobench.core.registry import Registry


def plant(monkeypatch, folder: Path, package: str, registry: Registry, filename: str, source: str) -> Path:
    """Write ``source`` as ``folder/filename``, make ``folder`` part of ``package`` and run its discovery;
    returns the file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(textwrap.dedent(source))
    module = importlib.import_module(package)
    monkeypatch.setattr(module, "__path__", [*module.__path__, str(folder)])
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(registry, "broken", dict(registry.broken))
    name = f"{package}.{path.stem}"
    monkeypatch.setitem(sys.modules, name, None)  # so that the test's end takes the planted module out again
    del sys.modules[name]
    monkeypatch.setattr(module, path.stem, None, raising=False)
    importlib.invalidate_caches()
    registry.discover(package)
    return path
