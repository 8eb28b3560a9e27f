"""One training step: the mixup and CutMix rules, the loss -> bookkeeping hand-off, no host syncs, state in place."""

from __future__ import annotations

import contextlib
import functools
import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from protobench.core.device import replays_graphs, seed_everything
from protobench.data.prepare import prepare_cell_data
from protobench.engine.loop import build_learner, cell_loaders, train_cell
from protobench.engine.step import (
    NO_BOX,
    GraphedTrainStep,
    Learner,
    Mixup,
    cutmix_box,
    forward_backward,
    mix_kind,
    step_function,
    train_step,
)
from protobench.heads import Method
from protobench.heads.base import StepMemo
from protobench.methods import METHODS
from protobench.running.grid import spec_for
from protobench.suite.definition import TrainRecipe, load_suite
from tests.conftest import tiny_suite

CPU = torch.device("cpu")


def _tiny_suite_and_data(tmp_path, fmnist_dir, loss_family, **recipe):
    """A one-epoch tiny suite of ``loss_family`` (long-tailed: with mixup), ``recipe`` over it, and its data."""
    mixup = {"mixup_alpha": 1.0} if loss_family == "long-tailed" else {}
    train = {"epochs": 1, "batch_size": 32, "eval_batch_size": 64, "lr": 0.05, **mixup, **recipe}
    suite = load_suite(str(tiny_suite(tmp_path / "s.yaml", loss=loss_family, train=train)))
    return suite, prepare_cell_data(suite.data_settings, fmnist_dir, None)


def _device_scalars(mix: Mixup) -> Mixup:
    """The Mixup a graph-replayed step sees: its buffers (GraphedTrainStep's) filled from the step's numbers."""
    buffers = mix.buffers()
    mix.fill(buffers)
    assert all(isinstance(getattr(buffers, f), torch.Tensor) for f in ("weight", "partner_weight", "own_dominant"))
    assert mix.box is None or all(isinstance(b, torch.Tensor) for b in (*buffers.box, buffers.cutmix))
    return buffers


# ---------------------------------------------------------------- the mixup and CutMix rules


def test_mixup_dominant_labels_are_those_with_the_larger_weight() -> None:
    partner = torch.tensor([1, 0])
    assert Mixup.from_lambda(0.7, partner).own_dominant is True
    assert Mixup.from_lambda(0.5, partner).own_dominant is True  # a tie keeps the own labels
    assert Mixup.from_lambda(0.3, partner).own_dominant is False
    mix = Mixup.from_lambda(0.3, partner)
    assert (mix.weight, mix.partner_weight) == (0.3, pytest.approx(0.7))


def test_mixup_alpha_zero_or_less_is_no_mixup() -> None:
    rng = np.random.default_rng(0)
    assert Mixup.draw(rng, 0.0, 8, CPU) is None
    assert Mixup.draw(rng, -1.0, 8, CPU) is None
    mix = Mixup.draw(rng, 1.0, 8, CPU)
    assert mix is not None and sorted(mix.partner.tolist()) == list(range(8)) and 0 < mix.weight < 1


def _rng_state(rng: np.random.Generator) -> str:
    return repr(rng.bit_generator.state)


@pytest.mark.parametrize("alpha", [0.0, 0.2, 1.0])
def test_recipes_without_cutmix_draw_exactly_what_they_drew_before_cutmix(alpha: float) -> None:
    # Records trained before CutMix existed must reproduce: the same host draws, the same permutations.
    shape = (8, 1, 28, 28)
    for recipe in (TrainRecipe(mixup_alpha=alpha), TrainRecipe(mixup_alpha=alpha, cutmix_prob=0.9)):
        new_rng, old_rng = np.random.default_rng(5), np.random.default_rng(5)
        for _ in range(20):
            torch.manual_seed(11)
            mix = Mixup.draw_step(new_rng, recipe, shape, CPU)
            torch.manual_seed(11)
            if alpha <= 0:  # a literal copy of the draw before CutMix
                assert mix is None
            else:
                lam = float(old_rng.beta(alpha, alpha))
                old = Mixup.from_lambda(lam, torch.randperm(shape[0], device=CPU))
                assert mix is not None and (mix.weight, mix.box, mix.cutmix) == (old.weight, None, False)
                assert torch.equal(mix.partner, old.partner)
        assert _rng_state(new_rng) == _rng_state(old_rng)


