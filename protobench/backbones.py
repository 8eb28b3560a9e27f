"""Backbones: image -> d-dim embedding, for any d in 2..4096. One builder function each, registered by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from protobench.errors import UserError
from protobench.registry import Registry

BackboneBuilder = Callable[..., nn.Module]
BACKBONES: Registry[BackboneBuilder] = Registry("backbone")
register_backbone = BACKBONES.register
#: Each backbone's numerics version where it is not 1: bump a backbone's with any change that moves its
#: numbers (its layers, their initialisation), and re-make the fingerprint in the same commit
#: (docs/engine.md, "Numerics versions").
NUMERICS_VERSIONS: dict[str, int] = {}


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


def conv_bn(cin: int, cout: int, *, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    """3x3 (by default) convolution, BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """A small CNN that is fast on a CPU: a patchify stem, 3x3 conv blocks at that resolution, pooling, fc to d.

    The stem is a ``patch`` x ``patch`` convolution with the same stride (as in ConvMixer), so a 28x28
    image becomes a 7x7 grid at once; the 3x3 blocks then work on 49 positions instead of 784.
    """

    def __init__(self, in_channels: int, dim: int, width: int, depth: int, patch: int) -> None:
        super().__init__()
        stem = [
            nn.Conv2d(in_channels, width, patch, stride=patch, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        blocks = [conv_bn(width, width) for _ in range(depth)]
        self.features = nn.Sequential(*stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@register_backbone("smallcnn")
def smallcnn(in_channels: int, dim: int, width: int = 64, depth: int = 2, patch: int = 4) -> nn.Module:
    """Small CNN for the CPU-scale suites (about 80 k parameters at width 64, depth 2, patch 4)."""
    if width < 1 or depth < 0 or patch < 1:
        raise UserError("backbone 'smallcnn': width and patch must be >= 1 and depth >= 0")
    return SmallCNN(in_channels, dim, width, depth, patch)


class BasicBlock(nn.Module):
    """The ResNet basic block (two 3x3 convs) with a 1x1 projection shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """HPN's ResNet-32: a 3x3 stem, three stages of ``blocks`` basic blocks, global pooling, optional fc to d."""

    def __init__(self, in_channels: int, dim: int, widths: tuple[int, int, int], blocks: int, fc: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(in_channels, widths[0])]
        cin = widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks):
                layers.append(BasicBlock(cin, width, stride=2 if stage > 0 and block == 0 else 1))
                cin = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc: nn.Module = nn.Linear(cin, dim) if fc else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


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
    return CifarResNet(in_channels, dim, (widths[0], widths[1], widths[2]), blocks, fc)


def torchvision_resnet(arch: str, in_channels: int, dim: int, cifar_stem: bool) -> nn.Module:
    """A torchvision ResNet with its classifier replaced by Linear(features, d)."""
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None)
    if cifar_stem:
        # 32x32 inputs: a 3x3 stride-1 stem without max-pooling keeps the spatial resolution.
        model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    model.fc = nn.Linear(model.fc.in_features, dim)
    return model


@register_backbone("resnet18")
def resnet18(in_channels: int, dim: int, cifar_stem: bool = False) -> nn.Module:
    """torchvision ResNet-18 -> Linear(512, d); ``cifar_stem: true`` for 32x32 input."""
    return torchvision_resnet("resnet18", in_channels, dim, cifar_stem)


@register_backbone("resnet50")
def resnet50(in_channels: int, dim: int, cifar_stem: bool = False) -> nn.Module:
    """torchvision ResNet-50 -> Linear(2048, d) (the ImageNet recipe's d = 512); ``cifar_stem`` for 32x32 input."""
    return torchvision_resnet("resnet50", in_channels, dim, cifar_stem)
