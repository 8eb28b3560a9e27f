import dataclasses
from pathlib import Path

import pytest

from protobench.core.errors import UserError
from protobench.suite.definition import TrainRecipe, available_suites, load_suite, recipe_config
from tests.conftest import tiny_suite


def test_every_shipped_suite_loads():
    names = available_suites()
    assert {"quickstart", "fashion-mnist"} <= set(names)
    for name in names:
        suite = load_suite(name)
        assert suite.name == name and suite.dims and suite.methods and suite.seeds


def test_include_merges_and_including_file_wins():
    suite = load_suite("fashion-mnist")
    quick = load_suite("quickstart")
    assert suite.dims == (2, 3, 8, 16, 32, 64) and suite.seeds == (0, 1, 2)
    assert suite.methods == quick.methods  # inherited
    assert suite.train.epochs == 5 and suite.train.lr == quick.train.lr  # nested merge


def test_a_suite_that_includes_a_named_suite_keeps_its_own_name(tmp_path):
    named = tiny_suite(tmp_path / "base.yaml", name="the-base")
    (tmp_path / "child.yaml").write_text(f"include: {named.name}\ndims: [3]\n")
    assert load_suite(str(named)).name == "the-base"
    assert load_suite(str(tmp_path / "child.yaml")).name == "child"
    assert load_suite("ablation-loss").name == "ablation-loss"  # includes fashion-mnist-tuned, which sets its name


def test_scientific_notation_is_a_number(tmp_path):
    path = tiny_suite(tmp_path / "s.yaml", train={"weight_decay": "5e-4"})
    assert load_suite(str(path)).train.weight_decay == pytest.approx(5e-4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"colour": 1}, r"s\.yaml: unknown key 'colour'; allowed: name, dataset"),
        ({"dims": ["x"]}, r"s\.yaml: key 'dims'\[0\] must be an integer, got 'x'"),
        (
            {"methods": ["softmx"]},
            r"s\.yaml: key 'methods': unknown method 'softmx' \(did you mean 'softmax'\?\)",
        ),
        ({"dataset": "mnist"}, r"s\.yaml: key 'dataset': unknown dataset 'mnist'.*allowed: .*fashion-mnist"),
        ({"backbone": "vit"}, r"s\.yaml: key 'backbone': unknown backbone 'vit'; allowed: smallcnn"),
        ({"dims": [1]}, r"dim 1 is out of range; use 2 <= dim <= 4096"),
        ({"train": {"epochs": 0}}, r"epochs is 0; use epochs >= 1"),
        ({"train": {"optimiser": "sgd"}}, r"train: unknown key 'optimiser' \(did you mean 'optimizer'\?\)"),
        (
            {"train": {"schedule": "linear"}},
            r"key 'train.schedule' is 'linear'; allowed: cosine, step, constant",
        ),
        (
            {"method_options": {"softmax": {"temp": 1}}},
            r"'method_options.softmax': method 'softmax' has no option 'temp'; allowed: label_smoothing",
        ),
        ({"loss": "focal"}, r"key 'loss' is 'focal'; allowed: balanced, long-tailed"),
        ({"train": {"cutmix_alpha": -1}}, r"key 'train.cutmix_alpha' must be >= 0 \(0 = no CutMix\)"),
        ({"train": {"cutmix_prob": 1.5}}, r"key 'train.cutmix_prob' must be between 0 and 1"),
        (
            {"method_recipes": {"softmax": {"cutmix_prob": -0.1}}},
            r"'method_recipes.softmax.cutmix_prob' must be between",
        ),
        # A NaN passes every range check (each comparison is False): every float recipe key must be finite.
        ({"train": {"mixup_alpha": float("nan")}}, r"key 'train.mixup_alpha' is nan; give a finite number"),
        ({"train": {"momentum": float("-inf")}}, r"key 'train.momentum' is -inf; give a finite number, e.g. mom"),
        ({"train": {"lr": 0}}, r"key 'train.lr' must be > 0, got 0; e.g. lr: 0.1"),
        ({"method_options": {"dnc": {"temperature": 0}}}, r"'method_options.dnc': method 'dnc': temperature is 0; "),
    ],
)
def test_validation_errors_name_file_key_and_allowed(tmp_path, overrides, message):
    path = tiny_suite(tmp_path / "s.yaml", **overrides)
    with pytest.raises(UserError, match=message):
        load_suite(str(path))


def test_unreadable_yaml_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("dims: [2, 3\nmethods: softmax\n")
    with pytest.raises(UserError, match=r"bad\.yaml: line \d+: .*fix the YAML syntax") as info:
        load_suite(str(path))
    assert "\n" not in str(info.value)


def test_tags_that_run_code_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(UserError, match="evil.yaml"):
        load_suite(str(path))


