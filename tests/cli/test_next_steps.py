"""The commands the quickstart prints last (protobench/cli/next_steps.py)."""

from pathlib import Path

from protobench.cli.next_steps import next_steps, without_seeds


def test_the_default_store_is_not_named_and_each_command_has_a_comment():
    text = next_steps("quickstart", ["softmax", "hpn", "dl2pa"], 1, Path("results"), ["run", "quickstart"])
    lines = text.splitlines()
    assert lines[0] == "Next, try:" and len(lines) == 1 + 2 * 3
    assert lines[2] == (
        "  protobench report quickstart --format html --plots results/plots/quickstart --out results/quickstart.html"
    )
    assert (
        lines[4] == "  protobench run quickstart --seeds 0,1,2"
        and lines[6] == "  protobench compare quickstart dl2pa softmax"
    )
    assert all(line.startswith("  # ") for line in lines[1::2])


def test_enough_seeds_no_rerun_and_no_pair_no_compare():
    text = next_steps("quickstart", ["etf", "ebv"], 3, Path("my runs"), ["run", "quickstart"])
    assert "protobench run" not in text and "compare" not in text
    assert "--results 'my runs'" in text  # quoted for the shell
    assert "compare quickstart hpn softmax" in next_steps("quickstart", ["softmax", "hpn"], 3, Path("r"), [])


def test_the_rerun_drops_the_runs_own_seeds_and_restart():
    args = ["run", "quickstart", "--seeds", "4", "--restart", "--seeds=5", "--jobs", "2", "--results", "runs"]
    assert without_seeds(args) == ["run", "quickstart", "--jobs", "2", "--results", "runs"]
    text = next_steps("quickstart", ["softmax"], 1, Path("runs"), args)
    assert "  protobench run quickstart --jobs 2 --results runs --seeds 0,1,2" in text.splitlines()
