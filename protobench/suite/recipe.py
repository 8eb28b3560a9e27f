"""A cell's training recipe: optimisation and augmentation, as a suite's ``train`` key gives it
(protobench/suite/definition.py reads and validates it; the engine trains with it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainRecipe:
    """Optimisation and augmentation of every cell of a suite."""

    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 1024
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    mixup_alpha: float = 0.0
    crop_padding: int = 0
    flip: bool = False
    random_resized_crop: int | None = None
    augment_extra: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"
    #: CutMix (docs/engine.md, "The step"); with mixup too, each batch is CutMix with probability ``cutmix_prob``.
    cutmix_alpha: float = 0.0
    cutmix_prob: float = 0.5


#: Recipe keys added after records were committed: in a cell's config only when set away from their
#: default, so that every recipe without them keeps the config (and hash) it had before they existed.
LATER_RECIPE_KEYS = ("cutmix_alpha", "cutmix_prob")


def recipe_config(recipe: TrainRecipe) -> dict[str, Any]:
    """The recipe as it enters a cell's config: every key, less the ``LATER_RECIPE_KEYS`` at their default."""
    config = dataclasses.asdict(recipe)
    defaults = TrainRecipe()
    for key in LATER_RECIPE_KEYS:
        if config[key] == getattr(defaults, key):
            del config[key]
    return config
