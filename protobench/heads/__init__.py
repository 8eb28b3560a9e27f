"""Heads: the ``nn.Module`` half of every method, one module per method family, each class naming its
card (protobench/methods/). Importing this package imports torch; nothing that only reads cards needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

from protobench.core.errors import UserError
from protobench.heads.base import Method, StepMemo
from protobench.methods import METHODS, MethodCard, head_options


def head_of(card: type[MethodCard]) -> type[Method]:
    """The head class ``card.head`` names, imported now; a UserError naming the method when it names no
    importable head, or a head whose ``card`` is another."""
    module_name, _, class_name = card.head.rpartition(".")
    try:
        head = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise UserError(f"method '{card.name}': its head {card.head!r} cannot be imported: {error}") from None
    if getattr(head, "card", None) is not card:
        raise UserError(f"method '{card.name}': its head {card.head} has card = {getattr(head, 'card', None)!r}, "
                        f"not {card.__module__}.{card.__qualname__}; set it there")  # fmt: skip
    return head


def create_method(
    name: str, num_classes: int, dim: int, *, seed: int = 0, loss_family: str = "balanced", **options: Any
) -> Method:
    """Build method ``name``'s head; ``options`` override its card's documented defaults (unknown ones are
    errors)."""
    head = head_of(METHODS.get(name))
    return head(num_classes, dim, seed=seed, loss_family=loss_family, **head_options(name, options))


__all__ = ["Method", "StepMemo", "create_method", "head_of"]
