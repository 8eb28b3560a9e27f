"""SVHN (cropped digits) from torchvision's files: train_32x32.mat, test_32x32.mat, extra_32x32.mat."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protobench.core.errors import UserError
from protobench.data.base import (
    DataRequest,
    ImageSplit,
    InMemoryDataset,
    download_dir,
    download_failed,
    first_line,
    missing_data,
    register_dataset,
    search_dirs,
)

# File names and MD5s as torchvision's SVHN publishes them.
FILES = {
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    "extra": ("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),
}
LAYOUTS = ("", "svhn", "SVHN")
TRAIN_SPLITS = ("train", "train+extra")
MEAN = (0.4377, 0.4438, 0.4728)
STD = (0.1980, 0.2010, 0.1970)
# Label k is the digit k (the files' 10 for the digit 0 is read as 0, see read_mat).
CLASS_NAMES = [str(d) for d in range(10)]
HOW_TO_GET = (
    "On a machine with internet let protobench download it (torchvision), or pass --data-dir DIR holding "
    "train_32x32.mat and test_32x32.mat (and extra_32x32.mat for train+extra) "
    "from ufldl.stanford.edu/housenumbers."
)


def _parts(request: DataRequest) -> list[str]:
    """The .mat parts the request needs: train (+ extra) and test."""
    train_split = request.options.get("train_split", "train")
    if train_split not in TRAIN_SPLITS:
        allowed = ", ".join(TRAIN_SPLITS)
        raise UserError(f"svhn option train_split must be one of {allowed}, got {train_split!r}")
    return ["train", "extra", "test"] if train_split == "train+extra" else ["train", "test"]


def find_folder(folder: Path, parts: list[str]) -> Path | None:
    """The folder below ``folder`` holding the .mat files of ``parts``, or None."""
    for layout in LAYOUTS:
        base = folder / layout
        if all((base / FILES[p][0]).is_file() for p in parts):
            return base
    return None


def locate(request: DataRequest, parts: list[str] | None = None) -> Path | None:
    """Where SVHN is found on the search path (nothing is read or downloaded)."""
    parts = parts or ["train", "test"]
    for folder in search_dirs(request):
        if found := find_folder(folder, parts):
            return found
    return None


def read_mat(path: Path) -> ImageSplit:
    """One SVHN .mat file: X is 32 x 32 x 3 x N uint8, y is N x 1 with 10 standing for the digit 0."""
    import torch
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), variable_names=["X", "y"])
    except Exception as error:  # scipy raises several types for broken files
        reason = first_line(error)
        raise UserError(f"{path} is not a readable SVHN .mat file ({reason}); re-download it") from None
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise UserError(f"{path} lacks the 32 x 32 x 3 x N 'X' and N x 1 'y' arrays; re-download it")
    # H x W x C x N to N x C x H x W, as torchvision does.
    images = np.transpose(x.astype(np.uint8, copy=False), (3, 2, 0, 1))
    images = torch.from_numpy(np.ascontiguousarray(images))
    labels = y.astype(np.int64).reshape(-1)
    labels[labels == 10] = 0
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{path} has labels outside 1..10; re-download it")
    return ImageSplit(images, torch.from_numpy(labels))


def load_from(base: Path, parts: list[str]) -> InMemoryDataset:
    """Build the in-memory dataset from the .mat files in ``base``."""
    import torch

    train = read_mat(base / FILES["train"][0])
    if "extra" in parts:
        extra = read_mat(base / FILES["extra"][0])
        train = ImageSplit(torch.cat([train.images, extra.images]), torch.cat([train.labels, extra.labels]))
    return InMemoryDataset(
        name="svhn",
        num_classes=10,
        train=train,
        test=read_mat(base / FILES["test"][0]),
        mean=MEAN,
        std=STD,
        source=str(base),
        class_names=CLASS_NAMES,
    )


def verify_folder(base: Path, parts: list[str]) -> list[tuple[str, bool]]:
    """(file, MD5 matches the published one) for each part's file in ``base``."""
    from torchvision.datasets.utils import check_integrity

    return [(str(base / FILES[p][0]), check_integrity(str(base / FILES[p][0]), FILES[p][1])) for p in parts]


def verify(request: DataRequest) -> list[tuple[str, bool]]:
    """Check the SVHN files found (train, test, and extra if present) against torchvision's MD5s."""
    base = locate(request)
    if base is None:
        raise missing_data("svhn", search_dirs(request), HOW_TO_GET)
    parts = ["train", "test"] + (["extra"] if (base / FILES["extra"][0]).is_file() else [])
    return verify_folder(base, parts)


def _download(request: DataRequest, parts: list[str]) -> tuple[Path | None, str]:
    target = download_dir(request)
    try:
        from torchvision.datasets import SVHN

        for part in parts:
            SVHN(root=str(target), split=part, download=True)  # torchvision checks the MD5 itself
    except Exception as error:  # no network, no permission: reported in the one-line error
        return None, download_failed(target, error)
    bad = [Path(f).name for f, ok in verify_folder(target, parts) if not ok]
    if bad:
        failed = ", ".join(bad)
        raise UserError(f"svhn downloaded to {target} but {failed} fail the published MD5; delete, retry")
    return target, ""


@register_dataset(
    "svhn",
    num_classes=10,
    image_shape=(3, 32, 32),
    locate=locate,
    verify=verify,
    how_to_get=HOW_TO_GET,
    class_names=CLASS_NAMES,
)
def svhn(request: DataRequest) -> InMemoryDataset:
    """SVHN: 73,257 train (+531,131 extra) and 26,032 test 32x32 digit crops; option train_split."""
    parts = _parts(request)
    base = locate(request, parts)
    reason = ""
    if base is None and request.download:
        base, reason = _download(request, parts)
    if base is None:
        raise missing_data("svhn", search_dirs(request), HOW_TO_GET, reason)
    return load_from(base, parts)
