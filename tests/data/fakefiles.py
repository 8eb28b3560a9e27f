"""Writers of tiny datasets in exactly the on-disk formats the real ones use (for tests only).

Each writer puts files where torchvision (or ImageNet's usual layout) would put them below
``root`` and returns what a test needs to point a builder at them. Images carry a faint
class-dependent tint over noise, so a model can learn something in end-to-end tests.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL10_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
# A few real ImageNet wnids (tench, goldfish, great white shark, tiger shark, hammerhead).
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]


def isolate_data_env(monkeypatch, tmp_path: Path) -> None:
    """Point protobench's cache (and so its user data dir) into ``tmp_path``; forget $PROTOBENCH_DATA."""
    monkeypatch.setenv("PROTOBENCH_CACHE", str(tmp_path / "protobench-cache"))
    monkeypatch.delenv("PROTOBENCH_DATA", raising=False)


def _labels(n: int, num_classes: int) -> np.ndarray:
    return np.arange(n) % num_classes


def _images(labels: np.ndarray, num_classes: int, side: int, seed: int) -> np.ndarray:
    """uint8 N x 3 x side x side: noise plus a colour that depends on the class."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 128, size=(labels.size, 3, side, side), dtype=np.int64)
    tint = (np.stack([labels * 37, labels * 71, labels * 113], axis=1) % 128)[:, :, None, None]
    return (noise + tint).astype(np.uint8)


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (SHORT_BINSTRING/BINSTRING), as the CIFAR files hold them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    """A protocol-2 pickle as Python 2 with numpy 1 wrote it (py2 str, numpy.core.multiarray)."""
    import io

    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    # GLOBAL opcodes are text lines, so renaming the module keeps the pickle valid.
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _write_pickle(path: Path, obj: object, py2: bool) -> None:
    path.write_bytes(py2_pickle(obj) if py2 else pickle.dumps(obj, protocol=2))


def write_cifar10(root: Path, n_train: int = 100, n_test: int = 50, *, seed: int = 0, py2: bool = True) -> Path:
    """``root/cifar-10-batches-py`` with data_batch_1..5, test_batch and batches.meta; returns that folder.

    The train images are spread over the five batches as in the real files. ``py2=False`` writes the
    pickles as Python 3 does at protocol 2 (bytes through _codecs.encode) instead.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    labels = _labels(n_train, 10)
    images = _images(labels, 10, 32, seed).reshape(n_train, 3072)
    for b, part in enumerate(np.array_split(np.arange(n_train), 5), 1):
        batch = {
            b"batch_label": f"training batch {b} of 5".encode(),
            b"labels": [int(y) for y in labels[part]],
            b"data": np.ascontiguousarray(images[part]),
            b"filenames": [f"img_{i:05d}.png".encode() for i in part],
        }
        _write_pickle(folder / f"data_batch_{b}", batch, py2)
    test_labels = _labels(n_test, 10)[::-1].copy()
    test = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(y) for y in test_labels],
        b"data": _images(test_labels, 10, 32, seed + 1).reshape(n_test, 3072),
        b"filenames": [f"test_{i:05d}.png".encode() for i in range(n_test)],
    }
    _write_pickle(folder / "test_batch", test, py2)
    meta = {
        b"num_cases_per_batch": max(1, n_train // 5),
        b"label_names": [n.encode() for n in CIFAR10_NAMES],
        b"num_vis": 3072,
    }
    _write_pickle(folder / "batches.meta", meta, py2)
    return folder


def write_cifar100(root: Path, n_train: int = 300, n_test: int = 100, *, seed: int = 0, py2: bool = True) -> Path:
    """``root/cifar-100-python`` with train, test and meta; returns that folder."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for file, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        fine = _labels(n, 100)
        entry = {
            b"filenames": [f"{file}_{i:05d}.png".encode() for i in range(n)],
            b"batch_label": f"{file}ing batch 1 of 1".encode(),
            b"fine_labels": [int(y) for y in fine],
            b"coarse_labels": [int(y) // 5 for y in fine],
            b"data": _images(fine, 100, 32, s).reshape(n, 3072),
        }
        _write_pickle(folder / file, entry, py2)
    meta = {
        b"fine_label_names": [f"class_{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"super_{i}".encode() for i in range(20)],
    }
    _write_pickle(folder / "meta", meta, py2)
    return folder


def write_svhn(root: Path, n_train: int = 100, n_test: int = 50, n_extra: int = 0, *, seed: int = 0) -> Path:
    """``train_32x32.mat``, ``test_32x32.mat`` (and ``extra_32x32.mat``) in ``root``; returns ``root``.

    As the real files: X is uint8 32 x 32 x 3 x N, y is uint8 N x 1 with 10 for the digit 0.
    """
    from scipy.io import savemat

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    parts = [("train", n_train, seed), ("test", n_test, seed + 1)]
    if n_extra:
        parts.append(("extra", n_extra, seed + 2))
    for part, n, s in parts:
        digits = _labels(n, 10)
        x = _images(digits, 10, 32, s).transpose(2, 3, 1, 0)  # N x C x H x W -> H x W x C x N
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        savemat(str(root / f"{part}_32x32.mat"), {"X": np.ascontiguousarray(x), "y": y})
    return root


def write_stl10(root: Path, n_train: int = 40, n_test: int = 20, *, seed: int = 0) -> Path:
    """``root/stl10_binary``: {train,test}_X.bin (column-major 3x96x96), _y.bin (1..10), class_names.txt."""
    folder = Path(root) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        labels = _labels(n, 10)
        images = _images(labels, 10, 96, s)
        # The files store each channel column-major: write H and W swapped.
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")
        (labels + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(STL10_NAMES) + "\n")
    return folder


def write_imagenet_tree(
    root: Path,
    wnids: list[str] | None = None,
    n_train: int = 6,
    n_val: int = 2,
    *,
    seed: int = 0,
) -> Path:
    """ImageNet's layout: ``root/train/<wnid>/<wnid>_<i>.JPEG`` and ``root/val/<wnid>/ILSVRC2012_val_*.JPEG``.

    Real (small) JPEGs of varying sizes; the first training image is greyscale, as some ImageNet
    images are. Returns ``root``.
    """
    from PIL import Image

    root = Path(root)
    wnids = wnids or WNIDS
    rng = np.random.default_rng(seed)
    counter = 0
    for label, wnid in enumerate(wnids):
        for split, n in (("train", n_train), ("val", n_val)):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = 24 + 4 * (i % 3), 32 + 8 * (i % 2)
                pixels = (rng.integers(0, 128, (h, w, 3)) + (label * 40) % 128).astype(np.uint8)
                img = Image.fromarray(pixels)
                if split == "train" and label == 0 and i == 0:
                    img = img.convert("L")
                counter += 1
                name = f"{wnid}_{i + 1}.JPEG" if split == "train" else f"ILSVRC2012_val_{counter:08d}.JPEG"
                img.save(folder / name, format="JPEG", quality=90)
    return root


def write_imagenet_lt_lists(root: Path, out: Path, n_val_per_class: int = 1) -> dict[str, str]:
    """ImageNet-LT split files over the tree at ``root``; returns them as dataset options.

    Lines are ``<path relative to root> <label>`` with labels in sorted-wnid order: train takes a
    long tail of train/ (class i keeps n - i images, at least one), val ``n_val_per_class`` other
    train/ images per class, test all of val/.
    """
    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wnids = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label, wnid in enumerate(wnids):
        files = sorted(p.name for p in (root / "train" / wnid).iterdir())
        val, rest = files[:n_val_per_class], files[n_val_per_class:]
        keep = max(1, len(rest) - label)
        lines["train"] += [f"train/{wnid}/{f} {label}" for f in rest[:keep]]
        lines["val"] += [f"train/{wnid}/{f} {label}" for f in val]
        lines["test"] += [f"val/{wnid}/{p.name} {label}" for p in sorted((root / "val" / wnid).iterdir())]
    options = {}
    for split, split_lines in lines.items():
        path = out / f"ImageNet_LT_{split}.txt"
        path.write_text("\n".join(split_lines) + "\n")
        options[f"{split}_list"] = str(path)
    return options


def write_classes_file(path: Path, wnids: list[str]) -> Path:
    """A classes file (one wnid a line) as ``suites/imagenet200_classes.txt`` is."""
    path = Path(path)
    path.write_text("\n".join(wnids) + "\n")
    return path


def write_fashion_mnist(root: Path, n_train: int = 200, n_test: int = 100, *, seed: int = 0, gz: bool = True) -> Path:
    """The four Fashion-MNIST IDX files (28x28 grey, labels 0-9) in ``root``, gzipped as Debian ships them."""
    import gzip

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)

    def write(name: str, array: np.ndarray) -> None:
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
        data = header + array.astype(np.uint8).tobytes()
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)

    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 1)):
        labels = _labels(n, 10)
        images = _images(labels, 10, 28, seed + offset)[:, 0]
        write(f"{prefix}-images-idx3-ubyte", images)
        write(f"{prefix}-labels-idx1-ubyte", labels)
    return root
