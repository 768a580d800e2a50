"""Instance outage (issue 8 item 4): the Dagster instance's PostgreSQL stops mid-run.

The test starts a throwaway PostgreSQL cluster of its own on a free port (never the shared
server on 5432), stops it (``pg_ctl stop -m immediate``, as a crash would) while ``billing
run`` is charging, expects a failure that says the instance's database is unreachable, then
starts it again and expects a rerun to finish with the reference outputs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.conftest import Reference
from tests.reliability.harness import Tree, differences, make_tree, run, snapshot, start_run

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A cluster in a temporary directory, run as the current user (or ``postgres`` when the
    current user is root, which initdb refuses)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="billing-outage-"))
        self.data = self.dir / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._do(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _do(self, *args: object) -> None:
        command = [str(a) for a in args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._do(
            PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-w", "-l", self.dir / "log", "start"
        )

    def stop(self) -> None:
        self._do(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN}")
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def _lines(child: subprocess.Popen, seen: list[str]) -> None:
    assert child.stdout is not None
    for text in child.stdout:
        seen.append(text)


@pytest.mark.slow
def test_postgres_stopped_mid_run_fails_clearly_and_a_rerun_recovers(
    reference: Reference, tiny_inputs: Path, tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    storage = f"storage:\n  postgres:\n    postgres_url: {private_postgres.url}\n"
    tree: Tree = make_tree(tiny_inputs, tmp_path / "tree", storage)
    child = start_run(tree)
    seen: list[str] = []
    reader = threading.Thread(target=_lines, args=(child, seen), daemon=True)
    reader.start()
    deadline = time.monotonic() + 600
    while not any(line.startswith("  charges") for line in seen):
        assert child.poll() is None, "".join(seen)
        assert time.monotonic() < deadline, "".join(seen)
        time.sleep(0.1)
    private_postgres.stop()
    child.wait(timeout=600)
    reader.join()
    output = "".join(seen)
    print(output)
    assert child.returncode == 2, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("billing run: the Dagster instance's database at "), output
    assert " is unreachable (" in last, output
    # Names the server whatever psycopg2 says (a refused connection, or one closed mid-query).
    assert f"at 127.0.0.1:{private_postgres.port}/" in last, output

    private_postgres.start()
    rerun = run(tree)
    assert rerun.returncode == 1, rerun.output  # 1: the ledger's planted differences
    assert differences(reference.outputs, snapshot(tree.data)) == []
