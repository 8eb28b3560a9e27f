"""ImageNet-200: preparation from a tiny ImageNet tree of real JPEGs, and loading the prepared file."""

from __future__ import annotations

import re

import pytest
import torch

from protobench.core.errors import UserError
from protobench.data import DATASETS, DataRequest
from protobench.data import imagenet200 as i200
from tests.data import fakefiles


def test_prepare_imagenet200_and_load(tmp_path, tree):
    chosen = [fakefiles.WNIDS[3], fakefiles.WNIDS[0], fakefiles.WNIDS[2]]
    classes = fakefiles.write_classes_file(tmp_path / "classes.txt", chosen)
    out = i200.prepare_imagenet200(tree, tmp_path / "prepared", classes, size=16, workers=2)
    assert out == tmp_path / "prepared" / "imagenet200_16.pt"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # written atomically: no temp file left
    request = DataRequest(data_dir=out.parent, download=False, options={"image_size": 16})
    assert DATASETS.get("imagenet200").locate(request) == out
    ds = DATASETS.get("imagenet200").build(request)
    assert ds.num_classes == 3 and ds.class_names == chosen and ds.source == str(out)
    assert ds.train.images.shape == (18, 3, 16, 16) and ds.train.images.dtype == torch.uint8
    assert ds.test.images.shape == (6, 3, 16, 16)
    assert ds.train.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6  # labels follow the classes file
    # The greyscale JPEG of the first wnid became three equal channels.
    grey = ds.train.images[6]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_prepare_errors_and_missing_file(tmp_path, tree):
    classes = fakefiles.write_classes_file(tmp_path / "classes.txt", ["n99999999"])
    with pytest.raises(UserError, match="n99999999"):
        i200.prepare_imagenet200(tree, tmp_path / "out", classes, workers=0)
    assert DATASETS.get("imagenet200").locate(DataRequest(data_dir=tmp_path, download=False)) is None
    with pytest.raises(UserError, match="protobench data prepare imagenet200 --imagenet DIR"):
        i200.imagenet200(DataRequest(data_dir=tmp_path, download=False))
    (tmp_path / "imagenet200_64.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a prepared ImageNet-200 file"):
        i200.imagenet200(DataRequest(data_dir=tmp_path, download=False))


def test_shipped_class_list_is_tiny_imagenet():
    wnids = i200.read_classes_file(i200.DEFAULT_CLASSES_FILE)
    assert len(wnids) == 200 and all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert wnids[:3] == ["n02124075", "n04067472", "n04540053"] and "n01443537" in wnids
