"""Sensors: what landed, new clients, changed inputs, and the stage-to-stage chain.

The chain (each sensor reads the materializations of the stage before it, in storage order,
from runs that have *finished*, and keeps its place in its cursor):

    landing_files  --billing_activity_sensor-->       activity  (dates the landing run touched)
    activity       --billing_charges_sensor-->        charges   (their months x all clients)
    charges        --billing_invoices_sensor-->       invoices  (those client-months, plus
                                                                  the open month that carries
                                                                  adjustments of closed ones)
    invoices       --billing_reconciliation_sensor--> reconciliation (months with a ledger)

Reading asset events, not run statuses, means the chain also follows runs it did not launch:
a backfill from the UI asset graph, or ``billing run``. ``billing run`` (tag
``billing/command=run``) materializes its own next stages, so for its runs the sensors add
only what it does not do itself: activity dates touched outside its range, and adjustment
months. Runs that already included the next asset (a UI backfill of charges and invoices)
are treated the same way.

A sensor without a cursor starts at the latest event: turning the sensors on for an
instance with a history does not replay that history.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import date, timedelta

from dagster import (
    AssetKey,
    AssetObservation,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from billing_pipeline import closing
from billing_pipeline.defs.code_versions import lua_tree_hash
from billing_pipeline.defs.orchestration.jobs import (
    CAUSE_TAG,
    NIGHT_TAG,
    RANGE_END,
    RANGE_START,
    RUNNER_TAG,
    activity_job,
    charges_job,
    invoices_job,
    landing_job,
    reconciliation_job,
)
from billing_pipeline.defs.partitions import (
    client_partitions,
    daily_partitions,
    month_key,
    monthly_partitions,
)
from billing_pipeline.defs.resources import BillingSettings
from billing_pipeline.ingest.landing import landing_identities
from billing_pipeline.ingest.reading import landing_entries
from billing_pipeline.months import next_month
from billing_pipeline.ratecards import RateCardError
from billing_pipeline.storage import file_stat, read_parquet

CLIENT = client_partitions.name or "client"
LANDING = AssetKey("landing_files")
ACTIVITY = AssetKey("activity")
CHARGES = AssetKey("charges")
INVOICES = AssetKey("invoices")
RECONCILIATION = AssetKey("reconciliation")
LUA_RULES = AssetKey("lua_rules")
RATECARDS = AssetKey("ratecards")
BATCH = 5000  # events read per evaluation; the rest waits for the next tick


# ----------------------------------------------------------------------------- helpers


def _cursor(context: SensorEvaluationContext) -> dict:
    return json.loads(context.cursor) if context.cursor else {}


def _spans(items: Iterable[date]) -> list[tuple[date, date]]:
    """Sorted dates as runs of consecutive days: one partition range each."""
    spans: list[tuple[date, date]] = []
    for day in sorted(set(items)):
        if spans and day - spans[-1][1] == timedelta(days=1):
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return spans


def _month_spans(months: Iterable[str]) -> list[tuple[str, str]]:
    spans: list[tuple[str, str]] = []
    for month in sorted(set(months)):
        if spans and next_month(spans[-1][1]) == month:
            spans[-1] = (spans[-1][0], month)
        else:
            spans.append((month, month))
    return spans


def _existing_days(days: Iterable[date]) -> list[date]:
    first = date.fromisoformat(daily_partitions.get_first_partition_key() or "9999-12-31")
    last = date.fromisoformat(daily_partitions.get_last_partition_key() or "0001-01-01")
    return sorted(d for d in set(days) if first <= d <= last)


def _existing_months(months: Iterable[str]) -> list[str]:
    first = (monthly_partitions.get_first_partition_key() or "9999-12")[:7]
    last = (monthly_partitions.get_last_partition_key() or "0001-01")[:7]
    return sorted(m for m in set(months) if first <= m <= last)


def new_materializations(
    context: SensorEvaluationContext, key: AssetKey
) -> tuple[list[tuple[object, DagsterRun]], int, bool]:
    """Materializations of ``key`` after the cursor, from finished runs, in storage order.

    Returns (records with their runs, the storage id to resume after, whether this was the
    first evaluation -- which only records where history ends).
    """
    instance = context.instance
    after = _cursor(context).get("after")
    if after is None:
        latest = instance.fetch_materializations(key, limit=1, ascending=False).records
        return [], (latest[0].storage_id if latest else 0), True
    result = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=BATCH, ascending=True
    )
    taken: list[tuple[object, DagsterRun]] = []
    runs: dict[str, DagsterRun | None] = {}
    for record in result.records:
        if record.run_id not in runs:
            runs[record.run_id] = instance.get_run_by_id(record.run_id) if record.run_id else None
        run = runs[record.run_id]
        if run is not None and not run.is_finished:
            break  # wait for the run: its later events belong to the same batch
        if run is not None:
            taken.append((record, run))
        after = record.storage_id
    return taken, after, False


def run_materialized(instance, run: DagsterRun) -> dict[AssetKey, set[str]]:
    """The assets (and partitions) a finished run really materialized."""
    out: dict[AssetKey, set[str]] = {}
    connection = instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    )
    for record in connection.records:
        event = record.event_log_entry.dagster_event
        if event is None or event.asset_key is None:
            continue
        out.setdefault(event.asset_key, set()).add(event.partition or "")
    return out


def _chains_itself(instance, run: DagsterRun, downstream: AssetKey) -> bool:
    """``billing run`` runs, and runs that materialized the next asset themselves (a UI
    backfill of charges and invoices): the sensor need not redo their next stage."""
    return run.tags.get(RUNNER_TAG) == "run" or downstream in run_materialized(instance, run)


def _run_days(instance, run: DagsterRun) -> set[date]:
    """The activity dates a run materialized itself (``billing run`` does landing+activity)."""
    keys = run_materialized(instance, run).get(ACTIVITY, set())
    return {date.fromisoformat(k) for k in keys if len(k) == 10}


def _month_client_tags(first: str, last: str, clients: tuple[str, str]) -> dict[str, str]:
    return {
        RANGE_START: f"{clients[0]}|{month_key(first)}",
        RANGE_END: f"{clients[1]}|{month_key(last)}",
    }


def _result(requests: list[RunRequest], after: int, extra: dict | None = None, why: str = ""):
    cursor = json.dumps({"after": after, **(extra or {})}, sort_keys=True)
    if requests:
        return SensorResult(run_requests=requests, cursor=cursor)
    return SensorResult(skip_reason=why or "nothing new", cursor=cursor)


# ----------------------------------------------------------------------------- files


def landing_listing(settings: BillingSettings) -> dict[str, list[int | str]]:
    """Landing files by path relative to the landing dir, with their ``file_stat``."""
    return {source: file_stat(path) for source, path in landing_entries(settings.paths().landing)}


def manifest_paths(settings: BillingSettings) -> set[str]:
    path = settings.store().manifest_file()
    if not path.exists():
        return set()
    return set(read_parquet(path, columns=["source_file"])["source_file"].to_list())


@sensor(
    name="billing_landing_sensor",
    job=landing_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="New landing files (a path not in the manifest) or changed ones (size, mtime, "
    "ctime or inode moved since a landing run hashed them): one landing_files run; a late "
    "file's old dates follow through the chain.",
)
def billing_landing_sensor(context: SensorEvaluationContext, settings: BillingSettings):
    # A changed file is one whose stat moved since a landing run last hashed it (the same
    # test the run makes before hashing again), not since the last tick: no cursor holding
    # every file ever delivered, written on every tick. Until the run has taken it in, a
    # file stays new or changed under the same run key, which the daemon launches once.
    listing = landing_listing(settings)
    known = manifest_paths(settings)
    seen = {source: stat for source, (stat, _) in landing_identities(settings.store()).items()}
    new = sorted(p for p in listing if p not in known)
    changed = sorted(p for p in listing if p in known and p in seen and seen[p] != listing[p])
    if not new and not changed:
        return SkipReason("no new or changed landing files")
    pending = {p: listing[p] for p in new + changed}
    key = hashlib.sha256(json.dumps(pending, sort_keys=True).encode()).hexdigest()[:20]
    request = RunRequest(
        run_key=f"landing:{key}",
        tags={
            CAUSE_TAG: "landing_sensor",
            "billing/files": f"{len(new)} new, {len(changed)} changed",
        },
    )
    return SensorResult(run_requests=[request])


@sensor(
    name="billing_clients_sensor",
    job=landing_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="A new rate card registers its client in the dynamic `client` partitions and "
    "re-runs landing_files, which brings in the client's unknown_client lines (SPEC §4).",
)
def billing_clients_sensor(context: SensorEvaluationContext, settings: BillingSettings):
    try:
        cards, _ = settings.ratecards()
    except RateCardError as exc:
        return SkipReason(str(exc).splitlines()[0])
    existing = set(context.instance.get_dynamic_partitions(CLIENT))
    new = sorted(set(cards) - existing)
    if not new:
        return SkipReason("no new clients")
    return SensorResult(
        dynamic_partitions_requests=[client_partitions.build_add_request(new)],
        run_requests=[
            RunRequest(
                run_key=f"clients:{','.join(new)}",
                tags={CAUSE_TAG: "new_clients", "billing/clients": ",".join(new)[:200]},
            )
        ],
    )


def lua_tree_version(settings: BillingSettings) -> str:
    """The Lua tree's hash now (the charges code version is the same hash at load time)."""
    return lua_tree_hash(settings.paths().lua)


