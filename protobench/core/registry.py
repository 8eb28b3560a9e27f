"""A small named registry (timm's register/create idea) for methods, backbones and datasets, and the
discovery that fills the method and dataset registries from their packages' modules (docs/engine.md,
docs/adding-a-dataset.md): every module in the package's folder is imported, none is listed by hand, and a
module that fails to import costs only its own entries, with one warning line naming its file and error."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from protobench.core.errors import UserError, did_you_mean

T = TypeVar("T")


#: ``register_method("name"`` / ``register_dataset("name"``: the names a module that failed to import meant to register.
REGISTER_CALL = re.compile(r"""\bregister_\w+\(\s*["']([^"']+)["']""")


@dataclass(frozen=True)
class BrokenModule:
    """A module that discovery could not import: its file, the line of the failure and the error."""

    file: str
    line: int | None
    error: str
    names: frozenset[str]

    def describe(self) -> str:
        """``protobench/methods/x.py line 12: SyntaxError: invalid syntax``."""
        where = self.file if self.line is None else f"{self.file} line {self.line}"
        return f"{where}: {self.error}"


def shown_path(path: Path) -> str:
    """``path`` relative to the working folder when it lies below it, else as it is."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def broken_module(path: Path, error: BaseException) -> BrokenModule:
    """What ``error``, raised while importing the module at ``path``, says in one line, and where."""
    line = None
    if isinstance(error, SyntaxError) and error.filename and Path(error.filename) == path:
        line, text = error.lineno, f"{type(error).__name__}: {error.msg}"
    else:
        text = f"{type(error).__name__}: {' '.join(str(error).split()) or '(no message)'}"
        if isinstance(error, SyntaxError):  # in a module this one imports
            inner = shown_path(Path(str(error.filename)))
            text = f"{type(error).__name__}: {error.msg} (in {inner} line {error.lineno})"
        frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename and Path(f.filename) == path]
        line = frames[-1].lineno if frames else None
    try:
        source = path.read_text(errors="replace")
    except OSError:
        source = ""
    names = {*REGISTER_CALL.findall(source), path.stem.replace("_", "-"), path.stem}
    return BrokenModule(shown_path(path), line, text, frozenset(names))


class Registry(Generic[T]):
    """Maps names to builders; rejects duplicates and answers unknown names with the allowed ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        #: Modules that ``discover`` could not import, by module name.
        self.broken: dict[str, BrokenModule] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The entry called ``name``; a UserError listing the allowed names if there is none."""
        if name not in self._entries:
            raise UserError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str, allowed: list[str] | None = None) -> str:
        """One line: the unknown name, the allowed names (``allowed``, or the registered ones) and the closest
        match; a name that a module which failed to import registers is answered with that module's file and
        error instead."""
        if (unavailable := self.unavailable(name)) is not None:
            return unavailable
        allowed = self.names() if allowed is None else allowed
        message = f"unknown {self.kind} '{name}'{did_you_mean(name, allowed)}; allowed: {', '.join(allowed)}"
        if self.broken:
            files = ", ".join(b.file for b in self.broken.values())
            message += f" (not imported, so not searched: {files})"
        return message

    def unavailable(self, name: str) -> str | None:
        """``method 'x' is unavailable: FILE line N: ERROR`` when ``name`` is one that a module which failed to
        import registers (by its ``register_*("name"`` calls or its file name), else None."""
        for broken in self.broken.values():
            if name in broken.names:
                return f"{self.kind} '{name}' is unavailable: {broken.describe()}"
        return None

    def discover(self, package: str) -> None:
        """Import every module of the (already importing) ``package`` not imported yet, in file-name order
        per folder of its ``__path__``, so that each registers its entries. A module that raises while it
        is imported is left out: one line on stderr names its file, the line and the error, and asking
        for a name it registers says the same (``unknown_message``)."""
        for info in pkgutil.iter_modules(sys.modules[package].__path__):
            module = f"{package}.{info.name}"
            if module in sys.modules or module in self.broken:
                continue
            try:
                importlib.import_module(module)
            except Exception as error:  # any failure at import costs only this module
                folder = Path(getattr(info.module_finder, "path", "."))
                path = folder / info.name / "__init__.py" if info.ispkg else folder / f"{info.name}.py"
                self.broken[module] = broken = broken_module(path, error)
                print(f"warning: {broken.describe()}; its {self.kind}s are unavailable", file=sys.stderr)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
