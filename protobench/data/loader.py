"""The device-resident loader: the whole split on the device, batches cut and augmented as tensor ops.

In the spirit of airbench's CifarLoader: images stay uint8 on the device, an epoch is one
``randperm``, a batch is one gather, crop-with-padding is one more gather with per-image
offsets and flipping is a masked select. The same code runs on CPU and CUDA.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from protobench.data.base import ImageSplit

if TYPE_CHECKING:
    import torch


class DeviceLoader:
    """Iterates (images, labels) batches of one split; normalised float images, int64 labels."""

    def __init__(
        self,
        split: ImageSplit,
        *,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device | str = "cpu",
        train: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        part: Callable[[int], slice] | None = None,
    ) -> None:
        import torch
        import torch.nn.functional as F

        self.device = torch.device(device)
        # Data-parallel training: this rank's rows of each global batch (distributed.DataParallel.batch_slice).
        self.part = part
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.num_samples = len(split)
        self.batch_size = batch_size
        self.train = train
        self.crop_padding = crop_padding if train else 0
        self.flip = flip and train
        self.seed = seed
        self.epoch = 0
        self.skip_batches = 0
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        channels = self.images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean/std need {channels} values")
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255
        if self.crop_padding:
            # Pad once, up front, so each batch needs a single gather for its crops.
            p = self.crop_padding
            self.padded = F.pad(self.images, (p, p, p, p))

    def __len__(self) -> int:
        # Training drops the last partial batch (a tiny batch upsets BatchNorm); evaluation keeps it.
        if self.train and self.num_samples >= self.batch_size:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Choose the epoch: the order and augmentation are a function of (seed, epoch) alone.
        ``skip_batches`` starts it after that many batches (resuming a checkpoint taken mid-epoch):
        the skipped batches' random draws are still made, so the rest comes out as it would have."""
        self.epoch = epoch
        self.skip_batches = skip_batches

    def _generator(self) -> torch.Generator:
        import torch

        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        return generator

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch

        n = self.num_samples
        generator = self._generator() if self.train else None
        order = torch.randperm(n, device=self.device, generator=generator) if self.train else None
        for i in range(len(self)):
            start = i * self.batch_size
            stop = min(start + self.batch_size, n)
            own = self.part(stop - start) if self.part is not None else slice(0, stop - start)
            if order is not None:
                index = order[start:stop]
                # The whole batch's random draws, on every rank alike; then this rank's rows of them.
                draws = self._draw_augmentation(index.shape[0], generator)
                if i < self.skip_batches:
                    continue
                index = index[own]
                images = self._augment(index, *(d[own] if d is not None else None for d in draws))
            else:
                if i < self.skip_batches:
                    continue
                images = self.images[start + own.start : start + own.stop]
                index = torch.arange(start + own.start, start + own.start + images.shape[0], device=self.device)
            labels = self.labels[index]
            yield self._normalise(images), labels

    def _draw_augmentation(
        self, batch: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """One batch's random crop offsets (dy, dx) and flip mask, in the order ``_augment`` uses them."""
        import torch

        dy = dx = mask = None
        if self.crop_padding:
            span = 2 * self.crop_padding + 1
            dy = torch.randint(0, span, (batch,), device=self.device, generator=generator)
            dx = torch.randint(0, span, (batch,), device=self.device, generator=generator)
        if self.flip:
            mask = torch.rand(batch, device=self.device, generator=generator) < 0.5
        return dy, dx, mask

    def _augment(
        self, index: torch.Tensor, dy: torch.Tensor | None, dx: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The images at ``index``, cropped at offsets (dy, dx) and flipped where ``mask`` (each None: not)."""
        import torch

        if dy is None or dx is None:
            images = self.images[index]
        else:
            h, w = self.images.shape[2:]
            rows = (dy[:, None] + torch.arange(h, device=self.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=self.device))[:, None, None, :]
            chans = torch.arange(self.images.shape[1], device=self.device)[None, :, None, None]
            images = self.padded[index[:, None, None, None], chans, rows, cols]
        if mask is not None:
            images = torch.where(mask[:, None, None, None], images.flip(3), images)
        return images

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        images = (images.float() - self.mean) / self.std
        return images.contiguous(memory_format=self.memory_format)
