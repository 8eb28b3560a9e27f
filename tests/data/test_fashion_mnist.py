from pathlib import Path

import numpy as np
import pytest

from protobench.core.errors import UserError
from protobench.data import DATASETS, DataRequest
from protobench.data import fashion_mnist as fm
from tests.data.fakefiles import write_fashion_mnist


def build(request: DataRequest):
    return DATASETS.get("fashion-mnist").build(request)


def test_reads_real_idx_layout(fmnist_dir):
    ds = build(DataRequest(data_dir=fmnist_dir, download=False))
    assert ds.train.images.shape == (200, 1, 28, 28) and ds.test.images.shape == (100, 1, 28, 28)
    assert ds.train.images.dtype.is_floating_point is False
    assert ds.train.labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert ds.source == str(fmnist_dir)


def test_plain_idx_and_torchvision_layout(tmp_path):
    write_fashion_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    ds = build(DataRequest(data_dir=tmp_path, download=False))
    assert ds.source.endswith("FashionMNIST/raw") and len(ds.train) == 200


def test_search_order_data_dir_then_env_then_cache_then_system(tmp_path, monkeypatch):
    env_dir = write_fashion_mnist(tmp_path / "env", n_train=30)
    cache_dir = write_fashion_mnist(tmp_path / "protobench-cache" / "data", n_train=40)
    system_dir = write_fashion_mnist(tmp_path / "system", n_train=50)
    explicit = write_fashion_mnist(tmp_path / "explicit", n_train=20)
    monkeypatch.setattr(fm, "SYSTEM_DIR", str(system_dir))
    monkeypatch.setenv("PROTOBENCH_DATA", str(env_dir))
    assert len(build(DataRequest(data_dir=explicit, download=False)).train) == 20
    assert len(build(DataRequest(download=False)).train) == 30
    monkeypatch.delenv("PROTOBENCH_DATA")
    assert len(build(DataRequest(download=False)).train) == 40
    for f in cache_dir.iterdir():
        f.unlink()
    assert len(build(DataRequest(download=False)).train) == 50


def test_missing_data_is_one_line_with_places_and_how(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "SYSTEM_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(UserError) as info:
        build(DataRequest(data_dir=tmp_path / "empty", download=False))
    message = str(info.value)
    assert "\n" not in message
    assert "fashion-mnist data not found" in message and str(tmp_path / "empty") in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_failed_download_is_reported(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(fm, "SYSTEM_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(UserError, match=r"download to .* failed: RuntimeError: Error downloading"):
        build(DataRequest(data_dir=tmp_path / "target"))


def test_truncated_idx_is_refused(tmp_path):
    folder = write_fashion_mnist(tmp_path / "f", gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="truncated"):
        build(DataRequest(data_dir=folder, download=False))


def test_read_idx_shape(tmp_path):
    folder = write_fashion_mnist(tmp_path / "f", n_train=7, gz=False)
    array = fm.read_idx(Path(folder) / "train-images-idx3-ubyte")
    assert array.shape == (7, 28, 28) and array.dtype == np.uint8
