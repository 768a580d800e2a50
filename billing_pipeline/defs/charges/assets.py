"""The ``charges`` asset: per billing month x client, the Lua rules over that month's activity."""

from contextlib import ExitStack
from dataclasses import dataclass

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    MultiToSingleDimensionPartitionMapping,
    asset,
)

from billing_pipeline import locks
from billing_pipeline.charges_cache import ChargesCache
from billing_pipeline.charging import (
    ChargesOutcome,
    ChargesPlan,
    finish_charges,
    plan_charges,
    write_charges,
)
from billing_pipeline.defs.code_versions import lua_code_version
from billing_pipeline.defs.isolation import attempt, fail_partitions
from billing_pipeline.defs.metadata import counts_table, md_table
from billing_pipeline.defs.partitions import month_client_partitions, split_key
from billing_pipeline.defs.resources import BillingSettings
from billing_pipeline.rules import RuleEngine
from billing_pipeline.rules.many import Evaluations
from billing_pipeline.runlog import RunLog

GROUP = "charges"


@asset(
    group_name=GROUP,
    partitions_def=month_client_partitions,
    deps=[
        AssetDep(
            "activity",
            partition_mapping=MultiToSingleDimensionPartitionMapping(
                partition_dimension_name="month"
            ),
        )
    ],
    backfill_policy=BackfillPolicy.single_run(),
    code_version=lua_code_version(),
    description=(
        "Charge lines of a client-month: the client's Lua rules (SPEC §5) over its activity; "
        "charges/month=YYYY-MM/client_id=ID/ and rule_errors/ (SPEC §4.1)."
    ),
    check_specs=[
        AssetCheckSpec(
            "ratecard_loaded",
            asset="charges",
            blocking=True,
            description="The client has a rate card that loads (SPEC §6).",
        ),
        AssetCheckSpec(
            "no_rule_errors",
            asset="charges",
            blocking=True,
            description="No handler raised, overran a budget or called charge() badly (SPEC §5).",
        ),
        AssetCheckSpec(
            "no_unpriced_charges",
            asset="charges",
            blocking=True,
            description="Every charge code is priced by the rate card version governing it.",
        ),
    ],
    kinds={"lua", "parquet"},
)
def charges(context: AssetExecutionContext, settings: BillingSettings):
    store = settings.store()
    cards, bad_cards = settings.ratecards()
    engine = RuleEngine(settings.paths().lua)
    log = RunLog(context.log, context.run_id)
    # Days whose inputs did not change come from the cache: a night costs what its new days do.
    cache = ChargesCache(store)
    fingerprints: dict[str, str] = {}  # each rules file read once per run
    outcomes: list[ChargesOutcome] = []
    missing: list[str] = []
    failed: list[str] = []
    group: list[_Planned] = []
    group_locks = ExitStack()  # the group's: held from the read to the write
    # started, not finished: the group whose Lua runs while the one before is finished
    outstanding: list[_Group] = []
    try:
        for key in context.partition_keys:
            month, client_id = split_key(key)
            card = cards.get(client_id)
            if card is None:
                problem = bad_cards.get(f"{client_id}.yaml") or bad_cards.get(f"{client_id}.yml")
                missing.append(f"- {client_id} {month}: {problem or 'no rate card'}")
                log.warning("charges.no_ratecard", client=client_id, month=month)
                continue
            lock = group_locks.enter_context(ExitStack())

            def take(month=month, client_id=client_id, lock=lock) -> bool:
                lock.enter_context(locks.charging(store, month, client_id, log=context.log.info))
                return True

            def plan(card=card, month=month) -> ChargesPlan:
                return plan_charges(store, engine, card, month, cache, fingerprints)

            fields = {"client": client_id, "month": month}
            planned = None
            if attempt(take, stage="charges", log=log, **fields):
                planned = attempt(plan, stage="charges", log=log, **fields)
            if planned is None:
                lock.close()
                failed.append(key)
                continue
            group.append(_Planned(key, planned, lock))
            if _full(group):
                # One worker at a time (they share the engine's progress cell): the group
                # before is collected first, then this group's Lua runs while that one is
                # finished and written, and while the next group is read.
                if outstanding:
                    outstanding[0].collect()
                outstanding.append(_start_group(group, engine, group_locks))
                group, group_locks = [], ExitStack()
                if len(outstanding) > 1:
                    _finish_group(outstanding[0], store, log, outcomes, failed)
                    outstanding.pop(0)
        if outstanding:
            outstanding[0].collect()
        outstanding.append(_start_group(group, engine, group_locks))
        group_locks = ExitStack()
        while outstanding:
            _finish_group(outstanding[0], store, log, outcomes, failed)
            outstanding.pop(0)
    except BaseException:
        for started in outstanding:
            started.cancel()
        group_locks.close()
        raise
    yield from _checks(outcomes, missing)
    if failed:
        done = [k for k in context.partition_keys if k not in failed]
        fail_partitions(context, "charges", done, failed)
    yield MaterializeResult(metadata=_metadata(outcomes))


# A group's batches go through one engine worker; its events are in memory at once. A fork
# costs ~40 ms of CPU: ~0.08 us per event at 500,000 events, and the run's peak memory
# stays that of two groups (one evaluated while the other is finished) however many events
# and clients it has.
GROUP_EVENTS = 500_000
GROUP_CLIENT_MONTHS = 100


@dataclass
class _Planned:
    key: str
    plan: ChargesPlan
    lock: ExitStack