def ratecard_versions(settings: BillingSettings) -> dict[str, str]:
    root = settings.paths().ratecards
    if not root.is_dir():
        return {}
    out = {}
    for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
        out[path.stem] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return out


@sensor(
    name="billing_inputs_sensor",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Observes the Lua rules and each client's rate card: a changed file records a "
    "new data version of `lua_rules` / `ratecards` (per client), so the UI shows when an "
    "input changed. Nothing is re-billed by itself: a rule fix goes through billing rules "
    "diff and a backfill (docs/runbook.md).",
)
def billing_inputs_sensor(context: SensorEvaluationContext, settings: BillingSettings):
    previous = _cursor(context)
    lua = lua_tree_version(settings)
    cards = ratecard_versions(settings)
    registered = set(context.instance.get_dynamic_partitions(CLIENT))
    events = []
    if previous.get("lua") != lua:
        events.append(
            AssetObservation(LUA_RULES, tags={DATA_VERSION_TAG: lua}, metadata={"sha256": lua})
        )
    seen = previous.get("cards", {})
    for client_id, version in sorted(cards.items()):
        if client_id in registered and seen.get(client_id) != version:
            events.append(
                AssetObservation(
                    RATECARDS,
                    partition=client_id,
                    tags={DATA_VERSION_TAG: version},
                    metadata={"sha256": version},
                )
            )
    cursor = json.dumps(
        {"lua": lua, "cards": {c: v for c, v in cards.items() if c in registered}}, sort_keys=True
    )
    if not events:
        return SensorResult(skip_reason="rules and rate cards unchanged", cursor=cursor)
    return SensorResult(asset_events=events, cursor=cursor)


