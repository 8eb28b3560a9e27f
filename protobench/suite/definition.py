"""Suites: plain-data YAML files (``yaml.safe_load``) validated into frozen dataclasses.

Precedence, in one place: dataclass defaults < the suite file (and the files it ``include:``s,
the including file winning) < CLI flags (``Suite.with_overrides``). An unknown key, a wrong type,
an unknown method, dataset or backbone is a ``UserError`` naming the file, the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from protobench.core.errors import UserError
from protobench.suite.files import available_suites as available_suites  # re-exported for the CLI
from protobench.suite.files import read_yaml, resolve_suite_path
from protobench.suite.recipe import LATER_RECIPE_KEYS as LATER_RECIPE_KEYS  # re-exported
from protobench.suite.recipe import TrainRecipe as TrainRecipe  # re-exported
from protobench.suite.recipe import recipe_config as recipe_config  # re-exported
from protobench.suite.values import check_choice, check_keys, convert

if TYPE_CHECKING:
    from protobench.data.prepare import DataSettings

MIN_DIM, MAX_DIM = 2, 4096
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
PROFILES = ("exp", "step")
#: The recipe's float keys: each must be a finite number (``.nan`` or ``.inf`` in YAML would train to NaN).
FLOAT_RECIPE_KEYS = tuple(f.name for f in fields(TrainRecipe) if f.type in (float, "float"))


@dataclass(frozen=True)
class Variant:
    """A named row of a suite: a registered method with some of its options set, e.g. an ablation's arm
    (``variants: {dl2pa-t10: {method: dl2pa, options: {t: 10}}}``). It trains with its method's recipe
    unless ``method_recipes`` names the variant itself."""

    method: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """One pre-declared test of a suite's ``family`` (docs/compare.md): row ``a`` against row ``b`` in
    each of ``columns``, in this suite or in ``suite`` (another suite's records, e.g. a secondary endpoint)."""

    a: str
    b: str
    columns: tuple[str, ...]
    suite: str | None = None


@dataclass(frozen=True)
class Suite:
    """A benchmark: one dataset and recipe, a grid of method x dim x seed (x imbalance ratio)."""

    name: str
    dataset: str
    dims: tuple[int, ...]
    methods: tuple[str, ...]
    description: str = ""
    dataset_options: dict[str, Any] = field(default_factory=dict)
    val_size: int = 0
    data_seed: int = 0
    imbalance_ratios: tuple[float | None, ...] = (None,)
    imbalance_profile: str = "exp"
    loss: str = "balanced"
    backbone: str = "smallcnn"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Named rows beyond the registered methods (docs/ablations.md); ``methods`` may list them.
    variants: dict[str, Variant] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    train: TrainRecipe = field(default_factory=TrainRecipe)
    #: Per-method changes to ``train`` (any TrainRecipe key), e.g. each head's published or tuned lr.
    method_recipes: dict[str, dict[str, Any]] = field(default_factory=dict)
    paper: dict[str, dict[str, float]] = field(default_factory=dict)
    paper_source: str = ""
    #: Under torchrun, normalise BatchNorm over the whole global batch instead of each rank's part (CUDA).
    sync_batchnorm: bool = False
    #: Comparisons declared before any cell runs, corrected together (``protobench compare SUITE --family``).
    family: tuple[Comparison, ...] = ()
    path: str = ""

    def method_of(self, row: str) -> str:
        """The registered method a row of the table trains: the row itself, or its variant's method."""
        return self.variants[row].method if row in self.variants else row

    def options_for(self, row: str) -> dict[str, Any]:
        """A row's method options: ``method_options`` of its method, with the variant's own over them."""
        own = self.variants[row].options if row in self.variants else {}
        return {**self.method_options.get(self.method_of(row), {}), **own}

    def recipe_for(self, row: str) -> TrainRecipe:
        """The recipe a row trains with: ``train``, its method's ``method_recipes`` entry over it, and for a
        variant the variant's own entry over both."""
        changes = {**self.method_recipes.get(self.method_of(row), {}), **self.method_recipes.get(row, {})}
        return dataclasses.replace(self.train, **changes)

    @property
    def family_suites(self) -> list[str]:
        """This suite's name, then every other suite its ``family`` names (each once, in order)."""
        return list(dict.fromkeys([self.name, *(c.suite for c in self.family if c.suite)]))

    @property
    def long_tailed(self) -> bool:
        """True when any grid cell subsamples the training set."""
        return any(r is not None for r in self.imbalance_ratios)

    @property
    def has_validation(self) -> bool:
        """True when cells get a validation split: ``val_size`` held out, or the dataset's own."""
        from protobench.data import DATASETS

        return self.val_size > 0 or DATASETS.get(self.dataset).own_validation

    @property
    def data_settings(self) -> DataSettings:
        """What data preparation needs of this suite (protobench.data never imports suites)."""
        from protobench.data.prepare import DataSettings

        return DataSettings(
            dataset=self.dataset,
            dataset_options=dict(self.dataset_options),
            val_size=self.val_size,
            data_seed=self.data_seed,
            imbalance_profile=self.imbalance_profile,
            source=self.path or f"suite {self.name}",
        )

    def with_overrides(
        self,
        *,
        methods: list[str] | None = None,
        dims: list[int] | None = None,
        seeds: list[int] | None = None,
        epochs: int | None = None,
    ) -> Suite:
        """The suite with CLI flags applied (the last step of the precedence), validated again."""
        changes: dict[str, Any] = {}
        if methods is not None:
            changes["methods"] = tuple(methods)
        if dims is not None:
            changes["dims"] = tuple(dims)
        if seeds is not None:
            changes["seeds"] = tuple(seeds)
        if epochs is not None:
            # A quick run shorter than the warm-up keeps a warm-up that leaves it at least one full-lr epoch.
            def warmup(epochs_asked: int) -> int:
                return min(epochs_asked, max(0, epochs - 1))

            changes["train"] = dataclasses.replace(
                self.train, epochs=epochs, warmup_epochs=warmup(self.train.warmup_epochs)
            )
            recipes = {}
            for method, recipe in self.method_recipes.items():  # the flag wins over every method's recipe too
                recipe = {k: v for k, v in recipe.items() if k != "epochs"}
                if "warmup_epochs" in recipe:
                    recipe["warmup_epochs"] = warmup(recipe["warmup_epochs"])
                recipes[method] = recipe
            changes["method_recipes"] = recipes
        suite = dataclasses.replace(self, **changes)
        validate(suite, source="command line", family=False)
        return suite

    def column(self, dim: int, ratio: float | None) -> str:
        """The report column of a cell: the dim, or the imbalance ratio (and dim when several)."""
        if ratio is None:
            return str(dim)
        return f"r{ratio:g}" if len(self.dims) == 1 else f"r{ratio:g}/d{dim}"

    def columns(self) -> list[str]:
        """Report columns in grid order."""
        return [self.column(d, r) for r in self.imbalance_ratios for d in self.dims]


def build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Construct dataclass ``cls`` from ``data``; unknown keys are errors listing the allowed ones."""
    hints = typing.get_type_hints(cls)
    check_keys(data, [f.name for f in fields(cls) if f.name != "path"], f"{where}: unknown key")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if cls is Suite and name == "train":
            if not isinstance(value, dict):
                raise UserError(f"{where}: key 'train' must be a mapping of recipe keys")
            kwargs[name] = build(TrainRecipe, value, f"{where}: train")
        elif cls is Suite and name == "method_recipes":
            kwargs[name] = recipe_changes(value, where)
        elif cls is Suite and name == "variants":
            kwargs[name] = variants(value, where)
        elif cls is Suite and name == "family":
            kwargs[name] = family(value, where)
        else:
            kwargs[name] = convert(value, hints[name], f"{where}: key '{name}'")
    missing = [f.name for f in fields(cls) if f.name in ("name", "dataset", "dims", "methods") and f.name not in kwargs]
    if missing:
        raise UserError(f"{where}: missing key '{missing[0]}'")
    return cls(**kwargs)


def recipe_changes(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """``method_recipes``: METHOD -> {TrainRecipe key: value}, each value checked against the recipe's
    types; ``where`` (the file) is named in every error with the key, e.g. ``method_recipes.dl2pa``."""
    if not isinstance(value, dict):
        raise UserError(
            f"{where}: key 'method_recipes' must be a mapping of method -> recipe keys, e.g. {{dl2pa: {{lr: 0.01}}}}"
        )
    hints = typing.get_type_hints(TrainRecipe)
    allowed = [f.name for f in fields(TrainRecipe)]
    changes: dict[str, dict[str, Any]] = {}
    for method, recipe in value.items():
        key = f"{where}: key 'method_recipes.{method}'"
        if not isinstance(recipe, dict):
            raise UserError(f"{key} must be a mapping of recipe keys, e.g. {{lr: 0.01}}")
        check_keys(recipe, allowed, f"{key}: unknown recipe key")
        changes[str(method)] = {
            k: convert(v, hints[k], f"{where}: key 'method_recipes.{method}.{k}'") for k, v in recipe.items()
        }
    return changes


def variants(value: Any, where: str) -> dict[str, Variant]:
    """``variants``: NAME -> {method: METHOD, options: {...}}; the names and options are checked by ``validate``."""
    example = "e.g. {dl2pa-t10: {method: dl2pa, options: {t: 10}}}"
    if not isinstance(value, dict):
        raise UserError(f"{where}: key 'variants' must be a mapping of name -> {{method, options}}, {example}")
    found: dict[str, Variant] = {}
    for name, spec in value.items():
        key = f"{where}: key 'variants.{name}"
        if not isinstance(spec, dict) or "method" not in spec:
            raise UserError(f"{key}' must be a mapping with a 'method' (and 'options'), {example}")
        check_keys(spec, ["method", "options"], f"{key}': unknown key")
        method = convert(spec["method"], str, f"{key}.method'")
        found[str(name)] = Variant(method, convert(spec.get("options") or {}, dict[str, Any], f"{key}.options'"))
    return found


def family(value: Any, where: str) -> tuple[Comparison, ...]:
    """``family``: a list of {a: ROW, b: ROW, columns: [COLUMN, ...], suite: NAME (optional)}."""
    example = 'e.g. [{a: dl2pa, b: dl2pa-static, columns: ["2", "3"]}]'
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: key 'family' must be a non-empty list of comparisons, {example}")
    found = []
    for index, spec in enumerate(value):
        key = f"{where}: key 'family[{index}]'"
        if not isinstance(spec, dict) or not {"a", "b", "columns"} <= set(spec):
            raise UserError(f"{key} must be a mapping with 'a', 'b' and 'columns', {example}")
        check_keys(spec, ["a", "b", "columns", "suite"], f"{key}: unknown key")
        columns = spec["columns"] if isinstance(spec["columns"], list) else [spec["columns"]]
        if not columns:
            raise UserError(f"{key}: 'columns' is empty; name at least one report column, e.g. [\"2\"]")
        suite = spec.get("suite")
        found.append(Comparison(str(spec["a"]), str(spec["b"]), tuple(str(c) for c in columns),
                                None if suite is None else str(suite)))  # fmt: skip
    return tuple(found)


def check_family(suite: Suite, rows: list[str], source: str) -> None:
    """A comparison of this suite names two of its rows and its report columns (one naming another suite
    is checked against that suite's records when compared)."""
    from protobench.methods import METHODS

    columns = suite.columns()
    for index, comparison in enumerate(suite.family):
        if comparison.suite is not None:
            continue
        key = f"{source}: key 'family[{index}]'"
        for row in (comparison.a, comparison.b):
            if row not in rows:
                raise UserError(f"{key}: {METHODS.unknown_message(row, rows)}")
        for column in comparison.columns:
            if column not in columns:
                raise UserError(f"{key}: column '{column}' is not one of this suite's: {', '.join(columns)}")


def check_variants(suite: Suite, source: str) -> None:
    """Each variant names a registered method, takes only options that method documents, and does not
    hide a registered method's name."""
    from protobench.methods import METHODS, check_options

    for name, variant in suite.variants.items():
        key = f"{source}: key 'variants.{name}"
        if name in METHODS:
            raise UserError(f"{key}': '{name}' is a registered method; give the variant another name")
        if variant.method not in METHODS:
            raise UserError(f"{key}.method': {METHODS.unknown_message(variant.method)}")
        check_options(variant.method, variant.options, where=f"{key}.options'")


def validate(suite: Suite, source: str, family: bool = True) -> None:
    """Check values and names against the registries; ``source`` (a file) is named in every error. The
    declared ``family`` is checked against the suite file's own grid (``family``: not for a grid cut by flags)."""
    from protobench.backbones import BACKBONES
    from protobench.data import DATASETS
    from protobench.methods import LOSS_FAMILIES, METHODS, check_options

    check_path_part(suite.name, f"{source}: key 'name'")
    for name in suite.variants:
        check_path_part(name, f"{source}: key 'variants.{name}'")
    if suite.dataset not in DATASETS:
        raise UserError(f"{source}: key 'dataset': {DATASETS.unknown_message(suite.dataset)}")
    if suite.backbone not in BACKBONES:
        raise UserError(f"{source}: key 'backbone': {BACKBONES.unknown_message(suite.backbone)}")
    if not suite.methods:
        raise UserError(f"{source}: key 'methods' is empty; name at least one of: {', '.join(METHODS.names())}")
    check_variants(suite, source)
    rows = [*METHODS.names(), *suite.variants]
    for method in suite.methods:
        if method not in rows:
            raise UserError(f"{source}: key 'methods': {METHODS.unknown_message(method, rows)}")
    for method, options in suite.method_options.items():
        if method not in METHODS:
            raise UserError(f"{source}: key 'method_options': {METHODS.unknown_message(method)}")
        check_options(method, options, where=f"{source}: key 'method_options.{method}'")
    if not suite.dims:
        raise UserError(f"{source}: key 'dims' is empty")
    for dim in suite.dims:
        if not MIN_DIM <= dim <= MAX_DIM:
            raise UserError(f"{source}: dim {dim} is out of range; use {MIN_DIM} <= dim <= {MAX_DIM}")
    if not suite.seeds:
        raise UserError(f"{source}: key 'seeds' is empty")
    for seed in suite.seeds:
        if seed < 0:
            raise UserError(f"{source}: seed {seed} is negative; use seeds >= 0, e.g. 0,1,2")
    for ratio in suite.imbalance_ratios:
        if ratio is not None and ratio < 1:
            raise UserError(f"{source}: imbalance ratio {ratio:g} must be >= 1 (n_max / n_min), e.g. 100")
    check_choice(suite.loss, LOSS_FAMILIES, f"{source}: key 'loss'")
    check_choice(suite.imbalance_profile, PROFILES, f"{source}: key 'imbalance_profile'")
    if suite.val_size < 0:
        raise UserError(f"{source}: key 'val_size' must be >= 0")
    check_recipe(suite.train, source)
    for method in suite.method_recipes:
        if method not in rows:
            raise UserError(f"{source}: key 'method_recipes': {METHODS.unknown_message(method, rows)}")
        check_recipe(suite.recipe_for(method), source, f"method_recipes.{method}")
    for method in suite.paper:
        if method not in rows:
            raise UserError(f"{source}: key 'paper': {METHODS.unknown_message(method, rows)}")
    if family:
        check_family(suite, rows, source)


#: A suite's, variant's or method's name names a folder of the results store: one plain path part.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_path_part(name: str, where: str) -> None:
    """``name`` must be a safe folder name (letters, digits, '.', '_', '+', '-'; not '..'); else a UserError."""
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise UserError(f"{where}: {name!r} is not a safe name; use letters, digits, '.', '_', '+' and '-' "
                        "(it names a folder of the results store)")  # fmt: skip


def check_recipe(t: TrainRecipe, source: str, key: str = "train") -> None:
    """The values of a recipe; errors name ``source`` and the recipe's ``key`` (``train`` or
    ``method_recipes.METHOD``, which is checked as the whole recipe that method trains with)."""
    if t.epochs < 1:
        raise UserError(f"{source}: epochs is {t.epochs}; use epochs >= 1")
    if t.batch_size < 1 or t.eval_batch_size < 1:
        raise UserError(f"{source}: {key}.batch_size and {key}.eval_batch_size must be >= 1")
    check_choice(t.optimizer, OPTIMIZERS, f"{source}: key '{key}.optimizer'")
    check_choice(t.schedule, SCHEDULES, f"{source}: key '{key}.schedule'")
    check_choice(t.precision, PRECISIONS, f"{source}: key '{key}.precision'")
    for name in FLOAT_RECIPE_KEYS:  # a NaN passes every comparison below: refuse it (and inf) first
        if not math.isfinite(getattr(t, name)):
            example = f"{name}: {getattr(TrainRecipe(), name):g}"
            raise UserError(f"{source}: key '{key}.{name}' is {getattr(t, name)}; give a finite number, e.g. {example}")
    if t.lr <= 0:
        raise UserError(f"{source}: key '{key}.lr' must be > 0, got {t.lr:g}; e.g. lr: 0.1")
    if t.weight_decay < 0:
        raise UserError(f"{source}: key '{key}.weight_decay' must be >= 0, got {t.weight_decay:g}; e.g. 5e-4 (0: none)")
    if t.warmup_epochs < 0 or t.warmup_epochs > t.epochs:
        raise UserError(f"{source}: key '{key}.warmup_epochs' must be between 0 and epochs ({t.epochs})")
    if t.mixup_alpha < 0:
        raise UserError(f"{source}: key '{key}.mixup_alpha' must be >= 0 (0 = no mixup)")
    if t.cutmix_alpha < 0:
        raise UserError(f"{source}: key '{key}.cutmix_alpha' must be >= 0 (0 = no CutMix)")
    if not 0 <= t.cutmix_prob <= 1:
        raise UserError(f"{source}: key '{key}.cutmix_prob' must be between 0 and 1 (the share of CutMix batches)")


def load_suite(name_or_path: str) -> Suite:
    """Load, merge includes, type-check and validate a suite by name or path."""
    path = resolve_suite_path(name_or_path)
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    suite = build(Suite, data, str(path))
    suite = dataclasses.replace(suite, path=str(path))
    validate(suite, str(path))
    return suite
