"""Backbones: image -> d-dim embedding, for any d in 2..4096. One builder function each, registered by name.

This module holds the registry, the numerics versions and the builders, and imports no torch, so the
read-only commands can list and check backbones without it; a builder checks its options, then imports
its network from :mod:`protobench.backbones.networks` (the ``nn.Module`` classes) when it is called.
The classes and helpers of that module can also be imported from here (``__getattr__`` below).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from protobench.core.errors import UserError
from protobench.core.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    # Re-exported for type checkers; at run time __getattr__ below finds them.
    from protobench.backbones.networks import BasicBlock as BasicBlock
    from protobench.backbones.networks import CifarResNet as CifarResNet
    from protobench.backbones.networks import SmallCNN as SmallCNN
    from protobench.backbones.networks import conv_bn as conv_bn
    from protobench.backbones.networks import torchvision_resnet as torchvision_resnet

BackboneBuilder = Callable[..., "nn.Module"]
BACKBONES: Registry[BackboneBuilder] = Registry("backbone")
register_backbone = BACKBONES.register
#: Each backbone's numerics version where it is not 1: bump a backbone's with any change that moves its
#: numbers (its layers, their initialisation), and re-make the fingerprint in the same commit
#: (docs/engine.md, "Numerics versions").
NUMERICS_VERSIONS: dict[str, int] = {}
#: The names defined in protobench/backbones/networks.py (torch), found there on first use.
NETWORK_NAMES = ("BasicBlock", "CifarResNet", "SmallCNN", "conv_bn", "torchvision_resnet")


def __getattr__(name: str) -> Any:
    if name in NETWORK_NAMES:
        return getattr(importlib.import_module("protobench.backbones.networks"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *NETWORK_NAMES})


def numerics_version(name: str) -> int:
    """Backbone ``name``'s numerics version."""
    return NUMERICS_VERSIONS.get(name, 1)


def create_backbone(name: str, *, in_channels: int, dim: int, **options: Any) -> nn.Module:
    """Build backbone ``name`` ending in a ``dim``-dim embedding; options left out keep the builder's defaults."""
    builder = BACKBONES.get(name)
    try:
        return builder(in_channels=in_channels, dim=dim, **options)
    except TypeError as error:
        raise UserError(f"backbone '{name}': bad option ({error}); see its docstring for the allowed ones") from None


@register_backbone("smallcnn")
def smallcnn(in_channels: int, dim: int, width: int = 64, depth: int = 2, patch: int = 4) -> nn.Module:
    """Small CNN for the CPU-scale suites (about 80 k parameters at width 64, depth 2, patch 4)."""
    if width < 1 or depth < 0 or patch < 1:
        raise UserError("backbone 'smallcnn': width and patch must be >= 1 and depth >= 0")
    from protobench.backbones.networks import SmallCNN

    return SmallCNN(in_channels, dim, width, depth, patch)


@register_backbone("resnet32")
def resnet32(
    in_channels: int,
    dim: int,
    widths: list[int] | tuple[int, ...] = (16, 32, 64),
    blocks: int = 5,
    fc: bool = True,
) -> nn.Module:
    """HPN's ResNet-32 (widths 16/32/64, 5 blocks a stage, fc 64 -> d; 0.46 M parameters).

    ``fc: false`` is the long-tailed recipes' feature extractor: the embedding is the pooled last
    stage, so d must equal the last width (64 for CIFAR-10-LT, 128 for CIFAR-100-LT at widths 32/64/128).
    """
    if len(widths) != 3:
        raise UserError("backbone 'resnet32': widths needs three numbers, e.g. [16, 32, 64]")
    if not fc and dim != widths[-1]:
        raise UserError(
            f"backbone 'resnet32' with fc: false embeds in d = {widths[-1]} (its last width), not d = {dim}"
        )
    from protobench.backbones.networks import CifarResNet

    return CifarResNet(in_channels, dim, (widths[0], widths[1], widths[2]), blocks, fc)


@register_backbone("resnet18")
def resnet18(in_channels: int, dim: int, cifar_stem: bool = False) -> nn.Module:
    """torchvision ResNet-18 -> Linear(512, d); ``cifar_stem: true`` for 32x32 input."""
    from protobench.backbones.networks import torchvision_resnet

    return torchvision_resnet("resnet18", in_channels, dim, cifar_stem)


@register_backbone("resnet50")
def resnet50(in_channels: int, dim: int, cifar_stem: bool = False) -> nn.Module:
    """torchvision ResNet-50 -> Linear(2048, d) (the ImageNet recipe's d = 512); ``cifar_stem`` for 32x32 input."""
    from protobench.backbones.networks import torchvision_resnet

    return torchvision_resnet("resnet50", in_channels, dim, cifar_stem)
