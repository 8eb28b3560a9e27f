"""`protobench data`: status without downloading, verify's exit code, prepare, stats."""

from __future__ import annotations

import hashlib
import json

import pytest
import typer
from typer.testing import CliRunner

from protobench.cli.data import app as data_app
from protobench.core.errors import UserError
from tests.data import fakefiles

root = typer.Typer()
root.add_typer(data_app, name="data")


@root.callback()
def _main() -> None:
    """Test entry point mounting `data` as the real CLI does."""


def invoke(*args: str):
    """Run the CLI; a UserError becomes exit code 2 with its line, as protobench's main does."""
    result = CliRunner().invoke(root, ["data", *args])
    if isinstance(result.exception, UserError):
        return 2, result.output, str(result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output, ""


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    fakefiles.isolate_data_env(monkeypatch, tmp_path)
    import torchvision.datasets

    def no_download(*args, **kwargs):
        raise AssertionError("the data commands must not download")

    for name in ("CIFAR10", "CIFAR100", "SVHN", "STL10", "FashionMNIST"):
        monkeypatch.setattr(torchvision.datasets, name, no_download)


def test_help_lists_commands():
    code, output, _ = invoke("--help")
    assert code == 0 and all(c in output for c in ("status", "verify", "prepare", "stats"))


def test_status_shows_found_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    folder = fakefiles.write_cifar10(tmp_path / "d", n_train=10, n_test=10)
    code, output, _ = invoke("status", "--data-dir", str(tmp_path / "d"))
    assert code == 0
    lines = {line.split()[1]: line for line in output.splitlines() if line.strip().startswith("│")}
    assert "found" in lines["cifar10"] and str(folder) in lines["cifar10"]
    assert "missing" in lines["cifar100"] and "missing" in lines["imagenet"] and "image-net.org" in output
    assert "protobench data prepare imagenet200" in output


def test_status_reads_the_dataset_specs(tmp_path, monkeypatch):
    import dataclasses

    from protobench.data import DATASETS, fashion_mnist

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", str(tmp_path / "no-system-copy"))
    found = dataclasses.replace(DATASETS.get("svhn"), name="toy-found", locate=lambda request: tmp_path / "toy")
    missing = dataclasses.replace(found, name="toy-missing", locate=lambda request: None, how_to_get="Ask the shop.")
    monkeypatch.setitem(DATASETS._entries, "toy-found", found)
    monkeypatch.setitem(DATASETS._entries, "toy-missing", missing)
    fakefiles.write_fashion_mnist(tmp_path / "d")
    code, output, _ = invoke("status", "--data-dir", str(tmp_path / "d"))
    assert code == 0
    lines = {line.split()[1]: line for line in output.splitlines() if line.strip().startswith("│")}
    assert set(lines) >= set(DATASETS.names())
    assert "found" in lines["toy-found"] and str(tmp_path / "toy") in lines["toy-found"]
    assert "missing" in lines["toy-missing"] and "Ask the shop." in lines["toy-missing"]
    assert "found" in lines["fashion-mnist"] and str(tmp_path / "d") in lines["fashion-mnist"]
    assert "missing" in lines["stl10"] and "stl10_binary.tar.gz" in output


def test_verify_mismatch_exits_2(tmp_path, monkeypatch):
    from protobench.data import cifar

    folder = fakefiles.write_cifar10(tmp_path, n_train=10, n_test=10)
    code, output, error = invoke("verify", "cifar10", "--data-dir", str(tmp_path))
    assert code == 2 and "MISMATCH" in output
    assert "7 of 7 files fail the published MD5" in error and "\n" not in error
    sums = {f: hashlib.md5((folder / f).read_bytes()).hexdigest() for f in cifar.SPECS["cifar10"]["md5"]}
    monkeypatch.setitem(cifar.SPECS["cifar10"], "md5", sums)
    code, output, _ = invoke("verify", "cifar10", "--data-dir", str(tmp_path))
    assert code == 0 and "MISMATCH" not in output


def test_verify_other_names(tmp_path):
    error = invoke("verify", "imagenet")[2]
    assert error.startswith("imagenet has no published checksums") and error.endswith("cifar10, cifar100, stl10, svhn")
    assert "did you mean 'cifar10'" in invoke("verify", "cifar11")[2]
    code, _, error = invoke("verify", "svhn", "--data-dir", str(tmp_path))
    assert code == 2 and "svhn data not found" in error


def test_prepare_imagenet200(tmp_path):
    tree = fakefiles.write_imagenet_tree(tmp_path / "imagenet", n_train=2, n_val=1)
    classes = fakefiles.write_classes_file(tmp_path / "classes.txt", fakefiles.WNIDS[:2])
    args = ["--imagenet", str(tree), "--out", str(tmp_path / "out"), "--size", "8", "--classes", str(classes)]
    code, output, _ = invoke("prepare", "imagenet200", *args, "--workers", "0")
    assert code == 0 and (tmp_path / "out" / "imagenet200_8.pt").is_file()
    assert invoke("prepare", "imagenet1k", *args)[2].startswith("cannot prepare 'imagenet1k'")


def test_stats_counts_after_long_tail(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    fakefiles.write_cifar10(tmp_path / "d", n_train=200, n_test=30)
    suite = tmp_path / "lt.yaml"
    suite.write_text(
        "name: tiny-lt\ndataset: cifar10\ndims: [8]\nmethods: [softmax]\nval_size: 10\nimbalance_ratios: [10]\n"
    )
    from protobench.suite.definition import load_suite

    load_suite(str(suite))  # a schema error here fails the test (it used to turn into a skip)
    code, output, _ = invoke("stats", str(suite), "--data-dir", str(tmp_path / "d"), "--json")
    assert code == 0
    cell = json.loads(output)["cells"][0]
    assert cell["ratio"] == 10 and cell["test"] == [3] * 10
    assert json.loads(output)["class_names"][0] == "airplane"  # from CIFAR-10's meta file
    assert sum(cell["train"]) + sum(cell["val"]) == sum([20, 15, 11, 9, 7, 5, 4, 3, 2, 2])
    code, output, _ = invoke("stats", str(suite), "--data-dir", str(tmp_path / "d"))
    assert code == 0 and "imbalance ratio 10" in output and "total" in output
    assert "name" in output and "airplane" in output and "truck" in output
