"""Run a function in a forked child with a wall-clock deadline.

Some runaway rule code cannot be stopped from inside Lua: a pattern match that backtracks
for ever is a single C call, so no instruction hook fires. The only reliable stop is a
process that can be killed, so each batch runs in a forked child. Fork (not spawn) means the
child inherits the batch's column buffers copy-on-write: nothing is serialized on the way
in, and the child touches only Python and lupa (never polars' thread pool).

The child reports the row it is evaluating through a shared page, so after a kill the parent
knows which event was running and for how long.
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
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

IDLE = -1


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
    progress.set(IDLE)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        code = 0
        try:
            payload = pickle.dumps(("ok", fn()), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:
            payload = pickle.dumps(("crash", traceback.format_exc()))
            code = 1
        try:
            _write_all(write_fd, struct.pack("<Q", len(payload)) + payload)
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        return _collect(pid, read_fd, seconds, progress)
    finally:
        os.close(read_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _collect(pid: int, fd: int, seconds: float, progress: Progress) -> Outcome:
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    last_row, since = progress.get(), time.monotonic()
    while True:
        now = time.monotonic()
        row = progress.get()
        if row != last_row:
            last_row, since = row, now
        if now >= deadline:
            _kill(pid)
            return Outcome("timeout", row=row, stalled_seconds=now - since)
        ready, _, _ = select.select([fd], [], [], min(0.05, deadline - now))
        if not ready:
            continue
        data = os.read(fd, 1 << 20)
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    raw = b"".join(chunks)
    if len(raw) < 8 or len(raw) - 8 != struct.unpack("<Q", raw[:8])[0]:
        return Outcome("crash", row=progress.get(), detail=f"worker exited with status {status}")
    kind, value = pickle.loads(raw[8:])
    if kind != "ok":
        return Outcome("crash", row=progress.get(), detail=str(value))
    return Outcome("ok", value)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
