"""The numerics fingerprint (docs/engine.md, "Numerics versions"): tiny deterministic CPU cells per
method and per path a shipped suite takes (``path_of``; tests/test_fingerprint_coverage.py checks that
every one is tried), a small set per prototype generator and a forward pass per backbone, in float64 on
one thread, with the numerics versions of HEAD they were made with. tests/store/test_versions.py compares
HEAD's outcome with tests/expected/fingerprint.json.

    python -m tests.fingerprint            # re-make it after bumping the version of the part you changed

Re-making refuses to store values that moved for an entry none of whose parts' versions changed:
a change of numerics cannot hide under an old version.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
import tempfile
import typing
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

STORED = Path(__file__).parent / "expected" / "fingerprint.json"
#: Far below what a change of a method moves (1e-3 and up after a few steps), above what another
#: CPU's float64 rounding moves (about 1e-15 a step, a few steps deep).
RTOL, ATOL = 1e-6, 1e-9

#: Recipe changes of the cells below the first ones (``CELLS``).
LT_MIXUP = {"mixup_alpha": 1.0, "cutmix_alpha": 0.0}
PLAIN = {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "crop_padding": 0, "flip": False}
#: The streaming cells' dataset options (16-pixel crops decoded in this process) and ImageNet-LT's lists.
IMAGE_OPTIONS = {"image_size": 16, "workers": 0}
LT_LISTS = {"train_list": "lt_train.txt", "val_list": "lt_val.txt", "test_list": "lt_test.txt"}
STREAMING = {"random_resized_crop": 16, "augment_extra": {"trivial_augment": True, "random_erasing": 0.5}}

#: The cells: every method at d = 10 (ETF needs d >= K-1 = 9), and DL2PA at d = 3 balanced and
#: long-tailed, where matching re-assigns classes. DNC's batches hold 100 images (about 10 of each class,
#: never one): a class with a single image in a batch spreads it evenly over the class's sub-centroids in
#: the Sinkhorn plan, an exact tie whose argmax float rounding decides (torch 2.11 and 2.14 pick different
#: sub-centroids there), so a fingerprint cell must not meet one.
#: The cells after those take the paths (``path_of``) a shipped suite takes and the ones above do not:
#: tests/test_fingerprint_coverage.py derives them from suites/*.yaml and fails while one is untried.
#: ``train`` goes over ``RECIPE``, ``suite`` over the tiny suite's top-level keys; ``dataset`` other than
#: Fashion-MNIST is a tiny PNG tree (``write_image_tree``).
CELLS: dict[str, dict[str, Any]] = {
    **{name: {"method": name, "dim": 10} for name in
       ("dl2pa", "dl2pa-static", "ebv", "etf", "hpn", "hpn-dynamic", "softmax")},
    "dnc-b100": {"method": "dnc", "dim": 10, "train": {"batch_size": 100}},
    "dl2pa-d3": {"method": "dl2pa", "dim": 3},
    "dl2pa-lt-d3": {"method": "dl2pa", "dim": 3, "ratio": 10.0, "loss": "long-tailed"},
    # The long-tailed recipes: mixup alone, warm-up, step decay, no validation split.
    "hpn-lt-d3": {"method": "hpn", "dim": 3, "ratio": 10.0, "loss": "long-tailed",
                  "train": {**LT_MIXUP, "schedule": "step", "milestones": [1], "warmup_epochs": 1}},
    "hpn-dynamic-lt-d3": {"method": "hpn-dynamic", "dim": 3, "ratio": 10.0, "loss": "long-tailed",
                          "train": {**LT_MIXUP, "warmup_epochs": 1}, "suite": {"val_size": 0}},
    "dl2pa-static-lt-d3": {"method": "dl2pa-static", "dim": 3, "ratio": 10.0, "loss": "long-tailed",
                           "train": {**LT_MIXUP, "schedule": "step", "milestones": [1]}},
    # The balanced CPU recipes: no mixing, no crop or flip, Nesterov; the ablations' losses, prototypes, matching.
    "dl2pa-cosce-random-d3": {"method": "dl2pa", "dim": 3, "options": {"loss": "cos-ce", "prototype_kind": "random"},
                              "train": {**PLAIN, "nesterov": True}},
    "dl2pa-static-cosce-hpn-d3": {"method": "dl2pa-static", "dim": 3,
                                  "options": {"loss": "cos-ce", "prototype_kind": "hpn"}, "train": PLAIN},
    "dl2pa-hpn-every2-d3": {"method": "dl2pa", "dim": 3,
                            "options": {"prototype_kind": "hpn", "match_every_steps": 2}},
    "dl2pa-static-random-d3": {"method": "dl2pa-static", "dim": 3, "options": {"prototype_kind": "random"}},
    # Streaming from image folders (ImageNet's recipe, ImageNet-LT's split lists and own validation split).
    "softmax-imagenet": {"method": "softmax", "dim": 8, "dataset": "imagenet", "train": STREAMING,
                         "suite": {"val_size": 0}},
    "dl2pa-imagenet-lt": {"method": "dl2pa", "dim": 3, "dataset": "imagenet-lt", "loss": "long-tailed",
                          "train": {**STREAMING, **LT_MIXUP}, "suite": {"val_size": 0}},
}  # fmt: skip
#: Backbones built with options that select other code than their defaults do (``backbone_path``), each
#: fingerprinted by a forward pass of its own: ResNet-32 without its fc, the long-tailed recipes' features.
BACKBONE_VARIANTS: list[tuple[str, dict[str, Any]]] = [("resnet32", {"fc": False, "widths": [8, 8, 8]})]
#: (generator, K, d) of each prototype set.
PROTOTYPE_SETS = {"uniform": (10, 3), "hpn": (10, 3), "etf": (10, 9), "ebv": (10, 5), "random": (10, 3)}
RECIPE = {"epochs": 2, "batch_size": 32, "eval_batch_size": 64, "lr": 0.05, "crop_padding": 2, "flip": True,
          "mixup_alpha": 0.2, "cutmix_alpha": 1.0, "cutmix_prob": 0.5}  # fmt: skip


@contextlib.contextmanager
def float64_one_thread() -> Iterator[None]:
    """float64 by default and one intra-op thread, for the duration."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


