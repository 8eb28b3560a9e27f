"""Datasets (a registry of builders) and the device-resident batch loader.

Importing this package registers every dataset.
"""

from protobench.data import (
    cifar,  # noqa: F401  (registers)
    fashion_mnist,  # noqa: F401  (registers)
    imagenet,  # noqa: F401  (registers)
    stl10,  # noqa: F401  (registers)
    svhn,  # noqa: F401  (registers)
)
from protobench.data.base import (
    DATASETS,
    Augment,
    BatchLoader,
    DataRequest,
    Dataset,
    ImageSplit,
    InMemoryDataset,
    StreamingDataset,
    register_dataset,
)
from protobench.data.loader import DeviceLoader

__all__ = [
    "DATASETS",
    "Augment",
    "BatchLoader",
    "DataRequest",
    "Dataset",
    "DeviceLoader",
    "ImageSplit",
    "InMemoryDataset",
    "StreamingDataset",
    "register_dataset",
]
