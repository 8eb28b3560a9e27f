"""Ctrl-C and SIGTERM (a scheduler's pre-emption signal) as a request to stop cleanly (docs/long-runs.md).

While ``StopOnSignal`` is active, SIGINT and SIGTERM no longer kill the process: they set a flag that
the training loop reads after every step, so the cell in training saves a checkpoint and stops, and
the run exits with 128 + the signal's number (130, 143) after printing the command that resumes it.
In the main process a second Ctrl-C stops at once (the checkpoint being written is abandoned whole:
writes are atomic). Worker processes pass the first signal on the same way and ignore repeats, since
a terminal's Ctrl-C reaches them directly as well as through the main process. A worker starts with
the two signals held (``signals_held``): one that arrives while it is still importing waits, pending,
until the worker's own ``StopOnSignal`` is in place, instead of killing it with a traceback.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """Context manager: SIGINT/SIGTERM set ``received`` (the signal's number) instead of killing.

    ``forward`` passes the signal on to this process's multiprocessing children (the main process
    of a ``--jobs N`` run); ``second_stops_now`` makes a repeated SIGINT raise KeyboardInterrupt.
    """

    def __init__(self, *, forward: bool = False, second_stops_now: bool = True) -> None:
        self.forward = forward
        self.second_stops_now = second_stops_now
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._previous_mask: set[signal.Signals] | None = None

    def requested(self) -> bool:
        """Whether a stop was asked for (the training loop polls this)."""
        return self.received is not None

    def exit_code(self) -> int:
        """128 + the signal's number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + (self.received or 0)

    def signal_name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            if self.second_stops_now and signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.received = signum
        if self.forward:
            for child in multiprocessing.active_children():
                if child.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signum)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
            if hasattr(signal, "pthread_sigmask"):  # deliver what was held pending (a worker's start)
                self._previous_mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._previous_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._previous_mask)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM pending in this thread while the block runs, and in every process started
    from it: a spawned process keeps the held mask until a ``StopOnSignal`` releases it. Nothing is lost:
    a signal that arrives meanwhile is delivered when the mask is restored. A no-op where the platform
    has no signal masks."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
