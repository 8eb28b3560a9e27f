"""Plain YAML values checked against type hints: the typed conversion behind suite files.

Every error is a ``UserError`` naming where the value came from (file and key) and what is allowed.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from protobench.core.errors import UserError, did_you_mean


def convert(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` and convert lists to tuples; ``where`` names it in errors."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(value, arg, where)
            except UserError as error:
                errors.append(str(error))
        raise UserError(errors[0])
    if origin is tuple:
        if not isinstance(value, list | tuple):
            value = [value]  # a single value where a list is expected: `dims: 16`
        item = args[0]
        return tuple(convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping, got {value!r}")
        key_type, value_type = args
        return {str(k): convert(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            # PyYAML reads `5e-4` (no dot) as a string; accept what float() accepts.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported type {hint}")


def check_keys(data: dict[str, Any], allowed: list[str], what: str) -> None:
    """A UserError ``{what} 'k' (did you mean ...); allowed: ...`` for the first key not ``allowed``."""
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise UserError(f"{what} '{unknown[0]}'{did_you_mean(unknown[0], allowed)}; allowed: {', '.join(allowed)}")


def check_choice(value: str, allowed: tuple[str, ...] | list[str], where: str) -> None:
    """A UserError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise UserError(f"{where} is '{value}'; allowed: {', '.join(allowed)}")
