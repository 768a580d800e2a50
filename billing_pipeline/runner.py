"""``billing run``: materialize ingestion, charges and invoices through Dagster, then report.

Runs go through the configured Dagster instance (``$DAGSTER_HOME``; SQLite unless its
``dagster.yaml`` says PostgreSQL), so they show in the UI afterwards. Four runs, each a
single run over a partition range rather than one run per partition:

1. ``landing_files`` and ``activity`` for the activity dates asked for;
2. ``charges`` for the client-months those dates touch;
3. ``invoices`` for the same client-months;
4. ``reconciliation`` of those months against the ledger reports.

Invoices are a run of their own on purpose: a blocking check that fails in run 2 (one
client's rule error) would otherwise skip every client's invoice in that run; the invoice
step gates each client-month itself.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from dagster import (
    AssetsDefinition,
    DagsterInstance,
    MultiPartitionKey,
    materialize,
)

from billing_pipeline.charging import read_charges_state
from billing_pipeline.closing import adjustment_targets
from billing_pipeline.config import Paths
from billing_pipeline.defs.charges.assets import charges
from billing_pipeline.defs.ingest.assets import activity, landing_files
from billing_pipeline.defs.invoices.assets import invoices
from billing_pipeline.defs.partitions import PARTITIONS_START, client_partitions, month_key
from billing_pipeline.defs.reconciliation.assets import reconciliation
from billing_pipeline.defs.resources import BillingSettings
from billing_pipeline.invoicing import invoice_status
from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.storage import Store

warnings.filterwarnings("ignore", message=".*is currently in beta.*")
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


class UsageError(Exception):
    """Bad arguments or configuration: exit status 2 with this message."""


@dataclass
class ClientMonth:
    client_id: str
    month: str
    events: int = 0
    charges: int = 0
    rule_errors: int = 0
    unpriced: dict[str, int] = field(default_factory=dict)
    invoice: str = "none"  # draft | final | none
    total: str = ""
    currency: str = ""

    @property
    def problem(self) -> str:
        parts = []
        if self.rule_errors:
            parts.append(f"{self.rule_errors} rule errors")
        if self.unpriced:
            parts.append("unpriced " + ",".join(sorted(self.unpriced)))
        return "; ".join(parts)


@dataclass
class RunReport:
    runs: list[tuple[str, str, bool, float]] = field(default_factory=list)  # name, id, ok, s
    client_months: list[ClientMonth] = field(default_factory=list)
    bad_ratecards: dict[str, str] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    reconciliation: dict[str, dict[str, int]] = field(default_factory=dict)  # month -> status -> n

    @property
    def runs_ok(self) -> bool:
        return all(ok for _, _, ok, _ in self.runs)

    @property
    def has_problems(self) -> bool:
        return (
            any(cm.problem for cm in self.client_months)
            or bool(self.bad_ratecards)
            or not self.runs_ok
            or any(check.endswith(".ledger_matches") for check in self.failed_checks)
        )


def months_between(start: date, end: date) -> list[str]:
    months, day = [], start.replace(day=1)
    while day <= end:
        months.append(f"{day:%Y-%m}")
        day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return months


def check_dates(start: date, end: date) -> None:
    first = date.fromisoformat(PARTITIONS_START)
    last = date.today() + timedelta(days=1)
    if start > end:
        raise UsageError(f"--start {start} is after --end {end}")
    if start < first or end > last:
        raise UsageError(
            f"dates must lie within {first} .. {last} (BILLING_PARTITIONS_START sets the first)"
        )


def run_billing(
    start: date,
    end: date,
    clients: Sequence[str] | None = None,
    instance: DagsterInstance | None = None,
    progress: Callable[[str], None] = print,
) -> RunReport:
    check_dates(start, end)
    paths = Paths.from_env()
    if not paths.ratecards.is_dir():
        raise UsageError(f"rate cards directory not found: {paths.ratecards}")
    cards, bad = load_ratecards(paths.ratecards)
    report = RunReport(bad_ratecards={name: str(err) for name, err in bad.items()})
    instance = instance or DagsterInstance.get()
    selected = sorted(clients) if clients else sorted(cards)
    unknown = [c for c in selected if c not in cards]
    if unknown:
        raise UsageError(f"no valid rate card for client(s): {', '.join(unknown)}")
    _register_clients(instance, sorted(cards))
    settings = BillingSettings()
    months = months_between(start, end)

    def step(name: str, assets: list[AssetsDefinition], selection, tags: dict[str, str]) -> None:
        progress(f"  {name} ...")
        began = time.monotonic()
        result = materialize(
            assets,
            selection=selection,
            instance=instance,
            resources={"settings": settings},
            tags={**tags, "billing/command": "run"},
            run_config=QUIET,
            raise_on_error=False,
        )
        seconds = time.monotonic() - began
        report.runs.append((name, result.run_id, result.success, seconds))
        for evaluation in result.get_asset_check_evaluations():
            if not evaluation.passed:
                report.failed_checks.append(
                    f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
                )
        state = "done" if result.success else "FAILED"
        progress(f"  {name}: {state} in {seconds:.1f}s (run {result.run_id[:8]})")

    step(
        f"ingest {start}..{end}",
        [landing_files, activity],
        None,
        {RANGE_START: start.isoformat(), RANGE_END: end.isoformat()},
    )
    if selected:
        for label, client_range in _client_ranges(instance, selected):
            tags = _month_client_range(months, client_range)
            step(f"charges {label} {months[0]}..{months[-1]}", [charges], None, tags)
            step(f"invoices {label} {months[0]}..{months[-1]}", [invoices], None, tags)
        # A closed month re-charged here bills its corrections on the next open invoice.
        pairs = [(month, client) for month in months for client in selected]
        for month, targets in adjustment_targets(Store(paths.data), pairs).items():
            if month in months:
                continue  # rendered above, after this run's charges
            for client in targets:
                tags = _month_client_range([month], (client, client))
                step(f"invoices {client} {month} (adjustments)", [invoices], None, tags)
    month_range = {RANGE_START: month_key(months[0]), RANGE_END: month_key(months[-1])}
    step(f"reconciliation {months[0]}..{months[-1]}", [reconciliation], None, month_range)
    store = Store(paths.data)
    for month in months:
        for client_id in selected:
            report.client_months.append(
                _summarize(store, cards[client_id].currency, month, client_id)
            )
        path = store.reconciliation_dir(month) / "reconciliation.csv"
        if path.exists():
            with path.open(newline="") as handle:
                statuses = [row["status"] for row in csv.DictReader(handle)]
            report.reconciliation[month] = dict(sorted(Counter(statuses).items()))
    return report


def instance_server(instance: DagsterInstance) -> str | None:
    """``host:port/database`` of a PostgreSQL instance's storage (no credentials), else None."""
    url = getattr(instance.run_storage, "postgres_url", None)
    if not url:
        return None
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


