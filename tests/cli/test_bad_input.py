"""Bad input through the real entry point (``run_cli`` calls protobench.cli.main.main() as the console
script does): one line on stderr starting with ``error:`` that names the input and the fix, exit code 2,
no traceback; or, where a row's exit is 0, one ``warning:`` line and the command carries on; or, where it
is 1, a cell fails: its line in the run's output says why, the grid goes on and stderr stays empty.

The "Bad input" table in docs/cli.md mirrors ROWS, row for row and in the same order: a row added,
dropped or reworded here is added, dropped or reworded there too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from protobench.store.records import cell_path, write_record
from tests.conftest import tiny_suite

STORE_SUITE = "toy"  # the suite of the fake store's records; not a shipped suite


class Row(NamedTuple):
    """One row of the docs/cli.md table: one or more command lines and what each one prints."""

    #: Command lines given to ``protobench``; ``{name}`` fields are paths that ``Inputs`` makes.
    inputs: list[list[str]]
    #: Text the stderr line contains: one for every input, or one per input (a tuple as long as ``inputs``).
    says: str | tuple[str, ...]
    exit: int = 2
    #: Run before the command, e.g. to pretend a GPU is there: ``patch(monkeypatch, inputs)``.
    patch: Callable[[pytest.MonkeyPatch, Inputs], None] | None = None
    #: Extra checks after the command: ``after(inputs, stdout)``.
    after: Callable[[Inputs, str], None] | None = None


class Inputs:
    """Files a row's command lines name, made on first use under the test's tmp_path: ``{suite}`` is a
    tiny valid suite, ``{store}`` a results store with records of suite toy, ``{file}`` a regular file..."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.made: dict[str, str] = {"tmp": str(tmp)}

    def __getitem__(self, name: str) -> str:
        if name not in self.made:
            self.made[name] = str(getattr(self, f"make_{name}")())
        return self.made[name]

    def fill(self, text: str) -> str:
        return text.format_map(self)

    def make_suite(self) -> Path:
        return tiny_suite(self.tmp / "s.yaml")

    def make_file(self) -> Path:
        path = self.tmp / "plain.txt"
        path.write_text("not a folder\n")
        return path

    def make_empty(self) -> Path:
        path = self.tmp / "empty"
        path.mkdir()
        return path

    def yaml_file(self, name: str, text: str) -> Path:
        path = self.tmp / f"{name}.yaml"
        path.write_text(text)
        return path

    def make_bad_yaml(self) -> Path:
        return self.yaml_file("syntax", "dims: [2,\n")

    def make_list_yaml(self) -> Path:
        return self.yaml_file("alist", "- dataset: fashion-mnist\n- dims: [2]\n")

    def make_scalar_yaml(self) -> Path:
        return self.yaml_file("ascalar", "fashion-mnist\n")

    def make_unknown_key(self) -> Path:
        return tiny_suite(self.tmp / "unknownkey.yaml", seed=1)

    def make_bad_include(self) -> Path:
        return self.yaml_file("inc", "include: nothere.yaml\nname: inc\n")

    def make_bad_include_name(self) -> Path:
        return self.yaml_file("incname", "include: quickstrt\nname: incname\n")

    def make_recipe_method(self) -> Path:
        return tiny_suite(self.tmp / "rmethod.yaml", method_recipes={"softmx": {"lr": 0.1}})

    def make_recipe_key(self) -> Path:
        return tiny_suite(self.tmp / "rkey.yaml", method_recipes={"softmax": {"learning_rate": 0.1}})

    def make_negative_seed(self) -> Path:
        return tiny_suite(self.tmp / "negseed.yaml", seeds=[0, -1])

    def make_nan_lr(self) -> Path:
        return tiny_suite(self.tmp / "nanlr.yaml", train={"epochs": 1, "lr": float("nan")})

    def make_inf_lr(self) -> Path:
        recipes = {"dl2pa": {"lr": float("inf")}}
        return tiny_suite(self.tmp / "inflr.yaml", methods=["softmax", "dl2pa"], method_recipes=recipes)

    def make_negative_lr(self) -> Path:
        return tiny_suite(self.tmp / "neglr.yaml", train={"epochs": 1, "lr": -0.1})

    def make_negative_wd(self) -> Path:
        return tiny_suite(self.tmp / "negwd.yaml", train={"epochs": 1, "lr": 0.1, "weight_decay": -1e-4})

    def make_option_range(self) -> Path:
        """softmax first, then a dnc whose momentum is out of range: refused before softmax trains."""
        options = {"dnc": {"momentum": 5}}
        return tiny_suite(self.tmp / "optrange.yaml", methods=["softmax", "dnc"], method_options=options)

    def make_variant_range(self) -> Path:
        return tiny_suite(self.tmp / "varrange.yaml", variants={"t0": {"method": "dl2pa", "options": {"t": 0}}},
                          methods=["softmax", "t0"])  # fmt: skip

    def make_two_heads(self) -> Path:
        """softmax and hpn at d=2 for one epoch, with the Fashion-MNIST files in {tmp}/fmnist."""
        from tests.data.fakefiles import write_fashion_mnist

        write_fashion_mnist(self.tmp / "fmnist")
        return tiny_suite(self.tmp / "two.yaml", dims=[2], methods=["softmax", "hpn"], train={"epochs": 1, "lr": 0.05})

    def make_noval(self) -> Path:
        return tiny_suite(self.tmp / "noval.yaml", val_size=0)

    def make_foreign_checkpoint(self) -> Path:
        """A tiny suite whose one cell has a checkpoint, under its own file name, made for another config."""
        import torch

        from protobench.running.checkpoints import CellCheckpoints
        from protobench.running.grid import planned_cells
        from protobench.suite.definition import load_suite
        from tests.data.fakefiles import write_fashion_mnist

        write_fashion_mnist(self.tmp / "fmnist")
        path = tiny_suite(self.tmp / "ck.yaml", dims=[2], train={"epochs": 1})
        (cell,) = planned_cells(
            load_suite(str(path)), self.tmp / "res", deterministic=False, device=torch.device("cpu")
        )
        other = CellCheckpoints(cell.path, "f" * 64, {})
        other.save({"loop": {"step": 3}})
        other.files()[0].rename(cell.path.with_name(f"{cell.path.stem}.ckpt-000000003.pt"))
        return path

    def make_store(self) -> Path:
        """softmax and dl2pa at d=2, three seeds each, finished."""
        root = self.tmp / "store"
        for method, base in (("softmax", 80.0), ("dl2pa", 81.0)):
            for seed in range(3):
                write_fake_record(root, method, seed, base + seed)
        return root

    def make_cut_store(self) -> Path:
        """The store with one more record that was cut in half (a copy interrupted, a full disk)."""
        root = Path(self.make_store())
        whole = json.dumps(fake_record("dl2pa", 3, 84.0), indent=1)
        cut = cell_path(root, STORE_SUITE, "dl2pa", 2, 3, None, "cut0000000")
        cut.write_text(whole[: len(whole) // 2])
        self.made["cut"] = str(cut)
        return root

    def make_escape(self) -> Path:
        """A suite whose name would put its records two folders above --results."""
        return tiny_suite(self.tmp / "escape.yaml", name="../../escape")

    def broken_store(self, name: str, change: Callable[[dict], None]) -> Path:
        """The store with one more dl2pa record, changed by ``change``; its path is ``{bad}``."""
        root = Path(self.make_store())
        record = fake_record("dl2pa", 3, 84.0)
        change(record)
        bad = cell_path(root, STORE_SUITE, "dl2pa", 2, 3, None, f"{name}".ljust(10, "0"))
        bad.write_text(json.dumps(record))
        self.made["bad"] = str(bad)
        return root

    def make_string_metrics_store(self) -> Path:
        return self.broken_store("strmetric", lambda r: r.update(metrics="91.2"))

    def make_nan_store(self) -> Path:
        return self.broken_store("nanacc", lambda r: r["metrics"].update(test_accuracy=float("nan")))


def fake_record(method: str, seed: int, accuracy: float) -> dict:
    """A finished record with the keys the report and compare read."""
    return {
        "suite": STORE_SUITE, "dataset": "fashion-mnist", "method": method, "dim": 2, "seed": seed,
        "imbalance_ratio": None, "column": "2", "status": "ok", "setting_hash": f"{method}-setting",
        "config_hash": f"{method}{seed}", "config": {"train": {"epochs": 3}}, "device": "cpu (1 threads)",
        "finished_at": "2026-01-01T00:00:00",
        "metrics": {"test_accuracy": accuracy, "test_accuracy_at_best_val": accuracy},
    }  # fmt: skip


def write_fake_record(root: Path, method: str, seed: int, accuracy: float) -> None:
    digest = f"{method}{seed}".ljust(10, "0")
    write_record(cell_path(root, STORE_SUITE, method, 2, seed, None, digest), fake_record(method, seed, accuracy))


def outside_slurm(monkeypatch: pytest.MonkeyPatch, inputs: Inputs) -> None:
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)


def no_cuda(monkeypatch: pytest.MonkeyPatch, inputs: Inputs) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def one_gpu(monkeypatch: pytest.MonkeyPatch, inputs: Inputs) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def no_fashion_mnist(monkeypatch: pytest.MonkeyPatch, inputs: Inputs) -> None:
    """Neither the system copy nor a download can supply Fashion-MNIST."""
    import torchvision.datasets

    from protobench.data import fashion_mnist

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", str(inputs.tmp / "none"))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)


def no_pyarrow(monkeypatch: pytest.MonkeyPatch, inputs: Inputs) -> None:
    import importlib.util

    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else find(name, *a))


