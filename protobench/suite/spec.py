"""A cell, resolved: everything that determines its numbers, and nothing else (docs/engine.md, "The key").

``grid.cell_spec`` resolves a suite's cell into a ``CellSpec`` (the row's method and options, its
recipe, the precision for the device). The spec is the only thing the engine reads, it is what
``--jobs`` workers and torchrun followers are handed, and its ``config()`` is the input of the cell's
hash: two cells with equal specs train to the same numbers (given the same code: ``numerics``), and
two with different specs never share a record. What does not change numbers stays out: the suite's
and the row's names, the device (``precision`` carries what the device changes), paths.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protobench.suite.recipe import TrainRecipe, recipe_config


@dataclass(frozen=True)
class CellSpec:
    """One cell's data, model, method, recipe and numerics settings; ``config()`` is its hash input."""

    dataset: str
    dataset_options: Mapping[str, Any]
    val_size: int
    data_seed: int
    imbalance_ratio: float | None
    imbalance_profile: str
    loss: str
    backbone: str
    backbone_options: Mapping[str, Any]
    method: str  # the registered method (a suite's variant row resolves to its method and options)
    method_options: Mapping[str, Any]  # resolved: every option the method documents, defaults filled in
    dim: int
    seed: int
    train: TrainRecipe
    #: Resolved for the device: fp32, bf16 (autocast) or fp64 (every tensor in float64: the fingerprint
    #: test's, where rounding must not differ between CPUs; no suite trains in it).
    precision: str
    deterministic: bool = False
    sync_batchnorm: bool = False  # under torchrun: BatchNorm over the global batch (CUDA)
    #: Not part of the numbers: names the suite file in data errors ("fashion-mnist data not found ...").
    data_source: str = field(default="", compare=False)

    def config(self) -> dict[str, Any]:
        """The hash input, in the layout records have held since the first one (key order and all): a key
        added later appears only when set away from its default, so earlier cells keep their hashes."""
        return {
            "dataset": self.dataset,
            "dataset_options": dict(self.dataset_options),
            "val_size": self.val_size,
            "data_seed": self.data_seed,
            "imbalance_ratio": self.imbalance_ratio,
            "imbalance_profile": self.imbalance_profile if self.imbalance_ratio is not None else None,
            "loss": self.loss,
            "backbone": self.backbone,
            "backbone_options": dict(self.backbone_options),
            "method": self.method,
            "method_options": dict(self.method_options),
            "dim": self.dim,
            "seed": self.seed,
            "train": recipe_config(self.train),
            "deterministic": self.deterministic,
            "precision": self.precision,
            **({"sync_batchnorm": True} if self.sync_batchnorm else {}),
        }

    def digest(self) -> str:
        """sha256 of the canonical JSON of ``config()``: the cell's key in the results store."""
        return config_hash(self.config())

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CellSpec:
        """The spec a record's ``config`` was made from (``config()`` of it gives the config back)."""
        train = dict(config["train"])
        train["milestones"] = tuple(train.get("milestones") or ())
        recipe = TrainRecipe(**train)
        return cls(
            dataset=config["dataset"],
            dataset_options=dict(config.get("dataset_options") or {}),
            val_size=config["val_size"],
            data_seed=config["data_seed"],
            imbalance_ratio=config["imbalance_ratio"],
            imbalance_profile=config.get("imbalance_profile") or "exp",
            loss=config["loss"],
            backbone=config["backbone"],
            backbone_options=dict(config.get("backbone_options") or {}),
            method=config["method"],
            method_options=dict(config.get("method_options") or {}),
            dim=config["dim"],
            seed=config["seed"],
            train=recipe,
            precision=config["precision"],
            deterministic=config["deterministic"],
            sync_batchnorm=bool(config.get("sync_batchnorm", False)),
        )


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``config``."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["CellSpec", "config_hash"]
