"""How `billing run` meets its Dagster instance: a PostgreSQL outage is one clear line, any
other database error is not mistaken for one, and runs started at once on a new SQLite home
do not trip over each other creating its schema."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import psycopg2
from sqlalchemy.exc import OperationalError

from billing_pipeline.cli import _open_instance
from billing_pipeline.runner import instance_unreachable


def _raised_from(cause: BaseException) -> RuntimeError:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("step failed") from inner
    except RuntimeError as outer:
        return outer


def test_a_postgres_connection_lost_is_one_line_naming_the_server() -> None:
    lost = OperationalError(
        "SELECT 1", {}, psycopg2.OperationalError("server closed the connection")
    )
    message = instance_unreachable(_raised_from(lost), "db.example:5432/billing")
    assert message is not None
    assert message.startswith("the Dagster instance's database at db.example:5432/billing ")
    assert "server closed the connection" in message
    assert "\n" not in message


def test_a_sqlite_error_is_not_taken_for_an_outage() -> None:
    twice = OperationalError(
        "CREATE TABLE", {}, sqlite3.OperationalError("table secondary_indexes already exists")
    )
    assert instance_unreachable(_raised_from(twice), None) is None
    assert instance_unreachable(_raised_from(ValueError("bad")), None) is None


def _open(home: str, barrier, results) -> None:
    import os

    os.environ["DAGSTER_HOME"] = home
    barrier.wait()
    try:
        instance = _open_instance(Path(home))
        instance.get_runs(limit=1)
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


def test_runs_opening_a_new_sqlite_home_at_once_all_get_the_instance(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    context = multiprocessing.get_context("spawn")
    count = 4
    barrier, results = context.Barrier(count), context.Queue()
    workers = [
        context.Process(target=_open, args=(str(home), barrier, results)) for _ in range(count)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    outcomes = [results.get(timeout=5) for _ in range(count)]
    assert outcomes == ["ok"] * count
