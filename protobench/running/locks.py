"""Per-cell locks, so that two ``protobench run`` processes sharing one results folder (on one host, or on
a shared file system from several hosts, e.g. two Slurm jobs) never train the same cell at once.

Design:

- A cell's lock is a file beside its record, ``<record stem>.lock`` (``lock_path``). Acquiring it means
  creating that file with ``O_CREAT | O_EXCL``: of all the processes that try, exactly one creates it. The
  winner writes ``{host, pid, started_at, token}`` as JSON and fsyncs it; the token (a fresh uuid) is how
  the holder later tells its own lock from one that replaced it.
- While the lock is held, a daemon thread touches the file's mtime every ``heartbeat_every`` seconds
  (``HEARTBEAT_S``). It stops at once on ``release``, and quietly when the file holds another token
  (someone took the lock over) or was missing on two beats in a row.
- A lock is stale, and may be taken over (``is_stale``), when

  * its holder ran on this host and its pid is gone (``os.kill(pid, 0)`` raises ``ProcessLookupError``;
    ``PermissionError`` means it lives), or
  * its heartbeat (mtime) is older than ``stale_after`` (``STALE_AFTER_S``), whichever host holds it: a live
    holder always beats, so a silent lock belongs to a crashed process or to a host that went away, or
  * a lock file that cannot be parsed (empty or partial JSON: its writer died between creating and
    writing it) is stale once its mtime is older than ``UNREADABLE_STALE_S`` (5 s; or ``stale_after`` if
    that is shorter). Writing a few bytes takes microseconds, so an unreadable file that old will not
    be finished; waiting ``stale_after`` for it would only hold the cell up.

- Takeover. Several processes may find the same stale lock at once, and none may remove a lock that
  another one created meanwhile. So a taker first claims the stale lock by hard-linking it to
  ``<lock>.claim-<the stale lock's token>``: ``os.link`` fails when that name exists, so there is one
  claimant per stale lock, and the others go back to trying the create. The claimant re-reads the claim
  and checks that it still is the lock it judged stale (same token, still stale: its heartbeat may have
  moved in between), renames the lock to ``<lock>.stale-<uuid>`` (atomic; of several renames of one
  source exactly one succeeds), checks the moved file once more and deletes it; had it turned out live,
  it is linked back in place (a link never overwrites: if a new lock appeared there meanwhile, that one
  stays). Then the create is tried again, and whoever's ``O_EXCL`` create succeeds holds the cell. A
  claim left by a taker killed half-way is cleared once its change time is older than ``CLAIM_STALE_S``.
  Without the claim, a slow taker could move aside the fresh lock of a faster one, and a third process
  could create its own in that moment: two holders (a stress test of 8 racers showed this in about one
  takeover in 400; none in 6000 with it). Where hard links are not supported the takeover goes on
  unclaimed, with that small risk.

Shared file systems: ``O_EXCL`` creation, ``rename`` and ``link`` are atomic on the server on NFSv3 and
later (and on Lustre, GPFS, BeeGFS, CephFS), which is all the mutual exclusion needs. Staleness compares
the file's mtime, which the server stamps, with this host's clock: across hosts it assumes clocks that
agree to well within ``stale_after`` (NTP-synchronised nodes do). The pid test is only used for locks
whose host name is this host's, so two hosts (or containers) must not share a host name.

Limits (the lock is advisory, not a fence):

- a holder that stops for longer than ``stale_after`` (suspended, cut off from the file server) loses
  its lock to a taker and may still finish its cell; its ``CellLock.held()`` then turns False, which a
  caller can check before writing its record;
- a writer whose write and fsync of the lock file take longer than ``UNREADABLE_STALE_S`` (an overloaded
  file server) can have its half-written lock taken over;
- a taker can, in a window of a few system calls, move aside a lock that its stale holder had just
  released and another process had just created; if a third process creates a lock before the link
  back, two processes hold the cell.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

STALE_AFTER_S = 600.0
HEARTBEAT_S = 30.0
#: How often ``wait_for`` looks again at a cell another process holds.
WAIT_POLL_S = 5.0
UNREADABLE_STALE_S = 5.0
CLAIM_STALE_S = 30.0

# Tries of the create in one try_lock: the first, then one after each removed stale lock or vanished holder.
_ATTEMPTS = 3
# The most of a lock file that is read: a real one is about 150 bytes.
_MAX_LOCK_BYTES = 4096


def lock_path(record_path: Path) -> Path:
    """The lock file of the cell whose record is ``record_path``: its ``.json`` suffix becomes ``.lock``."""
    return Path(record_path).with_suffix(".lock")


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, as its file says. ``heartbeat_age`` is the seconds since the file's mtime;
    ``readable`` is False when the file could not be parsed (host and started_at are then empty, pid 0)."""

    host: str
    pid: int
    started_at: str
    heartbeat_age: float
    readable: bool = True

    def describe(self) -> str:
        """One line for a log, e.g. ``host node3 pid 4242 since 2026-12-02T05:00:00+00:00, heartbeat 12 s ago``."""
        age = max(self.heartbeat_age, 0.0)
        if not self.readable:
            return f"an unreadable lock file (being written, or left by a crash), touched {age:.0f} s ago"
        return f"host {self.host} pid {self.pid} since {self.started_at}, heartbeat {age:.0f} s ago"


