"""Streaming datasets over folders of image files (ImageNet's layout, or split lists of paths).

Such datasets do not fit on the device, so their loaders are torch DataLoaders: worker processes
decode and augment (PIL + torchvision transforms) into uint8 tensors, batches come back in
pinned memory, are copied without blocking and are normalised on the device. Augmentation
is seeded per image from (seed, epoch, index), so a run's batches do not depend on how many
workers decode them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from protobench.core.errors import UserError, did_you_mean
from protobench.data.base import Augment, holdout_indices

if TYPE_CHECKING:
    import torch

# ImageNet's per-channel mean and std (torchvision's), the normalisation of every folder dataset.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpeg", ".jpg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")
#: A split as two parallel lists: image paths (relative to the dataset root) and class indices.
FileSplit = tuple[list[str], list[int]]


def default_workers() -> int:
    """Loader/decoder processes when no option says: min(8, the CPUs this process may use). OMP_NUM_THREADS
    caps each process's threads, not how many processes: it does not count here (docs/slurm/README.md)."""
    from protobench.core.device import cpu_limits

    return min(8, *(n for source, n in cpu_limits().items() if source != "OMP_NUM_THREADS"))


def _image_files(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.name.lower().endswith(EXTENSIONS) and e.is_file())


def class_dirs(folder: Path) -> list[str]:
    """Sub-folder names of ``folder``, sorted (one per class in an ImageFolder tree)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def scan_image_folder(folder: Path, classes: list[str]) -> FileSplit:
    """Files ``<class>/<image>`` under ``folder`` (relative paths, sorted) and their class indices."""
    paths: list[str] = []
    labels: list[int] = []
    for label, wnid in enumerate(classes):
        class_dir = folder / wnid
        if not class_dir.is_dir():
            continue
        files = _image_files(class_dir)
        paths.extend(f"{wnid}/{name}" for name in files)
        labels.extend([label] * len(files))
    return paths, labels


class ImageSamples:
    """Images named by path below ``root``, decoded with PIL and transformed to uint8 C x H x W.

    A map-style dataset for torch's DataLoader (``__len__`` and ``__getitem__`` are all it asks); it does
    not subclass ``torch.utils.data.Dataset`` so that this module, like the rest of the package, imports
    without torch.
    """

    def __init__(self, root: Path, paths: list[str], labels: torch.Tensor) -> None:
        self.root = str(root)
        # One fixed-width bytes array rather than a list of str: workers share it without
        # copy-on-access (reference counts would touch every page of a Python list).
        self.paths = np.array([p.encode() for p in paths], dtype=np.bytes_) if paths else np.array([], "S1")
        self.labels = labels.long()
        self.transform: Any = None
        self.draft: int | None = None
        self.seed = 0
        self.epoch = 0
        self.augmenting = False

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def path(self, index: int) -> str:
        """The absolute path of image ``index``."""
        return os.path.join(self.root, self.paths[index].decode())

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        import torch
        from PIL import Image

        path = self.path(index)
        try:
            with Image.open(path) as img:
                if self.draft:
                    # JPEG decoding at 1/2, 1/4 or 1/8 scale while staying >= the resize: far faster.
                    img.draft("RGB", (self.draft, self.draft))
                img = img.convert("RGB")
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read image {path}: {error}") from None
        if self.augmenting:
            # A per-image seed makes augmentation independent of worker count and order.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index) % (2**63))
                image = self.transform(img)
        else:
            image = self.transform(img)
        return image, int(self.labels[index])


def build_transform(train: bool, augment: Augment, options: Mapping[str, Any]) -> tuple[Any, int | None]:
    """The per-image transform ending in a uint8 tensor, and the JPEG draft size (eval only)."""
    from torchvision.transforms import v2

    image_size = int(options.get("image_size", 224))
    if not train:
        resize = int(options.get("resize", round(image_size * 256 / 224)))
        eval_steps = [v2.Resize(resize, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()]
        return v2.Compose(eval_steps), resize
    size = augment.random_resized_crop or image_size
    steps: list[Any] = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    if augment.extra.get("trivial_augment"):
        steps.append(v2.TrivialAugmentWide())
    steps.append(v2.PILToTensor())
    erasing = float(augment.extra.get("random_erasing", 0.0) or 0.0)
    if erasing > 0:
        # Erase to the mean colour: after normalisation that is 0, as in torchvision's recipe.
        steps.append(v2.RandomErasing(p=erasing, value=[round(m * 255) for m in MEAN]))
    return v2.Compose(steps), None


class StreamingLoader:
    """A BatchLoader over a torch DataLoader: workers, pinned memory, normalisation on the device."""

    def __init__(
        self,
        samples: ImageSamples,
        *,
        batch_size: int,
        device: torch.device | str,
        train: bool,
        seed: int,
        workers: int,
        mean: tuple[float, ...] = MEAN,
        std: tuple[float, ...] = STD,
        part: Callable[[int], slice] | None = None,
    ) -> None:
        import torch

        self.samples = samples
        self.part = part  # data-parallel training: this rank's rows of each global batch
        self.num_samples = len(samples)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.skip_batches = 0
        self.workers = workers
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255
        samples.seed = seed
        samples.augmenting = train

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    @property
    def drop_last(self) -> bool:
        # As DeviceLoader: training drops a last partial batch (it upsets BatchNorm), evaluation keeps it.
        return self.train and self.num_samples >= self.batch_size

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Choose the epoch: the shuffle and the augmentation are a function of (seed, epoch).
        ``skip_batches`` starts it after that many batches (resuming a checkpoint taken mid-epoch)."""
        self.epoch = epoch
        self.skip_batches = skip_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch

        if self.num_samples == 0:
            return
        self.samples.epoch = self.epoch
        # The order is drawn here (what shuffle=True would draw from this generator), so a resumed
        # epoch can start after its first skip_batches batches; augmentation is seeded per image.
        if self.train:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        batches = [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(len(self))]
        if self.part is not None:
            batches = [batch[self.part(len(batch))] for batch in batches]
        loader = torch.utils.data.DataLoader(
            self.samples,
            batch_sampler=batches[self.skip_batches :],
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.workers > 0 else None,
        )
        try:
            for images, labels in loader:
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
                yield (images.float() - self.mean) / self.std, labels
        except UserError as error:
            # A worker's UserError arrives wrapped with its traceback: keep the one line that matters.
            line = str(error).strip().splitlines()[-1]
            raise UserError(line.removeprefix("protobench.core.errors.UserError: ")) from None


