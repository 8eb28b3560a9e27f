"""The Slurm path as users run it (docs/slurm/README.md; docs/long-runs.md, "Slurm: what happens when").

The test marked ``slurm`` starts a real single-node Slurm (munged, slurmctld, slurmd: Debian's slurm-wlm and
munge) with its own slurm.conf and spool in a temporary folder, submits the shipped grid-array.sbatch with
the documented CPU-only overrides, hits one task with its time limit and another with ``scontrol requeue``
in the middle of a cell, and checks that every cell has one record equal to a clean run's. It needs root
and PROTOBENCH_SLURM_TESTS=1: `make test-slurm` sets it, and .ci/run runs that, as root, after `make test`
and `make lint` (it takes minutes). The other tests here need bash only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_long_runs import comparable
from tests.conftest import tiny_suite
from tests.data.fakefiles import write_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
#: The script under test: the shipped one, or another (PROTOBENCH_SLURM_SCRIPT) to see an older one fail.
SCRIPT = Path(os.environ.get("PROTOBENCH_SLURM_SCRIPT", REPO / "docs/slurm/grid-array.sbatch"))
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue")


def script_outside_slurm(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The script run with bash as a user might, outside any Slurm job (no SLURM_* variables)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.run(["bash", str(SCRIPT), *args], env={**clean, **env}, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_the_script_outside_a_job_array_names_the_unset_variable_in_one_line():
    done = script_outside_slurm("quickstart")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [f"error: $SLURM_ARRAY_TASK_ID is not set; submit this script as a Slurm job "
                                        f"array: sbatch --array=0-N {SCRIPT} quickstart"]  # fmt: skip
    done = script_outside_slurm("quickstart", SLURM_ARRAY_TASK_ID="0")  # a plain job (no --array) has no count
    assert done.returncode == 2 and done.stderr.startswith("error: $SLURM_ARRAY_TASK_COUNT is not set;")
    assert len(done.stderr.splitlines()) == 1
    done = script_outside_slurm()
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"error: no suite given; usage: sbatch --array=0-N {SCRIPT} SUITE [protobench run flags...]"
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """One node, its controller and munge, all in ``root``: started as child processes (in the foreground,
    so their PIDs are the ones started) and stopped by those PIDs."""

    def __init__(self, root: Path, cpus: int = 2) -> None:
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.processes: list[subprocess.Popen] = []
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("munge", "ctld", "spool", "log"):
            (root / sub).mkdir(mode=0o700, exist_ok=True)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.socket = root / "munge" / "socket"
        # cred_expire is also how long a requeued job waits before it may start again (slurm.conf(5),
        # AuthInfo; 120 s by default); sched_interval how often pending jobs are looked at (60 s by default).
        self.conf = root / "slurm.conf"
        self.conf.write_text("\n".join([
            "ClusterName=protobench-test",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.socket},cred_expire=5",
            f"StateSaveLocation={root / 'ctld'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'ctld' / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'spool' / 'slurmd.pid'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",  # no binding: the CPU count reaches protobench only as SLURM_CPUS_PER_TASK
            "SchedulerType=sched/builtin",
            "SchedulerParameters=sched_interval=2",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",  # the node has the CPUs this file says, whatever the host has
            "KillWait=10",
            "MinJobAge=600",  # finished jobs stay in scontrol's view until the test has read them
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
            f"PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n")  # fmt: skip
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> None:
        """munged, then slurmctld and slurmd, each in the foreground; returns once the node is idle."""
        m = self.root / "munge"
        self.spawn("munged", ["munged", "-F", "--force", f"--key-file={m / 'munge.key'}", f"--socket={self.socket}",
                              f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
                              f"--seed-file={m / 'munged.seed'}"])  # fmt: skip
        self.wait_for(lambda: self.socket.exists(), "munged's socket", 15)
        self.spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self.spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])
        self.wait_for(lambda: self.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip() == "idle",
                      "the node to be idle", 60)  # fmt: skip

    def spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / "log" / f"{name}.out").open("w")
        self.processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                               start_new_session=True))  # fmt: skip

    def wait_for(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise AssertionError(f"waiting for {what}: {dead or 'timed out'}\n{self.logs()}")
            time.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((self.root / "log").glob("*.out")))

    def run(self, *argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, env=kwargs.pop("env", self.env), capture_output=True, text=True, timeout=60,
                              **kwargs)  # fmt: skip
        if check and done.returncode:
            raise AssertionError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
        return done

    def job(self, job: str) -> dict[str, str]:
        """``scontrol show job`` of one job (or array task), as its Key=Value pairs."""
        text = self.run("scontrol", "-o", "show", "job", job).stdout
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def states(self) -> str:
        """Every job's id, state, reason, restarts and exit code, one line each (for a failure's message)."""
        text = self.run("scontrol", "-o", "show", "job", check=False).stdout
        keys = ("JobId", "ArrayJobId", "ArrayTaskId", "JobState", "Reason", "Restarts", "ExitCode")
        return "\n".join(" ".join(f"{k}={v}" for k, v in re.findall(r"(\w+)=(\S*)", line) if k in keys)
                         for line in text.splitlines())  # fmt: skip

    def stop(self) -> None:
        """Cancel what is left, then stop the daemons this cluster started, by their PIDs, newest first."""
        if self.processes and self.processes[-1].poll() is None:
            self.run("scancel", "--full", "--user", "root", check=False)
            time.sleep(1)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def slurm(tmp_path) -> Iterator[SlurmCluster]:
    """A running single-node cluster, or the test skipped with the one-line reason it cannot run here."""
    if os.environ.get("PROTOBENCH_SLURM_TESTS") != "1":
        pytest.skip("starts Slurm's daemons: set PROTOBENCH_SLURM_TESTS=1 (as .ci/run does) to run it")
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("slurmd starts jobs as their users, so it runs as root: run this test as root")
    cluster = SlurmCluster(tmp_path / "slurm")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def wait_until(condition, what: str, timeout: float, cluster: SlurmCluster, logs: Path):
    """Poll ``condition`` until it returns something true; an AssertionError with the logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            outputs = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(logs.glob("protobench-*.out")))
            raise AssertionError(f"timed out waiting for {what}\n{cluster.states()}\n{outputs}\n{cluster.logs()}")
        time.sleep(0.5)
    return value


