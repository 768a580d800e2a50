"""Run a function in a forked child with a wall-clock deadline.

Some runaway rule code cannot be stopped from inside Lua: a pattern match that backtracks
for ever is a single C call, so no instruction hook fires. The only reliable stop is a
process that can be killed, so each batch runs in a forked child. Fork (not spawn) means the
child inherits the batch's column buffers copy-on-write: nothing is serialized on the way
in, and the child touches only Python and lupa (never polars' thread pool).

The child reports the row it is evaluating through a shared page, so after a kill the parent
knows which event was running and for how long. Bulk results (the charge arrays, ~55 MB per
million events) come back through shared memory (``SharedOutput``, a memfd the parent creates
before the fork), not through the pipe: pickling them, pushing them through the pipe and
unpickling cost ~0.1 s per million events; the pipe carries only the small rest.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import pickle
import select
import signal
import struct
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

IDLE = -1
# shared, and faulted in by one call rather than page by page where the platform can
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


class SharedOutput:
    """Memory shared with a forked child: the child writes arrays into it, the parent maps it.

    An anonymous memory file (``memfd_create``; a temporary file where that is missing),
    created before the fork so the child inherits the descriptor. The child (driver.lua's
    ``sort_output``) sizes it, maps it and writes the charge arrays into it in their final
    order; the parent maps whatever size it has once the child is done. ``close()`` in
    the parent releases it (nothing is left on any file system).
    """

    def __init__(self) -> None:
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("billing-rules-output", os.MFD_CLOEXEC)
        else:  # pragma: no cover - not Linux
            import tempfile

            self.fd, path = tempfile.mkstemp(prefix="billing-rules-")
            os.unlink(path)
        self._map: mmap.mmap | None = None
        self._base = 0

    def address(self, offset: int) -> int:
        """In the parent, after the child: where block ``offset`` is mapped (until ``close()``)."""
        if self._map is None:
            size = os.fstat(self.fd).st_size
            if not size:
                return 0
            self._map = mmap.mmap(self.fd, size, flags=_MAP_FLAGS)
            cell = ctypes.c_char.from_buffer(self._map)
            self._base = ctypes.addressof(cell)
            del cell
        return self._base + offset

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        os.close(self.fd)


@dataclass
class Outcome:
    kind: str  # "ok" | "timeout" | "crash"
    value: Any = None
    row: int = IDLE  # the row being evaluated when the child was stopped, or IDLE
    stalled_seconds: float = 0.0  # how long that row had been running
    detail: str = ""


class Progress:
    """A shared int32: the row the child is evaluating (IDLE between handlers)."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, mmap.PAGESIZE)
        self._cell = ctypes.c_int32.from_buffer(self._map)
        self.address = ctypes.addressof(self._cell)
        self.set(IDLE)

    def get(self) -> int:
        return int(self._cell.value)

    def set(self, row: int) -> None:
        self._cell.value = row


def run_with_deadline(fn: Callable[[], Any], seconds: float, progress: Progress) -> Outcome:
    """``fn`` in a forked child, killed at the deadline: one function of
    ``run_many_with_deadline``."""
    return run_many_with_deadline([fn], seconds, progress)[0]


def run_many_with_deadline(
    fns: Sequence[Callable[[], Any]], seconds: float, progress: Progress
) -> list[Outcome]:
    """``fns`` one after another in one forked child, each with a deadline of its own.

    A fork of a process with polars and Dagster loaded costs tens of milliseconds (page
    tables, copy-on-write faults, teardown), which a run over hundreds of small client-months
    paid once per client-month. Here the child runs every function and streams each result
    back as soon as it has it, so a function's deadline starts when the previous one
    finished, as it would in a child of its own. The child stops at the first function that
    raises; the parent kills it at a deadline. The outcomes returned are one per function
    run: all "ok" but maybe the last, "timeout" or "crash", after which the rest were not run.
    """
    running = RunningMany(fns, seconds, progress)
    try:
        return running.outcomes()
    except BaseException:
        # interrupted (the run is being stopped): the child would go on through the batches
        # left with no deadline over it
        running.cancel()
        raise


