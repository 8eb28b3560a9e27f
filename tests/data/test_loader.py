import torch

from protobench.data import DeviceLoader, ImageSplit


def numbered_split(n: int = 50, side: int = 6) -> ImageSplit:
    """Image i is filled with the value i, so a batch's labels can be checked against its pixels."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 2, side, side).clone()
    return ImageSplit(images, torch.arange(n) % 7)


def loader(split: ImageSplit, **kw) -> DeviceLoader:
    options = dict(batch_size=8, mean=(0.0, 0.0), std=(1 / 255, 1 / 255), train=True, seed=3)
    options.update(kw)
    return DeviceLoader(split, **options)


def test_shapes_and_label_alignment_under_augmentation():
    split = numbered_split()
    batches = list(loader(split, crop_padding=2, flip=True))
    assert len(batches) == 50 // 8
    for images, labels in batches:
        assert images.shape == (8, 2, 6, 6) and images.dtype == torch.float32
        # The centre pixel survives any crop of padding 2 on a 6x6 image; it names the image.
        ids = images[:, 0, 3, 3].round().long()
        assert torch.equal(labels, ids % 7)
        assert ((images == 0) | (images == ids.view(-1, 1, 1, 1).float())).all()  # only zeros from padding


def test_same_seed_same_batches_other_seed_or_epoch_differs():
    split = numbered_split()
    a = [x for x, _ in loader(split, crop_padding=2, flip=True)]
    b = [x for x, _ in loader(split, crop_padding=2, flip=True)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    c = [x for x, _ in loader(split, crop_padding=2, flip=True, seed=4)]
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    next_epoch = loader(split, crop_padding=2, flip=True)
    next_epoch.set_epoch(1)
    assert not all(torch.equal(x, y) for x, (y, _) in zip(a, next_epoch, strict=True))


def test_epoch_visits_each_image_once_and_crops_shift():
    split = numbered_split(48)
    seen = torch.cat([x[:, 0, 3, 3] for x, _ in loader(split, crop_padding=1)]).round().long()
    assert sorted(seen.tolist()) == list(range(48))
    # With padding 1 some crops move the image: zeros appear at a border.
    images = torch.cat([x for x, _ in loader(split, crop_padding=1)])
    assert (images[:, :, 0, :] == 0).any() and (images[:, :, 1:5, 1:5] > 0).sum() > 0


def test_flip_mirrors_rows():
    images = torch.zeros(16, 1, 4, 4, dtype=torch.uint8)
    images[:, :, :, 0] = 255  # a bright left column
    split = ImageSplit(images, torch.zeros(16, dtype=torch.long))
    batch, _ = next(iter(DeviceLoader(split, batch_size=16, mean=(0.0,), std=(1.0,), train=True, flip=True)))
    left, right = batch[:, 0, :, 0].mean(1), batch[:, 0, :, 3].mean(1)
    assert ((left == 1) & (right == 0)).any() and ((left == 0) & (right == 1)).any()


def test_evaluation_keeps_order_and_last_partial_batch():
    split = numbered_split(20)
    eval_loader = loader(split, train=False, crop_padding=2, flip=True)
    batches = list(eval_loader)
    assert [len(y) for _, y in batches] == [8, 8, 4]
    ids = torch.cat([x[:, 0, 0, 0] for x, _ in batches]).round().long()
    assert ids.tolist() == list(range(20))  # no shuffling, no augmentation


def test_normalisation_uses_mean_and_std():
    split = ImageSplit(torch.full((4, 1, 2, 2), 255, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    x, _ = next(iter(DeviceLoader(split, batch_size=4, mean=(0.5,), std=(0.25,))))
    assert torch.allclose(x, torch.full_like(x, 2.0))
