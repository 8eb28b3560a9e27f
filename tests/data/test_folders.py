"""Folder streaming (protobench.data.folders) on a tiny ImageFolder tree of real JPEGs."""

from __future__ import annotations

import pytest
import torch

from protobench.core.errors import UserError
from protobench.data import Augment
from protobench.data import folders as fo
from tests.data import fakefiles

CPU = torch.device("cpu")
SMALL = {"workers": 0, "image_size": 16, "resize": 20}


def _dataset(tree, **options) -> fo.FolderStreamingDataset:
    """train/ and val/ of ``tree`` as the train and test splits, as the ImageNet builder lays them out."""
    classes = fo.class_dirs(tree / "train")
    splits = {}
    for split, folder in (("train", "train"), ("test", "val")):
        paths, labels = fo.scan_image_folder(tree / folder, classes)
        splits[split] = ([f"{folder}/{p}" for p in paths], labels)
    return fo.FolderStreamingDataset("toy", tree, splits, len(classes), {**SMALL, **options}, classes)


def test_scan_sorts_and_labels_by_class_order(tree):
    classes = fo.class_dirs(tree / "train")
    assert classes == sorted(fakefiles.WNIDS)
    paths, labels = fo.scan_image_folder(tree / "train", classes[::-1])
    assert labels == [c for c in range(5) for _ in range(6)]
    assert paths[0].startswith(classes[-1] + "/") and paths[:6] == sorted(paths[:6])
    ds = _dataset(tree)
    assert ds.sizes == {"train": 30, "val": 0, "test": 10} and ds.class_counts("test").tolist() == [2] * 5
    with pytest.raises(UserError, match="unknown split 'tset' \\(did you mean 'test'\\?\\)"):
        ds.class_counts("tset")


def test_hold_out_files_keeps_pairs_and_order(tree):
    paths, labels = fo.scan_image_folder(tree / "train", fo.class_dirs(tree / "train"))
    (train_paths, train_labels), (val_paths, val_labels) = fo.hold_out_files(paths, labels, 7, 1)
    assert len(val_paths) == 7 and len(train_paths) == 23 and not set(train_paths) & set(val_paths)
    pairs = dict(zip(paths, labels, strict=True))
    assert all(pairs[p] == y for p, y in zip(train_paths + val_paths, train_labels + val_labels, strict=True))
    assert val_paths == [p for p in paths if p in set(val_paths)]  # in scan order
    with pytest.raises(UserError, match="val_size 30"):
        fo.hold_out_files(paths, labels, 30, 0)


def test_eval_loader_resizes_crops_and_normalises(tree):
    from PIL import Image
    from torchvision.transforms import v2

    ds = _dataset(tree)
    loader = ds.loader("test", batch_size=4, device=CPU, train=False, seed=0, augment=Augment())
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and loader.num_samples == 10
    images, labels = batches[0]
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert batches[-1][0].shape[0] == 2  # evaluation keeps the last partial batch
    assert torch.cat([b[1] for b in batches]).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    first = tree / ds.samples["test"][0][0]
    with Image.open(first) as img:
        ref = v2.CenterCrop(16)(v2.Resize(20, antialias=True)(v2.PILToTensor()(img.convert("RGB")))).float()
    mean = torch.tensor(fo.MEAN).view(3, 1, 1) * 255
    std = torch.tensor(fo.STD).view(3, 1, 1) * 255
    # JPEG draft decoding may differ from full decoding by a few grey levels.
    assert (images[0] - (ref - mean) / std).abs().max() < 12 / 255 / min(fo.STD)


def test_train_loader_is_seeded_by_seed_and_epoch(tree):
    ds = _dataset(tree)
    augment = Augment(random_resized_crop=12, extra={"trivial_augment": True, "random_erasing": 0.5})
    loader = ds.loader("train", batch_size=4, device=CPU, train=True, seed=5, augment=augment)
    assert len(loader) == 7  # 30 images, the last partial batch dropped
    first = list(loader)
    assert len(first) == 7 and first[0][0].shape == (4, 3, 12, 12)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, list(loader), strict=True))
    loader.set_epoch(1)
    second = list(loader)
    assert not torch.equal(torch.cat([b[1] for b in first]), torch.cat([b[1] for b in second]))


def test_workers_do_not_change_the_batches(tree):
    batches = {}
    for workers in (0, 2):
        ds = _dataset(tree, workers=workers)
        loader = ds.loader("train", batch_size=8, device=CPU, train=True, seed=1, augment=Augment())
        batches[workers] = list(loader)
    for (x0, y0), (x1, y1) in zip(batches[0], batches[2], strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_image_is_one_line(tree, workers):
    bad = tree / "val" / fakefiles.WNIDS[0] / "ILSVRC2012_val_99999999.JPEG"
    bad.write_bytes(b"not a jpeg")
    ds = _dataset(tree, workers=workers)
    loader = ds.loader("test", batch_size=64, device=CPU, train=False, seed=0, augment=Augment())
    with pytest.raises(UserError, match="cannot read image .*99999999") as info:
        list(loader)
    assert "\n" not in str(info.value)
