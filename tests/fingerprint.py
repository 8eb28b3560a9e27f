"""The numerics fingerprint (docs/engine.md, "Numerics versions"): tiny deterministic CPU cells per
method, a small set per prototype generator and a forward pass per backbone, in float64 on one
thread, with the numerics versions of HEAD they were made with. tests/test_numerics.py compares
HEAD's outcome with tests/expected/fingerprint.json.

    python -m tests.fingerprint            # re-make it after bumping the version of the part you changed

Re-making refuses to store values that moved for an entry none of whose parts' versions changed:
a change of numerics cannot hide under an old version.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

STORED = Path(__file__).parent / "expected" / "fingerprint.json"
#: Far below what a change of a method moves (1e-3 and up after a few steps), above what another
#: CPU's float64 rounding moves (about 1e-15 a step, a few steps deep).
RTOL, ATOL = 1e-6, 1e-9

#: The cells: every method at d = 10 (ETF needs d >= K-1 = 9), and DL2PA at d = 3 balanced and
#: long-tailed, where matching re-assigns classes. DNC's batches hold 100 images (about 10 of each class,
#: never one): a class with a single image in a batch spreads it evenly over the class's sub-centroids in
#: the Sinkhorn plan, an exact tie whose argmax float rounding decides (torch 2.11 and 2.14 pick different
#: sub-centroids there), so a fingerprint cell must not meet one.
CELLS: dict[str, dict[str, Any]] = {
    **{name: {"method": name, "dim": 10} for name in
       ("dl2pa", "dl2pa-static", "ebv", "etf", "hpn", "hpn-dynamic", "softmax")},
    "dnc-b100": {"method": "dnc", "dim": 10, "train": {"batch_size": 100}},
    "dl2pa-d3": {"method": "dl2pa", "dim": 3},
    "dl2pa-lt-d3": {"method": "dl2pa", "dim": 3, "ratio": 10.0, "loss": "long-tailed"},
}  # fmt: skip
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

    from protobench.grid import spec_for
    from protobench.suites import load_suite
    from tests.conftest import tiny_suite

    cell = CELLS[name]
    ratio = cell.get("ratio")
    path = tiny_suite(folder / f"{name}.yaml", methods=[cell["method"]], dims=[cell["dim"]],
                      loss=cell.get("loss", "balanced"), imbalance_ratios=[ratio],
                      train={**RECIPE, **cell.get("train", {})})  # fmt: skip
    suite = load_suite(str(path))
    return dataclasses.replace(spec_for(suite, cell["method"], cell["dim"], 0, ratio, deterministic=True),
                               precision="fp64")  # fmt: skip


def train(name: str, folder: Path, data_dir: Path) -> dict[str, Any]:
    """One cell's outcome: per-epoch figures and checksums of the final backbone and head state."""
    from protobench.data.prepare import prepare_cell_data
    from protobench.engine import train_cell
    from protobench.numerics import versions_for

    spec = cell_spec(name, folder)
    settings = load_settings(folder / f"{name}.yaml")
    outcome = train_cell(spec, prepare_cell_data(settings, data_dir, spec.imbalance_ratio), device=torch.device("cpu"))
    keys = ("train_loss", "train_accuracy", "val_accuracy", "test_accuracy")
    history = [[row.get(key) for key in keys] for row in outcome.history]
    state = {
        part: sum(float(t.double().abs().sum()) for t in outcome.state[part].values() if t.is_floating_point())
        for part in ("backbone", "method")
    }
    return {"parts": versions_for(spec), "history": history, "state": state}


def load_settings(path: Path) -> Any:
    from protobench.suites import load_suite

    return load_suite(str(path)).data_settings


def prototype_set(kind: str) -> dict[str, Any]:
    """Generator ``kind``'s float64 set at its (K, d), seed 0, solved on the CPU."""
    from protobench.prototypes import get_generator, resolve_params

    K, d = PROTOTYPE_SETS[kind]
    generator = get_generator(kind)
    prototypes, _ = generator.build(K, d, 0, torch.device("cpu"), resolve_params(kind, K, d, 0, {}))
    return {"parts": {f"prototypes/{kind}": generator.version}, "values": prototypes.double().flatten().tolist()}


def backbone_output(name: str) -> dict[str, Any]:
    """Backbone ``name``'s output (dim 8) for a fixed batch of 4 RGB 32 x 32 images, seeded initialisation."""
    from protobench.backbones import create_backbone, numerics_version

    torch.manual_seed(0)
    model = create_backbone(name, in_channels=3, dim=8)
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
        data_dir = write_fashion_mnist(folder / "fmnist", n_train=240, n_test=60)
        for name in CELLS:
            entries[f"cell/{name}"] = train(name, folder, data_dir)
        for kind in PROTOTYPE_SETS:
            entries[f"prototypes/{kind}"] = prototype_set(kind)
        for name in BACKBONES.names():
            entries[f"backbone/{name}"] = backbone_output(name)
    return entries


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
        path.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
    return refused


if __name__ == "__main__":
    problems = remake()
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    print("fingerprint not written" if problems else f"wrote {STORED}")
    sys.exit(1 if problems else 0)