def nothing_exported(inputs: Inputs, out: str) -> None:
    """No export file was written, and the store holds its six records only."""
    assert not list(Path(inputs["tmp"]).glob("x.*")) and len(list(Path(inputs["store"]).rglob("*"))) == 9


def nothing_written(inputs: Inputs, out: str) -> None:
    assert out == "" and not (inputs.tmp / "res").exists()


def no_log_packages(monkeypatch: pytest.MonkeyPatch, inputs: Inputs) -> None:
    """Neither tensorboard nor wandb is installed (a None in sys.modules is a module that cannot be found)."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "wandb", None)


def nothing_escaped(inputs: Inputs, out: str) -> None:
    nothing_written(inputs, out)
    assert not (inputs.tmp.parent / "escape").exists() and not (inputs.tmp / "escape").exists()


def nan_scores_in_eval(monkeypatch: pytest.MonkeyPatch, inputs: Inputs) -> None:
    """softmax's scores are NaN in eval mode only: training goes well, every evaluation does not."""
    from protobench.heads.softmax import Softmax

    real = Softmax.scores
    monkeypatch.setattr(Softmax, "scores", lambda self, h: real(self, h) * (float("nan") if not self.training else 1))


def failed_at_first_evaluation(inputs: Inputs, out: str) -> None:
    """softmax's record failed in epoch 1 with the reason; hpn, in the same grid, trained."""
    records = {r["method"]: r for r in map(json.loads, map(Path.read_text, (inputs.tmp / "res").rglob("*.json")))}
    assert records["hpn"]["status"] == "ok" and records["softmax"]["status"] == "error"
    assert records["softmax"]["failed_epoch"] == 1 and "NaN at evaluation" in records["softmax"]["reason"]