def records(results: Path) -> dict[str, dict]:
    return {p.relative_to(results).as_posix(): json.loads(p.read_text()) for p in sorted(results.rglob("*.json"))}


def same_results(record: dict) -> dict:
    """What must equal between an interrupted and a clean run: ``comparable`` less the code's commit and digest
    (a working tree may change between the two runs: this is a long test)."""
    return {k: v for k, v in comparable(record).items() if k not in ("git_commit", "code_digest")}


def log_of(folder: Path, job: str, task: int) -> str:
    path = folder / f"protobench-{job}_{task}.out"
    return path.read_text() if path.exists() else ""


@pytest.mark.slurm
def test_a_grid_array_survives_a_time_limit_and_a_requeue_on_a_real_slurm(slurm, tmp_path, request):
    import torch

    from protobench.running.grid import planned_cells
    from protobench.running.sharding import Shard, take
    from protobench.suite.definition import load_suite

    started = time.monotonic()
    data = write_fashion_mnist(tmp_path / "fmnist", n_train=4000, n_test=200)
    # Three cells over an array of four tasks (one with nothing to do): dl2pa long enough to be hit by its time
    # limit mid-cell, hpn long enough to be requeued mid-cell, a short softmax cell. slurmctld looks at time
    # limits every 30 s (its PERIODIC_TIMEOUT, not configurable), so the signal can come up to 30 s after the
    # limit is set: dl2pa runs 240 epochs (about 80 s at the 0.35 s an epoch of the fastest CI machine seen;
    # at 60 epochs it once finished before the signal came), hpn 30 (about 10 s; its requeue is immediate).
    recipes = {"dl2pa": {"epochs": 240}, "hpn": {"epochs": 30}}
    suite_file = tiny_suite(tmp_path / "slurmgrid.yaml", methods=["dl2pa", "hpn", "softmax"], dims=[3],
                            method_recipes=recipes)  # fmt: skip
    results, reference = tmp_path / "res", tmp_path / "ref"
    cells = planned_cells(load_suite(str(suite_file)), results, deterministic=True, device=torch.device("cpu"))
    tasks = len(cells) + 1
    shards = [take(cells, Shard(k, tasks)) for k in range(tasks)]
    task_of = {c.cell.method: k for k, shard in enumerate(shards) for c in shard}
    (empty,) = [k for k, shard in enumerate(shards) if not shard]

    # The documented CPU-only overrides on the command line; the script itself is the shipped one.
    scripts = sysconfig.get_path("scripts")  # where `pip install -e .` put the protobench command
    env = {k: v for k, v in slurm.env.items() if k not in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")}
    env.update(PATH=f"{scripts}{os.pathsep}{env['PATH']}", PROTOBENCH_RESULTS=str(results))
    submit = slurm.run("sbatch", "--parsable", f"--array=0-{tasks - 1}", "--gres=none", "--cpus-per-task=1",
                       str(SCRIPT), str(suite_file), "--device", "cpu", "--data-dir", str(data), "--deterministic",
                       "--checkpoint-minutes", "0.02", env=env, cwd=tmp_path)  # fmt: skip
    job = submit.stdout.strip().split(";")[0]
    # A clean run of the same cells, one thread per cell as each task has (--cpus-per-task=1), meanwhile: it
    # fills the cores while the tasks wait for Slurm, and slows them, which leaves the time limit more to hit.
    clean = subprocess.Popen([sys.executable, "-m", "protobench", "run", str(suite_file), "--results", str(reference),
                              "--data-dir", str(data), "--device", "cpu", "--deterministic", "--threads", "2",
                              "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    request.addfinalizer(lambda: clean.poll() is None and (clean.kill(), clean.wait()))  # a failed test leaves none
    timed, requeued = f"{job}_{task_of['dl2pa']}", f"{job}_{task_of['hpn']}"

    def checkpoint_of(method: str) -> bool:
        return any((results / suite_file.stem / method).glob("*.ckpt-*.pt"))

    # The time limit: once dl2pa trains (a checkpoint exists), its task's limit becomes 2 minutes, so that
    # --signal=TERM@120 is due at once; slurmctld sends it at its next time-limit check (every 30 s).
    wait_until(lambda: checkpoint_of("dl2pa"), "dl2pa's first checkpoint", 120, slurm, tmp_path)
    slurm.run("scontrol", "update", f"JobId={timed}", "TimeLimit=2")
    wait_until(lambda: checkpoint_of("hpn"), "hpn's first checkpoint", 120, slurm, tmp_path)
    slurm.run("scontrol", "requeue", requeued)  # as an admin or the user would, mid-cell
    # Back in the queue, the time-limited task gets its hours back (else each run is signalled at once).
    wait_until(lambda: slurm.job(timed).get("Restarts", "0") != "0", "the time-limited task's requeue", 90,
               slurm, tmp_path)  # fmt: skip
    slurm.run("scontrol", "update", f"JobId={timed}", "TimeLimit=60")
    wait_until(lambda: not slurm.run("squeue", "-h", "-j", job).stdout.strip(), "the array to finish", 400,
               slurm, tmp_path)  # fmt: skip
    slurm_seconds = time.monotonic() - started

    logs = {k: log_of(tmp_path, job, k) for k in range(tasks)}
    states = {k: slurm.job(f"{job}_{k}") for k in range(tasks)}
    assert {k: s["JobState"] for k, s in states.items()} == dict.fromkeys(range(tasks), "COMPLETED"), logs
    for name, k in (("time limit", task_of["dl2pa"]), ("scontrol requeue", task_of["hpn"])):
        assert int(states[k]["Restarts"]) >= 1, (name, logs[k])
        # --open-mode=append: the log holds every run, the stopped one's lines included
        assert "run 1 on" in logs[k] and "run 2 on" in logs[k], (name, logs[k])
        assert "stopped by SIGTERM: finished cells are saved, unfinished ones checkpointed" in logs[k], logs[k]
        assert re.search(r"resuming from (epoch \d+/\d+, after batch \d+|the end of epoch \d+/\d+)", logs[k]), logs[k]
    assert "stopped by SIGTERM, checkpoints saved; requeueing it" in logs[task_of["dl2pa"]]
    assert "DUE TO JOB REQUEUE" in logs[task_of["hpn"]]
    assert states[task_of["softmax"]]["Restarts"] == "0"
    assert f"shard {empty}/{tasks} has no cells" in logs[empty] and "Traceback" not in "".join(logs.values())

    _, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err
    got, want = records(results), records(reference)
    assert sorted(got) == sorted(want) and len(got) == len(cells)
    for name, record in got.items():
        assert record["device"] == "cpu (1 threads)", name  # SLURM_CPUS_PER_TASK=1, with 2 CPUs in sight
        assert same_results(record) == same_results(want[name]), name
        with np.load(results / name.replace(".json", ".embeddings.npz")) as a, \
                np.load(reference / name.replace(".json", ".embeddings.npz")) as b:  # fmt: skip
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), name
    assert not list(results.rglob("*.ckpt-*.pt")) and not list(results.rglob("*.lock"))
    # What the run saw, for the record of CI's log (pytest -s): the requeue and resume lines and the times.
    total = time.monotonic() - started
    print(f"\nslurm array {job}: {tasks} tasks done in {slurm_seconds:.0f} s, the whole test in {total:.0f} s")
    for k in (task_of["dl2pa"], task_of["hpn"], empty):
        seen = [line for line in logs[k].splitlines()
                if re.search(r"protobench-grid|stopped|resuming|CANCELLED|has no cells|requeue", line)]  # fmt: skip
        print(f"task {k} (restarts {states[k]['Restarts']}):", *seen, sep="\n  ")