def test_mixup_images_are_the_same_blend_as_before_cutmix() -> None:
    images = torch.randn(6, 3, 5, 7)
    partner = torch.tensor([3, 0, 5, 1, 2, 4])
    before = torch.lerp(images[partner], images, 0.3)  # a literal copy of the blend before CutMix
    for mix in (Mixup.from_lambda(0.3, partner), Mixup.from_lambda(0.3, partner, NO_BOX)):
        assert torch.equal(mix.mixed(images), before)
        assert torch.equal(_device_scalars(mix).mixed(images), before)  # the graph path, box or not


def _pasted(images: torch.Tensor, mix: Mixup) -> torch.Tensor:
    """CutMix by slicing, an independent reference: the partner's box pasted into every image."""
    y0, y1, x0, x1 = mix.box
    expected = images.clone()
    expected[..., y0:y1, x0:x1] = images[mix.partner][..., y0:y1, x0:x1]
    return expected


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_pastes_the_partners_box_and_weighs_by_its_area(seed: int) -> None:
    images = torch.randn(6, 3, 17, 23)
    mix = Mixup.draw_cutmix(np.random.default_rng(seed), 1.0, images.shape, CPU)
    y0, y1, x0, x1 = mix.box
    assert 0 <= y0 <= y1 <= 17 and 0 <= x0 <= x1 <= 23 and mix.cutmix is True
    assert (y1 - y0) * (x1 - x0) / (17 * 23) == pytest.approx(1 - mix.weight)
    assert mix.partner_weight == pytest.approx(1 - mix.weight) and mix.own_dominant == (mix.weight >= 0.5)
    mixed = mix.mixed(images)
    assert torch.equal(mixed, _pasted(images, mix))  # inside the box the partner's pixels, outside the own
    assert torch.equal(_device_scalars(mix).mixed(images), mixed)  # the graph path, bit for bit


def test_cutmix_box_covers_one_minus_lambda_of_the_image_less_what_clipping_cuts() -> None:
    rng = np.random.default_rng(0)
    height, width = 224, 160
    inside = 0
    for lam in np.random.default_rng(1).uniform(0, 1, 300):
        (y0, y1, x0, x1), own = cutmix_box(rng, float(lam), height, width)
        area = (y1 - y0) * (x1 - x0) / (height * width)
        assert own == pytest.approx(1 - area) and area <= 1 - lam + 1e-12
        side = np.sqrt(1 - lam)
        if y0 > 0 and y1 < height and x0 > 0 and x1 < width:  # not clipped: only the rounding is lost
            inside += 1
            assert area >= (height * side - 2) * (width * side - 2) / (height * width)
    assert inside > 10


def test_with_mixup_and_cutmix_each_batch_is_cutmix_with_probability_cutmix_prob() -> None:
    shape = (2, 1, 8, 8)
    rng = np.random.default_rng(0)
    recipe = TrainRecipe(mixup_alpha=0.2, cutmix_alpha=1.0, cutmix_prob=0.3)
    mixes = [Mixup.draw_step(rng, recipe, shape, CPU) for _ in range(4000)]
    cutmix = [m for m in mixes if m.cutmix]
    assert len(cutmix) / len(mixes) == pytest.approx(0.3, abs=0.03)
    assert all(m.box == NO_BOX for m in mixes if not m.cutmix)  # mixup steps carry the empty box
    for prob, expected in ((0.0, False), (1.0, True)):
        always = TrainRecipe(mixup_alpha=0.2, cutmix_alpha=1.0, cutmix_prob=prob)
        assert {Mixup.draw_step(rng, always, shape, CPU).cutmix for _ in range(50)} == {expected}
    alone = TrainRecipe(cutmix_alpha=1.0)  # CutMix alone: every batch, no choice drawn
    assert all(Mixup.draw_step(rng, alone, shape, CPU).cutmix for _ in range(50))


def test_a_recorded_step_serves_only_steps_of_its_kind() -> None:
    partner = torch.tensor([1, 0])
    kinds = [mix_kind(None), mix_kind(Mixup.from_lambda(0.3, partner))]
    kinds += [
        mix_kind(Mixup.from_lambda(0.3, partner, NO_BOX)),
        mix_kind(Mixup.from_lambda(0.3, partner, (0, 1, 0, 1), True)),
    ]
    assert kinds == [(False, False), (True, False), (True, True), (True, True)]


class _HandOffSpy(Method):
    """A head whose loss memo is made from its labels, so the test can tell which call it came from,
    and whose bookkeeping records what the step handed it."""

    def __init__(self) -> None:
        super().__init__(3, 3)
        self.seen: list[tuple[torch.Tensor, StepMemo]] = []

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(h, y)

    def step_loss(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, StepMemo]:
        return self.loss(h, y), (100 + y, h.detach().sum(dim=1) * 0 + y.float())

    def after_step(self, h: torch.Tensor, y: torch.Tensor, memo: StepMemo = ()) -> None:
        self.seen.append((y.clone(), tuple(m.clone() for m in memo)))


