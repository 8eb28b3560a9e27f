"""ImageNet-1K and ImageNet-LT as streaming datasets over an ImageNet folder tree (see ``folders``)."""

from __future__ import annotations

import warnings
from pathlib import Path

from protobench.core.errors import UserError
from protobench.data.base import DataRequest, missing_data, register_dataset, search_dirs
from protobench.data.folders import FileSplit, FolderStreamingDataset, class_dirs, hold_out_files, scan_image_folder

LAYOUTS = ("imagenet", "")
# ImageNet-LT (Liu et al., CVPR 2019): val is drawn from ImageNet train, test is the ILSVRC-12 val set.
LT_EXPECTED_SIZES = {"train": 115_846, "val": 20_000, "test": 50_000}
HOW_TO_GET = (
    "ImageNet cannot be downloaded automatically: get ILSVRC-2012 from image-net.org and pass --data-dir DIR "
    "holding train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (or DIR/imagenet/...)."
)
LT_HOW_TO_GET = HOW_TO_GET + " Split files come from the suite."
# Streaming images are cropped to this by default (option image_size).
IMAGE_SHAPE = (3, 224, 224)


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


@register_dataset("imagenet", num_classes=1000, image_shape=IMAGE_SHAPE, locate=locate, how_to_get=HOW_TO_GET)
def imagenet(request: DataRequest) -> FolderStreamingDataset:
    """ImageNet-1K from train/<wnid>/ and val/<wnid>/; test = val/, options val_size and data_seed."""
    looked = search_dirs(request)
    root = find_root(looked)
    if root is None:
        raise missing_data("imagenet", looked, HOW_TO_GET)
    classes = class_dirs(root / "train")
    if not classes:
        raise UserError(f"{root / 'train'} holds no class folders; expected train/<wnid>/*.JPEG")
    val_dirs = class_dirs(root / "val")
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
        splits["train"], splits["val"] = hold_out_files(*train, val_size, int(request.options.get("data_seed", 0)))
    return FolderStreamingDataset("imagenet", root, splits, len(classes), request.options, classes)


def read_split_list(path: Path) -> FileSplit:
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


@register_dataset(
    "imagenet-lt",
    num_classes=1000,
    image_shape=IMAGE_SHAPE,
    locate=locate,
    how_to_get=LT_HOW_TO_GET,
    long_tailed=True,
    own_validation=True,
)
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
