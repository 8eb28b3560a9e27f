"""ImageNet-200 (HPN's 200-class subset at 64x64), built once from an ImageNet tree.

``prepare_imagenet200`` decodes the listed classes into one uint8 file that loads like CIFAR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from protobench.core.errors import UserError
from protobench.core.paths import atomic_write
from protobench.data.base import DataRequest, ImageSplit, InMemoryDataset, missing_data, register_dataset, search_dirs
from protobench.data.folders import MEAN, STD, default_workers, scan_image_folder
from protobench.data.imagenet import find_root

FILE_NAME = "imagenet200_{size}.pt"
DEFAULT_SIZE = 64
HOW_TO_GET = (
    "Build it once with `protobench data prepare imagenet200 --imagenet DIR` (DIR holding ImageNet-1K "
    "train/ and val/), then pass --data-dir where it wrote imagenet200_64.pt."
)
# The class list shipped with the suites (Tiny ImageNet's 200 wnids, as HPN's ImageNet-200 uses).
DEFAULT_CLASSES_FILE = Path(__file__).resolve().parents[2] / "suites" / "imagenet200_classes.txt"


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
    import torch

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
    target = Path(out) / FILE_NAME.format(size=size)
    atomic_write(target, lambda f: torch.save(payload, f))  # never a half-written file under the real name
    return target


def find_imagenet200(request: DataRequest, size: int) -> Path | None:
    """The prepared ImageNet-200 file on the search path, or None."""
    name = FILE_NAME.format(size=size)
    for folder in search_dirs(request):
        for layout in ("", "imagenet200"):
            if (folder / layout / name).is_file():
                return folder / layout / name
    return None


def locate(request: DataRequest) -> Path | None:
    """Where the prepared file (option image_size, default 64) is found on the search path."""
    return find_imagenet200(request, int(request.options.get("image_size", DEFAULT_SIZE)))


@register_dataset(
    "imagenet200",
    num_classes=200,
    image_shape=(3, DEFAULT_SIZE, DEFAULT_SIZE),
    locate=locate,
    how_to_get=HOW_TO_GET,
)
def imagenet200(request: DataRequest) -> InMemoryDataset:
    """ImageNet-200: 200 ImageNet classes at 64x64 from the file ``protobench data prepare`` writes."""
    import torch

    size = int(request.options.get("image_size", DEFAULT_SIZE))
    path = find_imagenet200(request, size)
    if path is None:
        reason = f"no {FILE_NAME.format(size=size)}"
        raise missing_data("imagenet200", search_dirs(request), HOW_TO_GET, reason)
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
