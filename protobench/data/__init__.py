"""Datasets (a registry of ``DatasetSpec``s) and the device-resident batch loader.

Importing this package imports (and so registers) every module in it, in sorted order: a new dataset is one
file here with a ``@register_dataset("name", ...)`` builder, listed nowhere (docs/adding-a-dataset.md). A module
that fails to import is left out with one warning line (``Registry.discover`` in protobench/core/registry.py).

None of these modules imports torch, torchvision or PIL at the top (each imports them inside the functions
that read, hold or batch images): importing the package and asking the registry about a dataset (its names,
``num_classes``, ``image_shape``, ``class_names``...) stays fast for the commands that only read metadata.
"""

from protobench.data.base import (
    DATASETS,
    Augment,
    BatchLoader,
    DataRequest,
    Dataset,
    DatasetSpec,
    ImageSplit,
    InMemoryDataset,
    StreamingDataset,
    holdout_indices,
    register_dataset,
)
from protobench.data.loader import DeviceLoader

DATASETS.discover(__name__)

__all__ = [
    "DATASETS",
    "Augment",
    "BatchLoader",
    "DataRequest",
    "Dataset",
    "DatasetSpec",
    "DeviceLoader",
    "ImageSplit",
    "InMemoryDataset",
    "StreamingDataset",
    "holdout_indices",
    "register_dataset",
]