# ----------------------------------------------------------------------------- the chain


@sensor(
    name="billing_activity_sensor",
    job=activity_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="After landing_files: the activity dates it touched (its "
    "activity_dates_to_refresh metadata, late files included) and the night a nightly run "
    "bills, one run per range of consecutive dates.",
)
def billing_activity_sensor(context: SensorEvaluationContext):
    taken, after, first = new_materializations(context, LANDING)
    if first:
        return _result([], after, why="started: waiting for new landing_files runs")
    days: set[date] = set()
    causes = []
    for record, run in taken:
        if run.status == DagsterRunStatus.FAILURE:
            # A failed landing run failed its blocking conservation check (or crashed after
            # writing): as within one run, activity is not built from it.
            context.log.warning(f"landing run {run.run_id} failed: its dates are not rebuilt")
            continue
        metadata = record.asset_materialization.metadata  # type: ignore[attr-defined]
        text = metadata.get("activity_dates_to_refresh")
        touched = {date.fromisoformat(d) for d in (text.value if text else "").split(",") if d}
        if run.tags.get(NIGHT_TAG):
            touched.add(date.fromisoformat(run.tags[NIGHT_TAG]))
        touched -= _run_days(context.instance, run)
        days |= touched
        causes.append(run.run_id[:8])
    requests = [
        RunRequest(
            run_key=f"activity:{after}:{lo.isoformat()}",
            tags={
                RANGE_START: lo.isoformat(),
                RANGE_END: hi.isoformat(),
                CAUSE_TAG: "after:" + ",".join(sorted(set(causes)))[:200],
            },
        )
        for lo, hi in _spans(_existing_days(days))
    ]
    return _result(requests, after, why="no activity dates to refresh")


