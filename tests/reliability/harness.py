"""``billing run`` in a child process on a tiny generated tree, and what its outputs hold.

The child runs in a session of its own so that a test can SIGKILL its whole process group
(the CLI, Dagster, and the rule engine's forked workers) the way an OOM killer or a power
cut would, with no cleanup code running.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from billing_pipeline.ingest.register import read_register
from billing_pipeline.storage import Store

PROJECT = Path(__file__).resolve().parents[2]
BILLING = [str(Path(sys.executable).parent / "billing")]
# Two billing months (the run crosses a month end), two clients, a few hundred events.
START, DAYS = date(2026, 10, 30), 3
RUN_START, RUN_END = date(2026, 10, 29), date(2026, 11, 3)
NO_TELEMETRY = "telemetry:\n  enabled: false\n"


@dataclass
class Tree:
    """A private copy of the generated inputs, its outputs and its Dagster instance."""

    root: Path
    dagster_yaml: str = NO_TELEMETRY

    @property
    def data(self) -> Path:
        return self.root / "warehouse"

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            BILLING_LANDING_DIR=str(self.root / "landing"),
            BILLING_RATECARDS_DIR=str(self.root / "ratecards"),
            BILLING_LUA_DIR=str(self.root / "lua"),
            BILLING_FINANCE_DIR=str(self.root / "finance"),
            BILLING_DATA_DIR=str(self.data),
            DAGSTER_HOME=str(self.home),
            PYTHONWARNINGS="ignore",
        )
        return env


def make_tree(source: Path, root: Path, dagster_yaml: str = NO_TELEMETRY) -> Tree:
    shutil.copytree(source, root)
    tree = Tree(root, dagster_yaml)
    tree.home.mkdir()
    (tree.home / "dagster.yaml").write_text(NO_TELEMETRY + dagster_yaml)
    return tree


def start_run(tree: Tree, *extra: str) -> subprocess.Popen:
    args = [*BILLING, "run", "--start", RUN_START.isoformat(), "--end", RUN_END.isoformat()]
    return subprocess.Popen(
        [*args, *extra],
        env=tree.env(),
        cwd=tree.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@dataclass
class Finished:
    returncode: int
    output: str
    seconds: float


def run(tree: Tree, *extra: str, timeout: float = 600) -> Finished:
    began = time.monotonic()
    child = start_run(tree, *extra)
    output, _ = child.communicate(timeout=timeout)
    return Finished(child.returncode, output, time.monotonic() - began)


def kill_after(child: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL the child's whole process group after ``seconds``; False if it ended first."""
    try:
        child.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return True
    finally:
        if child.stdout:
            child.stdout.close()


# --- outputs -------------------------------------------------------------------------------


