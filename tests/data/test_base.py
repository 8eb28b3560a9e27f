"""The dataset registry (one DatasetSpec per dataset) and the shared validation hold-out rule."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from protobench.core.errors import UserError
from protobench.data import DATASETS, DataRequest, DatasetSpec, holdout_indices, register_dataset
from tests.data import fakefiles
from tests.fresh import run_fresh

EXPECTED = {"cifar10", "cifar100", "fashion-mnist", "svhn", "stl10", "imagenet", "imagenet-lt", "imagenet200"}


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    fakefiles.isolate_data_env(monkeypatch, tmp_path)


def test_dataset_metadata_needs_no_torch():
    # Read-only commands (names, num_classes, image_shape...) import the package and every dataset module:
    # none of them may import torch, torchvision or PIL at the top (the docstring of protobench/data/__init__.py).
    printed, heavy = run_fresh(
        "import protobench.data as d, protobench.data.prepare as p, protobench.data.longtail as lt\n"
        "specs = [d.DATASETS.get(n) for n in d.DATASETS.names()]\n"
        "print(len(specs), sum(s.num_classes for s in specs), p.NUMERICS_VERSION, lt.index_range_groups(10)['few'])"
    )
    assert heavy == [] and printed[0].startswith(f"{len(EXPECTED)} ")


def test_every_dataset_describes_itself(tmp_path):
    assert set(DATASETS.names()) == EXPECTED
    empty = DataRequest(data_dir=tmp_path, download=False)
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        assert isinstance(spec, DatasetSpec) and spec.name == name
        assert callable(spec.build) and callable(spec.locate) and spec.how_to_get.strip()
        assert spec.num_classes > 0 and len(spec.image_shape) == 3 and all(s > 0 for s in spec.image_shape)
        assert spec.verify is None or callable(spec.verify)
        if name != "fashion-mnist":  # Fashion-MNIST also searches the system folder
            assert spec.locate(empty) is None, name
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS.get("cifar10").num_classes = 3  # type: ignore[misc]
    assert [n for n in DATASETS.names() if DATASETS.get(n).verify] == ["cifar10", "cifar100", "stl10", "svhn"]
    assert [n for n in DATASETS.names() if DATASETS.get(n).long_tailed] == ["imagenet-lt"]
    # Names in code only where the dataset defines them there; the others' come from their files.
    assert [n for n in DATASETS.names() if DATASETS.get(n).class_names] == ["fashion-mnist", "svhn"]
    assert DATASETS.get("fashion-mnist").class_names[:2] == ("T-shirt/top", "Trouser")


def test_spec_agrees_with_what_it_builds(tmp_path):
    folder = fakefiles.write_cifar10(tmp_path / "d", n_train=10, n_test=10)
    request = DataRequest(data_dir=tmp_path / "d", download=False)
    spec = DATASETS.get("cifar10")
    assert spec.locate(request) == folder
    ds = spec.build(request)
    assert ds.num_classes == spec.num_classes and tuple(ds.train.images.shape[1:]) == spec.image_shape
    assert len(spec.verify(request)) == 7


def test_register_dataset_returns_the_builder_and_rejects_twice():
    def build(request: DataRequest):
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="registered twice"):
        register_dataset("cifar10", num_classes=10, image_shape=(3, 32, 32), locate=lambda r: None, how_to_get="x")(
            build
        )
    with pytest.raises(ValueError, match="names 2 classes but has 3"):
        register_dataset(
            "toy-names", num_classes=3, image_shape=(1, 2, 2), locate=lambda r: None, how_to_get="x", class_names="ab"
        )(build)
    assert "toy-names" not in DATASETS


def test_holdout_indices_is_the_seeded_permutation():
    train, val = holdout_indices(10, 3, 0)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert val.tolist() == sorted(order[:3].tolist()) and train.tolist() == sorted(order[3:].tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(10))
    assert torch.equal(holdout_indices(10, 3, 0)[1], val) and not torch.equal(holdout_indices(10, 3, 1)[1], val)
    assert holdout_indices(4, 0, 0)[1].numel() == 0
    for bad in (10, 11, -1):
        with pytest.raises(UserError, match=f"val_size {bad} must be in 0..9"):
            holdout_indices(10, bad, 0)
