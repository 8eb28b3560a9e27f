"""CIFAR-10/100 builders on format-exact tiny files: layout, safe unpickling, errors, checksums."""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest
import torch

from protobench.core.errors import UserError
from protobench.data import DATASETS, DataRequest, cifar
from tests.data import fakefiles


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    fakefiles.isolate_data_env(monkeypatch, tmp_path)


def _trusted_load(path):
    # The test's own files: plain pickle is fine here, to compare against the builder.
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


@pytest.mark.parametrize("py2", [True, False])
def test_cifar10_reads_batches_as_chw(tmp_path, py2):
    folder = fakefiles.write_cifar10(tmp_path / "data", n_train=50, n_test=20, py2=py2)
    ds = DATASETS.get("cifar10").build(DataRequest(data_dir=tmp_path / "data", download=False))
    assert ds.num_classes == 10 and ds.source == str(folder)
    assert ds.train.images.shape == (50, 3, 32, 32) and ds.train.images.dtype == torch.uint8
    assert ds.test.images.shape == (20, 3, 32, 32) and ds.test.labels.dtype == torch.int64
    assert ds.class_names[0] == "airplane" and len(ds.class_names) == 10
    # Train = the five batches in order; row = 1024 R, then G, then B values, each row-major.
    first = _trusted_load(folder / "data_batch_1")
    assert torch.equal(ds.train.images[0, 1, 2, 5], torch.tensor(int(first[b"data"][0, 1024 + 2 * 32 + 5])))
    labels = sum((_trusted_load(folder / f"data_batch_{b}")[b"labels"] for b in range(1, 6)), [])
    assert ds.train.labels.tolist() == labels
    assert ds.test.labels.tolist() == _trusted_load(folder / "test_batch")[b"labels"]
    assert ds.mean == (0.4914, 0.4822, 0.4465)


def test_cifar100_uses_fine_labels(tmp_path):
    fakefiles.write_cifar100(tmp_path, n_train=200, n_test=100)
    ds = DATASETS.get("cifar100").build(DataRequest(data_dir=tmp_path, download=False))
    assert ds.num_classes == 100 and ds.train.images.shape == (200, 3, 32, 32)
    assert ds.train.labels.tolist() == [i % 100 for i in range(200)]
    assert ds.class_names[99] == "class_99"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_executing_pickle_is_refused_and_runs_nothing(tmp_path):
    folder = fakefiles.write_cifar10(tmp_path, n_train=10, n_test=10)
    marker = tmp_path / "pwned"
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil(marker)}, protocol=2))
    with pytest.raises(UserError) as info:
        cifar.cifar10(DataRequest(data_dir=tmp_path, download=False))
    message = str(info.value)
    assert "data_batch_1" in message and "refused" in message and "\n" not in message
    assert not marker.exists()


def test_only_latin1_codecs_encode_is_allowed(tmp_path):
    path = tmp_path / "p"
    # _codecs.encode("x", "rot13") resolved through the whitelist must still be refused.
    path.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(UserError, match="rot13"):
        cifar.read_pickle(path)


def test_truncated_file_names_the_file(tmp_path):
    folder = fakefiles.write_cifar10(tmp_path, n_train=10, n_test=10)
    data = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="test_batch"):
        cifar.cifar10(DataRequest(data_dir=tmp_path, download=False))


def test_wrong_content_is_a_user_error(tmp_path):
    folder = fakefiles.write_cifar10(tmp_path, n_train=10, n_test=10)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8)}, protocol=2))
    with pytest.raises(UserError, match="3072"):
        cifar.cifar10(DataRequest(data_dir=tmp_path, download=False))


def test_missing_data_is_one_line_naming_where_and_how(tmp_path):
    with pytest.raises(UserError) as info:
        cifar.cifar100(DataRequest(data_dir=tmp_path / "nowhere", download=False))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message
    assert "cifar-100-python" in message and "--data-dir" in message


def test_failed_download_is_reported_in_the_line(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(UserError, match="download to .* failed: OSError: network is unreachable"):
        cifar.cifar10(DataRequest(data_dir=tmp_path, download=True))


def test_download_goes_through_torchvision_and_is_checked(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_download(root, train, download):
        # What a successful torchvision download leaves behind, here with the test's own files.
        calls.append((root, train, download))
        fakefiles.write_cifar10(root, n_train=10, n_test=10)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_download)
    with pytest.raises(UserError, match="fail the published MD5"):
        cifar.cifar10(DataRequest(data_dir=tmp_path, download=True))
    assert calls == [(str(tmp_path), True, True)]
    # With the published sums matching the files, the download is accepted and loaded.
    folder = tmp_path / "cifar-10-batches-py"
    sums = {f: hashlib.md5((folder / f).read_bytes()).hexdigest() for f in cifar.SPECS["cifar10"]["md5"]}
    monkeypatch.setitem(cifar.SPECS["cifar10"], "md5", sums)
    for f in sums:
        (folder / f).unlink()
    assert len(cifar.cifar10(DataRequest(data_dir=tmp_path, download=True)).train) == 10


def test_verify_reports_each_file(tmp_path, monkeypatch):
    folder = fakefiles.write_cifar10(tmp_path, n_train=10, n_test=10)
    request = DataRequest(data_dir=tmp_path, download=False)
    results = cifar.verify("cifar10", request)
    assert len(results) == 7 and not any(ok for _, ok in results)
    good = hashlib.md5((folder / "test_batch").read_bytes()).hexdigest()
    monkeypatch.setitem(cifar.SPECS["cifar10"]["md5"], "test_batch", good)
    assert dict(cifar.verify("cifar10", request))[str(folder / "test_batch")] is True


def test_loading_does_not_hash(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    fakefiles.write_cifar10(tmp_path, n_train=10, n_test=10)

    def no_hashing(*args, **kwargs):
        raise AssertionError("a plain load must not re-hash the files")

    monkeypatch.setattr(tv_utils, "check_integrity", no_hashing)
    monkeypatch.setattr(hashlib, "md5", no_hashing)
    cifar.cifar10(DataRequest(data_dir=tmp_path, download=False))
