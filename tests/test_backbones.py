import pytest
import torch

from protobench.backbones import BACKBONES, create_backbone
from protobench.errors import UserError


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
