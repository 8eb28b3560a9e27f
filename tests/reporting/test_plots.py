import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from protobench.reporting.class_plots import load_embeddings
from protobench.reporting.plots import make_plots
from protobench.store.records import iter_records, write_record

BALANCED = {
    "accuracy-vs-dim",
    "per-class-accuracy-d2",
    "accuracy-vs-dim-val-selected",
    "assignment-changes",
    "training-curves-d2",
    "training-curves-d3",
    "training-curves-d8",
    "embeddings-d2-dl2pa",
    "embeddings-d3-softmax",
    "embeddings-d2-hpn",
}
LONGTAIL = {
    "accuracy-vs-ratio",
    "shot-groups-r10",
    "shot-groups-r100",
    "training-curves-r10",
    "training-curves-r100",
    "per-class-accuracy-r10",
    "per-class-accuracy-r100",
}


def history(acc, rematch=False, epochs=4):
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "lr": 0.1 / e, "train_loss": 2.0 / e, "train_accuracy": acc * e / epochs}
        row["test_accuracy"] = acc * (0.6 + 0.4 * e / epochs)
        if rematch:
            row["assignment_changed"] = float(max(0, 4 - e))
        rows.append(row)
    return rows


def record(suite, method, dim, seed, acc, ratio=None, setting="s1", finished="2026-01-01T00:00:00", **extra):
    column = str(dim) if ratio is None else f"r{ratio:g}"
    return {
        "suite": suite, "method": method, "dim": dim, "seed": seed, "imbalance_ratio": ratio, "column": column,
        "status": "ok", "setting_hash": f"{method}-{column}-{setting}", "finished_at": finished,
        "config": {"train": {"epochs": 4}},
        "metrics": {"test_accuracy": acc, "test_accuracy_at_best_val": None if ratio else acc - 0.5},
        "history": history(acc, rematch=method == "dl2pa" and ratio is None), **extra,
    }  # fmt: skip


def save(root, rec, name):
    write_record(root / rec["suite"] / rec["method"] / f"{name}.json", rec)


