"""STL-10 builder on torchvision's binary layout (column-major 3x96x96 images, labels 1..10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protobench.core.errors import UserError
from protobench.data import DATASETS, DataRequest, stl10
from tests.data import fakefiles


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    fakefiles.isolate_data_env(monkeypatch, tmp_path)


def test_reads_labelled_splits(tmp_path):
    folder = fakefiles.write_stl10(tmp_path, n_train=20, n_test=10)
    ds = DATASETS.get("stl10").build(DataRequest(data_dir=tmp_path, download=False))
    assert ds.source == str(folder) and ds.class_names[0] == "airplane"
    assert ds.train.images.shape == (20, 3, 96, 96) and ds.train.images.dtype == torch.uint8
    assert ds.test.images.shape == (10, 3, 96, 96)
    assert ds.train.labels.tolist() == [i % 10 for i in range(20)]
    # The file holds each channel column-major: byte (n, c, w, h) is pixel (row h, column w).
    raw = np.fromfile(folder / "train_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96)
    assert int(ds.train.images[3, 1, 10, 50]) == int(raw[3, 1, 50, 10])


def test_matches_torchvision_reader(tmp_path):
    from torchvision.datasets import STL10

    fakefiles.write_stl10(tmp_path, n_train=10, n_test=10)
    ours = stl10.stl10(DataRequest(data_dir=tmp_path, download=False))
    theirs = STL10.__new__(STL10)
    theirs.root, theirs.base_folder = str(tmp_path), "stl10_binary"
    images, labels = theirs._STL10__loadfile("train_X.bin", "train_y.bin")
    assert np.array_equal(ours.train.images.numpy(), images)
    assert ours.train.labels.tolist() == labels.tolist()


def test_truncated_images_and_label_mismatch(tmp_path):
    folder = fakefiles.write_stl10(tmp_path, n_train=10, n_test=10)
    data = (folder / "test_X.bin").read_bytes()
    (folder / "test_X.bin").write_bytes(data[:-100])
    with pytest.raises(UserError, match="test_X.bin is truncated"):
        stl10.stl10(DataRequest(data_dir=tmp_path, download=False))
    (folder / "test_X.bin").write_bytes(data[: 3 * 96 * 96 * 4])
    with pytest.raises(UserError, match="4 images but"):
        stl10.stl10(DataRequest(data_dir=tmp_path, download=False))


def test_missing_is_one_line(tmp_path):
    with pytest.raises(UserError) as info:
        stl10.stl10(DataRequest(data_dir=tmp_path, download=False))
    assert "\n" not in str(info.value) and "stl10_binary" in str(info.value)


def test_verify(tmp_path):
    fakefiles.write_stl10(tmp_path, n_train=10, n_test=10)
    results = stl10.verify(DataRequest(data_dir=tmp_path, download=False))
    assert len(results) == 4 and not any(ok for _, ok in results)
