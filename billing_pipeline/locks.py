"""Locks that keep two runs off the same outputs at once (a nightly run and a backfill).

Two locks, both ``flock(2)`` on files in ``$BILLING_LOCK_DIR`` (default ``<outputs>/_locks``):

- ``ingest``: held exclusively by ``landing_files`` and ``activity`` (they rewrite the
  manifest, the staging and the daily partitions), shared by ``charges`` while it reads a
  client-month's activity and writes its charges;
- ``client-month``: one per (month, client), held exclusively while charges, an invoice or a
  close reads and writes that client-month.

So two runs never interleave the files of one client-month, and charges computed from
activity that a concurrent ingestion is replacing cannot be written after the charges of the
newer activity. Locks are always taken in that order (ingest, then client-month).

The kernel releases an ``flock`` when its holder dies, so a run killed with SIGKILL never
leaves a lock behind (Dagster concurrency pools keep a killed run's slots until the run is
marked failed, which no daemon does for ``billing run``). The lock directory must be on a
local file system shared by every run (the daemon's and ``billing run``): with outputs on
object storage the default is a directory per outputs URI under this host's temp directory
(or ``BILLING_LOCK_DIR``, a local directory); runs on different hosts are not kept apart.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from billing_pipeline.storage import Store, host_dir, is_remote


def lock_dir(store: Store) -> Path:
    configured = os.environ.get("BILLING_LOCK_DIR")
    if configured:
        return Path(configured)
    if is_remote(store.root):
        # flock needs a local file: this keeps apart the runs of this host only (see the
        # module docstring).
        return host_dir(store.root, "locks")
    return store.root / "_locks"


@contextmanager
def _held(path: Path, shared: bool, log: Callable[[str], None]) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for lock {path.name}: another run holds it")
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # releases the lock


def ingest(
    store: Store, shared: bool = False, log: Callable[[str], None] = print
) -> AbstractContextManager[None]:
    """The ingestion lock (exclusive unless ``shared``)."""
    return _held(lock_dir(store) / "ingest.lock", shared, log)


def client_month(
    store: Store, month: str, client_id: str, log: Callable[[str], None] = print
) -> AbstractContextManager[None]:
    """The exclusive lock of one client-month."""
    return _held(lock_dir(store) / f"client-month.{month}.{client_id}.lock", False, log)


@contextmanager
def charging(
    store: Store, month: str, client_id: str, log: Callable[[str], None]
) -> Iterator[None]:
    """What charges hold for one client-month: ingest shared, then the client-month."""
    with ExitStack() as stack:
        stack.enter_context(ingest(store, shared=True, log=log))
        stack.enter_context(client_month(store, month, client_id, log))
        yield