def _spy_learner() -> Learner:
    backbone = nn.Linear(4, 3)
    spy = _HandOffSpy()
    return Learner(backbone, spy, torch.optim.SGD(backbone.parameters(), lr=0.1), contextlib.nullcontext)


@pytest.mark.parametrize("on_device", [False, True], ids=["python numbers", "device scalars (graph path)"])
@pytest.mark.parametrize("lam", [0.3, 0.7])
def test_bookkeeping_gets_the_dominant_labels_and_their_loss_memo(lam: float, on_device: bool) -> None:
    learner = _spy_learner()
    images = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    partner = torch.tensor([1, 2, 3, 4, 5, 0])
    mix = Mixup.from_lambda(lam, partner)
    forward_backward(learner, images, labels, _device_scalars(mix) if on_device else mix)
    ((seen_labels, memo),) = learner.method.seen
    dominant = labels if lam >= 0.5 else labels[partner]
    assert torch.equal(seen_labels, dominant)
    assert torch.equal(memo[0], 100 + dominant) and torch.equal(memo[1], dominant.float())


def test_bookkeeping_without_mixup_gets_the_labels_and_the_memo() -> None:
    learner = _spy_learner()
    labels = torch.tensor([2, 1, 0])
    forward_backward(learner, torch.randn(3, 4), labels)
    ((seen_labels, memo),) = learner.method.seen
    assert torch.equal(seen_labels, labels) and torch.equal(memo[0], 100 + labels)


def test_step_function_is_the_eager_step_off_cuda(tmp_path, fmnist_dir) -> None:
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, "balanced")
    cpu = torch.device("cpu")
    learner = build_learner(spec_for(suite, "dnc", 4, 0, precision="fp32"), data, cpu)
    for cuda_graphs in (True, False):
        step = step_function(learner, cpu, cuda_graphs)
        assert step.func is train_step and step.args == (learner,)  # graphs exist only on CUDA
    assert replays_graphs(torch.device("cuda"), True) and not replays_graphs(torch.device("cuda"), False)
    assert not replays_graphs(cpu, True)


# ---------------------------------------------------------------- the step never waits for the host


class _HostSyncRecorder(TorchDispatchMode):
    """Records operations that make the host wait for the device: reading a value back (.item(),
    comparisons to Python) or producing a data-dependent shape (nonzero, boolean indexing, ...)."""

    DYNAMIC_SHAPE = {"nonzero", "masked_select", "bincount", "_unique", "_unique2", "unique_dim", "unique_consecutive"}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        boolean_index = name == "index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else [])
        )
        if torch.Tag.data_dependent_output in func.tags or name in self.DYNAMIC_SHAPE or boolean_index:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("loss_family", ["balanced", "long-tailed"])
def test_no_method_makes_the_training_step_wait_for_the_device(tmp_path, fmnist_dir, loss_family):
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, loss_family)
    mixup = suite.train.mixup_alpha > 0
    cpu = torch.device("cpu")
    recorder = _HostSyncRecorder()
    # The recorder is not blind: a sync it should see.
    with recorder:
        torch.ones(3).sum().item()
    assert recorder.seen == ["_local_scalar_dense"]
    for name in METHODS.names():
        learner = build_learner(spec_for(suite, name, 16, 0, precision="fp32"), data, cpu)
        batches = iter(cell_loaders(suite.train, data, cpu, 0)[0])
        for _ in range(2):  # the second step runs with optimiser state and head caches in place
            images, labels = next(batches)
            mix = Mixup.from_lambda(0.3, torch.randperm(images.shape[0])) if mixup else None
            recorder.seen = []
            with recorder:
                train_step(learner, images, labels, mix)
            assert recorder.seen == [], f"{name} ({loss_family}) synchronises in its step: {recorder.seen}"


def test_cutmix_steps_do_not_wait_for_the_device(tmp_path, fmnist_dir):
    # The mixing is the same for every head: one head, both paths (Python numbers and device buffers).
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, "balanced", mixup_alpha=0.2, cutmix_alpha=1.0)
    learner = build_learner(spec_for(suite, "softmax", 16, 0, precision="fp32"), data, CPU)
    images, labels = next(iter(cell_loaders(suite.train, data, CPU, 0)[0]))
    rng = np.random.default_rng(0)
    recorder = _HostSyncRecorder()
    for _ in range(4):
        mix = Mixup.draw_step(rng, suite.train, images.shape, CPU)
        for step_mix in (mix, _device_scalars(mix)):
            with recorder:
                train_step(learner, images, labels, step_mix)
    assert recorder.seen == []


