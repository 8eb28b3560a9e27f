"""Per-cell locks: acquire and release, heartbeat, stale-lock takeover, races between processes, waiting."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from protobench.running import locks
from protobench.running.locks import CellLock, LockHolder, lock_path, read_holder, try_lock, wait_for
from tests.conftest import minimal_record

REPO = Path(__file__).resolve().parents[2]
HOUR_AGO = 3600.0


@pytest.fixture
def record(tmp_path) -> Path:
    """A record path in a folder that does not exist yet."""
    return tmp_path / "suite" / "method" / "d2_s0_r2.5_0123456789.json"


def write_lock(path: Path, host: str, pid: int, age: float = 0.0) -> None:
    """Write a lock file by hand, as another process would have, with its mtime ``age`` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"host": host, "pid": pid, "started_at": "2026-12-02T05:00:00+00:00", "token": uuid.uuid4().hex}
    path.write_text(json.dumps(content))
    set_age(path, age)


def set_age(path: Path, age: float) -> None:
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def dead_pid() -> int:
    """The pid of a process of ours that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_acquire_hold_release_and_reacquire(record):
    assert lock_path(record) == record.with_name("d2_s0_r2.5_0123456789.lock")
    lock = try_lock(record, heartbeat_every=60)
    assert isinstance(lock, CellLock) and lock.path == lock_path(record) and lock.held()
    content = json.loads(lock.path.read_text())
    assert content["host"] == socket.gethostname() and content["pid"] == os.getpid()

    other = try_lock(record, heartbeat_every=60)  # a second try in the same (live) process is refused
    assert isinstance(other, LockHolder)
    assert (other.host, other.pid, other.readable) == (socket.gethostname(), os.getpid(), True)
    assert other.started_at == content["started_at"] and 0 <= other.heartbeat_age < 5

    lock.release()
    assert not lock.path.exists() and not lock.held()
    with try_lock(record, heartbeat_every=60) as again:
        assert isinstance(again, CellLock) and again.path.exists()
    assert not again.path.exists()  # leaving the with block released it


def test_release_is_idempotent_and_spares_a_lock_taken_over(record):
    lock = try_lock(record, heartbeat_every=60)
    assert isinstance(lock, CellLock)
    write_lock(lock.path, "node9", 4242)  # someone else's lock (another token) now stands there
    assert not lock.held()
    lock.release()
    lock.release()
    assert json.loads(lock.path.read_text())["host"] == "node9"


def test_heartbeat_refreshes_mtime_and_stops_on_release_or_takeover(record):
    lock = try_lock(record, heartbeat_every=0.05)
    assert isinstance(lock, CellLock)
    set_age(lock.path, HOUR_AGO)
    time.sleep(0.2)
    assert time.time() - lock.path.stat().st_mtime < 5

    write_lock(lock.path, "node9", 4242, age=HOUR_AGO)  # taken over: the heartbeat must leave it alone
    time.sleep(0.2)
    assert time.time() - lock.path.stat().st_mtime > HOUR_AGO - 60
    started = time.monotonic()
    lock.release()
    assert time.monotonic() - started < 1 and not lock._thread.is_alive()


def test_lock_of_a_dead_pid_on_this_host_is_taken_over(record):
    write_lock(lock_path(record), socket.gethostname(), dead_pid())
    got = try_lock(record, heartbeat_every=60)
    assert isinstance(got, CellLock) and json.loads(got.path.read_text())["pid"] == os.getpid()
    got.release()
    assert sorted(p.name for p in record.parent.iterdir()) == []  # no claim or moved-aside copy left


def test_lock_of_a_live_pid_on_this_host_is_respected(record):
    write_lock(lock_path(record), socket.gethostname(), os.getppid())
    got = try_lock(record, heartbeat_every=60)
    assert isinstance(got, LockHolder) and got.pid == os.getppid()


def test_other_hosts_lock_is_stale_only_by_its_heartbeat(record):
    # The pid check only applies to this host: a pid that is dead here says nothing about node9.
    write_lock(lock_path(record), "node9", dead_pid())
    fresh = try_lock(record, stale_after=600, heartbeat_every=60)
    assert isinstance(fresh, LockHolder) and fresh.host == "node9"
    assert fresh.describe().startswith(f"host node9 pid {fresh.pid} since 2026-12-02T05:00:00+00:00, heartbeat ")

    set_age(lock_path(record), HOUR_AGO)
    old = read_holder(lock_path(record))
    assert old is not None and locks.is_stale(old, 600) and not locks.is_stale(old, 2 * HOUR_AGO)
    assert old.describe().endswith("heartbeat 3600 s ago")
    got = try_lock(record, stale_after=600, heartbeat_every=60)
    assert isinstance(got, CellLock)
    got.release()


def test_unreadable_lock_is_held_while_fresh_and_stale_once_old(record):
    path = lock_path(record)
    path.parent.mkdir(parents=True)
    path.write_text('{"host": "node9", "pi')  # its writer died between creating and writing it
    held = try_lock(record, heartbeat_every=60)
    assert isinstance(held, LockHolder) and not held.readable and "unreadable" in held.describe()

    set_age(path, 10)  # past UNREADABLE_STALE_S though far below stale_after
    got = try_lock(record, stale_after=600, heartbeat_every=60)
    assert isinstance(got, CellLock)
    got.release()


def test_missing_lock_has_no_holder(tmp_path):
    assert read_holder(tmp_path / "x.lock") is None


# Each racer: say it is ready, wait for "go" on stdin, try the lock, report, then hold until stdin closes.
RACER = """
import sys
from pathlib import Path
from protobench.running.locks import CellLock, try_lock
print("ready", flush=True)
sys.stdin.readline()
got = try_lock(Path(sys.argv[1]), heartbeat_every=60)
print("acquired" if isinstance(got, CellLock) else "held", flush=True)
sys.stdin.readline()
"""


def race(record: Path, n: int = 8) -> list[str]:
    """Start ``n`` processes, release them at once on ``record``'s lock, and return what each got."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(record)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        for _ in range(n)
    ]
    try:
        assert [p.stdout.readline().strip() for p in racers] == ["ready"] * n
        for p in racers:
            p.stdin.write("go\n")
            p.stdin.flush()
        return [p.stdout.readline().strip() for p in racers]
    finally:
        for p in racers:
            p.stdin.close()
            p.wait(timeout=10)


