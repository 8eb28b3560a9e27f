"""Fashion-MNIST from its IDX files (Debian's dataset-fashion-mnist, or torchvision's download)."""

from __future__ import annotations

import gzip
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

SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Sub-folders in which the four files may sit below a search dir (torchvision uses FashionMNIST/raw).
LAYOUTS = ("", "fashion-mnist", "FashionMNIST/raw")
# The labels 0..9 as the dataset's authors name them (Xiao, Rasul, Vollgraf 2017, table 1).
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
HOW_TO_GET = (
    "Get it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or on a machine with internet "
    "let protobench download it, or pass --data-dir DIR holding train-images-idx3-ubyte(.gz) and the other IDX files."
)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file; re-download it")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise UserError(f"{path} is truncated ({len(data) - offset} of {expected} bytes); re-download it")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def find_idx_dir(folder: Path) -> dict[str, Path] | None:
    """The four IDX files under ``folder`` (plain or .gz, in any known layout), or None."""
    for layout in LAYOUTS:
        base = folder / layout
        found: dict[str, Path] = {}
        for key, stem in FILES.items():
            for candidate in (base / stem, base / f"{stem}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(FILES):
            return found
    return None


def locate(request: DataRequest) -> Path | None:
    """Where Fashion-MNIST's IDX files are found on the search path (nothing is read or downloaded)."""
    for folder in search_dirs(request, SYSTEM_DIR):
        if files := find_idx_dir(folder):
            return files["train_images"].parent
    return None


def load_from(files: dict[str, Path], source: str) -> InMemoryDataset:
    """Build the in-memory dataset from the four IDX files."""

    def split(images: str, labels: str) -> ImageSplit:
        import torch

        x = torch.from_numpy(read_idx(files[images]).copy()).unsqueeze(1)
        y = torch.from_numpy(read_idx(files[labels]).astype(np.int64))
        if x.shape[0] != y.shape[0]:
            raise UserError(f"{files[images]} and {files[labels]} disagree in length; re-download them")
        return ImageSplit(x, y)

    return InMemoryDataset(
        name="fashion-mnist",
        num_classes=10,
        train=split("train_images", "train_labels"),
        test=split("test_images", "test_labels"),
        mean=(0.2860,),
        std=(0.3530,),
        source=source,
        class_names=CLASS_NAMES,
    )


@register_dataset(
    "fashion-mnist",
    num_classes=10,
    image_shape=(1, 28, 28),
    locate=locate,
    how_to_get=HOW_TO_GET,
    class_names=CLASS_NAMES,
)
def fashion_mnist(request: DataRequest) -> InMemoryDataset:
    """Fashion-MNIST: 60,000 train and 10,000 test 28x28 grey images of 10 clothing classes."""
    looked = search_dirs(request, SYSTEM_DIR)
    for folder in looked:
        if files := find_idx_dir(folder):
            return load_from(files, str(files["train_images"].parent))
    reason = ""
    if request.download:
        target = download_dir(request)
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(root=str(target), train=True, download=True)
            FashionMNIST(root=str(target), train=False, download=True)
        except Exception as error:  # no network, no permission: say so in the one line below
            reason = download_failed(target, error)
        if files := find_idx_dir(target):
            return load_from(files, str(files["train_images"].parent))
    raise missing_data("fashion-mnist", looked, HOW_TO_GET, reason)