def test_a_cell_with_mixup_and_cutmix_trains_the_same_twice(tmp_path, fmnist_dir):
    histories = []
    for name, cutmix in (("a", 1.0), ("b", 1.0), ("c", 0.0)):
        (tmp_path / name).mkdir()
        suite, data = _tiny_suite_and_data(
            tmp_path / name, fmnist_dir, "balanced", mixup_alpha=0.2, cutmix_alpha=cutmix
        )
        outcome = train_cell(spec_for(suite, "dl2pa", 4, 0, precision="fp32"), data, device=CPU)
        histories.append([(row["train_loss"], row["train_accuracy"], row["test_accuracy"]) for row in outcome.history])
    with_cutmix, again, mixup_alone = histories
    assert with_cutmix == again and with_cutmix != mixup_alone


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs exist only on CUDA")
def test_one_recorded_step_replays_mixup_and_cutmix_steps_as_the_eager_step_runs_them(tmp_path, fmnist_dir):
    cuda = torch.device("cuda")
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, "balanced")
    batches = list(itertools.islice(iter(cell_loaders(suite.train, data, cuda, 0)[0]), 4))
    rng = np.random.default_rng(0)
    mixes = []  # mixup and CutMix steps in turn, so both come after the capture (the 4th call)
    for index in range(10):
        recipe = TrainRecipe(mixup_alpha=0.2, cutmix_alpha=1.0, cutmix_prob=float(index % 2))
        mixes.append(Mixup.draw_step(rng, recipe, batches[0][0].shape, cuda))
    runs = []
    try:
        for graphed in (False, True):
            seed_everything(0, deterministic=True)
            learner = build_learner(spec_for(suite, "dl2pa", 16, 0, precision="fp32"), data, cuda)
            step = GraphedTrainStep(learner) if graphed else functools.partial(train_step, learner)
            losses = [step(*batches[i % 4], mix)[0].clone() for i, mix in enumerate(mixes)]
            runs.append((losses, _states(learner)))
    finally:
        seed_everything(0)
    (eager_losses, eager_state), (graph_losses, graph_state) = runs
    assert all(torch.equal(a, b) for a, b in zip(eager_losses, graph_losses, strict=True))
    assert all(torch.equal(eager_state[key], graph_state[key]) for key in eager_state)


#: Every head, and DL2PA re-matching every 2 steps inside its epochs (match_every_steps, counted on the host).
GRAPHED_ROWS = (*sorted(METHODS), "dl2pa-every2")
EVERY_2_STEPS = {"method": "dl2pa", "options": {"match_every_steps": 2, "match_steps_until_epoch": 2}}
GRAPHED_SETTINGS = {
    # Both of each: a mixup or a CutMix step, picked per step (so both replay from one recorded graph).
    "balanced": {"loss": "balanced", "train": {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "cutmix_prob": 0.5}},
    "long-tailed": {"loss": "long-tailed", "imbalance_ratios": [10],
                    "train": {"mixup_alpha": 1.0, "cutmix_alpha": 1.0, "cutmix_prob": 0.5}},
}  # fmt: skip


@pytest.fixture(scope="module")
def graphed_settings(tmp_path_factory):
    """Per setting: the tiny suite (2 epochs, 12 steps each) and its data (a 400-image training split)."""
    from tests.data.fakefiles import write_fashion_mnist

    tmp = tmp_path_factory.mktemp("graphed")
    data_dir = write_fashion_mnist(tmp / "fmnist", n_train=440, n_test=100)
    prepared = {}
    for name, setting in GRAPHED_SETTINGS.items():
        train = {"epochs": 2, "batch_size": 32, "eval_batch_size": 64, "lr": 0.05, **setting["train"]}
        path = tiny_suite(tmp / f"{name}.yaml", loss=setting["loss"], train=train, methods=list(GRAPHED_ROWS),
                          imbalance_ratios=setting.get("imbalance_ratios", [None]), dims=[16],
                          variants={"dl2pa-every2": EVERY_2_STEPS})  # fmt: skip
        suite = load_suite(str(path))
        prepared[name] = (suite, prepare_cell_data(suite.data_settings, data_dir, suite.imbalance_ratios[0]))
    return prepared


