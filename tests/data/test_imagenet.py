"""ImageNet, ImageNet-LT and ImageNet-200 on a tiny ImageFolder tree of real JPEGs."""

from __future__ import annotations

import re

import pytest
import torch

from protobench.data import DATASETS, Augment, DataRequest
from protobench.data import imagenet as inet
from protobench.errors import UserError
from tests.data import fakefiles

CPU = torch.device("cpu")
SMALL = {"workers": 0, "image_size": 16, "resize": 20}


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    fakefiles.isolate_data_env(monkeypatch, tmp_path)


@pytest.fixture
def tree(tmp_path):
    return fakefiles.write_imagenet_tree(tmp_path / "imagenet", n_train=6, n_val=2)


def _request(tmp_path, **options):
    return DataRequest(data_dir=tmp_path, download=False, options={**SMALL, **options})


def test_imagenet_splits_and_counts(tmp_path, tree):
    ds = DATASETS.get("imagenet")(_request(tmp_path))
    assert ds.num_classes == 5 and ds.source == str(tree) and ds.class_names == sorted(fakefiles.WNIDS)
    assert ds.class_counts("train").tolist() == [6] * 5
    assert ds.class_counts("test").tolist() == [2] * 5
    assert ds.class_counts("val").tolist() == [0] * 5


def test_validation_held_out_of_train(tmp_path, tree):
    ds = inet.imagenet(_request(tmp_path, val_size=7, data_seed=1))
    assert ds.sizes == {"train": 23, "val": 7, "test": 10}
    train, val = set(ds.samples["train"][0]), set(ds.samples["val"][0])
    assert not train & val and all(p.startswith("train/") for p in val)
    same = inet.imagenet(_request(tmp_path, val_size=7, data_seed=1))
    other = inet.imagenet(_request(tmp_path, val_size=7, data_seed=2))
    assert same.samples["val"] == ds.samples["val"] and other.samples["val"] != ds.samples["val"]
    with pytest.raises(UserError, match="val_size"):
        inet.imagenet(_request(tmp_path, val_size=30))


def test_eval_loader_resizes_crops_and_normalises(tmp_path, tree):
    from PIL import Image
    from torchvision.transforms import v2

    ds = inet.imagenet(_request(tmp_path))
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
    mean = torch.tensor(inet.MEAN).view(3, 1, 1) * 255
    std = torch.tensor(inet.STD).view(3, 1, 1) * 255
    # JPEG draft decoding may differ from full decoding by a few grey levels.
    assert (images[0] - (ref - mean) / std).abs().max() < 12 / 255 / min(inet.STD)


def test_train_loader_is_seeded_by_seed_and_epoch(tmp_path, tree):
    ds = inet.imagenet(_request(tmp_path))
    augment = Augment(random_resized_crop=12, extra={"trivial_augment": True, "random_erasing": 0.5})
    loader = ds.loader("train", batch_size=4, device=CPU, train=True, seed=5, augment=augment)
    assert len(loader) == 7  # 30 images, the last partial batch dropped
    first = list(loader)
    assert len(first) == 7 and first[0][0].shape == (4, 3, 12, 12)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, list(loader), strict=True))
    loader.set_epoch(1)
    second = list(loader)
    assert not torch.equal(torch.cat([b[1] for b in first]), torch.cat([b[1] for b in second]))


