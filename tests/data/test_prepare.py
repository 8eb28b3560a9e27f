"""Cell data from DataSettings (no Suite): one hold-out rule for in-memory and streaming datasets."""

from __future__ import annotations

import pytest
import torch

from protobench.core.errors import UserError
from protobench.data import DataRequest, ImageSplit, holdout_indices, prepare
from protobench.data import imagenet as inet
from protobench.data.folders import hold_out_files
from tests.data import fakefiles


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    fakefiles.isolate_data_env(monkeypatch, tmp_path)
    monkeypatch.setattr(prepare, "_LOADED", {})


@pytest.mark.parametrize(("n", "val_size", "seed"), [(30, 7, 1), (30, 29, 0), (257, 64, 12345)])
def test_in_memory_and_streaming_hold_out_the_same_images(n, val_size, seed):
    # Positions as labels: the selection can be read back from either half.
    split = ImageSplit(torch.zeros(n, 1, 1, 1, dtype=torch.uint8), torch.arange(n))
    train, val = prepare.holdout(split, val_size, seed)
    paths = [f"train/{i:04d}.JPEG" for i in range(n)]
    (train_paths, _), (val_paths, _) = hold_out_files(paths, list(range(n)), val_size, seed)
    assert [paths[i] for i in val.labels.tolist()] == val_paths
    assert [paths[i] for i in train.labels.tolist()] == train_paths
    train_index, val_index = holdout_indices(n, val_size, seed)
    assert val.labels.tolist() == val_index.tolist() and train.labels.tolist() == train_index.tolist()


def test_imagenet_and_cifar_pick_by_the_same_rule(tmp_path):
    fakefiles.write_imagenet_tree(tmp_path / "imagenet", n_train=6, n_val=1)
    options = {"workers": 0, "val_size": 7, "data_seed": 3}
    streaming = inet.imagenet(DataRequest(data_dir=tmp_path, download=False, options=options))
    train_paths = sorted(streaming.samples["train"][0] + streaming.samples["val"][0])
    _, val_index = holdout_indices(30, 7, 3)
    assert streaming.samples["val"][0] == [train_paths[i] for i in val_index.tolist()]

    fakefiles.write_cifar10(tmp_path / "c", n_train=30, n_test=10)
    settings = prepare.DataSettings("cifar10", val_size=7, data_seed=3, source="toy.yaml")
    cell = prepare.prepare_cell_data(settings, tmp_path / "c", None, download=False)
    full = prepare.load_dataset(prepare.DataSettings("cifar10"), tmp_path / "c", download=False)
    assert torch.equal(cell.val.images, full.train.images[val_index])
    assert sum(cell.counts["train"]) == 23 and sum(cell.counts["val"]) == 7


def test_settings_name_the_source_in_errors(tmp_path):
    fakefiles.write_imagenet_tree(tmp_path / "imagenet", n_train=2, n_val=1)
    settings = prepare.DataSettings("imagenet", dataset_options={"workers": 0}, source="suites/toy.yaml")
    with pytest.raises(UserError, match="^suites/toy.yaml: imbalance ratios apply to in-memory datasets"):
        prepare.prepare_cell_data(settings, tmp_path, 10.0, download=False)
    counts = prepare.prepare_cell_data(settings, tmp_path, None, download=False).counts
    assert counts == {"train": [2] * 5, "val": [0] * 5, "test": [1] * 5}
    with pytest.raises(UserError, match="val_size 40 must be in 0..29"):
        fakefiles.write_cifar10(tmp_path / "c", n_train=30, n_test=10)
        prepare.prepare_cell_data(prepare.DataSettings("cifar10", val_size=40), tmp_path / "c", None, download=False)


def test_suite_hands_over_its_data_settings(tmp_path):
    from protobench.suite.definition import load_suite

    suite = load_suite("fashion-mnist-lt")
    settings = suite.data_settings
    assert isinstance(settings, prepare.DataSettings)
    assert (settings.dataset, settings.val_size, settings.data_seed) == (suite.dataset, suite.val_size, suite.data_seed)
    assert settings.imbalance_profile == suite.imbalance_profile and settings.source == suite.path
    assert dict(settings.dataset_options) == suite.dataset_options


def test_data_never_imports_suites():
    import pathlib

    import protobench.data

    folder = pathlib.Path(protobench.data.__file__).parent
    for module in folder.glob("*.py"):
        text = module.read_text()
        assert "protobench.suite.definition" not in text and "import suites" not in text, module.name


def test_a_cells_record_data_names_its_classes_where_the_dataset_does(tmp_path):
    fakefiles.write_cifar10(tmp_path / "c", n_train=30, n_test=10)
    cell = prepare.prepare_cell_data(prepare.DataSettings("cifar10"), tmp_path / "c", None, download=False)
    section = cell.record_data()
    assert section["class_names"][0] == "airplane" and len(section["class_names"]) == 10  # from the meta file
    assert section["source"] == cell.source and section["counts"] == cell.counts
    fakefiles.write_imagenet_tree(tmp_path / "imagenet", n_train=2, n_val=1)
    settings = prepare.DataSettings("imagenet", dataset_options={"workers": 0})
    streaming = prepare.prepare_cell_data(settings, tmp_path, None, download=False)
    assert streaming.record_data()["class_names"] == sorted(fakefiles.WNIDS)  # the folders' wnids


def test_a_dataset_without_names_stores_none(tmp_path):
    fakefiles.write_cifar10(tmp_path / "c", n_train=30, n_test=10)
    cell = prepare.prepare_cell_data(prepare.DataSettings("cifar10"), tmp_path / "c", None, download=False)
    cell.dataset.class_names = None  # e.g. a meta file without label names
    assert "class_names" not in cell.record_data() and cell.class_names is None