@pytest.mark.gpu
@pytest.mark.parametrize("setting", GRAPHED_SETTINGS)
@pytest.mark.parametrize("row", GRAPHED_ROWS)
def test_graph_replayed_cells_train_bit_for_bit_as_eager_ones(graphed_settings, gpu, setting, row):
    """Whole cells (2 epochs, evaluation and matching included), deterministic kernels, fp32 and the
    suite's bf16 alike: every epoch's figures and every final tensor equal, graphs on and off."""
    from protobench.bench.graphs import differences

    suite, data = graphed_settings[setting]
    for precision in ("fp32", "bf16"):
        outcomes = [train_cell(spec_for(suite, row, 16, 0, precision=precision, deterministic=True), data, device=gpu,
                               cuda_graphs=graphs) for graphs in (False, True)]  # fmt: skip
        assert differences(*outcomes) == [], f"{row} {setting} {precision}"
        assert len(outcomes[0].history) == 2 and outcomes[0].history[-1]["train_loss"] > 0
    seed_everything(0)


def _states(learner: Learner) -> dict[str, torch.Tensor]:
    return {f"{part}.{key}": value.clone() for part in ("backbone", "method")
            for key, value in getattr(learner, part).state_dict().items()}  # fmt: skip


# ---------------------------------------------------------------- state in place (CUDA graphs replay addresses)


def _state_addresses(learner) -> dict[str, int]:
    modules = {"backbone": learner.backbone, "method": learner.method}
    return {
        f"{prefix}.{key}": tensor.data_ptr()
        for prefix, module in modules.items()
        for key, tensor in [*module.named_parameters(), *module.named_buffers()]
    }


@pytest.mark.parametrize("loss_family", ["balanced", "long-tailed"])
def test_every_method_updates_its_state_in_place(tmp_path, fmnist_dir, loss_family):
    # A CUDA graph replays the addresses it recorded: steps, the epoch's re-matching and a checkpoint
    # load must all write into the tensors the step was recorded with, never rebind them.
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, loss_family)
    cpu = torch.device("cpu")
    for name in METHODS.names():
        learner = build_learner(spec_for(suite, name, 16, 0, precision="fp32"), data, cpu)
        before = _state_addresses(learner)
        batches = iter(cell_loaders(suite.train, data, cpu, 0)[0])
        for _ in range(3):
            images, labels = next(batches)
            mix = Mixup.from_lambda(0.7, torch.randperm(images.shape[0])) if loss_family == "long-tailed" else None
            train_step(learner, images, labels, mix)
        learner.method.after_epoch()
        other = build_learner(
            spec_for(suite, name, 16, 1, precision="fp32"), data, cpu
        )  # another seed: other prototypes, assignment
        learner.method.load_state_dict(other.method.state_dict())
        learner.backbone.load_state_dict(other.backbone.state_dict())
        assert _state_addresses(learner) == before, f"{name} ({loss_family}) rebinds state"


@pytest.mark.parametrize(
    ("lam", "box", "cutmix"),
    [(0.3, None, False), (0.7, None, False), (0.3, NO_BOX, False), (0.7, (3, 20, 5, 17), True)],
    ids=["mixup 0.3", "mixup 0.7", "mixup step of a CutMix recipe", "CutMix"],
)
def test_mixup_as_device_scalars_trains_bit_for_bit_like_python_numbers(tmp_path, fmnist_dir, lam, box, cutmix):
    # The graph-replayed step takes the mixing as 0-dim tensors (weights, CutMix box and choice); it must
    # train exactly as the eager step with Python numbers does, including which labels and memo the
    # head's bookkeeping sees.
    suite, data = _tiny_suite_and_data(tmp_path, fmnist_dir, "long-tailed")
    cpu = torch.device("cpu")
    images, labels = next(iter(cell_loaders(suite.train, data, cpu, 0)[0]))
    partner = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(1))
    eager = Mixup.from_lambda(lam, partner, box, cutmix)
    for name in METHODS.names():
        outputs, learners = [], []
        for mix in (eager, _device_scalars(eager)):
            torch.manual_seed(0)
            learner = build_learner(spec_for(suite, name, 16, 0, precision="fp32"), data, cpu)
            outputs.append(train_step(learner, images, labels, mix))
            learners.append(learner)
        (loss_a, correct_a), (loss_b, correct_b) = outputs
        assert torch.equal(loss_a, loss_b) and torch.equal(correct_a, correct_b), name
        for part in ("backbone", "method"):
            state_a, state_b = (getattr(learner, part).state_dict() for learner in learners)
            for key in state_a:
                assert torch.equal(state_a[key], state_b[key]), f"{name}: {part}.{key}"
