"""ImageNet-1K and ImageNet-LT as streaming datasets, and the compact in-memory ImageNet-200.

ImageNet does not fit on the device, so its loaders are torch DataLoaders: worker processes
decode and augment (PIL + torchvision transforms) into uint8 tensors, batches come back in
pinned memory, are copied without blocking and are normalised on the device. Augmentation
is seeded per image from (seed, epoch, index), so a run's batches do not depend on how many
workers decode them.

ImageNet-200 (HPN's 200-class subset at 64x64) is built once from an ImageNet tree with
``prepare_imagenet200`` into one uint8 file that loads like CIFAR.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protobench.data.base import (
    Augment,
    DataRequest,
    ImageSplit,
    InMemoryDataset,
    missing_data,
    register_dataset,
    search_dirs,
)
from protobench.errors import UserError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpeg", ".jpg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUTS = ("imagenet", "")
SPLITS = ("train", "val", "test")
# ImageNet-LT (Liu et al., CVPR 2019): val is drawn from ImageNet train, test is the ILSVRC-12 val set.
LT_EXPECTED_SIZES = {"train": 115_846, "val": 20_000, "test": 50_000}
HOW_TO_GET = (
    "ImageNet cannot be downloaded automatically: get ILSVRC-2012 from image-net.org and pass --data-dir DIR "
    "holding train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (or DIR/imagenet/...)."
)
IMAGENET200_FILE = "imagenet200_{size}.pt"
IMAGENET200_HOW = (
    "Build it once with `protobench data prepare imagenet200 --imagenet DIR` (DIR holding ImageNet-1K "
    "train/ and val/), then pass --data-dir where it wrote imagenet200_64.pt."
)
# The class list shipped with the suites (Tiny ImageNet's 200 wnids, as HPN's ImageNet-200 uses).
DEFAULT_CLASSES_FILE = Path(__file__).resolve().parents[2] / "suites" / "imagenet200_classes.txt"


def default_workers() -> int:
    """Loader/decoder processes when no option says: min(8, CPU count)."""
    return min(8, os.cpu_count() or 1)


def is_imagenet_root(folder: Path) -> bool:
    """Whether ``folder`` holds ImageNet's ``train/`` and ``val/`` folders."""
    return (folder / "train").is_dir() and (folder / "val").is_dir()


def find_root(folders: list[Path]) -> Path | None:
    """The first ``folder/imagenet`` or ``folder`` that holds train/ and val/."""
    for folder in folders:
        for layout in LAYOUTS:
            if is_imagenet_root(folder / layout):
                return folder / layout
    return None


def locate(request: DataRequest) -> Path | None:
    """Where ImageNet is found on the search path (nothing is read)."""
    return find_root(search_dirs(request))


def _image_files(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.name.lower().endswith(EXTENSIONS) and e.is_file())