def test_include_cycle_is_detected(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(UserError, match="include cycle a.yaml -> b.yaml -> a.yaml"):
        load_suite(str(tmp_path / "a.yaml"))


def test_unknown_suite_name_lists_known():
    with pytest.raises(UserError, match=r"unknown suite 'quickstrat' \(did you mean 'quickstart'\?\); known: "):
        load_suite("quickstrat")


def test_cli_overrides_are_validated(tmp_path):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml")))
    changed = suite.with_overrides(methods=["softmax"], dims=[8], seeds=[3, 4], epochs=1)
    assert (changed.dims, changed.seeds, changed.train.epochs) == ((8,), (3, 4), 1)
    with pytest.raises(UserError, match="dim 5000 is out of range"):
        suite.with_overrides(dims=[5000])
    with pytest.raises(UserError, match="use epochs >= 1"):
        suite.with_overrides(epochs=0)


def test_columns_for_long_tailed_suites(tmp_path):
    suite = load_suite(str(tiny_suite(Path(tmp_path / "s.yaml"), imbalance_ratios=[100, 10], dims=[16])))
    assert suite.long_tailed and suite.columns() == ["r100", "r10"]


def test_method_recipes_override_only_the_named_method(tmp_path):
    path = tiny_suite(tmp_path / "s.yaml", methods=["softmax", "dl2pa"],
                      method_recipes={"dl2pa": {"lr": 0.01, "weight_decay": "1e-4", "milestones": [3]}})  # fmt: skip
    suite = load_suite(str(path))
    assert suite.recipe_for("softmax") == suite.train
    dl2pa = suite.recipe_for("dl2pa")
    assert (dl2pa.lr, dl2pa.weight_decay, dl2pa.milestones) == (0.01, pytest.approx(1e-4), (3,))
    assert dl2pa.batch_size == suite.train.batch_size  # everything else from train
    # --epochs wins over every method's recipe, as over train.
    short = suite.with_overrides(epochs=1)
    assert short.recipe_for("dl2pa").epochs == 1 and short.recipe_for("dl2pa").lr == 0.01


@pytest.mark.parametrize(
    ("recipes", "message"),
    [
        ({"dl2pb": {"lr": 0.01}}, r"key 'method_recipes': unknown method 'dl2pb' \(did you mean 'dl2pa'\?\)"),
        ({"dl2pa": {"learning_rate": 0.01}}, r"'method_recipes\.dl2pa': unknown recipe key 'learning_rate'; allowed: "),
        ({"dl2pa": {"lr": "fast"}}, r"key 'method_recipes\.dl2pa\.lr' must be a number, got 'fast'"),
        ({"dl2pa": {"lr": -1}}, r"key 'method_recipes\.dl2pa\.lr' must be > 0"),
        ({"dl2pa": 0.01}, r"key 'method_recipes\.dl2pa' must be a mapping of recipe keys"),
    ],
)
def test_method_recipe_errors_name_the_method_and_key(tmp_path, recipes, message):
    path = tiny_suite(tmp_path / "s.yaml", method_recipes=recipes)
    with pytest.raises(UserError, match=message):
        load_suite(str(path))


#: TrainRecipe's keys before CutMix: the recipe part of every record's config committed until then.
KEYS_BEFORE_CUTMIX = ["epochs", "batch_size", "eval_batch_size", "optimizer", "lr", "momentum", "nesterov",
                      "weight_decay", "schedule", "milestones", "gamma", "warmup_epochs", "mixup_alpha",
                      "crop_padding", "flip", "random_resized_crop", "augment_extra", "precision"]  # fmt: skip


def test_a_recipe_without_cutmix_enters_the_config_as_before():
    # Records hash their config: a recipe that does not use the later keys must keep the config it had.
    for recipe in (TrainRecipe(), TrainRecipe(mixup_alpha=0.2, lr=0.5, milestones=(3,), cutmix_prob=0.5)):
        config = recipe_config(recipe)
        assert list(config) == KEYS_BEFORE_CUTMIX
        assert config == {k: v for k, v in dataclasses.asdict(recipe).items() if k in KEYS_BEFORE_CUTMIX}
    assert list(recipe_config(TrainRecipe(cutmix_alpha=1.0))) == [*KEYS_BEFORE_CUTMIX, "cutmix_alpha"]
    assert recipe_config(TrainRecipe(cutmix_alpha=1.0, cutmix_prob=0.3))["cutmix_prob"] == 0.3


def test_imagenet_mixes_by_mixup_or_cutmix_and_imagenet_lt_by_mixup_alone():
    for method in load_suite("imagenet").methods:
        recipe = load_suite("imagenet").recipe_for(method)
        assert (recipe.mixup_alpha, recipe.cutmix_alpha, recipe.cutmix_prob) == (0.2, 1.0, 0.5), method
    lt = load_suite("imagenet-lt")
    assert all(lt.recipe_for(method).cutmix_alpha == 0 for method in lt.methods)
    assert list(recipe_config(lt.train)) == KEYS_BEFORE_CUTMIX


# ---------------------------------------------------------------- variants (docs/ablations.md)

VARIANTS = {"dl2pa-t10": {"method": "dl2pa", "options": {"t": 10}}, "static-cosce": {"method": "dl2pa-static"}}


def test_a_variant_is_its_method_with_its_options_and_recipe(tmp_path):
    suite = load_suite(str(tiny_suite(
        tmp_path / "s.yaml", methods=["dl2pa", "dl2pa-t10", "static-cosce"], variants=VARIANTS,
        method_options={"dl2pa": {"momentum": 0.5}, "dl2pa-static": {"loss": "cos-ce"}},
        method_recipes={"dl2pa": {"lr": 0.01}, "static-cosce": {"lr": 0.2}},
    )))  # fmt: skip
    assert suite.method_of("dl2pa-t10") == "dl2pa" and suite.method_of("dl2pa") == "dl2pa"
    # The method's suite-wide options apply to its variants, the variant's own win.
    assert suite.options_for("dl2pa-t10") == {"momentum": 0.5, "t": 10}
    assert suite.options_for("static-cosce") == {"loss": "cos-ce"}
    # The method's recipe by default; the variant's own entry over it.
    assert suite.recipe_for("dl2pa-t10").lr == 0.01
    assert suite.recipe_for("static-cosce").lr == 0.2 and suite.recipe_for("dl2pa-static").lr == 0.05


@pytest.mark.parametrize(
    ("variants", "methods", "message"),
    [
        ({"dl2pa": {"method": "hpn"}}, ["dl2pa"], r"variants\.dl2pa': 'dl2pa' is a registered method; give"),
        ({"x": {"method": "dl2pax"}}, ["x"], r"variants\.x\.method': unknown method 'dl2pax' \(did you mean 'dl2pa'"),
        ({"x": {"method": "dl2pa", "options": {"tt": 3}}}, ["x"], r"variants\.x\.options': method 'dl2pa' has no opt"),
        ({"x": {"options": {"t": 3}}}, ["x"], r"variants\.x' must be a mapping with a 'method'"),
        ({"x": {"method": "dl2pa", "opts": {}}}, ["x"], r"variants\.x': unknown key 'opts' \(did you mean 'options'"),
        ({"x": {"method": "dl2pa"}}, ["y"], r"key 'methods': unknown method 'y'; allowed: .*softmax, x$"),
        ([], ["softmax"], r"key 'variants' must be a mapping"),
    ],
)
def test_variant_errors_name_the_file_and_key(tmp_path, variants, methods, message):
    with pytest.raises(UserError, match=message) as info:
        load_suite(str(tiny_suite(tmp_path / "v.yaml", variants=variants, methods=methods)))
    assert "v.yaml" in str(info.value) and "\n" not in str(info.value)


def test_method_recipes_and_methods_flag_may_name_a_variant(tmp_path):
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", variants=VARIANTS, method_recipes={"dl2pa-t10": {"lr": 1}})))
    assert suite.with_overrides(methods=["dl2pa-t10"]).methods == ("dl2pa-t10",)
    with pytest.raises(UserError, match="unknown method 'dl2pa-t1'"):
        suite.with_overrides(methods=["dl2pa-t1"])


@pytest.mark.parametrize("name", ["my suite", "a/b", "x\\y", "ok\n", "a:b", "..", "a..b", "-x", ".hidden", ""])
def test_a_name_with_a_bad_character_anywhere_is_refused(tmp_path, name):
    """A suite's (or variant's) name names a folder of the store: each character is checked, not only the first."""
    from protobench.suite.definition import check_path_part

    with pytest.raises(UserError, match="is not a safe name; use letters, digits"):
        check_path_part(name, "s.yaml: key 'name'")
    with pytest.raises(UserError, match=r"key 'name': .* is not a safe name") as refused:
        load_suite(str(tiny_suite(tmp_path / "s.yaml", name=name)))
    assert "\n" not in str(refused.value)  # one line, a newline in the name included (it is quoted as repr)


def test_plain_names_pass_the_name_check():
    from protobench.suite.definition import check_path_part

    for name in ("cifar10-lt", "dl2pa-t10", "a.b_c+d", "R2"):
        check_path_part(name, "s.yaml: key 'name'")


def test_the_shipped_suites_are_found_from_any_working_folder(tmp_path, monkeypatch) -> None:
    # suites_dirs finds suites/ from its own place in the package, wherever the command runs.
    from protobench.suite.definition import available_suites

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROTOBENCH_SUITES", raising=False)
    assert {"quickstart", "fashion-mnist-tuned"} <= set(available_suites())