def is_temp(path: Path) -> bool:
    """A temporary file of storage.atomic_path (``.NAME.XXXX.tmp``), never read as output."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def visible_files(data: Path) -> list[Path]:
    """Output files: not temporary files, not the (empty) lock files of billing_pipeline.locks."""
    return sorted(
        p
        for p in data.rglob("*")
        if p.is_file() and not is_temp(p) and p.relative_to(data).parts[0] != "_locks"
    )


def temp_files(data: Path) -> list[Path]:
    return sorted(p for p in data.rglob("*") if p.is_file() and is_temp(p))


def content(path: Path) -> bytes:
    """A file's bytes, except that a charges-cache entry drops ``activity_stat``: the size,
    mtime and inode of the activity file it was computed from, which every rewrite of that
    file changes by design (billing_pipeline/charges_cache.py); the charges' parts.json
    drops the stats of the part files, the reconciliation's day digests their keys (the
    stats of the files each digest was made from: billing_pipeline/reconciliation/
    day_digests.py), the order checks' states the stats of their days' activity files
    (reconciliation/order_leaks.py) and the quarantine summary's sums those of their files
    (reconciliation/summaries.py), and the landing files' identities keep only their paths
    and hashes."""
    data = path.read_bytes()
    if path.name == "entry.json" and "_cache" in path.parts:
        entry = json.loads(data)
        entry.pop("activity_stat")
        return json.dumps(entry, sort_keys=True).encode()
    if path.name == "digests.json" and "_cache" in path.parts:
        days = json.loads(data)["days"]
        return json.dumps({d: e["digest"] for d, e in days.items()}, sort_keys=True).encode()
    if path.name == "quarantine.parquet" and "_cache" in path.parts:
        # the quarantine summary's per-file sums: its rows, and its files' keys without the
        # stats of their quarantine files (reconciliation/summaries.py)
        meta = json.loads(pl.read_parquet_metadata(path)["billing.quarantine_sums"])
        files = {f: key[1:] for f, key in meta["files"].items()}
        rows = pl.read_parquet(path).write_json().encode()  # JSON: the examples are lists
        return rows + json.dumps(files, sort_keys=True).encode()
    if path.name.startswith("state-") and "orders" in path.parts and "_cache" in path.parts:
        # the order checks' state: its rows, and its days without their activity files' stats
        meta = json.loads(pl.read_parquet_metadata(path)["billing.order_leaks"])
        days = {d: {k: v for k, v in e.items() if k != "stat"} for d, e in meta["days"].items()}
        rows = pl.read_parquet(path).write_csv().encode()
        return rows + json.dumps(days, sort_keys=True).encode()
    if path.name == "landing_identities.parquet":
        return _landing_identities(path).write_csv().encode()
    if path.name == "parts.json" and "_state" in path.parts:
        # the charges parts' file stats (billing_pipeline/charging.py), likewise
        parts = json.loads(data)
        for part in parts.values():
            part.pop("stat")
        return json.dumps(parts, sort_keys=True).encode()
    return data


def snapshot(data: Path) -> dict[str, object]:
    """Every output file: the rows of a Parquet file, the bytes of any other; a client's
    dedup register as its rows, whichever segment files hold them (a rerun after a kill
    may cut them differently: billing_pipeline/ingest/register.py)."""
    out: dict[str, object] = {}
    for path in visible_files(data):
        key = path.relative_to(data).as_posix()
        if path.parent.parent.name == "register" and path.parent.parent.parent.name == "_staging":
            client_id = path.parent.name.removeprefix("client_id=")
            out[f"register of {client_id}"] = read_register(Store(data), client_id)
        elif path.name == "landing_identities.parquet":
            out[key] = _landing_identities(path)
        else:
            out[key] = pl.read_parquet(path) if path.suffix == ".parquet" else content(path)
    return out


def _landing_identities(path: Path) -> pl.DataFrame:
    """The landing files' paths and hashes, without their stats
    (billing_pipeline/ingest/landing.py), which any copy of the files changes."""
    return pl.read_parquet(path).select("source_file", "sha256")


def differences(expected: dict[str, object], actual: dict[str, object]) -> list[str]:
    """What differs between two snapshots, one line per file."""
    problems = [f"missing {k}" for k in sorted(expected.keys() - actual.keys())]
    problems += [f"unexpected {k}" for k in sorted(actual.keys() - expected.keys())]
    for key in sorted(expected.keys() & actual.keys()):
        want, got = expected[key], actual[key]
        if isinstance(want, pl.DataFrame):
            same = isinstance(got, pl.DataFrame) and want.equals(got)
        else:
            same = want == got
        if not same:
            problems.append(f"differs {key}")
    return problems


def file_bytes(data: Path) -> dict[str, bytes]:
    return {p.relative_to(data).as_posix(): content(p) for p in visible_files(data)}


def check_readable(path: Path) -> None:
    """Raise if the file is not a whole file of its kind."""
    if path.suffix == ".parquet":
        pl.read_parquet(path)
    elif path.suffix == ".json":
        json.loads(path.read_bytes())
    elif path.suffix == ".csv":
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            raise ValueError("CSV does not end with a newline")
        pl.read_csv(path, infer_schema=False)
    elif path.suffix == ".html" and not path.read_bytes().rstrip().endswith(b"</html>"):
        raise ValueError("HTML does not end with </html>")


@dataclass
class Reader:
    """Polls every visible output file while runs go on, as a downstream reader would."""

    data: Path
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Reader:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            if not self.data.exists():
                time.sleep(0.05)
                continue
            try:
                paths = visible_files(self.data)
            except FileNotFoundError:
                continue  # a directory removed while listing
            for path in paths:
                try:
                    check_readable(path)
                    self.checked += 1
                except FileNotFoundError:
                    continue  # removed between listing and reading: not a partial file
                except Exception as exc:
                    self.problems.append(f"{path.relative_to(self.data)}: {exc}")
            time.sleep(0.02)  # leave the CPU to the run under test


# --- deterministic kill points: the N-th commit (rename) of a file --------------------------


def _die_at_commit(n: int, func: Callable[..., object], args: tuple) -> None:
    real, count, lock = os.replace, [0], threading.Lock()

    def replace(src, dst) -> None:
        with lock:
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)

    os.replace = replace
    func(*args)


def killed_at_commit(n: int, func: Callable[..., object], *args: object) -> None:
    """Run ``func(*args)`` in a spawned child that SIGKILLs itself just before its n-th
    ``os.replace`` (the commit of storage.atomic_path). ``func`` must be importable."""
    child = multiprocessing.get_context("spawn").Process(
        target=_die_at_commit, args=(n, func, args)
    )
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL, f"expected a kill at commit {n}"


def commits_of(func: Callable[..., object], *args: object) -> list[str]:
    """Run ``func(*args)`` here; the targets of its commits, in order."""
    real, seen = os.replace, []

    def replace(src, dst) -> None:
        seen.append(str(dst))
        real(src, dst)

    os.replace = replace
    try:
        func(*args)
    finally:
        os.replace = real
    return seen
