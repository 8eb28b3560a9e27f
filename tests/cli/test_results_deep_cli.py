"""Provenance a reviewer can follow: a record written at HEAD names its code (``code_digest``), its machine
(``host``) and its prototype set (``prototype_digest``), and ``protobench results check --deep`` rebuilds each
record's set at HEAD and lists those that differ, by digest, by embedding sample or at the record's commit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from protobench.prototypes import generate
from protobench.prototypes.digest import set_digest
from protobench.running.runner import RunOptions, run_suite
from protobench.store import records as results
from protobench.store.code_identity import running_digest
from protobench.suite.definition import load_suite
from tests.conftest import tiny_suite


@pytest.fixture
def store(tmp_path, fmnist_dir):
    """Suite `a` with softmax and hpn trained at d=2 (one epoch; hpn's record has an embedding sample)."""
    suite = tiny_suite(tmp_path / "a.yaml", dims=[2], methods=["softmax", "hpn"], train={"epochs": 1, "lr": 0.05})
    run_suite(load_suite(str(suite)), results_dir=tmp_path / "res",
              options=RunOptions(data_dir=fmnist_dir, device=torch.device("cpu")))  # fmt: skip
    return tmp_path / "res"


def test_a_record_written_at_head_names_its_code_machine_and_prototypes(store):
    hpn = results.load_record(next((store / "a" / "hpn").glob("*.json")))
    softmax = results.load_record(next((store / "a" / "softmax").glob("*.json")))
    assert hpn["code_digest"] == softmax["code_digest"] == running_digest()
    assert hpn["host"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert hpn["host"]["threads"] == torch.get_num_threads() and hpn["host"]["cpu_model"] == hpn["cpu"]
    assert hpn["prototype_digest"] == set_digest(generate("hpn", 10, 2, 0)) and softmax["prototype_digest"] is None
    from protobench.api import load_results

    table = load_results(store, columns=["method", "code_digest", "cpu_capability", "threads", "prototype_digest"])
    row = table.set_index("method").loc["hpn"]
    assert (row["code_digest"], row["prototype_digest"]) == (hpn["code_digest"], hpn["prototype_digest"])
    assert (row["cpu_capability"], row["threads"]) == (hpn["host"]["cpu_capability"], hpn["host"]["threads"])


def test_deep_check_lists_a_record_whose_set_differs_from_heads(run_cli, store):
    code, out, _ = run_cli("results", "check", "--results", store, "--deep")
    assert code == 0 and "1 distinct set(s) rebuilt at HEAD" in out and "1 compared by prototype_digest" in out
    assert out.rstrip().endswith("0 mislabelled, 0 mixed-host, 0 unreadable, 0 prototypes (under " + f"{store})")
    path = next((store / "a" / "hpn").glob("*.json"))
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "prototype_digest": "f" * 64}))
    code, out, _ = run_cli("results", "check", "--results", store, "--deep")
    head = set_digest(generate("hpn", 10, 2, 0))
    assert code == 1 and f"prototypes  {path}: prototypes differ from HEAD's (hpn K=10 d=2 seed 0): " \
        f"recorded ffffffffffff, HEAD {head[:12]}" in out  # fmt: skip
    assert "prototypes (under" not in run_cli("results", "check", "--results", store)[1]  # the plain check's count


def test_deep_check_falls_back_to_the_embedding_sample_then_the_commit(run_cli, store):
    path = next((store / "a" / "hpn").glob("*.json"))
    record = json.loads(path.read_text())
    del record["prototype_digest"]  # as made before digests
    path.write_text(json.dumps(record))
    code, out, _ = run_cli("results", "check", "--results", store, "--deep")
    assert code == 0 and "1 by their embedding sample's anchors" in out
    sample = results.embeddings_path(path)
    arrays = dict(np.load(sample))
    np.savez(sample, **{**arrays, "anchors": arrays["anchors"] + np.float32(1e-6)})
    code, out, _ = run_cli("results", "check", "--results", store, "--deep")
    assert code == 1 and "the embedding sample's anchors are not HEAD's set" in out
    np.savez(sample, **{**arrays, "anchors": arrays["anchors"][::-1]})  # the same rows in another order
    assert run_cli("results", "check", "--results", store, "--deep")[0] == 0
    sample.unlink()
    commit = str(record["git_commit"]).removesuffix("-dirty")
    code, out, err = run_cli("results", "check", "--results", store, "--deep")
    assert f"rebuilding 1 set(s) at commit {commit[:12]} (1 record(s))" in err
    assert code == 0 and "1 by rebuilding the set at their commit" in out