def test_workers_do_not_change_the_batches(tmp_path, tree):
    batches = {}
    for workers in (0, 2):
        ds = inet.imagenet(_request(tmp_path, workers=workers))
        loader = ds.loader("train", batch_size=8, device=CPU, train=True, seed=1, augment=Augment())
        batches[workers] = list(loader)
    for (x0, y0), (x1, y1) in zip(batches[0], batches[2], strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_image_is_one_line(tmp_path, tree, workers):
    bad = tree / "val" / fakefiles.WNIDS[0] / "ILSVRC2012_val_99999999.JPEG"
    bad.write_bytes(b"not a jpeg")
    ds = inet.imagenet(_request(tmp_path, workers=workers))
    loader = ds.loader("test", batch_size=64, device=CPU, train=False, seed=0, augment=Augment())
    with pytest.raises(UserError, match="cannot read image .*99999999") as info:
        list(loader)
    assert "\n" not in str(info.value)


def test_flat_val_and_missing_tree(tmp_path):
    with pytest.raises(UserError) as info:
        inet.imagenet(_request(tmp_path))
    assert "\n" not in str(info.value) and "train/<wnid>" in str(info.value)
    root = fakefiles.write_imagenet_tree(tmp_path / "imagenet", n_train=1, n_val=1)
    for folder in list((root / "val").iterdir()):  # the validation images as ILSVRC ships them: flat
        for image in folder.iterdir():
            image.rename(root / "val" / image.name)
        folder.rmdir()
    with pytest.raises(UserError, match="val/<wnid>"):
        inet.imagenet(_request(tmp_path))


def test_imagenet_lt_split_files(tmp_path, tree):
    lists = fakefiles.write_imagenet_lt_lists(tree, tmp_path / "lists")
    with pytest.warns(UserWarning, match="ImageNet-LT train has 15 images, not 115,846"):
        ds = DATASETS.get("imagenet-lt")(_request(tmp_path, **lists))
    assert ds.expected_sizes == {"train": 115_846, "val": 20_000, "test": 50_000}
    assert ds.sizes == {"train": 15, "val": 5, "test": 10} and len(ds.notes) == 3
    assert ds.class_counts("train").tolist() == [5, 4, 3, 2, 1]
    assert ds.class_names == sorted(fakefiles.WNIDS)
    loader = ds.loader("val", batch_size=5, device=CPU, train=False, seed=0, augment=Augment())
    ((images, labels),) = list(loader)
    assert images.shape == (5, 3, 16, 16) and labels.tolist() == [0, 1, 2, 3, 4]


def test_imagenet_lt_errors(tmp_path, tree):
    lists = fakefiles.write_imagenet_lt_lists(tree, tmp_path / "lists")
    with pytest.raises(UserError, match="needs dataset_options val_list"):
        inet.imagenet_lt(_request(tmp_path, train_list=lists["train_list"], test_list=lists["test_list"]))
    bad = tmp_path / "bad.txt"
    bad.write_text("train/n01440764/n01440764_1.JPEG 0\nonly-a-path\n")
    with pytest.raises(UserError, match=re.escape(f"{bad}:2")):
        inet.imagenet_lt(_request(tmp_path, **{**lists, "val_list": str(bad)}))
    with pytest.raises(UserError, match="no folder holds"):
        inet.imagenet_lt(DataRequest(data_dir=tmp_path / "lists", download=False, options=lists))


def test_prepare_imagenet200_and_load(tmp_path, tree):
    chosen = [fakefiles.WNIDS[3], fakefiles.WNIDS[0], fakefiles.WNIDS[2]]
    classes = fakefiles.write_classes_file(tmp_path / "classes.txt", chosen)
    out = inet.prepare_imagenet200(tree, tmp_path / "prepared", classes, size=16, workers=2)
    assert out == tmp_path / "prepared" / "imagenet200_16.pt"
    ds = DATASETS.get("imagenet200")(DataRequest(data_dir=out.parent, download=False, options={"image_size": 16}))
    assert ds.num_classes == 3 and ds.class_names == chosen and ds.source == str(out)
    assert ds.train.images.shape == (18, 3, 16, 16) and ds.train.images.dtype == torch.uint8
    assert ds.test.images.shape == (6, 3, 16, 16)
    assert ds.train.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6  # labels follow the classes file
    # The greyscale JPEG of the first wnid became three equal channels.
    grey = ds.train.images[6]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_prepare_errors_and_missing_file(tmp_path, tree):
    classes = fakefiles.write_classes_file(tmp_path / "classes.txt", ["n99999999"])
    with pytest.raises(UserError, match="n99999999"):
        inet.prepare_imagenet200(tree, tmp_path / "out", classes, workers=0)
    with pytest.raises(UserError, match="protobench data prepare imagenet200 --imagenet DIR"):
        inet.imagenet200(DataRequest(data_dir=tmp_path, download=False))
    (tmp_path / "imagenet200_64.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a prepared ImageNet-200 file"):
        inet.imagenet200(DataRequest(data_dir=tmp_path, download=False))


def test_shipped_class_list_is_tiny_imagenet():
    wnids = inet.read_classes_file(inet.DEFAULT_CLASSES_FILE)
    assert len(wnids) == 200 and all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert wnids[:3] == ["n02124075", "n04067472", "n04540053"] and "n01443537" in wnids