@dataclass(frozen=True)
class _Seen:
    """A lock file as read once: its holder, its token (None when unreadable) and its inode."""

    holder: LockHolder
    token: str | None
    inode: int


def _inspect(lock_file: Path) -> _Seen | None:
    """Read ``lock_file``; None when it does not exist."""
    try:
        with open(lock_file, "rb") as f:
            stat = os.fstat(f.fileno())
            raw = f.read(_MAX_LOCK_BYTES)
    except FileNotFoundError:
        return None
    age = time.time() - stat.st_mtime
    fields = _parse(raw)
    if fields is None:
        return _Seen(LockHolder("", 0, "", age, readable=False), None, stat.st_ino)
    host, pid, started_at, token = fields
    return _Seen(LockHolder(host, pid, started_at, age), token, stat.st_ino)


def _parse(raw: bytes) -> tuple[str, int, str, str] | None:
    """Host, pid, started_at and token from a lock file's bytes; None unless all are there and sane."""
    try:
        data = json.loads(raw)
        host, pid, started_at, token = data["host"], data["pid"], data["started_at"], data["token"]
    except (ValueError, TypeError, KeyError):  # not JSON (e.g. cut short), or not the expected object
        return None
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0 or not isinstance(token, str) or not token:
        return None
    return str(host), pid, str(started_at), token


def read_holder(lock_file: Path) -> LockHolder | None:
    """The holder of ``lock_file``, or None when there is no such file (an unparsable one gives a holder
    with ``readable=False``)."""
    seen = _inspect(lock_file)
    return seen.holder if seen is not None else None


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a process of another user counts)."""
    if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there: rely on the heartbeat alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError among others: it exists, we may just not signal it
        return True
    return True


def is_stale(holder: LockHolder, stale_after: float) -> bool:
    """Whether ``holder``'s lock may be taken over: unreadable and older than ``UNREADABLE_STALE_S`` (or
    ``stale_after`` if shorter), a heartbeat older than ``stale_after``, or a dead pid on this host."""
    if not holder.readable:
        return holder.heartbeat_age > min(stale_after, UNREADABLE_STALE_S)
    if holder.heartbeat_age > stale_after:
        return True
    return holder.host == socket.gethostname() and not _pid_alive(holder.pid)


def _token_at(path: Path) -> str | None:
    """The token in the lock file at ``path`` (None when it is missing or unreadable)."""
    seen = _inspect(path)
    return seen.token if seen is not None else None


class CellLock:
    """A held cell lock: the file at ``path`` carries our token, and a daemon thread keeps its mtime fresh
    until ``release`` (also on leaving a ``with`` block)."""

    def __init__(self, path: Path, token: str, heartbeat_every: float) -> None:
        self.path = path
        self._token = token
        self._every = heartbeat_every
        self._stop = threading.Event()
        self._released = False
        self._guard = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {path.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        """Touch the lock file while it is ours; give up when it was replaced or stays missing."""
        missing_before = False
        while not self._stop.wait(self._every):
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                # A taker may have it aside for a moment to check it; gone twice in a row means gone.
                if missing_before:
                    return
                missing_before = True
                continue
            except OSError:
                return
            missing_before = False
            try:
                seen_token = json.loads(os.read(fd, _MAX_LOCK_BYTES)).get("token")
                if seen_token != self._token:
                    return
                # Touch the very file whose token was just read, not whatever the name points to by now.
                os.utime(fd if os.utime in os.supports_fd else self.path)
            except (OSError, ValueError, AttributeError):
                return
            finally:
                os.close(fd)

    def held(self) -> bool:
        """Whether the lock file still carries our token (False after ``release`` or a takeover)."""
        return not self._released and _token_at(self.path) == self._token

    def release(self) -> None:
        """Stop the heartbeat and delete the lock file if it is still ours; calling it again does nothing."""
        with self._guard:
            if self._released:
                return
            self._released = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        if _token_at(self.path) == self._token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> CellLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"CellLock({str(self.path)!r}, released={self._released})"


def _create(path: Path, heartbeat_every: float) -> CellLock | None:
    """Create the lock file exclusively and fill it in; None when it already exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    token = uuid.uuid4().hex
    content = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "token": token,
    }
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(content, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)  # created by us a moment ago: nobody else's yet
        raise
    return CellLock(path, token, heartbeat_every)