@contextlib.contextmanager
def fresh_cache(folder: Path) -> Iterator[None]:
    """An empty protobench cache for the duration: every prototype set is solved now, by HEAD's code."""
    before = os.environ.get("PROTOBENCH_CACHE")
    os.environ["PROTOBENCH_CACHE"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PROTOBENCH_CACHE", None)
        else:
            os.environ["PROTOBENCH_CACHE"] = before


def cell_spec(name: str, folder: Path) -> Any:
    """The fp64 spec of fingerprint cell ``name`` (a tiny suite written into ``folder``)."""
    import dataclasses

    from protobench.running.grid import spec_for
    from protobench.suite.definition import load_suite
    from tests.conftest import tiny_suite

    cell = CELLS[name]
    ratio = cell.get("ratio")
    suite_keys = dict(cell.get("suite", {}))
    if cell.get("dataset", "fashion-mnist") != "fashion-mnist":
        options = {**IMAGE_OPTIONS, **(LT_LISTS if cell["dataset"] == "imagenet-lt" else {})}
        suite_keys |= {"dataset": cell["dataset"], "dataset_options": options}
    if "options" in cell:
        suite_keys["method_options"] = {cell["method"]: cell["options"]}
    path = tiny_suite(folder / f"{name}.yaml", methods=[cell["method"]], dims=[cell["dim"]],
                      loss=cell.get("loss", "balanced"), imbalance_ratios=[ratio],
                      train={**RECIPE, **cell.get("train", {})}, **suite_keys)  # fmt: skip
    suite = load_suite(str(path))
    return dataclasses.replace(spec_for(suite, cell["method"], cell["dim"], 0, ratio, deterministic=True),
                               precision="fp64")  # fmt: skip


def train(name: str, folder: Path, data_dir: Path) -> dict[str, Any]:
    """One cell's outcome: per-epoch figures and checksums of the final backbone and head state."""
    from protobench.data.prepare import prepare_cell_data
    from protobench.engine.loop import train_cell
    from protobench.store.versions import versions_for

    spec = cell_spec(name, folder)
    settings = load_settings(folder / f"{name}.yaml")
    with warnings.catch_warnings():  # ImageNet-LT's split sizes are not the published ones here, by design
        warnings.filterwarnings("ignore", message="ImageNet-LT .*not the published split files")
        data = prepare_cell_data(settings, data_dir, spec.imbalance_ratio)
    outcome = train_cell(spec, data, device=torch.device("cpu"))
    keys = ("train_loss", "train_accuracy", "val_accuracy", "test_accuracy")
    history = [[row.get(key) for key in keys] for row in outcome.history]
    state = {
        part: sum(float(t.double().abs().sum()) for t in outcome.state[part].values() if t.is_floating_point())
        for part in ("backbone", "method")
    }
    return {"parts": versions_for(spec), "history": history, "state": state}


def write_image_tree(root: Path, classes: int = 4, train: int = 12, test: int = 4) -> Path:
    """A tiny ImageNet tree of lossless PNGs (``root/train/<wnid>/``, ``root/val/<wnid>/``) and ImageNet-LT
    split lists over it (``LT_LISTS``): class c keeps ``train - 2c`` training images, its first two are
    validation. PNG, not JPEG: decoding must not depend on the JPEG library's version."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label in range(classes):
        wnid = f"n{label:08d}"
        for split, n in (("train", train), ("val", test)):
            (root / split / wnid).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                # Sizes vary, so the random-resized crop and the evaluation resize both resample.
                side = 20 + 4 * (i % 3)
                pixels = (rng.integers(0, 160, (side, side + 4, 3)) + 30 * label).astype(np.uint8)
                relative = f"{split}/{wnid}/{i:03d}.png"
                Image.fromarray(pixels).save(root / relative)
                if split == "val":
                    lists["test"].append(f"{relative} {label}")
                elif i < 2:
                    lists["val"].append(f"{relative} {label}")
                elif i < n - 2 * label:
                    lists["train"].append(f"{relative} {label}")
    for split, lines in lists.items():
        (root / LT_LISTS[f"{split}_list"]).write_text("\n".join(lines) + "\n")
    return root


def load_settings(path: Path) -> Any:
    from protobench.suite.definition import load_suite

    return load_suite(str(path)).data_settings


def prototype_set(kind: str) -> dict[str, Any]:
    """Generator ``kind``'s float64 set at its (K, d), seed 0, solved on the CPU."""
    from protobench.prototypes import get_generator, resolve_params

    K, d = PROTOTYPE_SETS[kind]
    generator = get_generator(kind)
    prototypes, _ = generator.build(K, d, 0, torch.device("cpu"), resolve_params(kind, K, d, 0, {}))
    return {"parts": {f"prototypes/{kind}": generator.version}, "values": prototypes.double().flatten().tolist()}


def backbone_output(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Backbone ``name``'s output (dim 8) for a fixed batch of 4 RGB 32 x 32 images, seeded initialisation."""
    from protobench.backbones import create_backbone, numerics_version

    torch.manual_seed(0)
    model = create_backbone(name, in_channels=3, dim=8, **(options or {}))
    images = torch.linspace(-1, 1, 4 * 3 * 32 * 32).reshape(4, 3, 32, 32)
    with torch.no_grad():
        out = model(images)
    return {"parts": {f"backbone/{name}": numerics_version(name)}, "values": out.double().flatten().tolist()}


def make() -> dict[str, Any]:
    """Every entry of the fingerprint, computed now (about half a minute on one core)."""
    from protobench.backbones import BACKBONES
    from tests.data.fakefiles import write_fashion_mnist

    entries: dict[str, Any] = {}
    with float64_one_thread(), tempfile.TemporaryDirectory() as tmp, fresh_cache(Path(tmp) / "cache"):
        folder = Path(tmp)
        fashion = write_fashion_mnist(folder / "fmnist", n_train=240, n_test=60)
        images = write_image_tree(folder / "images")
        for name in CELLS:
            data_dir = fashion if CELLS[name].get("dataset", "fashion-mnist") == "fashion-mnist" else images
            entries[f"cell/{name}"] = train(name, folder, data_dir)
        for kind in PROTOTYPE_SETS:
            entries[f"prototypes/{kind}"] = prototype_set(kind)
        for name in BACKBONES.names():
            entries[f"backbone/{name}"] = backbone_output(name)
        for name, options in BACKBONE_VARIANTS:
            entries[f"backbone/{backbone_path(name, options)}"] = backbone_output(name, options)
    return entries


# ---------------------------------------------------------------- the paths a cell takes


def backbone_path(name: str, options: Mapping[str, Any]) -> str:
    """Backbone ``name`` with its on/off options (they select code; numbers such as widths do not), e.g.
    ``resnet32[fc=False]``; just the name at the builder's defaults."""
    from protobench.backbones import BACKBONES

    defaults = {
        key: parameter.default
        for key, parameter in inspect.signature(BACKBONES.get(name)).parameters.items()
        if isinstance(parameter.default, bool)
    }
    changed = [f"{key}={options[key]}" for key in sorted(defaults) if key in options and options[key] != defaults[key]]
    return f"{name}[{','.join(changed)}]" if changed else name


def streams(dataset: str) -> bool:
    """Whether ``dataset`` is streamed from image files (a DataLoader) rather than held on the device."""
    from protobench.data import DATASETS
    from protobench.data.base import InMemoryDataset

    returns = typing.get_type_hints(DATASETS.get(dataset).build).get("return")
    assert returns is not None, f"dataset {dataset!r}: its builder must annotate what it returns"
    return returns is not InMemoryDataset


def path_of(spec: Any) -> dict[str, str]:
    """The path cell ``spec`` (a ``CellSpec``) takes through the engine: one entry per dimension whose
    values select different code (docs/engine.md, "The fingerprint test"). Numbers (lr, dims, seeds,
    temperatures, widths) choose no code and are not part of it; neither is precision, since the fingerprint
    trains in float64 on the CPU (bf16 and CUDA graphs are the ``gpu`` tests' and ``bench graphs``')."""
    from protobench.heads import head_of
    from protobench.heads.prototype_head import MatchedPrototypeHead, PrototypeHead
    from protobench.methods import METHODS, head_options

    card, options, recipe = METHODS.get(spec.method), head_options(spec.method, spec.method_options), spec.train
    head = head_of(card)
    path = {"method": spec.method}
    kind = options.get("prototype_kind", card.prototype_kind)
    if kind is not None:
        path["prototypes"] = f"{spec.method} on {kind}"
    if issubclass(head, PrototypeHead):
        # The prototype heads branch on the loss family (BatchNorm + dot regression) and the option ``loss``;
        # every other head has one loss whatever the family.
        loss = "dot-regression" if spec.loss == "long-tailed" else options["loss"]
        path["loss"] = f"{spec.method} with {loss}"
    if issubclass(head, MatchedPrototypeHead):
        every = options.get("match_every_steps", 0) if getattr(head, "rematch", True) else 0
        path["matching"] = ("every epoch" if getattr(head, "rematch", True) else "never") + (
            " and every N steps early" if every else "")  # fmt: skip
    mixing = " or ".join(name for name, alpha in (("mixup", recipe.mixup_alpha), ("cutmix", recipe.cutmix_alpha))
                         if alpha > 0) or "none"  # fmt: skip
    path["mixing"] = mixing
    # The step's mixing and the loss family meet in forward_backward: two loss calls, the dominant memo.
    path["mixing x loss family"] = f"{mixing} x {spec.loss}"
    streamed = streams(spec.dataset)
    if streamed:  # folders.build_transform: random-resized crop and flip always, the extras when asked
        extras = sorted(key for key, value in recipe.augment_extra.items() if value)
        path["augmentation"] = " + ".join(["streaming: random-resized crop + flip", *extras])
    else:  # DeviceLoader: a crop gather when padded, a flip mask when flipping
        device = [name for name, on in (("crop", recipe.crop_padding > 0), ("flip", recipe.flip)) if on]
        path["augmentation"] = "device: " + (" + ".join(device) or "none")
    path["schedule"] = recipe.schedule + (" after warm-up" if recipe.warmup_epochs > 0 else "")
    nesterov = recipe.optimizer == "sgd" and recipe.nesterov and recipe.momentum > 0
    path["optimizer"] = recipe.optimizer + (" nesterov" if nesterov else "")
    from protobench.data import DATASETS

    own = DATASETS.get(spec.dataset).own_validation
    validation = "its own split" if own else "held out" if spec.val_size > 0 else "none"
    path["data"] = f"{'streaming' if streamed else 'device'} loader, validation {validation}"
    ratio = spec.imbalance_ratio
    path["long tail"] = "none" if ratio is None else f"{spec.imbalance_profile} profile"
    path["backbone"] = backbone_path(spec.backbone, spec.backbone_options)
    return path


def numbers(entry: dict[str, Any]) -> list[float]:
    """An entry's numbers, flattened (None, for a missing validation figure, as NaN)."""
    if "values" in entry:
        return entry["values"]
    flat = [v for row in entry["history"] for v in row] + [entry["state"]["backbone"], entry["state"]["method"]]
    return [float("nan") if v is None else float(v) for v in flat]


def moved(stored: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether an entry's numbers differ beyond the tolerance (NaN equals NaN)."""
    a, b = torch.tensor(numbers(stored)), torch.tensor(numbers(now))
    return a.shape != b.shape or not torch.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)


def remake(path: Path = STORED) -> list[str]:
    """Write the fingerprint anew; refuse (return the reasons, write nothing) when an entry's numbers
    moved although none of its parts' versions changed."""
    old = json.loads(path.read_text()) if path.exists() else {}
    new = make()
    refused = [
        f"{key}: its numbers moved, but none of its parts' versions ({', '.join(entry['parts'])}) changed; "
        "bump the version of the part you changed"
        for key, entry in new.items()
        if key in old and old[key]["parts"] == entry["parts"] and moved(old[key], entry)
    ]
    if not refused:
        # An entry whose numbers stayed within the tolerance keeps its stored ones: another CPU's rounding
        # (about 1e-16) is no change, and the diff of a re-make shows only what did change.
        kept = {key: old[key] if key in old and old[key]["parts"] == entry["parts"] and not moved(old[key], entry)
                else entry for key, entry in new.items()}  # fmt: skip
        path.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
    return refused


if __name__ == "__main__":
    problems = remake()
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    print("fingerprint not written" if problems else f"wrote {STORED}")
    sys.exit(1 if problems else 0)
