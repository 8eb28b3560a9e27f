"""Datasets (a registry of ``DatasetSpec``s) and the device-resident batch loader.

Importing this package registers every dataset.
"""

from protobench.data import (
    cifar,  # noqa: F401  (registers)
    fashion_mnist,  # noqa: F401  (registers)
    imagenet,  # noqa: F401  (registers imagenet, imagenet-lt)
    imagenet200,  # noqa: F401  (registers)
    stl10,  # noqa: F401  (registers)
    svhn,  # noqa: F401  (registers)
)
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
