"""ImageNet and ImageNet-LT on a tiny ImageFolder tree of real JPEGs (loaders: test_folders)."""

from __future__ import annotations

import re

import pytest
import torch

from protobench.core.errors import UserError
from protobench.data import DATASETS, Augment, DataRequest
from protobench.data import imagenet as inet
from tests.data import fakefiles

CPU = torch.device("cpu")
SMALL = {"workers": 0, "image_size": 16, "resize": 20}


def _request(tmp_path, **options):
    return DataRequest(data_dir=tmp_path, download=False, options={**SMALL, **options})


def test_imagenet_splits_and_counts(tmp_path, tree):
    ds = DATASETS.get("imagenet").build(_request(tmp_path))
    assert ds.num_classes == 5 and ds.source == str(tree) and ds.class_names == sorted(fakefiles.WNIDS)
    assert ds.class_counts("train").tolist() == [6] * 5
    assert ds.class_counts("test").tolist() == [2] * 5
    assert ds.class_counts("val").tolist() == [0] * 5


def test_validation_held_out_of_train(tmp_path, tree):
    ds = inet.imagenet(_request(tmp_path, val_size=7, data_seed=1))
    assert ds.sizes == {"train": 23, "val": 7, "test": 10}
    train, val = set(ds.samples["train"][0]), set(ds.samples["val"][0])
    assert not train & val and all(p.startswith("train/") for p in val)
    same = inet.imagenet(_request(tmp_path, val_size=7, data_seed=1))
    other = inet.imagenet(_request(tmp_path, val_size=7, data_seed=2))
    assert same.samples["val"] == ds.samples["val"] and other.samples["val"] != ds.samples["val"]
    with pytest.raises(UserError, match="val_size"):
        inet.imagenet(_request(tmp_path, val_size=30))


def test_flat_val_and_missing_tree(tmp_path):
    with pytest.raises(UserError) as info:
        inet.imagenet(_request(tmp_path))
    assert "\n" not in str(info.value) and "train/<wnid>" in str(info.value)
    root = fakefiles.write_imagenet_tree(tmp_path / "imagenet", n_train=1, n_val=1)
    for folder in list((root / "val").iterdir()):  # the validation images as ILSVRC ships them: flat
        for image in folder.iterdir():
            image.rename(root / "val" / image.name)
        folder.rmdir()
    with pytest.raises(UserError, match="val/<wnid>"):
        inet.imagenet(_request(tmp_path))


def test_imagenet_lt_split_files(tmp_path, tree):
    lists = fakefiles.write_imagenet_lt_lists(tree, tmp_path / "lists")
    with pytest.warns(UserWarning, match="ImageNet-LT train has 15 images, not 115,846"):
        ds = DATASETS.get("imagenet-lt").build(_request(tmp_path, **lists))
    assert ds.expected_sizes == {"train": 115_846, "val": 20_000, "test": 50_000}
    assert ds.sizes == {"train": 15, "val": 5, "test": 10} and len(ds.notes) == 3
    assert ds.class_counts("train").tolist() == [5, 4, 3, 2, 1]
    assert ds.class_names == sorted(fakefiles.WNIDS)
    loader = ds.loader("val", batch_size=5, device=CPU, train=False, seed=0, augment=Augment())
    ((images, labels),) = list(loader)
    assert images.shape == (5, 3, 16, 16) and labels.tolist() == [0, 1, 2, 3, 4]


def test_imagenet_lt_errors(tmp_path, tree):
    lists = fakefiles.write_imagenet_lt_lists(tree, tmp_path / "lists")
    with pytest.raises(UserError, match="needs dataset_options val_list"):
        inet.imagenet_lt(_request(tmp_path, train_list=lists["train_list"], test_list=lists["test_list"]))
    bad = tmp_path / "bad.txt"
    bad.write_text("train/n01440764/n01440764_1.JPEG 0\nonly-a-path\n")
    with pytest.raises(UserError, match=re.escape(f"{bad}:2")):
        inet.imagenet_lt(_request(tmp_path, **{**lists, "val_list": str(bad)}))
    with pytest.raises(UserError, match="no folder holds"):
        inet.imagenet_lt(DataRequest(data_dir=tmp_path / "lists", download=False, options=lists))


def test_specs_locate_the_tree_and_mark_imagenet_lt(tmp_path, tree):
    assert DATASETS.get("imagenet").locate(_request(tmp_path)) == tree
    assert DATASETS.get("imagenet").locate(_request(tmp_path / "elsewhere")) is None
    assert DATASETS.get("imagenet-lt").long_tailed and not DATASETS.get("imagenet").long_tailed
    assert "Split files come from the suite" in DATASETS.get("imagenet-lt").how_to_get
