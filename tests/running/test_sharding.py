"""--shard I/N: N jobs cover a grid exactly once, balanced by estimated cost, and respect locks."""

import pytest
import torch

from protobench.core.errors import UserError
from protobench.running import locks
from protobench.running.grid import planned_cells
from protobench.running.runner import RunOptions, run_suite
from protobench.running.sharding import Shard, assign, estimated_cost, take
from protobench.suite.definition import load_suite
from tests.conftest import tiny_suite

CPU = torch.device("cpu")


def grid(tmp_path, **overrides):
    suite = load_suite(str(tiny_suite(tmp_path / "g.yaml", **overrides)))
    return suite, planned_cells(suite, tmp_path / "res", deterministic=False, device=CPU)


def test_the_shards_cover_every_cell_exactly_once(tmp_path):
    _, cells = grid(tmp_path, methods=["softmax", "dl2pa", "hpn"], dims=[2, 3, 64, 512], seeds=[0, 1, 2])
    shards = [take(cells, Shard(k, 3)) for k in range(3)]
    paths = [c.path for part in shards for c in part]
    assert sorted(paths) == sorted(c.path for c in cells) and len(paths) == len(set(paths)) == 36
    # Balanced by estimated cost (d=512 cells cost twice a d=2 cell): no shard exceeds another by
    # more than one cell's cost.
    loads = [sum(estimated_cost(c.config) for c in part) for part in shards]
    assert max(loads) - min(loads) <= max(estimated_cost(c.config) for c in cells)
    assert [c.path for c in shards[1]] == [c.path for c in take(list(cells), Shard(1, 3))]  # deterministic
    assert [c.path for c in shards[0]] == [c.path for c in cells if c in shards[0]]  # in grid order


def test_the_split_does_not_depend_on_what_is_finished_or_on_the_order_given(tmp_path):
    _, cells = grid(tmp_path, dims=[2, 3, 4, 5], seeds=[0, 1])
    shard_of = dict(zip((c.path for c in cells), assign(cells, 3), strict=True))
    reordered = list(reversed(cells))
    assert dict(zip((c.path for c in reordered), assign(reordered, 3), strict=True)) == shard_of


@pytest.mark.parametrize(("text", "message"), [
    ("3/3", "--shard 3/3: use 0 <= I < N"), ("1/0", "--shard 1/0: use 0 <= I < N"),
    ("a/b", "--shard 'a/b' is not I/N; e.g. --shard 0/4"), ("2", "--shard '2' is not I/N"),
])  # fmt: skip
def test_bad_shards_are_one_line(text, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        Shard.parse(text)
    assert Shard.parse(" 2 / 5 ") == Shard(2, 5) and str(Shard(2, 5)) == "2/5"


def test_a_shard_trains_its_cells_and_skips_one_another_process_holds(tmp_path, fmnist_dir):
    suite, cells = grid(tmp_path, dims=[2, 3, 4, 5], train={"epochs": 1})
    mine = take(cells, Shard(0, 2))
    held = locks.try_lock(mine[0].path)
    assert isinstance(held, locks.CellLock)
    options = RunOptions(data_dir=fmnist_dir, device=CPU, wait=False, shard=Shard(0, 2))
    summary = run_suite(suite, results_dir=tmp_path / "res", options=options)
    assert (summary.total, summary.trained, summary.locked) == (len(mine), len(mine) - 1, 1)
    held.release()
    written = sorted(p.name for p in (tmp_path / "res").rglob("*.json"))
    assert written == sorted(c.path.name for c in mine[1:])


def test_a_shard_from_unset_slurm_variables_names_them_in_one_line(monkeypatch):
    # --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" outside a job array: "/" (docs/slurm/README.md)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT", raising=False)
    with pytest.raises(UserError, match=r"^--shard '/': \$SLURM_ARRAY_TASK_ID and \$SLURM_ARRAY_TASK_COUNT are not "
                                        r"set; run it as a Slurm job array task"):  # fmt: skip
        Shard.parse("/")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    with pytest.raises(UserError, match=r"^--shard '3/': \$SLURM_ARRAY_TASK_COUNT is not set;"):
        Shard.parse("3/")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")  # set, yet the side is empty (quoted wrong?)
    with pytest.raises(UserError, match=r"^--shard '/4': I or N is empty; "):
        Shard.parse("/4")


def test_a_shard_with_no_cells_says_so_and_exits_0(run_cli, tmp_path, fmnist_dir):
    # An array of more tasks than cells: the tasks past the grid have nothing to do, and that is not an error.
    suite = tiny_suite(tmp_path / "e.yaml", dims=[2, 3], train={"epochs": 1})
    code, out, err = run_cli("run", suite, "--shard", "3/4", "--results", tmp_path / "res", "--data-dir", fmnist_dir,
                             "--device", "cpu")  # fmt: skip
    assert (code, err) == (0, "")
    assert "shard 3/4 has no cells: the grid has 2, fewer than its 4 shards; nothing to do (an array of 2 tasks " \
           "covers it)" in out  # fmt: skip
    assert "done: 0 trained" in out and "|" not in out and not (tmp_path / "res").exists()