def instance_unreachable(exc: BaseException, server: str | None = None) -> str | None:
    """A one-line message when ``exc`` is the Dagster instance's database going away (a
    PostgreSQL outage mid-run), naming the server; None for any other error."""
    from sqlalchemy.exc import DatabaseError, OperationalError

    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]

    def from_postgres(e: BaseException) -> bool:
        # Only the PostgreSQL driver's errors: a SQLite error (a schema created twice, say)
        # is a bug to see in full, not an outage.
        if type(e).__name__ == "DagsterPostgresException":
            return True
        if isinstance(e, OperationalError | DatabaseError):
            return type(e.orig).__module__.split(".")[0] == "psycopg2"
        return type(e).__module__.split(".")[0] == "psycopg2"

    if not any(from_postgres(e) for e in chain):
        return None
    cause = next((e for e in reversed(chain) if str(e).strip()), exc)
    detail = str(cause).strip().splitlines()[0]
    where = f" at {server}" if server else ""
    return (
        f"the Dagster instance's database{where} is unreachable ({detail}); the files written so "
        "far are complete: run the same command again once the database is back"
    )


def _register_clients(instance: DagsterInstance, clients: list[str]) -> None:
    assert client_partitions.name is not None
    existing = set(instance.get_dynamic_partitions(client_partitions.name))
    new = [c for c in clients if c not in existing]
    if new:
        instance.add_dynamic_partitions(client_partitions.name, new)


def _client_ranges(
    instance: DagsterInstance, selected: list[str]
) -> list[tuple[str, tuple[str, str]]]:
    """All clients as one range when every registered client is selected, else one each."""
    assert client_partitions.name is not None
    order = instance.get_dynamic_partitions(client_partitions.name)
    if set(order) == set(selected):
        return [(f"{len(order)} clients", (order[0], order[-1]))]
    return [(client, (client, client)) for client in selected]


def _month_client_range(months: list[str], clients: tuple[str, str]) -> dict[str, str]:
    first = MultiPartitionKey({"month": month_key(months[0]), "client": clients[0]})
    last = MultiPartitionKey({"month": month_key(months[-1]), "client": clients[1]})
    return {RANGE_START: str(first), RANGE_END: str(last)}


def _summarize(store: Store, currency: str, month: str, client_id: str) -> ClientMonth:
    summary = ClientMonth(client_id, month, currency=currency)
    state = read_charges_state(store, month, client_id)
    if state is not None:
        summary.events = state["events"]
        summary.charges = state["charges"]
        summary.rule_errors = state["rule_errors"]
        summary.unpriced = state["unpriced"]
    status = invoice_status(store, month, client_id)
    if status is not None:
        document = json.loads((store.invoice_dir(month, client_id) / "invoice.json").read_text())
        summary.invoice, summary.total = status, document["total"]
    return summary


def format_report(report: RunReport) -> str:
    rows = [("client", "month", "events", "charges", "invoice", "total", "problems")]
    for cm in report.client_months:
        total = f"{cm.total} {cm.currency}" if cm.total else ""
        rows.append(
            (cm.client_id, cm.month, str(cm.events), str(cm.charges), cm.invoice, total, cm.problem)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    numeric = {2, 3, 5}
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in numeric and n else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for month, counts in sorted(report.reconciliation.items()):
        shown = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no rows"
        lines.append(f"reconciliation {month}: {shown}")
    for name, problem in sorted(report.bad_ratecards.items()):
        lines.append(f"rate card {name} refused: {problem.splitlines()[0]}")
    if report.failed_checks:
        lines.append("failed checks: " + ", ".join(sorted(set(report.failed_checks))))
    return "\n".join(lines)
