"""SVHN builder on .mat files written in the real layout (X 32x32x3xN, y Nx1 with 10 for 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import loadmat

from protobench.core.errors import UserError
from protobench.data import DATASETS, DataRequest, svhn
from tests.data import fakefiles


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    fakefiles.isolate_data_env(monkeypatch, tmp_path)


def test_reads_mat_as_nchw_and_maps_ten_to_zero(tmp_path):
    root = fakefiles.write_svhn(tmp_path / "svhn", n_train=30, n_test=20)
    ds = DATASETS.get("svhn").build(DataRequest(data_dir=tmp_path, download=False))
    assert ds.source == str(root) and ds.num_classes == 10
    assert ds.train.images.shape == (30, 3, 32, 32) and ds.train.images.dtype == torch.uint8
    assert ds.test.images.shape == (20, 3, 32, 32)
    mat = loadmat(str(root / "train_32x32.mat"))
    assert int(mat["y"][0, 0]) == 10 and ds.train.labels[0] == 0
    assert ds.train.labels.tolist() == [i % 10 for i in range(30)]
    # X[h, w, c, n] is image n, channel c, row h, column w.
    assert int(ds.train.images[7, 2, 3, 11]) == int(mat["X"][3, 11, 2, 7])


def test_train_plus_extra(tmp_path):
    fakefiles.write_svhn(tmp_path, n_train=30, n_test=10, n_extra=15)
    plain = svhn.svhn(DataRequest(data_dir=tmp_path, download=False))
    both = svhn.svhn(DataRequest(data_dir=tmp_path, download=False, options={"train_split": "train+extra"}))
    assert len(plain.train) == 30 and len(both.train) == 45
    assert torch.equal(both.train.images[:30], plain.train.images)


def test_bad_train_split_option(tmp_path):
    with pytest.raises(UserError, match="train_split"):
        svhn.svhn(DataRequest(data_dir=tmp_path, download=False, options={"train_split": "extra"}))


def test_extra_missing_is_reported(tmp_path):
    fakefiles.write_svhn(tmp_path, n_train=10, n_test=10)
    with pytest.raises(UserError, match="svhn data not found"):
        svhn.svhn(DataRequest(data_dir=tmp_path, download=False, options={"train_split": "train+extra"}))


def test_broken_mat_names_the_file(tmp_path):
    root = fakefiles.write_svhn(tmp_path, n_train=10, n_test=10)
    (root / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(UserError, match="test_32x32.mat"):
        svhn.svhn(DataRequest(data_dir=tmp_path, download=False))


def test_missing_and_failed_download(tmp_path, monkeypatch):
    import torchvision.datasets

    with pytest.raises(UserError) as info:
        svhn.svhn(DataRequest(data_dir=tmp_path / "none", download=False))
    assert "\n" not in str(info.value) and "train_32x32.mat" in str(info.value)

    def offline(*args, **kwargs):
        raise RuntimeError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "SVHN", offline)
    with pytest.raises(UserError, match="failed: RuntimeError: no route to host"):
        svhn.svhn(DataRequest(data_dir=tmp_path / "none", download=True))


def test_verify_lists_present_files(tmp_path):
    fakefiles.write_svhn(tmp_path, n_train=10, n_test=10, n_extra=5)
    results = svhn.verify(DataRequest(data_dir=tmp_path, download=False))
    names = [r[0].rsplit("/", 1)[1] for r in results]
    assert names == ["train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"]
    assert not any(ok for _, ok in results)
    assert np.all([isinstance(ok, bool) for _, ok in results])
