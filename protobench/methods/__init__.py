"""Method cards, one module per method family; importing this package imports (and so registers) every
module in it, and imports no torch.

A new method is a card here with a ``@register_method("name", head="module.Class")`` class and its head
in protobench/heads/ (docs/adding-a-method.md): modules are imported in sorted order, which is the order
``protobench methods`` lists them in. A module that fails to import is left out with one warning line
(``Registry.discover`` in protobench/core/registry.py).
"""

from protobench.methods.card import (
    LOSS_FAMILIES,
    METHODS,
    MethodCard,
    NotApplicable,
    OptionRange,
    check_loss_family,
    check_options,
    head_options,
    prototype_request,
    register_method,
    resolved_options,
)

METHODS.discover(__name__)

__all__ = [
    "LOSS_FAMILIES",
    "METHODS",
    "MethodCard",
    "NotApplicable",
    "OptionRange",
    "check_loss_family",
    "check_options",
    "head_options",
    "prototype_request",
    "register_method",
    "resolved_options",
]