def trained_from_scratch(inputs: Inputs, out: str) -> None:
    assert "resuming" not in out and "done: 1 trained" in out


def table_still_printed(inputs: Inputs, out: str) -> None:
    assert "softmax" in out and "dl2pa" in out


RES = ["--results", "{tmp}/res"]
STORE = ["--results", "{store}"]
P_OUT = ["--out", "{tmp}/p.npy"]

# fmt: off
ROWS: dict[str, Row] = {
    # ---------------------------------------------------------------- the suite
    "unknown suite or missing suite file": Row(
        [["run", "nosuchsuite"], ["suites", "show", "quickstrt"], ["run", "{tmp}/nothere.yaml"]],
        ("unknown suite 'nosuchsuite'; known: ", "unknown suite 'quickstrt' (did you mean 'quickstart'?); known: ",
         "suite file {tmp}/nothere.yaml does not exist; check the path"),
    ),
    "suites show without a suite, or with two outputs": Row(
        [["suites", "show"], ["suites", "show", "quickstart", "--all"],
         ["suites", "show", "quickstart", "--json", "--md"]],
        ("suites show: name one or more suites, or give --all", "suites show: give suite names or --all, not both",
         "--json and --md both given; choose one output"),
    ),
    "suite YAML syntax error": Row(
        [["run", "{bad_yaml}"]],
        "{bad_yaml}: line 2: expected the node content, but found '<stream end>'; fix the YAML syntax",
    ),
    "suite YAML that is a list or a scalar": Row(
        [["run", "{list_yaml}"], ["run", "{scalar_yaml}"]],
        ("{list_yaml}: the top level is a list; a suite file must be a mapping of suite keys",
         "{scalar_yaml}: the top level is a str; a suite file must be a mapping of suite keys"),
    ),
    "suite key unknown": Row(
        [["run", "{unknown_key}"]], "{unknown_key}: unknown key 'seed' (did you mean 'seeds'?); allowed: name, "),
    "include of a missing file or suite": Row(
        [["run", "{bad_include}"], ["run", "{bad_include_name}"]],
        ("{bad_include}: key 'include': {tmp}/nothere.yaml does not exist; name a file",
         "{bad_include_name}: key 'include': unknown suite 'quickstrt' (did you mean 'quickstart'?)"),
    ),
    "method_recipes for an unknown method or key": Row(
        [["run", "{recipe_method}"], ["run", "{recipe_key}"]],
        ("{recipe_method}: key 'method_recipes': unknown method 'softmx' (did you mean 'softmax'?); allowed: ",
         "{recipe_key}: key 'method_recipes.softmax': unknown recipe key 'learning_rate'; allowed: "),
    ),
    "negative seed": Row(
        [["run", "{suite}", "--seeds", "-1"], ["run", "{suite}", "--seeds=0,-1"], ["run", "{negative_seed}"]],
        ("command line: seed -1 is negative; use seeds >= 0", "command line: seed -1 is negative; use seeds >= 0",
         "{negative_seed}: seed -1 is negative; use seeds >= 0"),
    ),
    "lr or weight decay NaN, infinite or out of range": Row(
        [["run", "{nan_lr}", *RES], ["run", "{inf_lr}", *RES], ["run", "{negative_lr}", *RES],
         ["run", "{negative_wd}", *RES], ["tune", "{suite}", "--lr", "0", *RES],
         ["tune", "{suite}", "--lr", "nan", *RES], ["tune", "{suite}", "--weight-decay", "-1", *RES]],
        ("{nan_lr}: key 'train.lr' is nan; give a finite number, e.g. lr: 0.1",
         "{inf_lr}: key 'method_recipes.dl2pa.lr' is inf; give a finite number, e.g. lr: 0.1",
         "{negative_lr}: key 'train.lr' must be > 0, got -0.1; e.g. lr: 0.1",
         "{negative_wd}: key 'train.weight_decay' must be >= 0, got -0.0001; e.g. 5e-4 (0: none)",
         "--lr values must be > 0 and finite, got 0; e.g. --lr 0.003,0.01,0.03,0.1",
         "--lr values must be > 0 and finite, got nan; e.g. --lr 0.003,0.01,0.03,0.1",
         "--weight-decay values must be >= 0 and finite, got -1; e.g. --weight-decay 0,1e-4,5e-4"),
        after=nothing_written,
    ),
    "a method option out of its range": Row(
        [["run", "{option_range}", *RES], ["run", "{variant_range}", *RES]],
        ("{option_range}: key 'method_options.dnc': method 'dnc': momentum is 5; use 0 <= momentum < 1",
         "{variant_range}: key 'variants.t0.options': method 'dl2pa': t is 0; use t > 0"),
        after=nothing_written,
    ),
    # ---------------------------------------------------------------- the grid flags
    "unknown method": Row(
        [["run", "{suite}", "--methods", "softmx"]], "unknown method 'softmx' (did you mean 'softmax'?); allowed: "),
    "empty list flag": Row(
        [["run", "{suite}", "--methods", ""], ["run", "{suite}", "--dims", ""], ["run", "{suite}", "--dims", ","]],
        ("--methods is empty; give a comma-separated list, e.g. --methods dl2pa,softmax",
         "--dims is empty; give a comma-separated list, e.g. --dims 2,3,16",
         "--dims is empty; give a comma-separated list, e.g. --dims 2,3,16"),
    ),
    "list flag with a bad item": Row(
        [["run", "{suite}", "--dims", "two"], ["run", "{suite}", "--seeds", "a"],
         ["tune", "{suite}", "--lr", "0.01,x", *RES]],
        ("--dims 'two' is not a comma-separated list of ints; e.g. --dims 2,3,16",
         "--seeds 'a' is not a comma-separated list of ints; e.g. --seeds 0,1,2",
         "--lr '0.01,x' is not a comma-separated list of floats; e.g. --lr 0.01,0.1"),
    ),
    "dim out of range": Row(
        [["run", "{suite}", "--dims", "1"], ["run", "{suite}", "--dims", "2,5000"]],
        ("dim 1 is out of range; use 2 <= dim <= 4096", "dim 5000 is out of range; use 2 <= dim <= 4096"),
    ),
    "epochs below 1": Row([["run", "{suite}", "--epochs", "0"]], "command line: epochs is 0; use epochs >= 1"),
    "jobs below 1": Row(
        [["run", "{suite}", "--jobs", "0"], ["tune", "{suite}", "--lr", "0.01", "--jobs", "0", *RES]],
        "--jobs 0: use 1 or more (cells trained at once), e.g. --jobs 2", after=nothing_written,
    ),
    "a value, argument or option click cannot parse": Row(
        [["run", "{suite}", "--epochs", "x"], ["run"], ["run", "{suite}", "--nosuch"],
         ["prototypes", "generate", "--classes", "ten", "--dim", "4", *P_OUT]],
        ("Invalid value for '--epochs': ", "Missing argument 'suite'; see protobench run --help",
         "No such option: --nosuch", "Invalid value for '--classes' / '-K': "),
    ),
    # ---------------------------------------------------------------- device, data, store
    "device unknown": Row(
        [["run", "{suite}", "--device", "tpu"]], "--device 'tpu' is not a device; use auto, cpu, cuda or cuda:N"),
    "device cuda without CUDA": Row(
        [["run", "{suite}", "--device", "cuda"]],
        "--device cuda: no CUDA device is available here; use --device cpu or auto", patch=no_cuda,
    ),
    "device index out of range": Row(
        [["run", "{suite}", "--device", "cuda:7"]],
        "--device cuda:7: this machine has 1 CUDA device(s); use cuda:0, or cuda", patch=one_gpu,
    ),
    "data-dir not a folder": Row(
        [["run", "{suite}", "--data-dir", "{tmp}/nodata"]],
        "--data-dir {tmp}/nodata is not a folder; create it or point it at your datasets",
    ),
    "dataset not found": Row(
        [["run", "{suite}", "--data-dir", "{empty}", *RES]], "fashion-mnist data not found (download to {empty} failed",
        patch=no_fashion_mnist,
    ),
    "results is a file": Row(
        [["run", "{suite}", "--results", "{file}"], ["run", "{suite}", "--results", "{file}/res"],
         ["report", "--results", "{file}"], ["compare", STORE_SUITE, "dl2pa", "softmax", "--results", "{file}"]],
        ("--results {file} is a file, not a folder; point --results at a results folder",
         "--results {file}/res: {file} is a file, not a folder",
         "--results {file} is a file, not a folder", "--results {file} is a file, not a folder"),
    ),
    # ---------------------------------------------------------------- report
    "results missing": Row(
        [["report", "--results", "{tmp}/nowhere"],
         ["compare", STORE_SUITE, "dl2pa", "softmax", "--results", "{tmp}/nowhere"]],
        "--results {tmp}/nowhere does not exist; run a suite first or point at a results folder",
    ),
    "report format unknown": Row(
        [["report", "--format", "xls", *STORE]], "--format 'xls' is unknown; use one of md, csv, latex, html"),
    "report out or plots cannot be written": Row(
        [["report", *STORE, "--out", "{file}/table.md"], ["report", *STORE, "--out", "{store}"],
         ["report", *STORE, "--plots", "{file}"]],
        ("--out {file}/table.md: {file} is a file, not a folder",
         "--out {store} is a folder; give a file name, e.g. --out {store}/report.md",
         "--plots {file} is a file; give a folder"),
    ),
    "report --correction unknown, or without --vs": Row(
        [["report", *STORE, "--vs", "dl2pa", "--correction", "bonferroni"], ["report", *STORE, "--correction", "bh"]],
        ("--correction 'bonferroni' is unknown; use one of none, holm, bh",
         "--correction bh sets how --vs marks are corrected; give --vs METHOD too"),
    ),
    "report or compare of a suite file that does not exist": Row(
        [["compare", "{tmp}/gone.yaml", "dl2pa", "softmax", *STORE], ["report", "{tmp}/gone.yaml", *STORE]],
        "suite file {tmp}/gone.yaml does not exist; check the path, or give a suite name (see protobench suites)",
    ),
    "report of nothing finished": Row(
        [["report", "other", *STORE]], "no finished results for other under {store}; run a suite first"),
    "--checkpoint-minutes 0": Row(
        [["run", "{suite}", "--checkpoint-minutes", "0", *RES]],
        "--checkpoint-minutes 0: use a positive number of minutes, e.g. 10", after=nothing_written,
    ),
    "--shard out of range or not I/N": Row(
        [["run", "{suite}", "--shard", "4/4", *RES], ["run", "{suite}", "--shard", "half", *RES]],
        ("--shard 4/4: use 0 <= I < N, e.g. --shard 0/4", "--shard 'half' is not I/N; e.g. --shard 0/4"),
        after=nothing_written,
    ),
    "--shard from unset Slurm variables": Row(
        [["run", "{suite}", "--shard", "/", *RES]],
        "--shard '/': $SLURM_ARRAY_TASK_ID and $SLURM_ARRAY_TASK_COUNT are not set; run it as a Slurm job array "
        "task (sbatch --array=0-N) or give I/N, e.g. --shard 0/4", patch=outside_slurm, after=nothing_written,
    ),
    "--threads below 1": Row(
        [["run", "{suite}", "--threads", "0", *RES]],
        "--threads 0: use 1 or more, or leave it out to use the CPUs this process may use", after=nothing_written,
    ),
    "--log unknown, or a file as its folder": Row(
        [["run", "{suite}", "--log", "tensorbord", *RES], ["run", "{suite}", "--log", "tensorboard:{file}", *RES]],
        ("--log 'tensorbord' is unknown; use tensorboard, tensorboard:DIR, wandb or wandb:PROJECT",
         "--log tensorboard:{file}: {file} is a file; give a folder (it is created if missing)"),
        after=nothing_written,
    ),
    "--log without its package": Row(
        [["run", "{suite}", "--log", "wandb", *RES], ["run", "{suite}", "--log", "tensorboard", *RES]],
        ("--log wandb needs the wandb package, which is not installed; pip install 'protobench[wandb]'",
         "--log tensorboard needs the tensorboard package, which is not installed; pip install 'protobench[tensorb"),
        patch=no_log_packages, after=nothing_written,
    ),
    "a head whose scores are NaN at evaluation": Row(
        [["run", "{two_heads}", "--data-dir", "{tmp}/fmnist", "--device", "cpu", *RES]],
        "FloatingPointError: softmax scores are NaN at evaluation (epoch 1, split val)", exit=1,
        patch=nan_scores_in_eval, after=failed_at_first_evaluation,
    ),
    "a checkpoint made for another configuration": Row(
        [["run", "{foreign_checkpoint}", "--data-dir", "{tmp}/fmnist", "--device", "cpu", *RES]],
        ".ckpt-000000003.pt was made for another configuration (hash ffffffffff, this cell ", exit=0,
        after=trained_from_scratch,
    ),
    "unreadable record in the store": Row(
        [["report", STORE_SUITE, "--results", "{cut_store}"],
         ["compare", STORE_SUITE, "dl2pa", "softmax", "--results", "{cut_store}"]],
        "warning: ignored unreadable record {cut} (not valid JSON: Unterminated string at line ",
        exit=0, after=table_still_printed,
    ),
    "a suite name that leads out of the store": Row(
        [["run", "{escape}", *RES]],
        "key 'name': '../../escape' is not a safe name; use letters, digits, '.', '_', '+' and '-'",
        after=nothing_escaped,
    ),
    "a record whose metrics is not an object": Row(
        [["report", STORE_SUITE, "--results", "{string_metrics_store}"],
         ["compare", STORE_SUITE, "dl2pa", "softmax", "--results", "{string_metrics_store}"]],
        "warning: ignored unreadable record {bad} ('metrics' is a str, not an object)",
        exit=0, after=table_still_printed,
    ),
    "a record with a NaN accuracy": Row(
        [["report", STORE_SUITE, "--results", "{nan_store}"],
         ["compare", STORE_SUITE, "dl2pa", "softmax", "--results", "{nan_store}"]],
        "warning: ignored unreadable record {bad} (metrics.test_accuracy is nan, not a finite number)",
        exit=0, after=table_still_printed,
    ),
    # ---------------------------------------------------------------- compare, tune, prototypes, data
    "compare with an unknown method": Row(
        [["compare", STORE_SUITE, "dl2pa", "softmx", *STORE]],
        "method 'softmx' has no records of suite toy under {store} (did you mean 'softmax'?); methods there: dl2pa, ",
    ),
    "compare a method with itself": Row(
        [["compare", STORE_SUITE, "dl2pa", "softmax,dl2pa", *STORE]],
        "A 'dl2pa' is also among B (softmax, dl2pa); compare it with other methods",
    ),
    "tune a suite without validation": Row(
        [["tune", "{noval}", "--lr", "0.01", *RES]],
        "suite noval has no validation split (val_size: 0) and tune selects on validation only; set val_size",
        after=nothing_written,
    ),
    "prototypes with too few classes or dims": Row(
        [["prototypes", "generate", "--classes", "1", "--dim", "4", *P_OUT],
         ["prototypes", "generate", "--classes", "4", "--dim", "1", *P_OUT]],
        ("need at least 2 classes (K=1)", "need dimension d >= 2 (d=1)"),
    ),
    "export of an unknown suite or column": Row(
        [["results", "export", "nosuch", *STORE, "--out", "{tmp}/x.csv"],
         ["results", "export", *STORE, "--columns", "suite,acuracy", "--out", "{tmp}/x.csv"]],
        ("suite 'nosuch' has no records under {store}; suites there: toy",
         "column 'acuracy' is unknown (did you mean 'val_accuracy'?); see docs/export.md for the columns"),
        after=nothing_exported,
    ),
    "export where it cannot be written": Row(
        [["results", "export", *STORE, "--out", "{file}/x.csv"], ["results", "export", *STORE, "--out", "{tmp}"],
         ["results", "export", *STORE, "--out", "{store}/x.csv"]],
        ("--out {file}/x.csv: cannot write (",
         "--out {tmp} is a folder; give a file name, e.g. --out {tmp}/records.csv",
         "--out {store}/x.csv is inside the results store {store}; write the export elsewhere"),
        after=nothing_exported,
    ),
    "export as parquet without pyarrow": Row(
        [["results", "export", *STORE, "--format", "parquet", "--out", "{tmp}/x.parquet"]],
        "--format parquet needs pyarrow: pip install 'protobench[parquet]' (or use csv or jsonl)",
        patch=no_pyarrow, after=nothing_exported,
    ),
    "data verify of an unknown dataset": Row(
        [["data", "verify", "nosuch"]], "unknown dataset 'nosuch'; allowed: cifar10, cifar100, fashion-mnist"),
}
# fmt: on