class FolderStreamingDataset:
    """A StreamingDataset over image files below ``root``: train, val and test lists of (path, label)."""

    def __init__(
        self,
        name: str,
        root: Path,
        splits: dict[str, FileSplit],
        num_classes: int,
        options: Mapping[str, Any],
        class_names: list[str] | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.num_classes = num_classes
        self.source = str(root)
        self.class_names = class_names
        self.mean = MEAN
        self.std = STD
        self.options = dict(options)
        self.samples = {s: splits.get(s, ([], [])) for s in SPLITS}
        self.sizes = {s: len(self.samples[s][0]) for s in SPLITS}
        self.notes: list[str] = []
        # Published split sizes, where there are any (ImageNet-LT); compare with ``sizes``.
        self.expected_sizes: dict[str, int] | None = None

    def _labels(self, split: str) -> torch.Tensor:
        import torch

        if split not in SPLITS:
            raise UserError(f"unknown split '{split}'{did_you_mean(split, SPLITS)}; allowed: {', '.join(SPLITS)}")
        return torch.tensor(self.samples[split][1], dtype=torch.int64)

    def class_counts(self, split: str) -> torch.Tensor:
        """Images per class in ``split`` (train, val or test)."""
        import torch

        return torch.bincount(self._labels(split), minlength=self.num_classes)

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
    ) -> StreamingLoader:
        """Batches of ``split``: training transforms if ``train``, else resize + centre crop."""
        samples = ImageSamples(self.root, self.samples[split][0], self._labels(split))
        samples.transform, samples.draft = build_transform(train, augment, self.options)
        workers = int(self.options.get("workers", default_workers()))
        return StreamingLoader(
            samples, batch_size=batch_size, device=device, train=train, seed=seed, workers=workers, part=part
        )


def hold_out_files(paths: list[str], labels: list[int], val_size: int, data_seed: int) -> tuple[FileSplit, FileSplit]:
    """Split (paths, labels) into (train, val) by the shared rule ``holdout_indices`` (``val_size`` images)."""
    train_index, val_index = holdout_indices(len(paths), val_size, data_seed)

    def pick(index: torch.Tensor) -> FileSplit:
        chosen = index.tolist()
        return [paths[i] for i in chosen], [labels[i] for i in chosen]

    return pick(train_index), pick(val_index)