@sensor(
    name="billing_charges_sensor",
    job=charges_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="After activity: charges of the months of the refreshed dates, for every "
    "client, as month x client ranges (one run per range of consecutive months).",
)
def billing_charges_sensor(context: SensorEvaluationContext):
    taken, after, first = new_materializations(context, ACTIVITY)
    if first:
        return _result([], after, why="started: waiting for new activity")
    months = set()
    causes = set()
    for record, run in taken:
        if _chains_itself(context.instance, run, CHARGES) or not record.partition_key:  # type: ignore[attr-defined]
            continue
        months.add(record.partition_key[:7])  # type: ignore[attr-defined]
        causes.add(run.run_id[:8])
    clients = context.instance.get_dynamic_partitions(CLIENT)
    if not clients:
        return _result([], after, why="no clients registered yet")
    requests = [
        RunRequest(
            run_key=f"charges:{after}:{lo}",
            tags={
                **_month_client_tags(lo, hi, (clients[0], clients[-1])),
                CAUSE_TAG: "after:" + ",".join(sorted(causes))[:200],
            },
        )
        for lo, hi in _month_spans(_existing_months(months))
    ]
    return _result(requests, after, why="no months to charge")


@sensor(
    name="billing_invoices_sensor",
    job=invoices_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="After charges: the draft invoices of the client-months charged, and of the "
    "first open month after any closed month whose charges changed (its adjustment lines).",
)
def billing_invoices_sensor(context: SensorEvaluationContext, settings: BillingSettings):
    taken, after, first = new_materializations(context, CHARGES)
    if first:
        return _result([], after, why="started: waiting for new charges")
    store = settings.store()
    wanted: set[tuple[str, str]] = set()  # (month, client)
    causes = set()
    for record, run in taken:
        key = record.partition_key  # type: ignore[attr-defined]
        if not key or "|" not in key:
            continue
        client_id, month = key.split("|")[0], key.split("|")[1][:7]
        if not _chains_itself(context.instance, run, INVOICES):
            wanted.add((month, client_id))
            causes.add(run.run_id[:8])
        if closing.is_closed(store, month, client_id):
            wanted.add((closing.adjustment_target(store, client_id, month), client_id))
            causes.add(run.run_id[:8])
    clients = context.instance.get_dynamic_partitions(CLIENT)
    months = _existing_months(m for m, _ in wanted)
    if not months or not clients:
        return _result([], after, why="no invoices to refresh")
    chosen = {c for _, c in wanted}
    pair = (next(iter(chosen)),) * 2 if len(chosen) == 1 else (clients[0], clients[-1])
    requests = [
        RunRequest(
            run_key=f"invoices:{after}:{lo}",
            tags={
                **_month_client_tags(lo, hi, pair),  # type: ignore[arg-type]
                CAUSE_TAG: "after:" + ",".join(sorted(causes))[:200],
            },
        )
        for lo, hi in _month_spans(months)
    ]
    return _result(requests, after)


def ledger_listing(settings: BillingSettings) -> dict[str, str]:
    root = settings.paths().finance
    out = {}
    if root.is_dir():
        for path in sorted(root.glob("gl_revenue_????-??.csv")):
            stat = path.stat()
            out[path.name[len("gl_revenue_") : -len(".csv")]] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return out


@sensor(
    name="billing_reconciliation_sensor",
    job=reconciliation_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="After invoices, or when a ledger report arrives or changes: reconciliation "
    "of the months that have a ledger report (gl_revenue_YYYY-MM.csv) and invoices.",
)
def billing_reconciliation_sensor(context: SensorEvaluationContext, settings: BillingSettings):
    previous = _cursor(context)
    taken, after, first = new_materializations(context, INVOICES)
    ledgers = ledger_listing(settings)
    if first:
        return _result([], after, {"ledgers": ledgers}, "started: waiting for new invoices")
    months = set()
    seen = previous.get("ledgers", {})
    store = settings.store()
    for month, stamp in ledgers.items():
        if seen.get(month) != stamp and store.root.joinpath("invoices", month).is_dir():
            months.add(month)
    for record, run in taken:
        key = record.partition_key  # type: ignore[attr-defined]
        if key and "|" in key and not _chains_itself(context.instance, run, RECONCILIATION):
            months.add(key.split("|")[1][:7])
    months = {m for m in months if m in ledgers}
    requests = [
        RunRequest(
            run_key=f"reconciliation:{after}:{lo}:{hashlib.sha256(str(ledgers).encode()).hexdigest()[:8]}",
            tags={
                RANGE_START: month_key(lo),
                RANGE_END: month_key(hi),
                CAUSE_TAG: "after_invoices",
            },
        )
        for lo, hi in _month_spans(_existing_months(months))
    ]
    return _result(requests, after, {"ledgers": ledgers}, "no months with a ledger to reconcile")


SENSORS = [
    billing_landing_sensor,
    billing_clients_sensor,
    billing_inputs_sensor,
    billing_activity_sensor,
    billing_charges_sensor,
    billing_invoices_sensor,
    billing_reconciliation_sensor,
]