@dataclass
class _Group:
    """A group of planned client-months whose batches are being evaluated."""

    planned: list[_Planned]
    batches: list[_Planned]  # those with a batch for the engine (not all days cached)
    evaluations: Evaluations | Exception  # the exception: the worker could not start
    locks: ExitStack
    results: list | None = None  # per batch, once collected

    def collect(self) -> list:
        """Waits for the worker; a result (or the exception in its place) per batch."""
        if self.results is None:
            if isinstance(self.evaluations, Exception):
                self.results = [self.evaluations] * len(self.batches)
            else:
                try:
                    self.results = self.evaluations.results()
                except Exception as exc:  # the worker itself: each client-month fails
                    self.results = [exc] * len(self.batches)
        return self.results

    def cancel(self) -> None:
        if isinstance(self.evaluations, Evaluations):
            self.evaluations.cancel()
        self.locks.close()


def _full(group: list[_Planned]) -> bool:
    events = sum(p.plan.job.events.height for p in group if p.plan.job is not None)
    return events >= GROUP_EVENTS or len(group) >= GROUP_CLIENT_MONTHS


def _start_group(group: list[_Planned], engine: RuleEngine, locks: ExitStack) -> _Group:
    """Encodes the group's batches and forks the worker that evaluates them; returns at once."""
    batches = [p for p in group if p.plan.job is not None]
    try:
        evaluations: Evaluations | Exception = Evaluations(
            engine, [p.plan.job for p in batches if p.plan.job is not None]
        )
    except Exception as exc:  # the worker itself (a fork refused): each client-month fails
        evaluations = exc
    return _Group(group, batches, evaluations, locks)


def _finish_group(
    group: _Group,
    store,
    log: RunLog,
    outcomes: list[ChargesOutcome],
    failed: list[str],
) -> None:
    """Waits for the group's evaluations, then finishes and writes each client-month on its
    own: one client's failure is that client's."""
    by_key = {p.key: r for p, r in zip(group.batches, group.collect(), strict=True)}
    computed: list[tuple[str, dict[str, object]]] = []  # logged together (see runlog)
    try:
        with group.locks:
            for planned in group.planned:
                outcome = _finish_one(planned, by_key.get(planned.key), store, log)
                if outcome is None:
                    # One client's failure is that client's: the others are still computed,
                    # and the step fails at the end naming it (fail_partitions).
                    failed.append(planned.key)
                    continue
                outcomes.append(outcome)
                computed.append(("charges.computed", _record(outcome)))
    finally:
        log.info_lines(computed)


def _finish_one(planned: _Planned, result, store, log: RunLog) -> ChargesOutcome | None:
    """The client-month finished and written, or None (logged) where that failed."""
    plan = planned.plan

    def work() -> ChargesOutcome:
        outcome = finish_charges(plan, result)
        write_charges(store, outcome)
        return outcome

    with planned.lock:
        return attempt(work, stage="charges", log=log, client=plan.card.client_id, month=plan.month)


def _record(outcome: ChargesOutcome) -> dict[str, object]:
    return {
        "client": outcome.client_id,
        "month": outcome.month,
        "events": outcome.events,
        "charges": outcome.charge_count,
        "rule_errors": outcome.errors.height,
        "unpriced": ",".join(sorted(outcome.unpriced)) or None,
        "days_cached": outcome.days_cached,
        "days_computed": outcome.days_computed,
    }


def _checks(outcomes: list[ChargesOutcome], missing: list[str]):
    yield AssetCheckResult(
        check_name="ratecard_loaded",
        passed=not missing,
        metadata={"problems": MetadataValue.md("\n".join(missing) or "_none_")},
    )
    with_errors = [o for o in outcomes if o.errors.height]
    preview = [
        o.errors.head(5).select("event_id", "event_type", "rules_file", "line", "message")
        for o in with_errors[:4]
    ]
    yield AssetCheckResult(
        check_name="no_rule_errors",
        passed=not with_errors,
        metadata={
            "client_months": MetadataValue.md(
                "\n".join(f"- {o.client_id} {o.month}: {o.errors.height}" for o in with_errors)
                or "_none_"
            ),
            "preview": md_table(preview[0]) if preview else MetadataValue.md("_none_"),
        },
    )
    unpriced = [o for o in outcomes if o.unpriced]
    yield AssetCheckResult(
        check_name="no_unpriced_charges",
        passed=not unpriced,
        metadata={
            "client_months": MetadataValue.md(
                "\n".join(
                    f"- {o.client_id} {o.month}: "
                    + ", ".join(f"{c} x{n}" for c, n in o.unpriced.items())
                    for o in unpriced
                )
                or "_none_"
            )
        },
    )


def _metadata(outcomes: list[ChargesOutcome]) -> dict:
    by_code: dict[str, int] = {}
    by_type: dict[str, int] = {}
    for o in outcomes:
        for code, n in o.charges_by_code().items():
            by_code[code] = by_code.get(code, 0) + n
        for event_type, n in o.events_by_type.items():
            by_type[event_type] = by_type.get(event_type, 0) + n
    metadata: dict = {
        "client_months": len(outcomes),
        "events": sum(o.events for o in outcomes),
        "charges": sum(o.charge_count for o in outcomes),
        "rule_errors": sum(o.errors.height for o in outcomes),
        "days_from_cache": sum(o.days_cached for o in outcomes),
        "days_computed": sum(o.days_computed for o in outcomes),
        "charges_by_code": counts_table(by_code, "charge_code"),
        "events_by_type": counts_table(by_type, "event_type"),
    }
    if len(outcomes) == 1:
        metadata["rules_file"] = outcomes[0].rules_file
        metadata["rules_sha256"] = outcomes[0].rules_sha256
        metadata["ratecard_sha256"] = outcomes[0].ratecard_sha256
    return metadata