def test_racing_processes_acquire_a_free_lock_once(record):
    outcomes = race(record)
    assert sorted(outcomes) == ["acquired"] + ["held"] * 7


def test_racing_processes_take_over_a_stale_lock_once(record):
    write_lock(lock_path(record), "node9", 4242, age=HOUR_AGO)
    outcomes = race(record)
    assert sorted(outcomes) == ["acquired"] + ["held"] * 7
    assert [p.name for p in record.parent.iterdir()] == [lock_path(record).name]  # no claims left behind


def test_takeover_backs_off_when_the_lock_was_replaced_after_the_check(record):
    # A stale lock is judged, then (before the taker acts) replaced by a live one: it must survive.
    path = lock_path(record)
    write_lock(path, "node9", 4242, age=HOUR_AGO)
    seen = locks._inspect(path)
    assert seen is not None and locks.is_stale(seen.holder, 600)
    live = try_lock(record.with_name("other.json"), heartbeat_every=60)
    assert isinstance(live, CellLock)
    os.replace(live.path, path)
    locks._remove_stale(path, seen, 600)
    holder = read_holder(path)
    assert holder is not None and holder.pid == os.getpid()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    live.release()


def test_takeover_without_hard_links_puts_a_live_lock_back(record, monkeypatch):
    # Where os.link fails (no hard links), the taker goes on unclaimed: it moves the lock aside, sees that
    # it is not the one it judged stale, and renames it back.
    def no_links(*args: object) -> None:
        raise OSError("hard links not supported")

    path = lock_path(record)
    write_lock(path, "node9", 4242, age=HOUR_AGO)
    seen = locks._inspect(path)
    write_lock(path, "node9", 4242)  # a live lock (new token, fresh heartbeat) took its place
    monkeypatch.setattr(os, "link", no_links)
    locks._remove_stale(path, seen, 600)
    assert read_holder(path) is not None and sorted(p.name for p in path.parent.iterdir()) == [path.name]
    set_age(path, HOUR_AGO)  # and once it is stale too, the unclaimed takeover removes it
    got = try_lock(record, stale_after=600, heartbeat_every=60)
    assert isinstance(got, CellLock)
    got.release()


def finish_later(record: Path, delay: float) -> threading.Thread:
    def write() -> None:
        time.sleep(delay)
        record.write_text(json.dumps(minimal_record()))

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_wait_for_returns_none_when_the_holder_finishes_the_cell(record):
    lock = try_lock(record, heartbeat_every=60)
    assert isinstance(lock, CellLock)
    told: list[LockHolder] = []
    writer = finish_later(record, 0.2)
    assert wait_for(record, poll=0.02, timeout=5, on_wait=told.append) is None
    writer.join()
    assert len(told) == 1 and told[0].pid == os.getpid()
    lock.release()
    assert wait_for(record, poll=0.02, timeout=5) is None  # finished: no lock is even taken
    assert not lock_path(record).exists()


def test_wait_for_returns_the_lock_when_the_holder_releases(record):
    lock = try_lock(record, heartbeat_every=60)
    assert isinstance(lock, CellLock)
    timer = threading.Timer(0.2, lock.release)
    timer.start()
    got = wait_for(record, poll=0.02, timeout=5)
    timer.join()
    assert isinstance(got, CellLock) and got.held()
    got.release()


def test_wait_for_times_out_while_held(record):
    lock = try_lock(record, heartbeat_every=60)
    assert isinstance(lock, CellLock)
    with pytest.raises(TimeoutError, match="still locked"):
        wait_for(record, poll=0.02, timeout=0.1)
    lock.release()


def test_wait_for_gives_none_when_the_record_was_written_just_before_release(record, monkeypatch):
    # The holder writes its record and releases between our finished check and our lock: we must not train.
    record.parent.mkdir(parents=True)
    checks = iter([False, True])
    monkeypatch.setattr("protobench.store.records.is_finished", lambda path: next(checks))
    assert wait_for(record, poll=0.02, timeout=5) is None
    assert not lock_path(record).exists()


def test_a_stale_lock_whose_takeover_claim_was_abandoned_is_still_taken_over(record, monkeypatch):
    # A taker killed between claiming a stale lock and removing it leaves `<lock>.claim-<token>` behind;
    # once that claim is older than CLAIM_STALE_S the next taker clears it and takes the lock over.
    path = lock_path(record)
    write_lock(path, socket.gethostname(), dead_pid(), age=HOUR_AGO)
    token = json.loads(path.read_text())["token"]
    claim = path.with_name(f"{path.name}.claim-{token}")
    os.link(path, claim)  # the dead taker's claim
    monkeypatch.setattr(locks, "CLAIM_STALE_S", 0.0)  # its change time cannot be set back: shorten the wait
    time.sleep(0.01)
    lock = try_lock(record, heartbeat_every=60)
    assert isinstance(lock, CellLock) and not claim.exists()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
