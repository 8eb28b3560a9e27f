import inspect

import pytest
import torch

from protobench import backbones
from protobench.backbones import BACKBONES, create_backbone
from protobench.core.errors import UserError
from tests.fresh import run_fresh


@pytest.mark.parametrize("dim", [2, 512])
@pytest.mark.parametrize(("name", "channels", "side", "options"), [
    ("smallcnn", 1, 28, {}),
    ("resnet32", 3, 32, {}),
    ("resnet18", 3, 32, {"cifar_stem": True}),
])  # fmt: skip
def test_embedding_has_dim(name, channels, side, options, dim):
    model = create_backbone(name, in_channels=channels, dim=dim, **options).eval()
    with torch.no_grad():
        assert model(torch.randn(2, channels, side, side)).shape == (2, dim)


def test_resnet32_is_hpns():
    model = create_backbone("resnet32", in_channels=3, dim=64)
    blocks = [m for m in model.modules() if type(m).__name__ == "BasicBlock"]
    assert len(blocks) == 15  # 5 a stage, 3 stages: 1 + 30 + 1 = 32 layers
    assert 0.45e6 < sum(p.numel() for p in model.parameters()) < 0.48e6  # HPN's 0.46 M


def test_feature_extractor_needs_last_width():
    model = create_backbone("resnet32", in_channels=3, dim=128, widths=[32, 64, 128], fc=False)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 128)
    with pytest.raises(UserError, match="embeds in d = 64 .* not d = 16"):
        create_backbone("resnet32", in_channels=3, dim=16, fc=False)


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="backbone 'smallcnn': bad option"):
        create_backbone("smallcnn", in_channels=1, dim=4, colour=3)
    with pytest.raises(UserError, match="unknown backbone 'resnet33'"):
        create_backbone("resnet33", in_channels=3, dim=4)
    assert BACKBONES.names() == ["smallcnn", "resnet32", "resnet18", "resnet50"]


def test_registry_needs_no_torch():
    # Read-only commands list the backbones and read their numerics versions without torch
    # (protobench/backbones/__init__.py).
    printed, heavy = run_fresh(
        "from protobench.backbones import BACKBONES, numerics_version\n"
        "print(BACKBONES.names(), 'resnet32' in BACKBONES, [numerics_version(b) for b in BACKBONES.names()])"
    )
    assert heavy == [] and printed[0] == "['smallcnn', 'resnet32', 'resnet18', 'resnet50'] True [1, 1, 1, 1]"


def test_builders_keep_their_signatures_and_networks_resolve():
    # The builders' parameters and defaults are part of a record's identity: they must not move.
    signatures = {name: str(inspect.signature(BACKBONES.get(name))) for name in BACKBONES.names()}
    assert signatures == {
        "smallcnn": "(in_channels: 'int', dim: 'int', width: 'int' = 64, depth: 'int' = 2, patch: 'int' = 4)"
        " -> 'nn.Module'",
        "resnet32": "(in_channels: 'int', dim: 'int', widths: 'list[int] | tuple[int, ...]' = (16, 32, 64),"
        " blocks: 'int' = 5, fc: 'bool' = True) -> 'nn.Module'",
        "resnet18": "(in_channels: 'int', dim: 'int', cifar_stem: 'bool' = False) -> 'nn.Module'",
        "resnet50": "(in_channels: 'int', dim: 'int', cifar_stem: 'bool' = False) -> 'nn.Module'",
    }
    from protobench.backbones.networks import SmallCNN

    assert backbones.SmallCNN is SmallCNN and isinstance(create_backbone("smallcnn", in_channels=1, dim=2), SmallCNN)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        backbones.nothing  # noqa: B018
