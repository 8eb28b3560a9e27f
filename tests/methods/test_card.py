"""The method contract's shared rules: registration, options and their defaults, loss families."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protobench.core.errors import UserError
from protobench.heads import create_method, head_of
from protobench.methods import LOSS_FAMILIES, METHODS, check_loss_family, check_options, resolved_options
from protobench.running.grid import Cell, cell_config
from protobench.store.records import config_hash
from protobench.suite.definition import load_suite

#: The committed results of the shipped fashion-mnist suite.
RESULTS = Path(__file__).resolve().parents[2] / "results" / "fashion-mnist"


def test_registration_names_the_class() -> None:
    for name in METHODS:
        assert METHODS.get(name).name == name and head_of(METHODS.get(name)).card is METHODS.get(name)


def test_check_loss_family() -> None:
    for family in LOSS_FAMILIES:
        check_loss_family("m", family)
    with pytest.raises(UserError, match="long-tailed"):
        check_loss_family("m", "longtail")


def test_defaults_are_the_only_source_of_default_values() -> None:
    # Every head builds from its documented defaults alone, and records exactly them.
    for name in METHODS:
        method = create_method(name, 10, 16, seed=0)
        cls = METHODS.get(name)
        assert method.hyperparameters() == {**cls.defaults, **cls.later_defaults}


def test_init_states_no_defaults_of_its_own() -> None:
    # A head built without create_method must be given its options: no second copy of a default.
    for name in ("dl2pa", "dnc", "ebv", "softmax", "hpn-dynamic"):
        with pytest.raises(TypeError):
            METHODS.get(name)(10, 16)


def test_unknown_option_is_one_error_naming_the_allowed_ones() -> None:
    allowed = "loss, match_every_steps, match_steps_until_epoch, momentum, prototype_kind, t, tau"
    with pytest.raises(UserError, match=rf"method 'dl2pa' has no option 'tt'; allowed: {allowed}$"):
        create_method("dl2pa", 4, 3, tt=1.0)
    with pytest.raises(UserError, match=r"^suite.yaml: method 'etf' has no option 'x'; allowed: none$"):
        check_options("etf", {"x": 1}, where="suite.yaml")
    assert resolved_options("dl2pa", {"t": 3.0}) == {"t": 3.0, "momentum": 0.9}


def test_a_later_option_enters_the_config_only_away_from_its_default() -> None:
    # Options added after results were recorded must leave the configs (hashes) of those results alone.
    assert resolved_options("dl2pa", {"loss": "sq-cos", "match_every_steps": 0}) == {"t": 2.0, "momentum": 0.9}
    assert resolved_options("hpn", {"tau": 0.1}) == {}
    assert resolved_options("hpn", {"loss": "cos-ce"}) == {"loss": "cos-ce"}
    method = create_method("hpn", 4, 3, seed=0, loss="cos-ce", tau=0.5)
    assert method.hyperparameters() == {"loss": "cos-ce", "tau": 0.5}


@pytest.mark.parametrize("method", ["dl2pa", "hpn"])
def test_shipped_fashion_mnist_cells_keep_the_hashes_of_their_committed_records(method: str) -> None:
    record = json.loads(next((RESULTS / method).glob("d2_s0_*.json")).read_text())
    suite = load_suite("fashion-mnist")
    config = cell_config(
        suite,
        Cell(method, 2, 0, None),
        deterministic=record["config"]["deterministic"],
        precision=record["config"]["precision"],
    )
    assert config_hash(config) == record["config_hash"]


def test_every_option_range_is_of_a_documented_option_and_holds_its_default() -> None:
    for name in METHODS:
        cls = METHODS.get(name)
        documented = {**cls.defaults, **cls.later_defaults}
        assert set(cls.option_ranges) <= set(documented), name
        for option, allowed in cls.option_ranges.items():
            assert allowed.problem(option, documented[option]) is None, (name, option)


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("dnc", {"momentum": 5}, "method 'dnc': momentum is 5; use 0 <= momentum < 1"),
        ("dnc", {"sub_centroids": 2.5}, "method 'dnc': sub_centroids is 2.5; use a whole number sub_centroids >= 1"),
        ("dnc", {"sinkhorn_iterations": True}, "sinkhorn_iterations is True; use a whole number"),
        ("ebv", {"temperature": 0}, "method 'ebv': temperature is 0; use temperature > 0"),
        ("softmax", {"label_smoothing": 1.0}, "method 'softmax': label_smoothing is 1.0; use 0 <= label_smoothing < 1"),
        ("dl2pa", {"t": float("nan")}, "method 'dl2pa': t is nan; use t > 0"),
        ("hpn", {"loss": "ce"}, "method 'hpn': unknown loss 'ce'; allowed: sq-cos, cos-ce"),
        ("hpn-dynamic", {"match_every_steps": -1}, "match_every_steps is -1; use a whole number match_every_steps"),
    ],
)
def test_an_option_out_of_its_range_is_one_error_naming_the_range(method, options, message) -> None:
    with pytest.raises(UserError) as refused:
        check_options(method, options, where="s.yaml: key 'method_options'")
    assert str(refused.value).startswith("s.yaml: key 'method_options': ") and message in str(refused.value)
    with pytest.raises(UserError, match="use |allowed: "):
        create_method(method, 10, 16, **options)  # the same check where a head is built


PLANTED_METHOD = """\
    import torch
    import torch.nn.functional as F
    from torch import nn

    from protobench.heads.base import Method
    from protobench.methods.card import POSITIVE, MethodCard, register_method


    @register_method("planted-cosine", head="protobench.methods.plantedcosine.PlantedCosine")
    class PlantedCosineCard(MethodCard):
        \"\"\"A learned cosine classifier, planted by a test.\"\"\"

        defaults = {"scale": 10.0}
        option_ranges = {"scale": POSITIVE}


    class PlantedCosine(Method):
        card = PlantedCosineCard

        def __init__(self, num_classes, dim, *, scale, **base):
            super().__init__(num_classes, dim, **base)
            self.scale = scale
            self.weight = nn.Parameter(torch.randn(num_classes, dim))

        def scores(self, h):
            return self.scale * F.normalize(h, dim=1) @ F.normalize(self.weight, dim=1).T

        def loss(self, h, y):
            return F.cross_entropy(self.scores(h), y)
    """


def test_a_method_registers_from_a_new_module(monkeypatch, tmp_path, run_cli) -> None:
    """A card and its head in one new file of protobench/methods/ (here a temporary folder added to the
    package's path): found by discovery, listed, checked and built with no list edited."""
    from tests.planted import plant

    plant(monkeypatch, tmp_path / "methods", "protobench.methods", METHODS, "plantedcosine.py", PLANTED_METHOD)
    assert "planted-cosine" in METHODS
    code, out, _ = run_cli("methods", "--json")
    listed = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and listed["planted-cosine"]["defaults"] == {"scale": 10.0}
    assert listed["planted-cosine"]["summary"] == "A learned cosine classifier, planted by a test."
    with pytest.raises(UserError, match=r"^method 'planted-cosine': scale is -1; use scale > 0$"):
        check_options("planted-cosine", {"scale": -1})
    head = create_method("planted-cosine", 3, 4, scale=5.0)
    assert head.method_name == "planted-cosine" and head.hyperparameters() == {"scale": 5.0}
    import torch

    h, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    assert head.scores(h).shape == (6, 3) and float(head.loss(h, y).detach()) > 0


def test_a_card_naming_a_head_of_another_card_is_one_error() -> None:
    card = type("LostCard", (METHODS.get("softmax"),), {"name": "lost", "head": "protobench.heads.softmax.Softmax"})
    with pytest.raises(UserError, match=r"^method 'lost': its head protobench.heads.softmax.Softmax has card = "):
        head_of(card)
    card.head = "protobench.heads.softmax.NoSuchHead"
    with pytest.raises(UserError, match=r"^method 'lost': its head 'protobench.heads.softmax.NoSuchHead' cannot be"):
        head_of(card)