def sidecar(root, rec, name, dim, anchors=True):
    rng = np.random.default_rng(dim)
    labels = np.arange(300) % 10
    centres = rng.normal(size=(10, dim))
    arrays = {"features": centres[labels] + 0.2 * rng.normal(size=(300, dim)), "labels": labels}
    if anchors:
        arrays["anchors"] = centres * 3.0  # not unit: the plot normalises them
    np.savez_compressed(root / rec["suite"] / rec["method"] / f"{name}.embeddings.npz", **arrays)
    rec["embeddings"] = f"{name}.embeddings.npz"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A balanced suite ``s`` (dims 2, 3, 8) and a long-tailed suite ``s-lt`` (ratios 10, 100) on disk."""
    root = tmp_path_factory.mktemp("results")
    for method, base in (("dl2pa", 80.0), ("softmax", 82.0), ("hpn", 78.0)):
        for dim in (2, 3, 8):
            for seed in (0, 1, 2) if (method, dim) != ("hpn", 8) else (0, 1):
                rec = record("s", method, dim, seed, base + dim + seed)
                if dim == 2:  # made before records stored class names: Fashion-MNIST's come from its code
                    rec.update(dataset="fashion-mnist", per_class_accuracy=[base + c for c in range(10)])
                name = f"d{dim}_s{seed}_x"
                (root / "s" / method).mkdir(parents=True, exist_ok=True)
                if (method, dim, seed) == ("dl2pa", 2, 0):
                    sidecar(root, rec, name, 2)
                if (method, dim, seed) == ("softmax", 3, 1):  # seed 0 names a sidecar that is missing
                    rec.update(dataset="cifar10", data={"class_names": [f"thing {c}" for c in range(10)]})
                    sidecar(root, rec, name, 3)
                if (method, dim, seed) == ("hpn", 2, 1):  # likewise; a sample without anchors
                    sidecar(root, rec, name, 2, anchors=False)
                if (method, dim) in (("softmax", 3), ("hpn", 2)) and seed == 0:
                    rec["embeddings"] = f"{name}.embeddings.npz"  # the file is missing
                if (method, dim, seed) == ("hpn", 3, 0):
                    rec["embeddings"] = f"{name}.embeddings.npz"
                    (root / "s" / method / rec["embeddings"]).write_bytes(b"not an npz")
                save(root, rec, name)
    old = record("s", "dl2pa", 2, 3, 10.0, setting="old", finished="2025-01-01T00:00:00")
    save(root, old, "d2_s3_old")  # an older setting of a shown cell: not plotted
    (root / "s-lt").mkdir()
    for method in ("dl2pa", "softmax"):
        for ratio in (10.0, 100.0):
            for seed in (0, 1, 2):
                few = float("nan") if ratio == 10.0 else 20.0 + seed
                groups = {"by_count": {"many": 90.0, "medium": 60.0 + seed, "few": few}}
                rec = record("s-lt", method, 16, seed, 70.0 - ratio / 10, ratio=ratio, shot_groups=groups)
                train = [round(500 * ratio ** (-c / 9)) for c in range(10)]
                names = [f"kind {c}" for c in range(10)]  # stored by the run, as records do since they store names
                rec.update(dataset="fashion-mnist", data={"counts": {"train": train}, "class_names": names})
                rec["per_class_accuracy"] = [90.0 - 5 * c + seed for c in range(10)]
                save(root, rec, f"d16_s{seed}_r{ratio:g}_x")
    return root


@pytest.fixture(scope="module")
def rendered(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("plots")
    records = list(iter_records(store))
    return {s: make_plots(records, s, None, out, store) for s in ("s", "s-lt")}


def stems(paths, suite):
    return {p.name.removeprefix(f"{suite}-").rsplit(".", 1)[0] for p in paths}


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1024, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4) and 300 < image.shape[0] < 3000 and 300 < image.shape[1] < 3000


def test_every_kind_that_applies_is_written_as_png_and_svg(rendered):
    for suite, expected in (("s", BALANCED), ("s-lt", LONGTAIL)):
        paths = rendered[suite]
        assert all(p.is_file() for p in paths)
        assert {p.suffix for p in paths} == {".png", ".svg"} and len(paths) == 2 * len(expected)
        assert stems(paths, suite) == expected  # no shot groups when balanced, no d-plots or assignments when LT
        for path in paths:
            if path.suffix == ".png":
                check_png(path)
            else:
                text = path.read_text()
                assert text.startswith("<?xml") and "<svg" in text, path


def test_legends_name_each_method_with_its_number_of_seeds(rendered):
    by_name = {p.name: p for paths in rendered.values() for p in paths}
    svg = by_name["s-accuracy-vs-dim.svg"].read_text()
    assert "dl2pa (n=3)" in svg and "softmax (n=3)" in svg
    assert "hpn (n=2-3)" in svg  # two seeds at d=8, three elsewhere
    assert "n=3-4" not in svg  # the older setting's seed is not counted
    assert "final-epoch test accuracy" in svg and "embedding dimension d" in svg
    assert "validation epoch" in by_name["s-accuracy-vs-dim-val-selected.svg"].read_text()
    assignments = by_name["s-assignment-changes.svg"].read_text()
    assert "dl2pa" in assignments and "d=2 (n=3)" in assignments and "softmax" not in assignments
    curves = by_name["s-training-curves-d8.svg"].read_text()
    assert "train loss" in curves and "hpn (n=2)" in curves
    shots = by_name["s-lt-shot-groups-r100.svg"].read_text()
    assert "dl2pa (n=3)" in shots and "many (&gt; 100)" in shots and "ratio 100" in shots
    assert "softmax (n=3)" in by_name["s-lt-accuracy-vs-ratio.svg"].read_text()


def test_embedding_plots_take_the_first_seed_with_a_readable_sample(rendered):
    by_name = {p.name: p for p in rendered["s"]}
    circle = by_name["s-embeddings-d2-dl2pa.svg"].read_text()
    assert "dl2pa test embeddings, d=2" in circle and "seed 0" in circle and "test accuracy 82.00%" in circle
    assert "anchors" in circle
    sphere = by_name["s-embeddings-d3-softmax.svg"].read_text()
    assert "d=3" in sphere and "seed 1" in sphere and "unit sphere" in sphere  # seed 0's sidecar is missing
    no_anchors = by_name["s-embeddings-d2-hpn.svg"].read_text()
    assert "seed 1" in no_anchors and "anchors" not in no_anchors
    assert not [n for n in by_name if "embeddings-d3-hpn" in n]  # its only sidecar is unreadable


def test_embedding_legends_name_the_classes(rendered):
    """Names stored in the record, else those the dataset defines in code, else ``class k``."""
    by_name = {p.name: p for p in rendered["s"]}
    old_fashion = by_name["s-embeddings-d2-dl2pa.svg"].read_text()  # a record made before names were stored
    assert "T-shirt/top" in old_fashion and "Ankle boot" in old_fashion and "class 0" not in old_fashion
    stored = by_name["s-embeddings-d3-softmax.svg"].read_text()
    assert "thing 0" in stored and "thing 9" in stored and "class 0" not in stored


def test_classes_without_names_are_numbered_not_named(tmp_path):
    """An old CIFAR-10 record (its names live in the meta file, not in code) and one without a dataset."""
    for method, dataset in (("softmax", "cifar10"), ("hpn", None)):
        rec = record("c", method, 2, 0, 50.0, per_class_accuracy=[float(c) for c in range(10)])
        if dataset:
            rec["dataset"] = dataset
        (tmp_path / "c" / method).mkdir(parents=True)
        sidecar(tmp_path, rec, "d2_s0_x", 2)
        save(tmp_path, rec, "d2_s0_x")
    paths = make_plots(list(iter_records(tmp_path)), "c", None, tmp_path / "plots", tmp_path, formats=("svg",))
    by_name = {p.name: p.read_text() for p in paths}
    for name in ("c-embeddings-d2-softmax.svg", "c-embeddings-d2-hpn.svg", "c-per-class-accuracy-d2.svg"):
        assert "class 0" in by_name[name] and "class 9" in by_name[name] and "airplane" not in by_name[name], name


def test_per_class_accuracy_names_each_class(rendered):
    by_name = {p.name: p for paths in rendered.values() for p in paths}
    balanced = by_name["s-per-class-accuracy-d2.svg"].read_text()
    assert "T-shirt/top" in balanced and "Ankle boot" in balanced and "dl2pa (n=3)" in balanced
    assert "accuracy per class at d=2" in balanced and "test accuracy (%)" in balanced
    longtail = by_name["s-lt-per-class-accuracy-r100.svg"].read_text()
    assert "kind 0 (500)" in longtail and "kind 9 (5)" in longtail and "train images" in longtail


def test_svgs_are_stable_and_nothing_is_written_without_records(store, tmp_path):
    records = list(iter_records(store, ["s-lt"]))
    first = make_plots(records, "s-lt", None, tmp_path / "a", store, formats=("svg",))
    second = make_plots(records, "s-lt", None, tmp_path / "b", store, formats=("svg",))
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert make_plots(records, "other", None, tmp_path / "c", store) == []
    assert not (tmp_path / "c").exists()


def test_an_unusable_sidecar_reads_as_none(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"junk")
    np.save(tmp_path / "plain.npy", np.zeros((3, 2)))
    np.savez(tmp_path / "wide.npz", features=np.ones((4, 5)), labels=np.zeros(4, dtype=int))
    np.savez(tmp_path / "nolabels.npz", features=np.ones((4, 2)))
    for name in ("junk.npz", "plain.npy", "wide.npz", "nolabels.npz", "absent.npz"):
        assert load_embeddings(tmp_path / name) is None, name
    np.savez(tmp_path / "ok.npz", features=np.ones((4, 3)), labels=np.arange(4), anchors=np.eye(3))
    sample = load_embeddings(tmp_path / "ok.npz")
    assert sample is not None and sample["features"].shape == (4, 3) and sample["anchors"].shape == (3, 3)


def test_a_one_epoch_run_has_one_epoch_tick_not_fractions(tmp_path):
    for method in ("dl2pa", "softmax"):
        rec = record("one", method, 2, 0, 60.0)
        rec["history"] = history(60.0, rematch=method == "dl2pa", epochs=1)
        (tmp_path / "one" / method).mkdir(parents=True)
        save(tmp_path, rec, "d2_s0_x")
    paths = make_plots(list(iter_records(tmp_path)), "one", None, tmp_path / "plots", tmp_path, formats=("svg",))
    for name in ("one-training-curves-d2.svg", "one-assignment-changes.svg"):
        assert tmp_path / "plots" / name in paths
        texts = re.findall(r"<text[^>]*>([^<]*)</text>", (tmp_path / "plots" / name).read_text())
        ticks = [texts[max(0, i - 2) : i] for i, t in enumerate(texts) if t == "epoch"]  # x ticks, then the label
        assert ticks and all(
            tick[-1] == "1" and not re.fullmatch(r"[\d.]+", tick[0] if len(tick) > 1 else "") for tick in ticks
        ), ticks