@pytest.mark.parametrize("row", ROWS.values(), ids=list(ROWS))
def test_bad_input_says_one_line(run_cli, monkeypatch, tmp_path, row):
    inputs = Inputs(tmp_path)
    says = row.says if isinstance(row.says, tuple) else (row.says,) * len(row.inputs)
    if row.patch is not None:
        row.patch(monkeypatch, inputs)
    for args, expected in zip(row.inputs, says, strict=True):
        code, out, err = run_cli(*(inputs.fill(a) for a in args))
        expected = inputs.fill(expected)
        assert code == row.exit, (args, err)
        if row.exit == 1:  # a failed cell: said on its own line of the run's output, not as an input error
            assert err == "" and f"error: {expected}" in out, (args, out, err)
        else:
            assert err.startswith("error: " if row.exit == 2 else "warning: "), (args, err)
            assert err.count("\n") == 1 and expected in err, (args, err)
        assert "Traceback" not in out + err
        if row.after is not None:
            row.after(inputs, out)


def test_run_warns_about_an_unreadable_record_and_goes_on(run_cli, tmp_path, fmnist_dir):
    """A broken record of the run's own cell is no finished cell: it trains again and is overwritten,
    silently. One of another cell is left alone, named on stderr, and the table still comes out."""
    suite = tiny_suite(tmp_path / "w.yaml", dims=[2], train={"epochs": 1, "batch_size": 32, "lr": 0.05})
    common = ["--results", tmp_path / "res", "--data-dir", fmnist_dir, "--device", "cpu"]
    assert run_cli("run", suite, *common)[0] == 0
    (own,) = (tmp_path / "res" / "w").rglob("*.json")
    whole = own.read_text()
    own.write_text(whole[: len(whole) // 2])
    other = tmp_path / "res" / "w" / "hpn" / "d2_s0_0123456789.json"
    other.parent.mkdir()
    other.write_text("\x00\x01 not a record")

    code, out, err = run_cli("run", suite, *common)
    assert code == 0, err
    assert "1 trained" in out and "| softmax |" in out
    assert json.loads(own.read_text())["status"] == "ok"  # the cell trained again and rewrote its record
    assert err == f"warning: ignored unreadable record {other} (not valid JSON: Expecting value at line 1); " \
                  "delete it or rerun the cell\n"  # fmt: skip


def test_report_skips_an_unreadable_record_and_reports_the_others(run_cli, tmp_path):
    inputs = Inputs(tmp_path)
    store = inputs["cut_store"]
    code, out, err = run_cli("report", STORE_SUITE, "--results", store, "--format", "csv")
    assert code == 0 and err.count("warning: ") == 1 and inputs["cut"] in err
    rows = [line.split(",") for line in out.splitlines()[1:] if ",test_accuracy," in line]
    assert {(r[2], r[6]) for r in rows} == {("softmax", "3"), ("dl2pa", "3")}  # the cut record is not counted
    # --metric reads the whole store once more: still one warning for the one file
    code, out, err = run_cli("report", STORE_SUITE, "--results", store, "--metric", "final")
    assert code == 0 and err.count("warning: ") == 1


def test_bare_command_group_prints_its_help(run_cli):
    for args in ([], ["data"], ["prototypes"]):
        code, out, err = run_cli(*args)
        assert code == 2 and "Usage" in out and err == "", args


def test_a_command_exit_code_reaches_the_shell(run_cli, monkeypatch):
    """Commands that end with typer.Exit(N) (run when a cell failed or it was stopped) keep their code."""
    import typer

    from protobench.cli import main

    app = typer.Typer()

    @app.command()
    def stop() -> None:
        raise typer.Exit(3)

    monkeypatch.setattr(main, "app", app)
    monkeypatch.setattr(main, "mount_subcommands", lambda: None)
    assert run_cli()[0] == 3
