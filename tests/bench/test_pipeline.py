"""The pipeline benchmark (engine vs DataLoader vs model only) and gpu-check's synthetic CIFAR-100 files."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from protobench.bench import methods, pipeline
from protobench.bench.gpu_check import project_paper_grid, write_synthetic_cifar100
from protobench.core.errors import UserError
from tests.conftest import tiny_suite

TINY = ["--device", "cpu", "--steps", "2", "--rounds", "2", "--warmup", "1", "--threads", "1", "--workers", "1"]


def test_json_has_every_key_and_positive_figures(tmp_path, fmnist_dir, capsys) -> None:
    suite = tiny_suite(tmp_path / "pipe.yaml")
    pipeline.run(["--suite", str(suite), "--data-dir", str(fmnist_dir), *TINY, "--json"])
    out = capsys.readouterr()
    result = json.loads(out.out)
    for name in pipeline.PATHS:
        assert result[f"{name}_images_per_s"] > 0 and len(result["per_round_images_per_s"][name]) == 2
    for key in ("ratio_engine_vs_dataloader", "ratio_engine_vs_model_only"):
        ratio = result[key]
        assert ratio["low"] <= ratio["median"] <= ratio["high"] and ratio["coverage"] == 0.5
        assert ratio["verdict"] in {"ok", "SLOWER", "undecided"}
    assert result["ratio_engine_vs_dataloader"]["goal"] == 1.0 and result["ratio_engine_vs_model_only"]["goal"] == 0.9
    assert (result["device"], result["backbone"], result["batch"], result["rounds"], result["steps"]) == (
        "cpu", "smallcnn", 32, 2, 2,
    )  # fmt: skip
    assert result["train_images"] == 160 and result["dim"] == 4  # the suite's split after validation; its largest d
    assert out.err.count("round ") == 2  # a progress line per round, on stderr so stdout stays JSON


def test_engine_path_steps_through_the_engine_step_function(tmp_path, fmnist_dir, monkeypatch) -> None:
    from protobench.data.loader import DeviceLoader
    from protobench.engine import step

    calls = []
    real = step.train_step

    def counting(learner, images, labels, mix=None):  # type: ignore[no-untyped-def]
        calls.append(learner)
        return real(learner, images, labels, mix)

    monkeypatch.setattr(step, "train_step", counting)
    setting = pipeline.prepare(str(tiny_suite(tmp_path / "s.yaml")), None, 16, None, "cpu", fmnist_dir, 0)
    engine = pipeline.EnginePath(setting)
    assert isinstance(engine.loader, DeviceLoader) and engine.run(3) == 48
    assert len(calls) == 3 and all(learner is engine.learner for learner in calls)
    assert engine.step == 3 and float(engine.loss_sum) > 0  # the engine's device-side sums, as train_cell keeps
    loader_path = pipeline.DataLoaderPath(setting)
    assert loader_path.run(2) == 32 and len(calls) == 3  # the research-style loop is its own
    loader_path.close()
    only = pipeline.ModelOnlyPath(setting)
    assert only.run(2) == 32 and len(calls) == 5 and calls[-1] is only.learner


def test_ratios_use_the_methods_benchmarks_interval() -> None:
    assert pipeline.median_interval is methods.median_interval
    engine = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0, 120.0, 80.0, 115.0]
    speeds = {"engine": engine, "dataloader": [50.0] * 9, "model_only": [v / 0.8 for v in engine]}
    summary = pipeline.summarise(speeds)
    ratio = summary["ratio_engine_vs_dataloader"]
    # Nine rounds: the 2nd smallest and 2nd largest ratio bracket the median with 96.1% probability.
    assert ratio["median"] == 2.0 and (ratio["low"], ratio["high"]) == (1.8, 2.3)
    assert ratio["coverage"] == methods.order_statistic_rank(9)[1] > 0.95 and ratio["verdict"] == "ok"
    bound = summary["ratio_engine_vs_model_only"]
    assert bound["median"] == pytest.approx(0.8) and bound["verdict"] == "SLOWER"
    assert summary["engine_images_per_s"] == statistics.median(engine)


def test_research_transform_matches_the_device_loaders_normalisation() -> None:
    from protobench.suite.definition import TrainRecipe

    plain = pipeline.research_transform(TrainRecipe(), (0.5,), (0.25,), (4, 4))
    image = torch.full((1, 4, 4), 255, dtype=torch.uint8)
    assert torch.allclose(plain(image), torch.full((1, 4, 4), 2.0))  # (1 - 0.5) / 0.25, as ToTensor + Normalize
    augmented = pipeline.research_transform(TrainRecipe(crop_padding=2, flip=True), (0.5,), (0.25,), (4, 4))
    assert augmented(image).shape == (1, 4, 4) and augmented(image).dtype == torch.float32


@pytest.mark.parametrize("flag", ["--rounds", "--steps", "--batch"])
def test_bad_counts_are_one_line_errors(flag) -> None:
    with pytest.raises(UserError, match=f"{flag} is 0; use {flag} >= 1"):
        pipeline.run([flag, "0"])


def test_synthetic_cifar100_loads_through_protobenchs_cifar_code(tmp_path) -> None:
    from protobench.data.cifar import find_folder, load_from

    folder = write_synthetic_cifar100(tmp_path, 200, 100)
    assert find_folder("cifar100", tmp_path) == folder
    data = load_from("cifar100", folder)
    assert data.train.images.shape == (200, 3, 32, 32) and data.test.images.shape == (100, 3, 32, 32)
    assert data.train.class_counts(100).tolist() == [2] * 100 and len(data.class_names) == 100


def test_paper_grid_projection_counts_every_cell_that_can_train() -> None:
    projection = project_paper_grid(rate=50_000.0, jobs=8)
    # 8 methods x 4 dims x 3 seeds, less etf at d = 10, 25, 50 (K = 100 needs d >= 99); 250 epochs of 50,000.
    assert (projection["cells"], projection["cells_trained"]) == (96, 87)
    assert projection["images"] == 87 * 250 * 50_000 and projection["seconds"] == projection["images"] / 50_000
