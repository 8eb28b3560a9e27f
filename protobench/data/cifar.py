"""CIFAR-10 and CIFAR-100 from torchvision's on-disk layout (the python-pickle batches).

The batch files are Python 2 pickles. Unpickling can run arbitrary code, so they are read
with ``SafeUnpickler``, which resolves only the few globals these files contain (numpy's
array reconstruction) and refuses everything else.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from protobench.core.errors import UserError
from protobench.data.base import (
    DataRequest,
    DatasetBuilder,
    ImageSplit,
    InMemoryDataset,
    download_dir,
    download_failed,
    first_line,
    missing_data,
    register_dataset,
    search_dirs,
)

# Everything below (folder names, file names, MD5s) is what torchvision's CIFAR10/CIFAR100 publish.
SPECS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "train": ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "label_key": "labels",
        "names_key": "label_names",
        "num_classes": 10,
        "md5": {
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
        # Per-channel mean and std of the training images (the usual CIFAR-10 values).
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "archive": "cifar-100-python.tar.gz",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "label_key": "fine_labels",
        "names_key": "fine_label_names",
        "num_classes": 100,
        "md5": {
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
        "mean": (0.5071, 0.4865, 0.4409),
        "std": (0.2673, 0.2564, 0.2762),
    },
}
# Sub-folders of a search dir that may hold torchvision's folder.
LAYOUTS = ("", "cifar", "cifar10", "cifar100")


def how_to_get(name: str) -> str:
    """One line on how to obtain ``name``."""
    spec = SPECS[name]
    return (
        f"On a machine with internet let protobench download it (torchvision), or pass --data-dir DIR "
        f"holding {spec['folder']}/ as extracted from the official {spec['archive']}."
    )


def _numpy_reconstruct() -> Any:
    # numpy 2 moved numpy.core to numpy._core; the files name the old path.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1"); allow only that.
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array reconstruction and latin-1 bytes; refuses all else."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "_codecs" and name == "encode":
            return _latin1_encode
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def read_pickle(path: Path) -> dict[str, Any]:
    """Load one CIFAR pickle safely; keys normalised to str. A refused or broken file is a UserError."""
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        reason = first_line(error)
        raise UserError(f"{path} is not a valid CIFAR pickle ({reason}); re-download it") from None
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise UserError(f"{path} is not a valid CIFAR pickle (holds {kind}, not a dict); re-download it")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _as_text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def find_folder(name: str, folder: Path) -> Path | None:
    """torchvision's folder for ``name`` below ``folder`` with every batch file present, or None."""
    spec = SPECS[name]
    for layout in LAYOUTS:
        base = folder / layout / spec["folder"]
        if all((base / f).is_file() for f in spec["md5"]):
            return base
    return None


def locate(name: str, request: DataRequest) -> Path | None:
    """Where ``name`` is found on the search path (nothing is read or downloaded)."""
    for folder in search_dirs(request):
        if found := find_folder(name, folder):
            return found
    return None


def _read_split(name: str, base: Path, files: list[str]) -> ImageSplit:
    import torch

    spec = SPECS[name]
    images, labels = [], []
    for file in files:
        entry = read_pickle(base / file)
        data, targets = entry.get("data"), entry.get(spec["label_key"])
        is_array = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
        if not is_array or data.shape[1] != 3072:
            raise UserError(f"{base / file} has no uint8 N x 3072 'data' array; re-download it")
        if targets is None or len(targets) != data.shape[0]:
            key = spec["label_key"]
            raise UserError(f"{base / file} has no '{key}' list matching its images; re-download it")
        images.append(data)
        labels.append(np.asarray(targets, dtype=np.int64))
    # Rows are 1024 red, 1024 green, 1024 blue values, each plane row-major: exactly C x H x W.
    x = torch.from_numpy(np.concatenate(images).reshape(-1, 3, 32, 32))
    y = torch.from_numpy(np.concatenate(labels))
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= spec["num_classes"]):
        raise UserError(f"{base} has labels outside 0..{spec['num_classes'] - 1}; re-download it")
    return ImageSplit(x, y)


def load_from(name: str, base: Path) -> InMemoryDataset:
    """Build the in-memory dataset from torchvision's folder ``base``."""
    spec = SPECS[name]
    meta = read_pickle(base / spec["meta"])
    names = [_as_text(n) for n in meta.get(spec["names_key"], [])] or None
    return InMemoryDataset(
        name=name,
        num_classes=spec["num_classes"],
        train=_read_split(name, base, spec["train"]),
        test=_read_split(name, base, spec["test"]),
        mean=spec["mean"],
        std=spec["std"],
        source=str(base),
        class_names=names,
    )


def verify_folder(name: str, base: Path) -> list[tuple[str, bool]]:
    """(file, MD5 matches the published one) for every file of ``name`` in ``base``."""
    from torchvision.datasets.utils import check_integrity

    return [(str(base / f), check_integrity(str(base / f), md5)) for f, md5 in SPECS[name]["md5"].items()]


def verify(name: str, request: DataRequest) -> list[tuple[str, bool]]:
    """Check the files of ``name`` found on the search path against torchvision's published MD5s."""
    base = locate(name, request)
    if base is None:
        raise missing_data(name, search_dirs(request), how_to_get(name))
    return verify_folder(name, base)


def _download(name: str, request: DataRequest) -> tuple[Path | None, str]:
    target = download_dir(request)
    try:
        from torchvision import datasets

        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        cls(root=str(target), train=True, download=True)
    except Exception as error:  # no network, no permission: reported in the one-line error
        return None, download_failed(target, error)
    base = find_folder(name, target)
    if base is None:
        return None, f"download to {target} left no {SPECS[name]['folder']}"
    bad = [Path(f).name for f, ok in verify_folder(name, base) if not ok]
    if bad:
        failed = ", ".join(bad)
        raise UserError(f"{name} downloaded to {base} but {failed} fail the published MD5; delete, retry")
    return base, ""


def _build(name: str, request: DataRequest) -> InMemoryDataset:
    base = locate(name, request)
    reason = ""
    if base is None and request.download:
        base, reason = _download(name, request)
    if base is None:
        raise missing_data(name, search_dirs(request), how_to_get(name), reason)
    return load_from(name, base)


def _register(name: str) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """``register_dataset`` for one of the two CIFARs, from its entry in ``SPECS``."""
    return register_dataset(
        name,
        num_classes=SPECS[name]["num_classes"],
        image_shape=(3, 32, 32),
        locate=partial(locate, name),
        verify=partial(verify, name),
        how_to_get=how_to_get(name),
    )


@_register("cifar10")
def cifar10(request: DataRequest) -> InMemoryDataset:
    """CIFAR-10: 50,000 train and 10,000 test 32x32 colour images of 10 classes."""
    return _build("cifar10", request)


@_register("cifar100")
def cifar100(request: DataRequest) -> InMemoryDataset:
    """CIFAR-100: 50,000 train and 10,000 test 32x32 colour images of 100 (fine) classes."""
    return _build("cifar100", request)
