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
from billing_pipeline.runlog import records
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


def test_one_bad_night_costs_each_failing_client_only_its_own_partition(
    billing_env: BillingEnv, sqlite_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One real run with three kinds of trouble at once (one Dagster run costs ~40 s here):

    - client 0's card names a rules file that does not exist (it used to raise out of
      compute_charges and fail every client's charges);
    - client 1's charges directory cannot be created (a file is in the way: a lasting
      I/O error, FileExistsError);
    - the charges writer fails twice with EIO, then recovers (a transient error);
    - client 2 must be charged and invoiced as if nothing happened.
    """
    clients = _clients(billing_env)
    assert len(clients) == 3
    no_rules, blocked, bystander = clients
    card = billing_env.root / "ratecards" / f"{no_rules}.yaml"
    text = re.sub(r"^rules: .*\n", "", card.read_text(), flags=re.M)
    card.write_text(text + "rules: missing.lua\n")
    blocker = billing_env.data / "charges" / f"month={MONTH}" / f"client_id={blocked}"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    real = charging.write_parquet
    failures = {"left": 2}

    def flaky(frame, target: Path, durable: bool = True) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.EIO, "Input/output error", str(target))
        real(frame, target, durable)

    monkeypatch.setattr(charging, "write_parquet", flaky)

    report = _run(sqlite_instance)

    # The missing rules file: every event of that client is a rule error, no invoice.
    (cm,) = [cm for cm in report.client_months if cm.client_id == no_rules]
    assert cm.events > 0 and cm.rule_errors == cm.events and cm.invoice == "none"
    # The lasting I/O error: that partition alone fails; the run says so.
    assert not _run_ok(report, "charges")
    assert read_charges_state(Store(billing_env.data), MONTH, blocked) is None
    materialized = sqlite_instance.get_materialized_partitions(AssetKey("charges"))
    assert _charges_key(blocked) not in materialized
    assert {_charges_key(no_rules), _charges_key(bystander)} <= materialized
    # The bystander is charged from all its activity and invoiced.
    _assert_billed(billing_env, report, bystander)
    # The transient errors were retried with backoff and logged.
    assert failures["left"] == 0
    (run_id,) = [rid for name, rid, _, _ in report.runs if name.startswith("charges")]
    records = _records(sqlite_instance, run_id)
    retries = [f for e, f in records if e == "charges.retry"]
    assert len(retries) == 2
    assert "in 0.20s" in retries[0]["detail"] and "in 0.40s" in retries[1]["detail"]
    (failed,) = [f for e, f in records if e == "charges.failed"]
    assert failed["client"] == blocked and failed["month"] == MONTH
    assert "FileExistsError" in failed["error"]


def _records(instance: DagsterInstance, run_id: str) -> list[tuple[str, dict[str, str]]]:
    """The pipeline's own log records of a run (Dagster's own events left out)."""
    found = []
    for entry in instance.all_logs(run_id):
        if entry.dagster_event is None and entry.user_message:
            found.extend(records(entry.user_message))
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


def test_client_months_in_several_engine_groups_bill_as_one_by_one(
    billing_env: BillingEnv, sqlite_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The charges asset evaluates client-months in groups (one engine worker each); groups
    of two over three clients give each client-month what ``compute_charges`` alone gives,
    and every lock is let go (the invoices run after it takes them again)."""
    from billing_pipeline.config import Paths
    from billing_pipeline.defs.charges import assets
    from billing_pipeline.ratecards import load_ratecards
    from billing_pipeline.rules import RuleEngine

    monkeypatch.setattr(assets, "GROUP_CLIENT_MONTHS", 2)
    report = _run(sqlite_instance)
    assert report.runs_ok, report.runs
    paths = Paths.from_env()
    cards, _ = load_ratecards(paths.ratecards)
    store = Store(billing_env.data)
    for client in _clients(billing_env):
        _assert_billed(billing_env, report, client)
        alone = charging.compute_charges(store, RuleEngine(paths.lua), cards[client], MONTH)
        written = charging.read_charges(store, MONTH, client)
        assert written.equals(alone.charges), client
        assert alone.charges.height > 0
