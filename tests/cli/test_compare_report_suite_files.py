"""``compare`` and ``report`` take a suite file's path as SUITE, as ``run`` does (records under its ``name:``), and
``compare`` says in one line when no row has enough seeds for a test."""

import json

import pytest

from tests.cli.test_compare_cli import B_VALUES, SUITE, write
from tests.conftest import tiny_suite


@pytest.fixture
def store(tmp_path):
    """Suite cmp-s: dl2pa = softmax + 0.5 seed by seed at d=2 (dl2pa better), a tie at d=4; five seeds."""
    root = tmp_path / "res"
    for seed, b in enumerate(B_VALUES):
        write(root, "softmax", seed, b)
        write(root, "dl2pa", seed, b + 0.5 + 0.01 * (seed % 2))
        write(root, "softmax", seed, 80.0 + seed, dim=4)
        write(root, "dl2pa", seed, 80.0 + (seed * 3) % 5, dim=4)
    return root


def suite_file(tmp_path):
    """A suite file named unlike its ``name:`` (cmp-s, the store's suite), with a method that has no records."""
    (tmp_path / "files").mkdir()
    return tiny_suite(tmp_path / "files" / "mine.yaml", name=SUITE, methods=["dl2pa", "softmax", "hpn"], dims=[2, 4])


def test_compare_takes_a_suite_file_and_reads_the_records_of_its_name(run_cli, store, tmp_path):
    path = suite_file(tmp_path)
    code, out, err = run_cli("compare", path, "dl2pa", "softmax", "--results", store, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["suite"] == SUITE and answer["tested"] == 2 and answer["family_size"] == 2
    assert [(r["column"], r["verdict"]) for r in answer["rows"]] == [("2", "dl2pa better"), ("4", "no evidence")]
    code, by_name, _ = run_cli("compare", SUITE, "dl2pa", "softmax", "--results", store, "--json")
    assert code == 0 and json.loads(by_name)["rows"] == answer["rows"]


def test_report_takes_a_suite_file_and_lays_out_its_methods(run_cli, store, tmp_path):
    path = suite_file(tmp_path)
    code, out, err = run_cli("report", path, "--results", store, "--metric", "final", "--vs", "dl2pa")
    assert code == 0, err
    assert f"**{SUITE}: final-epoch test accuracy (%)" in out
    assert "| hpn | - | - |" in out  # from the file: hpn has no records
    assert "| softmax | 80.00 +- 7.91 (5) < | 82.00 +- 1.58 (5) ~ |" in out
    assert "Holm-adjusted over the 2 test(s) of this table" in out


def test_a_suite_file_that_is_not_there_is_one_line(run_cli, store, tmp_path):
    for command in (("compare", tmp_path / "gone.yaml", "dl2pa", "softmax"), ("report", tmp_path / "gone.yaml")):
        code, _, err = run_cli(*command, "--results", store)
        assert code == 2 and err.count("\n") == 1 and "gone.yaml does not exist" in err, err


def test_compare_without_a_testable_row_says_so_in_one_line(run_cli, tmp_path):
    root = tmp_path / "res"
    for seed in range(2):  # two seeds each: no interval, no test
        write(root, "softmax", seed, 80.0 + seed)
        write(root, "dl2pa", seed, 81.0 + seed)
    code, out, err = run_cli("compare", SUITE, "dl2pa", "softmax", "--results", root)
    assert code == 0, err
    text = " ".join(out.split())
    assert "No row has a test: none has both cells finished with at least 3 seeds (or pairs)" in text
    assert "0 test(s)" not in text and "0.05/0" not in text and "too few seeds" in text
    code, out, err = run_cli("compare", SUITE, "dl2pa", "softmax", "--results", root, "--json")
    answer = json.loads(out)
    assert code == 0 and answer["tested"] == 0 and answer["family_size"] == 0
    assert answer["caption"].startswith("diff = A - B. No row has a test") and "\n" not in answer["caption"]
