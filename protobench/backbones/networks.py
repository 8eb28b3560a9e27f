"""The backbones' networks (``nn.Module`` classes and the torchvision wrapper); the builders registered in
:mod:`protobench.backbones` check their options and build these."""

from __future__ import annotations

import torch
from torch import nn


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
