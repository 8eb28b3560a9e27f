"""From a suite's data settings to the three loaders of one cell: subsample, hold out validation, batch.

This module knows nothing of suites: a ``Suite`` hands it a ``DataSettings`` (``Suite.data_settings``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protobench.core.errors import UserError
from protobench.data.base import (
    DATASETS,
    Augment,
    BatchLoader,
    DataRequest,
    Dataset,
    ImageSplit,
    InMemoryDataset,
    holdout_indices,
)
from protobench.data.loader import DeviceLoader

if TYPE_CHECKING:
    import torch

#: The numerics version of the data pipeline: reading each dataset, long-tailed subsampling, the
#: validation hold-out, the device loader's shuffling, augmentation and normalisation (this package).
#: Bump it with any change that moves a cell's numbers, and re-make the fingerprint in the same commit
#: (docs/engine.md, "Numerics versions").
NUMERICS_VERSION = 1


@dataclass(frozen=True)
class DataSettings:
    """What data preparation needs of a suite: the dataset, its options and the validation split.

    ``source`` names the suite file in error messages.
    """

    dataset: str
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    val_size: int = 0
    data_seed: int = 0
    imbalance_profile: str = "exp"
    source: str = ""


_LOADED: dict[tuple[str, str, str], Dataset] = {}


def load_dataset(settings: DataSettings, data_dir: Path | None, download: bool = True) -> Dataset:
    """The dataset of ``settings``, loaded once per process (every cell of a grid shares it)."""
    options = {**settings.dataset_options, "val_size": settings.val_size, "data_seed": settings.data_seed}
    key = (settings.dataset, str(data_dir), repr(sorted(options.items())))
    if key not in _LOADED:
        spec = DATASETS.get(settings.dataset)
        _LOADED[key] = spec.build(DataRequest(data_dir=data_dir, download=download, options=options))
    return _LOADED[key]


def holdout(split: ImageSplit, val_size: int, seed: int) -> tuple[ImageSplit, ImageSplit | None]:
    """Hold ``val_size`` images out of ``split`` by the shared rule ``holdout_indices``: (train, validation)."""
    if val_size == 0:
        return split, None
    train_index, val_index = holdout_indices(len(split), val_size, seed)
    return split.subset(train_index), split.subset(val_index)


@dataclass
class CellData:
    """The data of one grid cell: class counts per split and a way to build its loaders."""

    name: str
    num_classes: int
    in_channels: int
    source: str
    counts: dict[str, list[int]]
    dataset: Dataset
    train: ImageSplit | None = None
    val: ImageSplit | None = None

    @property
    def class_names(self) -> list[str] | None:
        """The dataset's names of its classes (from its files or its code), or None where it has none."""
        names = getattr(self.dataset, "class_names", None)
        return [str(n) for n in names] if names is not None and len(names) == self.num_classes else None

    def record_data(self) -> dict[str, Any]:
        """A record's ``data`` section: the source, each split's per-class counts and, where the dataset
        names its classes, their names (provenance for plots and tables, not part of the config or its hash)."""
        names = self.class_names
        return {"source": self.source, "counts": self.counts, **({"class_names": names} if names else {})}

    def loaders(
        self,
        *,
        batch_size: int,
        eval_batch_size: int,
        device: torch.device,
        seed: int,
        augment: Augment,
        channels_last: bool = False,
        part: Callable[[int], slice] | None = None,
    ) -> tuple[BatchLoader, BatchLoader | None, BatchLoader]:
        """(train, validation or None, test) loaders on ``device``; with ``part``, each batch is this
        data-parallel rank's rows of the global batch (protobench.engine.distributed)."""
        ds = self.dataset
        if isinstance(ds, InMemoryDataset):
            assert self.train is not None

            def make(split: ImageSplit, train: bool) -> DeviceLoader:
                return DeviceLoader(
                    split,
                    batch_size=batch_size if train else eval_batch_size,
                    mean=ds.mean,
                    std=ds.std,
                    device=device,
                    train=train,
                    crop_padding=augment.crop_padding,
                    flip=augment.flip,
                    seed=seed,
                    channels_last=channels_last,
                    part=part,
                )

            val = make(self.val, False) if self.val is not None else None
            return make(self.train, True), val, make(ds.test, False)

        def stream(split: str, train: bool) -> BatchLoader:
            size = batch_size if train else eval_batch_size
            return ds.loader(split, batch_size=size, device=device, train=train, seed=seed, augment=augment, part=part)

        val = stream("val", False) if self.counts.get("val") and sum(self.counts["val"]) else None
        return stream("train", True), val, stream("test", False)


def prepare_cell_data(
    settings: DataSettings, data_dir: Path | None, ratio: float | None, download: bool = True
) -> CellData:
    """Load the dataset, apply its long-tailed subsampling (``ratio``) and hold out validation."""
    ds = load_dataset(settings, data_dir, download)
    if not isinstance(ds, InMemoryDataset):
        if ratio is not None:
            raise UserError(
                f"{settings.source}: imbalance ratios apply to in-memory datasets; "
                f"{settings.dataset} brings its own splits"
            )
        counts = {s: ds.class_counts(s).tolist() for s in ("train", "val", "test")}
        channels = DATASETS.get(settings.dataset).image_shape[0]
        return CellData(ds.name, ds.num_classes, channels, ds.source, counts, ds)
    train = ds.train
    if ratio is not None:
        from protobench.data.longtail import long_tail_subsample

        train = long_tail_subsample(train, ds.num_classes, ratio, settings.imbalance_profile, settings.data_seed)
    train, val = holdout(train, settings.val_size, settings.data_seed)
    k = ds.num_classes
    counts: dict[str, Any] = {
        "train": train.class_counts(k).tolist(),
        "val": val.class_counts(k).tolist() if val is not None else [0] * k,
        "test": ds.test.class_counts(k).tolist(),
    }
    return CellData(ds.name, k, int(train.images.shape[1]), ds.source, counts, ds, train, val)
