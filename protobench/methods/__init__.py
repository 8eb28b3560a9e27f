"""Classifier heads, one module each; importing this package registers them all."""

from protobench.methods import dl2pa, dnc, ebv, etf, hpn, softmax  # noqa: F401  (importing registers)
from protobench.methods.base import METHODS, Method, NotApplicable, create_method, register_method

__all__ = ["METHODS", "Method", "NotApplicable", "create_method", "register_method"]