def _clear_abandoned_claim(claim: Path) -> None:
    """Delete ``claim`` when its taker has evidently died: nothing changed it for ``CLAIM_STALE_S``."""
    try:
        changed = os.stat(claim).st_ctime  # link() stamps the change time; a takeover takes milliseconds
    except FileNotFoundError:
        return
    if time.time() - changed > CLAIM_STALE_S:
        claim.unlink(missing_ok=True)


def _put_back(aside: Path, path: Path) -> None:
    """Return a lock that was moved aside but turned out live, unless a new lock took its place."""
    try:
        os.link(aside, path)
    except FileExistsError:
        pass  # a newer lock is there now; it wins
    except OSError:  # no hard links on this file system: a check-then-rename is the best left
        if not os.path.lexists(path):
            os.rename(aside, path)
    aside.unlink(missing_ok=True)


def _still_stale(copy: Path, seen: _Seen, stale_after: float) -> bool:
    """Whether ``copy`` (a claim or moved-aside name) is the very lock ``seen`` describes, and still stale."""
    again = _inspect(copy)
    return (
        again is not None
        and (again.token, again.inode) == (seen.token, seen.inode)
        and is_stale(again.holder, stale_after)
    )


def _remove_stale(path: Path, seen: _Seen, stale_after: float) -> None:
    """Delete the lock at ``path`` if it still is the stale one ``seen`` describes (see the module doc).
    Whether it did or not, the caller then tries the create again."""
    claim: Path | None = path.with_name(f"{path.name}.claim-{seen.token or f'inode{seen.inode}'}")
    try:
        os.link(path, claim)
    except FileNotFoundError:
        return  # removed already
    except FileExistsError:
        _clear_abandoned_claim(claim)
        return  # another process is taking it over
    except OSError:
        claim = None  # no hard links here: go on unclaimed (the rename below still picks one racer)
    try:
        if claim is not None and not _still_stale(claim, seen, stale_after):
            return
        aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        if _still_stale(aside, seen, stale_after):
            aside.unlink(missing_ok=True)
        else:
            _put_back(aside, path)
    finally:
        if claim is not None:
            claim.unlink(missing_ok=True)


def try_lock(
    record_path: Path, *, stale_after: float = STALE_AFTER_S, heartbeat_every: float = HEARTBEAT_S
) -> CellLock | LockHolder:
    """Lock the cell of ``record_path`` without waiting: a ``CellLock`` when acquired (after taking over
    a stale lock if need be), else the ``LockHolder`` of the live lock. Creates the folder if missing."""
    path = lock_path(record_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seen: _Seen | None = None
    for _ in range(_ATTEMPTS):
        lock = _create(path, heartbeat_every)
        if lock is not None:
            return lock
        seen = _inspect(path)
        if seen is None:
            continue  # released between our create and our read
        if not is_stale(seen.holder, stale_after):
            return seen.holder
        _remove_stale(path, seen, stale_after)
    # Still contended after every try (another process is mid-takeover): report whoever is there now.
    latest = _inspect(path) or seen
    return latest.holder if latest is not None else LockHolder("", 0, "", 0.0, readable=False)


def wait_for(
    record_path: Path,
    *,
    poll: float | None = None,
    stale_after: float = STALE_AFTER_S,
    timeout: float | None = None,
    on_wait: Callable[[LockHolder], None] | None = None,
    heartbeat_every: float = HEARTBEAT_S,
    should_stop: Callable[[], bool] | None = None,
) -> CellLock | None:
    """Wait until the cell of ``record_path`` is ours (returns its ``CellLock``) or another process has
    finished it (its record is ok or n/a: returns None), trying every ``poll`` seconds (default
    ``WAIT_POLL_S``). ``on_wait`` gets the holder once, when the waiting starts. Raises ``TimeoutError``
    after ``timeout`` seconds; returns None as well when ``should_stop`` says so (Ctrl-C or SIGTERM while
    waiting)."""
    # Imported here so that results may import this module without a cycle.
    from protobench.store.records import is_finished

    deadline = None if timeout is None else time.monotonic() + timeout
    told = False
    while True:
        if is_finished(record_path) or (should_stop is not None and should_stop()):
            return None
        got = try_lock(record_path, stale_after=stale_after, heartbeat_every=heartbeat_every)
        if isinstance(got, CellLock):
            if is_finished(record_path):  # the holder wrote the record and released just before we locked
                got.release()
                return None
            return got
        if not told and on_wait is not None:
            on_wait(got)
            told = True
        pause = WAIT_POLL_S if poll is None else poll
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{record_path} is still locked after {timeout:g} s: {got.describe()}")
            pause = min(pause, left)
        end = time.monotonic() + pause
        while time.monotonic() < end and not (should_stop is not None and should_stop()):
            time.sleep(min(0.2, pause))