def _class_dirs(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def scan_image_folder(folder: Path, classes: list[str]) -> tuple[list[str], list[int]]:
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


class ImageSamples(torch.utils.data.Dataset):
    """Images named by path below ``root``, decoded with PIL and transformed to uint8 C x H x W."""

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
    ) -> None:
        self.samples = samples
        self.num_samples = len(samples)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train = train
        self.seed = seed
        self.epoch = 0
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

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch: the shuffle and the augmentation are a function of (seed, epoch)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.num_samples == 0:
            return
        self.samples.epoch = self.epoch
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        loader = torch.utils.data.DataLoader(
            self.samples,
            batch_size=self.batch_size,
            shuffle=self.train,
            generator=generator,
            drop_last=self.drop_last,
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
            raise UserError(line.removeprefix("protobench.errors.UserError: ")) from None


class FolderStreamingDataset:
    """A StreamingDataset over image files below ``root``: train, val and test lists of (path, label)."""

    def __init__(
        self,
        name: str,
        root: Path,
        splits: dict[str, tuple[list[str], list[int]]],
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
        if split not in SPLITS:
            raise UserError(f"unknown split '{split}'; allowed: {', '.join(SPLITS)}")
        return torch.tensor(self.samples[split][1], dtype=torch.int64)

    def class_counts(self, split: str) -> torch.Tensor:
        """Images per class in ``split`` (train, val or test)."""
        return torch.bincount(self._labels(split), minlength=self.num_classes)

    def loader(
        self, split: str, *, batch_size: int, device: torch.device, train: bool, seed: int, augment: Augment
    ) -> StreamingLoader:
        """Batches of ``split``: training transforms if ``train``, else resize + centre crop."""
        samples = ImageSamples(self.root, self.samples[split][0], self._labels(split))
        samples.transform, samples.draft = build_transform(train, augment, self.options)
        workers = int(self.options.get("workers", default_workers()))
        return StreamingLoader(samples, batch_size=batch_size, device=device, train=train, seed=seed, workers=workers)


def _hold_out(
    paths: list[str], labels: list[int], val_size: int, data_seed: int
) -> tuple[tuple[list[str], list[int]], tuple[list[str], list[int]]]:
    """Split (paths, labels) into (train, val) with ``val_size`` images drawn by ``data_seed``."""
    if val_size < 0 or val_size >= len(paths):
        raise UserError(f"val_size must be in 0..{len(paths) - 1} (training images), got {val_size}")
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(data_seed))
    in_val = torch.zeros(len(paths), dtype=torch.bool)
    in_val[order[:val_size]] = True
    keep = in_val.tolist()

    def pick(flag: bool) -> tuple[list[str], list[int]]:
        chosen = [i for i, v in enumerate(keep) if v == flag]
        return [paths[i] for i in chosen], [labels[i] for i in chosen]

    return pick(False), pick(True)


@register_dataset("imagenet", num_classes=1000)
def imagenet(request: DataRequest) -> FolderStreamingDataset:
    """ImageNet-1K from train/<wnid>/ and val/<wnid>/; test = val/, options val_size and data_seed."""
    looked = search_dirs(request)
    root = find_root(looked)
    if root is None:
        raise missing_data("imagenet", looked, HOW_TO_GET)
    classes = _class_dirs(root / "train")
    if not classes:
        raise UserError(f"{root / 'train'} holds no class folders; expected train/<wnid>/*.JPEG")
    val_dirs = _class_dirs(root / "val")
    if not val_dirs:
        raise UserError(
            f"{root / 'val'} holds no class folders: sort the validation images into val/<wnid>/ "
            "(e.g. with the widely used valprep.sh)"
        )
    if unknown := sorted(set(val_dirs) - set(classes)):
        raise UserError(f"{root / 'val'} has classes missing from train/: {', '.join(unknown[:5])}")
    train_paths, train_labels = scan_image_folder(root / "train", classes)
    test_paths, test_labels = scan_image_folder(root / "val", classes)
    train = ([f"train/{p}" for p in train_paths], train_labels)
    test = ([f"val/{p}" for p in test_paths], test_labels)
    splits = {"train": train, "test": test}
    val_size = int(request.options.get("val_size", 0))
    if val_size:
        splits["train"], splits["val"] = _hold_out(*train, val_size, int(request.options.get("data_seed", 0)))
    return FolderStreamingDataset("imagenet", root, splits, len(classes), request.options, classes)


def read_split_list(path: Path) -> tuple[list[str], list[int]]:
    """An ImageNet-LT split file: lines ``<relative path> <label>``."""
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read split file {path}: {error.strerror or error}") from None
    paths: list[str] = []
    labels: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or int(parts[1]) < 0:
            raise UserError(f"{path}:{number}: expected '<relative path> <label>', got {line.strip()!r}")
        paths.append(parts[0])
        labels.append(int(parts[1]))
    if not paths:
        raise UserError(f"split file {path} lists no images")
    return paths, labels


@register_dataset("imagenet-lt", num_classes=1000)
def imagenet_lt(request: DataRequest) -> FolderStreamingDataset:
    """ImageNet-LT: split files in options train_list, val_list, test_list; paths below the ImageNet dir.

    The val split is the one the val_list names (option val_size does not apply). Sizes differing from
    the published ones are reported in ``notes`` and as a warning, not refused.
    """
    keys = {"train": "train_list", "val": "val_list", "test": "test_list"}
    missing = [k for k in keys.values() if not request.options.get(k)]
    if missing:
        raise UserError(f"imagenet-lt needs dataset_options {', '.join(missing)} (ImageNet_LT_*.txt paths)")
    looked = search_dirs(request)

    def list_path(name: str) -> Path:
        # A relative list name (as the shipped suite gives) is looked for here, then in each data folder.
        path = Path(name).expanduser()
        if path.is_absolute() or path.is_file():
            return path
        return next((f / lay / path for f in looked for lay in LAYOUTS if (f / lay / path).is_file()), path)

    splits = {s: read_split_list(list_path(request.options[k])) for s, k in keys.items()}
    first = splits["train"][0][0]
    root = next((f / lay for f in looked for lay in LAYOUTS if (f / lay / first).is_file()), None)
    if root is None:
        raise missing_data("imagenet-lt", looked, HOW_TO_GET, f"no folder holds {first}")
    num_classes = 1 + max(max(labels) for _, labels in splits.values())
    names: list[str] = [""] * num_classes
    for paths, labels in splits.values():
        for p, y in zip(paths, labels, strict=True):
            if not names[y]:
                names[y] = Path(p).parent.name
    dataset = FolderStreamingDataset("imagenet-lt", root, splits, num_classes, request.options, names)
    dataset.expected_sizes = dict(LT_EXPECTED_SIZES)
    for split, expected in LT_EXPECTED_SIZES.items():
        if dataset.sizes[split] != expected:
            dataset.notes.append(f"ImageNet-LT {split} has {dataset.sizes[split]:,} images, not {expected:,}")
    if dataset.notes:
        warnings.warn("; ".join(dataset.notes) + " (not the published split files?)", stacklevel=2)
    return dataset


def read_classes_file(path: Path) -> list[str]:
    """wnids one per line (blank lines and # comments ignored)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise UserError(f"cannot read classes file {path}: {error.strerror or error}") from None
    wnids = [line.split("#")[0].strip() for line in lines]
    wnids = [w for w in wnids if w]
    if not wnids or len(set(wnids)) != len(wnids):
        raise UserError(f"classes file {path} must list distinct wnids, one per line")
    return wnids


def load_small(path: str, size: int) -> np.ndarray:
    """One image as uint8 3 x size x size: the shorter side resized to ``size``, centre-cropped."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))
            img = img.convert("RGB")
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read image {path}: {error}") from None
    img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _load_small_star(args: tuple[str, int]) -> np.ndarray:
    return load_small(*args)


def _decode_all(paths: list[str], size: int, workers: int) -> np.ndarray:
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    if workers <= 1:
        for i, p in enumerate(paths):
            out[i] = load_small(p, size)
        return out
    import multiprocessing

    with multiprocessing.get_context().Pool(workers) as pool:
        for i, image in enumerate(pool.imap(_load_small_star, [(p, size) for p in paths], chunksize=64)):
            out[i] = image
    return out


def prepare_imagenet200(
    imagenet_root: Path,
    out: Path,
    classes_file: Path = DEFAULT_CLASSES_FILE,
    size: int = 64,
    workers: int | None = None,
) -> Path:
    """Write ``out/imagenet200_<size>.pt``: the listed classes of an ImageNet tree at size x size.

    Train images come from train/<wnid>/, test images from val/<wnid>/; labels follow the order of
    ``classes_file``. Returns the written file.
    """
    root = find_root([Path(imagenet_root)])
    if root is None:
        raise UserError(f"{imagenet_root} holds no ImageNet train/ and val/ (nor imagenet/train and /val)")
    if size < 8:
        raise UserError(f"--size must be at least 8, got {size}")
    wnids = read_classes_file(Path(classes_file))
    absent = [w for w in wnids if not (root / "train" / w).is_dir() or not (root / "val" / w).is_dir()]
    if absent:
        example = ", ".join(absent[:3])
        raise UserError(f"{root} lacks train/ or val/ folders for {len(absent)} classes, e.g. {example}")
    workers = default_workers() if workers is None else workers
    arrays: dict[str, Any] = {}
    for split, folder in (("train", "train"), ("test", "val")):
        paths, labels = scan_image_folder(root / folder, wnids)
        files = [str(root / folder / p) for p in paths]
        arrays[f"{split}_images"] = torch.from_numpy(_decode_all(files, size, workers))
        arrays[f"{split}_labels"] = torch.tensor(labels, dtype=torch.int64)
    payload = {**arrays, "wnids": wnids, "size": size, "source": str(root)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / IMAGENET200_FILE.format(size=size)
    partial = target.with_suffix(".pt.partial")
    torch.save(payload, partial)
    os.replace(partial, target)  # never leave a half-written file under the real name
    return target


def find_imagenet200(request: DataRequest, size: int) -> Path | None:
    """The prepared ImageNet-200 file on the search path, or None."""
    name = IMAGENET200_FILE.format(size=size)
    for folder in search_dirs(request):
        for layout in ("", "imagenet200"):
            if (folder / layout / name).is_file():
                return folder / layout / name
    return None


@register_dataset("imagenet200", num_classes=200)
def imagenet200(request: DataRequest) -> InMemoryDataset:
    """ImageNet-200: 200 ImageNet classes at 64x64 from the file ``protobench data prepare`` writes."""
    size = int(request.options.get("image_size", 64))
    path = find_imagenet200(request, size)
    if path is None:
        reason = f"no {IMAGENET200_FILE.format(size=size)}"
        raise missing_data("imagenet200", search_dirs(request), IMAGENET200_HOW, reason)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        train = ImageSplit(payload["train_images"], payload["train_labels"])
        test = ImageSplit(payload["test_images"], payload["test_labels"])
        wnids = list(payload["wnids"])
    except Exception as error:  # a truncated or foreign file: one line, not a traceback
        kind = type(error).__name__
        raise UserError(f"{path} is not a prepared ImageNet-200 file ({kind}); prepare it again") from None
    return InMemoryDataset(
        name="imagenet200",
        num_classes=len(wnids),
        train=train,
        test=test,
        mean=MEAN,
        std=STD,
        source=str(path),
        class_names=wnids,
    )
