"""Every shipped suite runs end to end (`protobench run SUITE --epochs 1`) on tiny format-exact data.

The data are written in exactly the real on-disk formats (CIFAR pickles, SVHN .mat, STL-10 binaries,
an ImageNet tree of JPEGs with ImageNet-LT split files, a prepared ImageNet-200 file, Fashion-MNIST
IDX), and the real loaders read them; only the number of images is small.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from protobench.heads import create_method
from protobench.suite.definition import available_suites, load_suite
from tests.data import fakefiles


def write_data(kind: str, root: Path, run_cli) -> None:
    """Tiny files for one dataset kind under ``root`` (the --data-dir)."""
    if kind == "cifar10":
        fakefiles.write_cifar10(root, n_train=200, n_test=50)
    elif kind == "cifar100":
        fakefiles.write_cifar100(root, n_train=200, n_test=100)
    elif kind == "svhn":
        fakefiles.write_svhn(root, n_train=200, n_test=50)
    elif kind == "stl10":
        fakefiles.write_stl10(root, n_train=40, n_test=20)
    elif kind == "fashion-mnist":
        fakefiles.write_fashion_mnist(root, n_train=300)  # suites with a validation split hold out 100 (below)
    elif kind == "imagenet":
        fakefiles.write_imagenet_tree(root, n_train=1, n_val=1)  # ResNet-50 at 224 x 224: as few as will do
    elif kind == "imagenet-lt":
        fakefiles.write_imagenet_tree(root, n_train=2, n_val=1)  # one image a class for LT's val, one to train
        fakefiles.write_imagenet_lt_lists(root, root)  # ImageNet_LT_*.txt, found by the suite's relative names
    elif kind == "imagenet200":
        tree = fakefiles.write_imagenet_tree(root / "tree", n_train=4, n_val=2)
        classes = fakefiles.write_classes_file(root / "classes.txt", fakefiles.WNIDS)
        code, _, err = run_cli(
            "data", "prepare", "imagenet200", "--imagenet", tree, "--out", root, "--classes", classes, "--workers", 1
        )
        assert code == 0, err


SUITE_DATA = {
    "quickstart": "fashion-mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion-mnist-tuned": "fashion-mnist",
    "fashion-mnist-lt": "fashion-mnist",
    "fashion-mnist-lt-lowdim": "fashion-mnist",
    "fashion-mnist-lt-simplex": "fashion-mnist",
    "confirm-matching": "fashion-mnist",
    "confirm-matching-lt": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "cifar10-lt": "cifar10",
    "cifar100-lt": "cifar100",
    "svhn-lt": "svhn",
    "stl10-lt": "stl10",
    "imagenet": "imagenet",
    "imagenet-lt": "imagenet-lt",
    "imagenet200": "imagenet200",
    "ablation-temperature": "fashion-mnist",
    "ablation-matching": "fashion-mnist",
    "ablation-prototypes": "fashion-mnist",
    "ablation-loss": "fashion-mnist",
    "ablation-temperature-cifar100": "cifar100",
    "ablation-matching-cifar100": "cifar100",
    "ablation-prototypes-cifar100": "cifar100",
    "ablation-loss-cifar100": "cifar100",
}


def test_every_shipped_suite_is_covered_here():
    assert set(available_suites()) == set(SUITE_DATA)


@pytest.fixture(scope="module")
def prototype_cache(tmp_path_factory):
    """One protobench cache for this module's runs: a prototype set is a pure function of its key
    (protobench/prototypes/cache.py), and K = 100 uniform sets at d = 3 take some 20 s each to solve."""
    return tmp_path_factory.mktemp("shared-cache")


@pytest.mark.parametrize("suite", sorted(SUITE_DATA))
def test_run_suite_one_epoch_on_format_exact_data(suite, tmp_path, run_cli, monkeypatch, prototype_cache):
    monkeypatch.setenv("PROTOBENCH_CACHE", str(prototype_cache))
    data = tmp_path / "data"
    data.mkdir()
    write_data(SUITE_DATA[suite], data, run_cli)
    results = tmp_path / "results"
    # Few rows keep it quick, at the suite's largest dim: a parametric head and DL2PA; an ablation's last
    # variant (its own change: its DL2PA row is the paper suite's, trained there); DL2PA alone on the
    # ResNet-50 suites (a 224 x 224 step is seconds on a CPU; softmax's head runs in every other suite here).
    loaded = load_suite(suite)
    dim = loaded.dims[-1]  # the largest: every head applies (ETF needs d >= K-1), and K = 100 sets solve fast there
    rows = [list(loaded.variants)[-1]] if loaded.variants else ["softmax", "dl2pa"]
    if loaded.backbone == "resnet50":
        rows = ["dl2pa"]
    # The copy trained here: one imbalance ratio (the others take the same path), and fp32 where the suite
    # asks for bf16 (CPUs without native bf16 emulate its autocast, ResNet-50 some 30x slower than fp32):
    # the suite's data format, recipe and heads are what this test checks.
    target = tmp_path / f"{suite}.yaml"
    copy = {"include": loaded.path, "name": suite, "imbalance_ratios": [loaded.imbalance_ratios[0]]}
    if loaded.train.precision == "bf16":
        copy["train"] = {"precision": "fp32"}
    if loaded.val_size:  # 100 validation images rather than the suites' 5,000: evaluating those was most of the time
        copy["val_size"] = 100
    target.write_text(yaml.safe_dump(copy))
    args = ["run", target, "--epochs", "1", "--seeds", "0", "--methods", ",".join(rows), "--dims", dim,
            "--data-dir", data, "--results", results, "--device", "cpu"]  # fmt: skip
    if suite == "imagenet-lt":  # tiny split files: the published sizes are checked and the mismatch reported
        with pytest.warns(UserWarning, match="ImageNet-LT train has 5 images, not 115,846"):
            code, out, err = run_cli(*args)
    else:
        code, out, err = run_cli(*args)
    assert code == 0, err + out
    records = [json.loads(p.read_text()) for p in results.glob(f"{suite}/*/*.json")]
    assert records and all(r["status"] == "ok" for r in records), [r.get("reason") for r in records]
    assert {r["method"] for r in records} == set(rows)
    for record in records:
        assert record["config"]["train"]["epochs"] == 1 and len(record["history"]) == 1
        if record["imbalance_ratio"] is not None:
            assert set(record["shot_groups"]) == {"by_count", "by_index"}
    assert all(f"| {row} |" in out for row in rows)


# ---------------------------------------------------------------- per-method published recipes (docs/recipes.md)

#: What each paper suite's method_recipes change for each method; every other method, and every other key,
#: is the suite's train:. Sources are in the suite files' comments.
LT: dict[str, dict[str, float]] = {}  # cifar10-lt and its includes: train: is every head's published LT recipe
PUBLISHED_CHANGES = {
    "cifar100": {"etf": {"lr": 0.1, "weight_decay": 2e-4}, "dnc": {"lr": 0.1, "weight_decay": 5e-4}},
    "cifar10": {"etf": {"lr": 0.1, "weight_decay": 2e-4}, "dnc": {"lr": 0.1, "weight_decay": 1e-4}},
    "imagenet200": {"etf": {"lr": 0.1, "weight_decay": 2e-4}},  # no ImageNet-200 recipe for dnc
    "cifar10-lt": LT,
    "cifar100-lt": LT,
    "svhn-lt": LT,
    "stl10-lt": LT,
    "imagenet": {"dnc": {"batch_size": 256, "lr": 0.1, "weight_decay": 1e-4}},
    "imagenet-lt": {"etf": {"batch_size": 1024, "lr": 0.1, "weight_decay": 5e-4}},
}


def test_cifar100_etf_gets_the_dr_loss_recipe_and_the_squared_cosine_heads_keep_hpns():
    suite = load_suite("cifar100")
    assert suite.recipe_for("etf").lr == 0.1 and suite.recipe_for("etf").weight_decay == 2e-4
    for method in ("hpn", "dl2pa", "dl2pa-static", "hpn-dynamic"):
        assert (suite.recipe_for(method).lr, suite.recipe_for(method).weight_decay) == (0.01, 1e-4), method
    assert suite.recipe_for("etf").milestones == suite.train.milestones == (100, 200)  # only lr and wd change


@pytest.mark.parametrize("name", sorted(PUBLISHED_CHANGES))
def test_paper_suites_give_each_method_its_published_recipe(name):
    suite = load_suite(name)
    changes = PUBLISHED_CHANGES[name]
    assert set(changes) <= set(suite.methods)
    for method in suite.methods:
        assert suite.recipe_for(method) == dataclasses.replace(suite.train, **changes.get(method, {})), method


def test_lt_suites_keep_the_published_lt_recipe_for_every_head():
    for name in ("cifar10-lt", "cifar100-lt", "svhn-lt", "stl10-lt"):
        suite = load_suite(name)
        for method in suite.methods:
            recipe = suite.recipe_for(method)
            assert (recipe.lr, recipe.weight_decay, recipe.mixup_alpha) == (0.1, 2e-4, 1.0), (name, method)


@pytest.mark.parametrize("name", sorted(SUITE_DATA))
def test_method_recipes_name_only_methods_the_suite_runs(name):
    suite = load_suite(name)
    # The file's own entries: inherited ones (an ablation includes a suite tuned for every head) may name
    # methods this suite does not run, which changes nothing.
    own = yaml.safe_load(Path(suite.path).read_text()).get("method_recipes") or {}
    stray = [method for method, changes in own.items() if changes and method not in suite.methods]
    assert not stray, f"{name}: method_recipes for methods it does not run: {stray}"


def loss_is_summed(method: str, loss_family: str) -> bool:
    """True when the head's training loss doubles on a batch repeated twice (a sum, not a mean)."""
    head = create_method(method, 10, 16, seed=0, loss_family=loss_family)
    z = torch.randn(40, 16, generator=torch.Generator().manual_seed(0))
    y = torch.arange(40) % 10
    with torch.no_grad():
        once = head.loss(head(z), y)
        twice = head.loss(head(torch.cat([z, z])), torch.cat([y, y]))
    return bool(torch.isclose(twice, 2 * once, rtol=1e-4))


#: The suites on HPN's ResNet-32, where HPN's published lr is the reference for a summed loss.
RESNET32_SUITES = ["cifar100", "cifar10", "imagenet200", "cifar10-lt", "cifar100-lt", "svhn-lt", "stl10-lt"]


@pytest.mark.parametrize("name", RESNET32_SUITES)
def test_heads_with_a_summed_loss_train_at_hpns_published_lr(name):
    """HPN's lr 0.01 / wd 1e-4 was tuned for the squared-cosine loss summed over the batch (128 times the
    gradient of a mean): any head that trains with a summed loss in these suites must get that recipe."""
    suite = load_suite(name)
    summed = [m for m in suite.methods if loss_is_summed(m, suite.loss)]
    if suite.loss == "balanced":
        assert {"hpn", "dl2pa"} <= set(summed)
    for method in summed:
        assert (suite.recipe_for(method).lr, suite.recipe_for(method).weight_decay) == (0.01, 1e-4), method
