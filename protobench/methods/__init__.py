"""Classifier heads, one module each; importing this package imports (and so registers) every module in it.

A new head is one file here with a ``@register_method("name")`` class (docs/engine.md, "The method contract"):
modules are imported in sorted order, which is the order ``protobench methods`` lists them in.
"""

import importlib
import pkgutil

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

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

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
