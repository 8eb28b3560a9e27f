"""STL-10 (labelled train and test only) from torchvision's binary layout ``stl10_binary/``."""

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
    missing_data,
    register_dataset,
    search_dirs,
)

FOLDER = "stl10_binary"
# The labelled files and their MD5s as torchvision's STL10 publishes them (unlabeled_X.bin is not used).
MD5 = {
    "train_X.bin": "918c2871b30a85fa023e0c44e0bee87f",
    "train_y.bin": "5a34089d4802c674881badbb80307741",
    "test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
    "test_y.bin": "36f9794fa4beb8a2c72628de14fa638e",
}
LAYOUTS = ("", "stl10")
SIDE = 96
MEAN = (0.4467, 0.4398, 0.4066)
STD = (0.2603, 0.2566, 0.2713)
HOW_TO_GET = (
    "On a machine with internet let protobench download it (torchvision, 2.6 GB), or pass --data-dir DIR "
    "holding stl10_binary/ as extracted from stl10_binary.tar.gz."
)


def find_folder(folder: Path) -> Path | None:
    """``stl10_binary`` below ``folder`` with the four labelled files, or None."""
    for layout in LAYOUTS:
        base = folder / layout / FOLDER
        if all((base / f).is_file() for f in MD5):
            return base
    return None


def locate(request: DataRequest) -> Path | None:
    """Where STL-10 is found on the search path (nothing is read or downloaded)."""
    for folder in search_dirs(request):
        if found := find_folder(folder):
            return found
    return None


def read_split(base: Path, prefix: str) -> ImageSplit:
    """``<prefix>_X.bin`` (column-major 3 x 96 x 96 per image) and ``<prefix>_y.bin`` (labels 1..10)."""
    import torch

    x_path, y_path = base / f"{prefix}_X.bin", base / f"{prefix}_y.bin"
    raw = np.fromfile(x_path, dtype=np.uint8)
    per_image = 3 * SIDE * SIDE
    if raw.size % per_image:
        raise UserError(f"{x_path} is truncated ({raw.size} bytes, not whole {per_image}-byte images)")
    # Each channel is stored column-major (MATLAB order): reshape, then swap H and W as torchvision does.
    images = np.ascontiguousarray(raw.reshape(-1, 3, SIDE, SIDE).transpose(0, 1, 3, 2))
    labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
    if labels.size != images.shape[0]:
        n = images.shape[0]
        raise UserError(f"{x_path} holds {n} images but {y_path} {labels.size} labels; re-download")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{y_path} has labels outside 1..10; re-download it")
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels))


def load_from(base: Path) -> InMemoryDataset:
    """Build the in-memory dataset from ``stl10_binary`` folder ``base``."""
    names_file = base / "class_names.txt"
    names = names_file.read_text().split() if names_file.is_file() else None
    return InMemoryDataset(
        name="stl10",
        num_classes=10,
        train=read_split(base, "train"),
        test=read_split(base, "test"),
        mean=MEAN,
        std=STD,
        source=str(base),
        class_names=names if names and len(names) == 10 else None,
    )


def verify_folder(base: Path) -> list[tuple[str, bool]]:
    """(file, MD5 matches the published one) for the four labelled files in ``base``."""
    from torchvision.datasets.utils import check_integrity

    return [(str(base / f), check_integrity(str(base / f), md5)) for f, md5 in MD5.items()]


def verify(request: DataRequest) -> list[tuple[str, bool]]:
    """Check the labelled STL-10 files found on the search path against torchvision's MD5s."""
    base = locate(request)
    if base is None:
        raise missing_data("stl10", search_dirs(request), HOW_TO_GET)
    return verify_folder(base)


def _download(request: DataRequest) -> tuple[Path | None, str]:
    target = download_dir(request)
    try:
        from torchvision.datasets import STL10

        STL10(root=str(target), split="train", download=True)
    except Exception as error:  # no network, no permission: reported in the one-line error
        return None, download_failed(target, error)
    base = find_folder(target)
    if base is None:
        return None, f"download to {target} left no {FOLDER}"
    bad = [Path(f).name for f, ok in verify_folder(base) if not ok]
    if bad:
        failed = ", ".join(bad)
        raise UserError(f"stl10 downloaded to {base} but {failed} fail the published MD5; delete, retry")
    return base, ""


@register_dataset(
    "stl10", num_classes=10, image_shape=(3, SIDE, SIDE), locate=locate, verify=verify, how_to_get=HOW_TO_GET
)
def stl10(request: DataRequest) -> InMemoryDataset:
    """STL-10: 5,000 train and 8,000 test labelled 96x96 colour images of 10 classes."""
    base = locate(request)
    reason = ""
    if base is None and request.download:
        base, reason = _download(request)
    if base is None:
        raise missing_data("stl10", search_dirs(request), HOW_TO_GET, reason)
    return load_from(base)
