"""Classifier heads, one module each; importing this package imports (and so registers) every module in it.

A new head is one file here with a ``@register_method("name")`` class (docs/engine.md, "The method contract"):
modules are imported in sorted order, which is the order ``protobench methods`` lists them in. A module that
fails to import is left out with one warning line (``Registry.discover`` in protobench/registry.py).
"""

from protobench.methods.base import (
    METHODS,
    Method,
    NotApplicable,
    StepMemo,
    check_options,
    create_method,
    head_options,
    prototype_request,
    register_method,
    resolved_options,
)

METHODS.discover(__name__)

__all__ = [
    "METHODS",
    "Method",
    "NotApplicable",
    "StepMemo",
    "check_options",
    "create_method",
    "head_options",
    "prototype_request",
    "register_method",
    "resolved_options",
]