class RunningMany:
    """``run_many_with_deadline`` started: the child is forked now (by the calling thread)
    and a thread collects its results and enforces the deadlines, so the caller can do
    other work meanwhile (the charges asset finishes one group of client-months while the
    next is evaluated). ``outcomes()`` waits for them; ``cancel()`` kills the child."""

    def __init__(self, fns: Sequence[Callable[[], Any]], seconds: float, progress: Progress):
        self._n = len(fns)
        self._result: list[Outcome] | BaseException = []
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()  # cancel(): the collecting thread kills the child
        # set when the collecting thread is done. Waited on rather than Thread.join: a join
        # interrupted by a signal (a run being stopped) leaves the thread looking finished to
        # the next join and to is_alive() (CPython 3.11), while it still runs
        self._done = threading.Event()
        if not fns:
            return
        self._pid, self._fd = _fork_many(fns, progress)
        self._thread = threading.Thread(
            target=self._collect, args=(seconds, progress), name="engine-worker", daemon=True
        )
        self._thread.start()

    def _collect(self, seconds: float, progress: Progress) -> None:
        assert self._pid is not None
        try:
            self._result = _collect_many(
                self._pid, self._fd, self._n, seconds, progress, self._stop
            )
        except BaseException as exc:  # handed to outcomes()
            with contextlib.suppress(ChildProcessError):
                _kill(self._pid)
            self._result = exc
        finally:
            os.close(self._fd)
            self._done.set()

    def outcomes(self) -> list[Outcome]:
        if self._thread is not None:
            self._done.wait()
        if isinstance(self._result, BaseException):
            raise self._result
        return self._result

    def cancel(self) -> None:
        """Kills the child if it is still running (the caller is being stopped) and waits
        for that. The collecting thread does it: it alone reaps the child, so it never
        signals a pid that another process may have been given since."""
        if self._thread is not None:
            self._stop.set()
            self._done.wait()


def _fork_many(fns: Sequence[Callable[[], Any]], progress: Progress) -> tuple[int, int]:
    """Forks the child that runs ``fns`` and streams their results; (its pid, the pipe)."""
    progress.set(IDLE)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        code = 0
        try:
            for fn in fns:
                progress.set(IDLE)
                try:
                    payload = pickle.dumps(("ok", fn()), protocol=pickle.HIGHEST_PROTOCOL)
                except BaseException:
                    payload = pickle.dumps(("crash", traceback.format_exc()))
                    code = 1
                _write_all(write_fd, struct.pack("<Q", len(payload)) + payload)
                if code:
                    break
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _collect_many(
    pid: int,
    fd: int,
    n: int,
    seconds: float,
    progress: Progress,
    stop: threading.Event | None = None,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    buffer = bytearray()
    deadline = time.monotonic() + seconds
    last_row, since = progress.get(), time.monotonic()
    while len(outcomes) < n:
        now = time.monotonic()
        row = progress.get()
        if row != last_row:
            last_row, since = row, now
        if now >= deadline:
            _kill(pid)
            outcomes.append(Outcome("timeout", row=row, stalled_seconds=now - since))
            return outcomes
        if stop is not None and stop.is_set():
            _kill(pid)
            outcomes.append(Outcome("crash", row=row, detail="cancelled"))
            return outcomes
        ready, _, _ = select.select([fd], [], [], min(0.05, deadline - now))
        if not ready:
            continue
        data = os.read(fd, 1 << 20)
        if not data:
            break  # the child is gone before sending every result
        buffer += data
        while len(buffer) >= 8:
            size = struct.unpack("<Q", buffer[:8])[0]
            if len(buffer) < 8 + size:
                break
            kind, value = pickle.loads(bytes(buffer[8 : 8 + size]))
            del buffer[: 8 + size]
            if kind != "ok":
                outcomes.append(Outcome("crash", row=progress.get(), detail=str(value)))
                _, _ = os.waitpid(pid, 0)
                return outcomes
            outcomes.append(Outcome("ok", value))
            # the next function starts now: its own deadline, its own stall clock
            deadline = time.monotonic() + seconds
            last_row, since = progress.get(), time.monotonic()
    if len(outcomes) == n:
        _reap(pid)
        return outcomes
    _, status = os.waitpid(pid, 0)
    outcomes.append(
        Outcome("crash", row=progress.get(), detail=f"worker exited with status {status}")
    )
    return outcomes


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _reap(pid: int) -> None:
    """Reaps a child that has sent its whole result: all it has left is its teardown
    (~40-60 ms for a worker that mapped ~1 GB), so a thread waits for it, not the batch."""
    done, _ = os.waitpid(pid, os.WNOHANG)
    if not done:
        threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
