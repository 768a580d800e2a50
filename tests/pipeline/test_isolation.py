"""One client's failure stays that client's (issue 8, item 7): the other clients' partitions
still bill, transient I/O errors are retried, and the pipeline's log records say which
client, month and run they are about."""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, MultiPartitionKey, instance_for_test

from billing_pipeline import charging
from billing_pipeline.charging import read_charges_state
from billing_pipeline.runlog import parse
from billing_pipeline.runner import RunReport, run_billing
from billing_pipeline.storage import Store
from tests.pipeline.conftest import START, BillingEnv

MONTH = f"{START:%Y-%m}"


@pytest.fixture
def sqlite_instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        yield instance


def _clients(env: BillingEnv) -> list[str]:
    return sorted(p.stem for p in (env.root / "ratecards").glob("*.yaml"))


def _run(instance: DagsterInstance) -> RunReport:
    return run_billing(START, START, instance=instance, progress=lambda _: None)


def _activity_events(env: BillingEnv, client: str) -> int:
    files = list((env.data / "activity").glob(f"activity_date={MONTH}-*/client_id={client}/*"))
    return sum(pl.read_parquet(f).height for f in files)


def _assert_billed(env: BillingEnv, report: RunReport, client: str) -> None:
    """The client-month was charged from all its activity and, with events, invoiced."""
    state = read_charges_state(Store(env.data), MONTH, client)
    assert state is not None, f"{client}: no charges written"
    assert state["events"] == _activity_events(env, client)
    (cm,) = [cm for cm in report.client_months if cm.client_id == client]
    assert cm.invoice == ("draft" if state["events"] else "none")


def _run_ok(report: RunReport, prefix: str) -> bool:
    (ok,) = [ok for name, _, ok, _ in report.runs if name.startswith(prefix)]
    return ok


def _charges_key(client: str) -> str:
    return str(MultiPartitionKey({"month": f"{MONTH}-01", "client": client}))


def test_a_missing_rules_file_fails_only_that_client(
    billing_env: BillingEnv, sqlite_instance: DagsterInstance
) -> None:
    clients = _clients(billing_env)
    victim = billing_env.root / "ratecards" / f"{clients[0]}.yaml"
    text = re.sub(r"^rules: .*\n", "", victim.read_text(), flags=re.M)
    victim.write_text(text + "rules: missing.lua\n")

    report = _run(sqlite_instance)

    # (The charges run fails on its blocking no_rule_errors check, as for any rule error.)
    (cm,) = [cm for cm in report.client_months if cm.client_id == clients[0]]
    assert cm.events > 0 and cm.rule_errors == cm.events and cm.invoice == "none"
    for client in clients[1:]:
        _assert_billed(billing_env, report, client)
    assert sum(cm.events for cm in report.client_months if cm.client_id != clients[0]) > 0


def test_an_io_error_on_one_clients_partition_fails_only_that_partition(
    billing_env: BillingEnv, sqlite_instance: DagsterInstance
) -> None:
    clients = _clients(billing_env)
    victim = clients[1]
    # A file where the victim's charges directory must go: a real, lasting I/O error
    # (FileExistsError from mkdir), for this client-month only.
    blocker = billing_env.data / "charges" / f"month={MONTH}" / f"client_id={victim}"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")

    report = _run(sqlite_instance)

    assert not _run_ok(report, "charges")  # the failure is seen...
    for client in clients:  # ...but costs only the victim its partition
        if client != victim:
            _assert_billed(billing_env, report, client)
    assert read_charges_state(Store(billing_env.data), MONTH, victim) is None
    materialized = sqlite_instance.get_materialized_partitions(AssetKey("charges"))
    assert {_charges_key(c) for c in clients if c != victim} <= materialized
    assert _charges_key(victim) not in materialized


def test_transient_write_errors_are_retried_with_backoff(
    billing_env: BillingEnv, sqlite_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = charging.write_parquet
    failures = {"left": 2}

    def flaky(frame, target: Path, durable: bool = True) -> None:
        # A network file system that fails twice with EIO, then recovers.
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.EIO, "Input/output error", str(target))
        real(frame, target, durable)

    monkeypatch.setattr(charging, "write_parquet", flaky)

    report = _run(sqlite_instance)

    assert failures["left"] == 0
    assert _run_ok(report, "charges")
    for client in _clients(billing_env):
        _assert_billed(billing_env, report, client)
    (run_id,) = [rid for name, rid, _, _ in report.runs if name.startswith("charges")]
    retries = [f for e, f in _records(sqlite_instance, run_id) if e == "charges.retry"]
    assert len(retries) == 2
    assert "in 0.20s" in retries[0]["detail"] and "in 0.40s" in retries[1]["detail"]


def _records(instance: DagsterInstance, run_id: str) -> list[tuple[str, dict[str, str]]]:
    """The pipeline's own log records of a run (Dagster's own events left out)."""
    found = []
    for entry in instance.all_logs(run_id):
        if entry.dagster_event is None and entry.user_message:
            found.append(parse(entry.user_message))
    return found


def test_log_records_carry_client_month_and_run_id(
    billing_env: BillingEnv, sqlite_instance: DagsterInstance
) -> None:
    report = _run(sqlite_instance)

    clients = set(_clients(billing_env))
    for name, run_id, _, _ in report.runs:
        records = _records(sqlite_instance, run_id)
        assert records, name
        for event, fields in records:
            assert fields["run_id"] == run_id, (event, fields)
        per_client = [f for e, f in records if not e.startswith("landing.")]
        if name.startswith(("charges", "invoices")):
            for fields in per_client:
                assert fields["month"] == MONTH and fields["client"] in clients, fields
            assert {f["client"] for f in per_client} == clients, name
        elif name.startswith("reconciliation"):
            assert {f["month"] for f in per_client} == {MONTH}
        else:  # ingest: the activity built, per client
            assert {f["client"] for f in per_client} <= clients and per_client
