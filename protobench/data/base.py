"""The data types every dataset produces, the dataset registry (one DatasetSpec each), the validation
hold-out rule and the search path for dataset files."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from protobench.core.errors import UserError
from protobench.core.paths import user_data_dir
from protobench.core.registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass
class ImageSplit:
    """Images as one uint8 tensor (N x C x H x W) and labels as int64 (N)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        import torch

        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be one per image")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> ImageSplit:
        """The images at ``index`` (a LongTensor of positions)."""
        return ImageSplit(self.images[index], self.labels[index])

    def class_counts(self, num_classes: int) -> torch.Tensor:
        """Images per class, length ``num_classes``."""
        import torch

        return torch.bincount(self.labels.cpu(), minlength=num_classes)


@dataclass
class InMemoryDataset:
    """A dataset small enough to live on the device: train and test splits plus normalisation."""

    name: str
    num_classes: int
    train: ImageSplit
    test: ImageSplit
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""
    class_names: list[str] | None = None


class BatchLoader(Protocol):
    """What the engine iterates: normalised float batches and labels, already on the run's device."""

    num_samples: int

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None: ...


@dataclass
class Augment:
    """Training augmentation of a suite; every field is applied batch-wise on the device."""

    crop_padding: int = 0
    flip: bool = False
    # Streaming (ImageNet-style) loaders read these instead of the two above.
    random_resized_crop: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


class StreamingDataset(Protocol):
    """A dataset too large for the device (ImageNet): it builds its own loaders."""

    name: str
    num_classes: int
    source: str
    class_names: list[str] | None

    def class_counts(self, split: str) -> torch.Tensor: ...

    def loader(
        self,
        split: str,
        *,
        batch_size: int,
        device: torch.device,
        train: bool,
        seed: int,
        augment: Augment,
        part: Callable[[int], slice] | None = None,
    ) -> BatchLoader: ...


Dataset = InMemoryDataset | StreamingDataset


@dataclass(frozen=True)
class DataRequest:
    """What a dataset builder needs.

    ``data_dir`` is --data-dir (or None); ``download`` whether it may download; ``options`` the
    suite's ``dataset_options`` (e.g. ImageNet-LT split files, ``val_size`` and ``data_seed``
    for streaming datasets that hold out their own validation split).
    """

    data_dir: Path | None = None
    download: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)


DatasetBuilder = Callable[[DataRequest], Dataset]
#: Finds a dataset on the search path without reading or downloading it: its folder (or file), or None.
DatasetLocator = Callable[[DataRequest], Path | None]
#: (file, MD5 matches the published one) for every file of a dataset found on the search path.
DatasetVerifier = Callable[[DataRequest], list[tuple[str, bool]]]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to build, find, verify and get it, and what it holds.

    ``verify`` is None for datasets without published checksums; ``image_shape`` is (C, H, W) of
    the stored images (a streaming dataset's default crop); ``long_tailed`` marks datasets whose
    own splits are long-tailed (ImageNet-LT), as opposed to suites that subsample a balanced one;
    ``own_validation`` marks datasets that ship a validation split (ImageNet-LT's val list), so a
    suite needs no ``val_size`` to have one; ``class_names`` are the names of the classes where the
    dataset defines them in code (None where they come from its files, e.g. CIFAR's meta file: the
    built dataset's ``class_names`` then has them).
    """

    name: str
    build: DatasetBuilder
    locate: DatasetLocator
    verify: DatasetVerifier | None
    how_to_get: str
    num_classes: int
    image_shape: tuple[int, int, int]
    long_tailed: bool = False
    own_validation: bool = False
    class_names: tuple[str, ...] | None = None


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(
    name: str,
    *,
    num_classes: int,
    image_shape: tuple[int, int, int],
    locate: DatasetLocator,
    how_to_get: str,
    verify: DatasetVerifier | None = None,
    long_tailed: bool = False,
    own_validation: bool = False,
    class_names: Sequence[str] | None = None,
) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator registering a dataset builder under ``name`` as a ``DatasetSpec``; returns the builder."""

    def add(build: DatasetBuilder) -> DatasetBuilder:
        names = tuple(class_names) if class_names is not None else None
        if names is not None and len(names) != num_classes:
            raise ValueError(f"dataset '{name}' names {len(names)} classes but has {num_classes}")
        spec = DatasetSpec(
            name, build, locate, verify, how_to_get, num_classes, tuple(image_shape), long_tailed, own_validation, names
        )
        DATASETS.register(name)(spec)
        return build

    return add


def holdout_indices(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The one validation hold-out rule: (train, validation) positions among ``n`` training images.

    A permutation drawn by a CPU generator seeded with ``seed``; its first ``val_size`` positions,
    sorted, are validation, the rest, sorted, training. Every dataset (in memory or streaming) uses it.
    """
    import torch

    if not 0 <= val_size < n:
        raise UserError(f"val_size {val_size} must be in 0..{n - 1} (the train split has {n} images)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:].sort().values, order[:val_size].sort().values


def search_dirs(request: DataRequest, *system_dirs: str | Path) -> list[Path]:
    """Candidate folders in search order: --data-dir, $PROTOBENCH_DATA, the user data dir, system dirs."""
    dirs: list[Path] = []
    if request.data_dir is not None:
        dirs.append(Path(request.data_dir))
    if env := os.environ.get("PROTOBENCH_DATA"):
        dirs.append(Path(env))
    dirs.append(user_data_dir())
    dirs.extend(Path(d) for d in system_dirs)
    return dirs


def download_dir(request: DataRequest) -> Path:
    """Where a download goes: --data-dir if given, else the user data dir."""
    return Path(request.data_dir) if request.data_dir is not None else user_data_dir()


def first_line(error: BaseException) -> str:
    """The first line of an error's message (at most 120 characters), or its type when it has none."""
    text = str(error)
    return text.splitlines()[0][:120] if text else type(error).__name__


def download_failed(target: Path, error: BaseException) -> str:
    """Why a download did not happen, for the one-line missing-data error."""
    return f"download to {target} failed: {type(error).__name__}: {first_line(error)}"


def missing_data(name: str, looked: list[Path], how: str, reason: str = "") -> UserError:
    """The one-line error for a dataset that was found nowhere."""
    places = ", ".join(str(p) for p in looked)
    why = f" ({reason})" if reason else ""
    return UserError(f"{name} data not found{why}; looked in: {places}. {how}")
