"""Charges for one client-month: activity through the client's Lua rules (SPEC §5, §4.1).

``compute_charges`` writes nothing but, when given one, the per-day cache
(``charges_cache.py``), so ``billing rules diff`` can preview a rule fix with the same code
path the asset uses; ``write_charges`` then stores the datasets and a small state file the
invoice step reads (fingerprints, rule-error and unpriced counts).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import pairwise

import polars as pl

from billing_pipeline.charge_summaries import (
    codes_from_json,
    codes_to_json,
    summarize,
    totals_of,
)
from billing_pipeline.charges_cache import (
    ChargesCache,
    DayEntry,
    DayResult,
    day_key,
    read_hashed,
)
from billing_pipeline.config import DataPath
from billing_pipeline.ingest.activity import read_activity
from billing_pipeline.months import first_day, month_days
from billing_pipeline.pricing import price_totals
from billing_pipeline.ratecards import RateCard
from billing_pipeline.rules import (
    CHARGES_SCHEMA,
    ERRORS_SCHEMA,
    Evaluation,
    RateVersion,
    RuleEngine,
    RuleLoadError,
)
from billing_pipeline.rules.many import Job, evaluate_many
from billing_pipeline.rules.model import EVENT_COLUMNS
from billing_pipeline.storage import (
    Store,
    atomic_path,
    check_client_id,
    check_month,
    child_files,
    file_stat,
    file_stats,
    read_parquet,
    remove_file,
    remove_tree,
    scan_parquet,
    write_bytes,
    write_parquet,
)


@dataclass
class ChargesOutcome:
    month: str  # YYYY-MM
    client_id: str
    rules_file: str
    rules_sha256: str
    ratecard_sha256: str
    events_sha256: str
    events: int
    events_by_type: dict[str, int]
    days: list[DayResult]  # the month's activity days, in order
    errors: pl.DataFrame
    store: Store
    unpriced: dict[str, int] = field(default_factory=dict)
    days_cached: int = 0  # activity days whose charges came from the cache
    days_computed: int = 0  # activity days that went through the engine

    @property
    def blocked(self) -> bool:
        """SPEC §5: rule errors or unpriced charges mean no invoice for this client-month."""
        return self.errors.height > 0 or bool(self.unpriced)

    @property
    def charge_count(self) -> int:
        return sum(r.entry.charges for r in self.days)

    def charges_by_code(self) -> dict[str, int]:
        by_code: dict[str, int] = {}
        for r in self.days:
            for code, summary in r.entry.codes.items():
                by_code[code] = by_code.get(code, 0) + int(summary["rows"])
        return dict(sorted(by_code.items()))

    @functools.cached_property
    def charges(self) -> pl.DataFrame:
        """The month's charge lines; days not in memory are read from their stored parts
        (which hold exactly them: that is why they were not read)."""
        frames = [
            r.charges
            if r.charges is not None
            else read_parquet(
                self.store.charges_part(self.month, self.client_id, r.day), CHARGES_SCHEMA
            )
            for r in self.days
        ]
        return _concat(frames, CHARGES_SCHEMA)

    def state(self) -> dict[str, object]:
        return {
            "month": self.month,
            "client_id": self.client_id,
            "rules_file": self.rules_file,
            "rules_sha256": self.rules_sha256,
            "ratecard_sha256": self.ratecard_sha256,
            "events_sha256": self.events_sha256,
            "events": self.events,
            "charges": self.charge_count,
            "rule_errors": self.errors.height,
            "unpriced": self.unpriced,
            # activity date -> the day key of its charges and their sums per code
            # (charge_summaries.py: what the invoice is made from)
            "days": {
                r.day.isoformat(): {"key": r.entry.key, "codes": r.entry.codes} for r in self.days
            },
        }


def events_fingerprint(events: pl.DataFrame) -> str:
    """sha256 over the month's events (id, type, date, payload), independent of row order."""
    digest = hashlib.sha256()
    if not events.is_empty():
        keys = _sorted_keys(events)
        # the same bytes as one update per key ("key\n"), hashed a block of keys at a time:
        # a Python call per event cost ~0.6 s per million; as bytes, not a Python str
        for start in range(0, keys.len(), _FINGERPRINT_BLOCK):
            block = keys.slice(start, _FINGERPRINT_BLOCK).str.join("\n").cast(pl.Binary)
            digest.update(block.item())
            digest.update(b"\n")
    return digest.hexdigest()


def _sorted_keys(events: pl.DataFrame) -> pl.Series:
    """Each event's key (id, type, date and payload joined by \\x1f), sorted.

    A key starts with its event id, so where no id equals or begins another (distinct ids
    never do, whatever their characters, except one a prefix of another) two keys first
    differ inside their ids, and the keys sort as the ids: the rows are sorted by id, ~20
    bytes a row, and the keys built in that order (sorting the ~200-byte keys themselves
    cost ~40 % more of the fingerprint). In sorted ids an id that begins another is followed
    by one it begins, so comparing neighbours is enough. Any other ids: the keys are sorted.
    """
    key = pl.concat_str(
        [
            pl.col("event_id"),
            pl.col("event_type"),
            pl.col("activity_date").cast(pl.Utf8),
            pl.col("payload"),
        ],
        separator="\x1f",
    )
    ordered = events.sort("event_id")
    ids = ordered["event_id"]
    before, after = ids.slice(0, ids.len() - 1), ids.slice(1)
    if ids.null_count() == 0 and (after > before).all() and not after.str.starts_with(before).any():
        return ordered.select(key).to_series()
    return events.select(key.sort()).to_series()


_FINGERPRINT_BLOCK = 65_536


def month_events_sha256(day_fingerprints: dict[date, str]) -> str:
    """The month's events fingerprint from its days' (``events_fingerprint`` of each day).

    Composed from days so that a night with the cache reads only the days that changed; a
    month without events gives the same value as ``events_fingerprint`` of no events.
    """
    digest = hashlib.sha256()
    for day in sorted(day_fingerprints):
        digest.update(f"{day.isoformat()} {day_fingerprints[day]}\n".encode())
    return digest.hexdigest()


def compute_charges(
    store: Store,
    engine: RuleEngine,
    card: RateCard,
    month: str,
    cache: ChargesCache | None = None,
) -> ChargesOutcome:
    """The client-month's charges; with ``cache``, days whose inputs are unchanged are reused.

    Days not in the cache (all of them without one) go through the engine in one batch, in
    day order, as the whole month would; the result is split by activity date and cached.
    The charges asset does the same for many client-months at once (``plan_charges``, one
    ``evaluate_many`` for all their batches, then ``finish_charges`` for each).
    """
    plan = plan_charges(store, engine, card, month, cache)
    (result,) = evaluate_many(engine, [plan.job]) if plan.job else (None,)
    return finish_charges(plan, result)


@dataclass
class _Pending:
    day: date
    events: pl.DataFrame
    activity_sha256: str
    stat: list[int | str]
    key: str


@dataclass
class ChargesPlan:
    """A client-month read and looked up in the cache: what is left is its engine batch."""

    store: Store
    card: RateCard
    month: str
    cache: ChargesCache | None
    rules_sha256: str
    days: list[date]
    done: dict[date, DayResult]
    pending: list[_Pending]
    job: Job | None  # the batch for the engine, None when every day came from the cache
    stored: dict[str, list[int | str] | None]  # _stored_parts


def plan_charges(
    store: Store,
    engine: RuleEngine,
    card: RateCard,
    month: str,
    cache: ChargesCache | None = None,
    fingerprints: dict[str, str] | None = None,
) -> ChargesPlan:
    """Reads the client-month's activity days, taking from ``cache`` those it holds.

    A cached day is read only when its part of the charges dataset must be written again;
    otherwise its entry (counts, charges summed per code) is all the month needs of it.
    ``fingerprints`` (rules file -> fingerprint) lets a run over many client-months read each
    rules file once.
    """
    client_id = card.client_id
    versions = [RateVersion(v.effective_from, dict(v.params)) for v in card.versions]
    rules_sha = _rules_fingerprint(engine, card.rules, fingerprints)
    stored = _stored_parts(store, month, client_id)
    days = [d for d in month_days(month) if store.activity_file(d, client_id).exists()]
    done: dict[date, DayResult] = {}
    pending: list[_Pending] = []
    for day in days:
        path = store.activity_file(day, client_id)
        stat = file_stat(path)
        entry = cache.entry(client_id, day) if cache else None
        events = None
        if entry and entry.activity_stat == stat:
            activity_sha = entry.activity_sha256
        else:
            events, activity_sha = read_hashed(path, EVENT_COLUMNS)
        key = day_key(
            activity_sha256=activity_sha,
            card=card,
            day=day,
            rules_sha256=rules_sha,
            budgets=engine.budgets,
        )
        if cache and entry and entry.key == key:
            in_dataset = _part_key(day, key) in stored
            try:
                errors = cache.load_errors(client_id, day, entry)
                charges = None if in_dataset else cache.load_charges(client_id, day, entry)
            except (OSError, pl.exceptions.PolarsError):
                pass  # a file lost or torn by a crash: compute the day again
            else:
                if entry.activity_stat != stat:
                    # rewritten with the same bytes (the activity asset rebuilds the days
                    # around those that got files): remember the new file's stat
                    entry.activity_stat = stat
                    cache.save_entry(client_id, day, entry)
                done[day] = DayResult(
                    day, entry, True, charges, errors, part_stat=stored.get(_part_key(day, key))
                )
                continue
        if events is None:
            events, _ = read_hashed(path, EVENT_COLUMNS)
        pending.append(_Pending(day, events, activity_sha, stat, key))
    if pending:
        # only the columns the engine reads (raw_line, source_file...: two thirds of the
        # bytes) are held while a group of client-months waits for its engine worker
        events = pl.concat([p.events for p in pending], how="vertical_relaxed")
    elif not days:
        # No activity at all: the engine still decides (a month without events and a
        # rules file that does not load has one error row naming the file).
        events = read_activity(store, client_id, [])
    else:
        events = None
    job = None if events is None else Job(events, client_id, card.rules, versions)
    return ChargesPlan(store, card, month, cache, rules_sha, days, done, pending, job, stored)


def _part_key(day: date, key: str) -> str:
    return f"{day.isoformat()} {key}"


def _stored_parts(store: Store, month: str, client_id: str) -> dict[str, list[int | str] | None]:
    """The days whose part the dataset holds as last written (``_part_key`` -> the part's
    ``file_stat``; None for a day without charges, which has no file).

    ``parts.json`` names each day's key and the stat of the part written for it; a part
    counts only if its file has that stat now (one listing). A run killed after replacing a
    part but before ``parts.json`` leaves a part it does not describe: its stat differs, so
    it is written again even if the inputs go back to the recorded key.
    """
    path = _parts_file(store, month, client_id)
    parts = json.loads(path.read_text()) if path.exists() else {}
    stats = file_stats(store.charges_dir(month, client_id))
    stored: dict[str, list[int | str] | None] = {}
    for day, part in parts.items():
        stat = stats.get(f"part-{day}.parquet")
        if (part["charges"] == 0 and stat is None) or (stat and stat == part.get("stat")):
            stored[_part_key(date.fromisoformat(day), part["key"])] = stat
    return stored


def _rules_fingerprint(engine: RuleEngine, rules_file: str, memo: dict[str, str] | None) -> str:
    if memo is not None and rules_file in memo:
        return memo[rules_file]
    try:
        sha = engine.fingerprint(rules_file)
    except RuleLoadError:
        # A rules file that is missing or misnamed: evaluate raises it again and this
        # client's events are in error, not the run of every client's charges.
        sha = ""
    if memo is not None:
        memo[rules_file] = sha
    return sha


def finish_charges(plan: ChargesPlan, result: Evaluation | Exception | None) -> ChargesOutcome:
    """The outcome of a planned client-month from its batch's ``evaluate_many`` result (None
    when it had no batch); caches the days computed."""
    card, cache = plan.card, plan.cache
    client_id = card.client_id
    done = dict(plan.done)
    charges = errors = None
    if plan.job is not None:
        charges, errors = _frames(plan.job, result)
    if plan.pending:
        charges_by_day = _by_day(charges)
        errors_by_day = _by_day(errors)
        summaries = summarize(charges, first_day(plan.month))
        for p in plan.pending:
            entry = DayEntry(
                key=p.key,
                activity_sha256=p.activity_sha256,
                activity_stat=p.stat,
                events=p.events.height,
                events_sha256=events_fingerprint(p.events),
                events_by_type=_by_type(p.events),
                codes=codes_to_json(summaries.get(p.day, {})),
            )
            day_result = DayResult(
                p.day,
                entry,
                False,
                charges_by_day.get(p.day, charges.clear()),
                errors_by_day.get(p.day, errors.clear()),
                part_stat=plan.stored.get(_part_key(p.day, p.key)),
            )
            if cache:
                day_result.encoded = cache.save(
                    client_id, p.day, entry, day_result.charges, day_result.errors
                )
            done[p.day] = day_result
    results = [done[d] for d in plan.days]
    if results:
        errors = _concat([r.errors for r in results], ERRORS_SCHEMA)
    elif errors is None:
        errors = pl.DataFrame(schema=ERRORS_SCHEMA)
    # Priced from each day's charges summed per code, as the invoice is: the month's lines
    # need not be read again to find what is unpriced.
    summed = {r.day: codes_from_json(r.entry.codes) for r in results}
    priced = price_totals(card, first_day(plan.month), totals_of(summed))
    by_type: dict[str, int] = {}
    for r in results:
        for event_type, n in r.entry.events_by_type.items():
            by_type[event_type] = by_type.get(event_type, 0) + n
    return ChargesOutcome(
        month=plan.month,
        client_id=client_id,
        rules_file=card.rules,
        rules_sha256=plan.rules_sha256,
        ratecard_sha256=card.sha256,
        events_sha256=month_events_sha256(
            {r.day: r.entry.events_sha256 for r in results if r.entry.events}
        ),
        events=sum(r.entry.events for r in results),
        events_by_type=dict(sorted(by_type.items())),
        days=results,
        errors=errors,
        store=plan.store,
        unpriced=dict(sorted(priced.unpriced.items())),
        days_cached=sum(r.cached for r in results),
        days_computed=sum(not r.cached for r in results),
    )


def _frames(job: Job, result: Evaluation | Exception | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    if isinstance(result, RuleLoadError):
        # The rules file itself is broken: every event is in error.
        return pl.DataFrame(schema=CHARGES_SCHEMA), _load_failure(
            job.events, job.rules_file, str(result)
        )
    if isinstance(result, Exception):
        raise result
    if result is None:
        raise ValueError("a planned batch was not evaluated")
    return result.charges, result.errors


def _by_day(frame: pl.DataFrame) -> dict[date, pl.DataFrame]:
    """Rows per activity date, keeping their order (the engine returns input order)."""
    if frame.is_empty():
        return {}
    days = frame["activity_date"]
    if days.null_count() == 0 and days.is_sorted():
        # The events go to the engine day after day, so each day's rows are one run: slices
        # of the frame, not copies (partition_by copied every column, ~1 s a night at 10M
        # events).
        changes = (days != days.shift()).fill_null(False).arg_true().to_list()
        starts = [0, *changes, days.len()]
        return {days[start]: frame.slice(start, end - start) for start, end in pairwise(starts)}
    parts = frame.partition_by("activity_date", as_dict=True, maintain_order=True)
    return {key[0]: part for key, part in parts.items()}


def _by_type(events: pl.DataFrame) -> dict[str, int]:
    if events.is_empty():
        return {}
    return dict(events["event_type"].value_counts().sort("event_type").iter_rows())


def _concat(frames: list[pl.DataFrame], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    frame = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=schema)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def _load_failure(events: pl.DataFrame, rules_file: str, message: str) -> pl.DataFrame:
    rows = events.select(
        "event_id",
        "activity_date",
        "event_type",
        pl.lit(rules_file).alias("rules_file"),
        pl.lit(None, pl.Int64).alias("line"),
        pl.lit(message).alias("message"),
    )
    if rows.is_empty():
        rows = pl.DataFrame(
            [
                {
                    "event_id": None,
                    "activity_date": None,
                    "event_type": None,
                    "rules_file": rules_file,
                    "line": None,
                    "message": message,
                }
            ],
            schema=dict(ERRORS_SCHEMA),
        )
    return rows.cast(dict(ERRORS_SCHEMA))


def write_charges(store: Store, outcome: ChargesOutcome) -> None:
    """Store the charges (one part per activity day with charges, SPEC §4.1) and
    rule_errors (only when there are any) partitions, then the state file.

    Only the days whose charges changed are written: a night rewrites its new day, not the
    month. Files the month should not have (a day gone, the old one-file layout's
    ``part-0.parquet``) are removed first, so a run killed midway may leave a day missing
    but never a line twice. ``parts.json``, written after the state file, names each part's
    key and file stat, so the next run writes again any part it does not describe
    (``_stored_parts``); a lost one only means writing the parts again.
    """
    month, client_id = outcome.month, outcome.client_id
    folder = store.charges_dir(month, client_id)
    wanted = {f"part-{r.day.isoformat()}.parquet" for r in outcome.days if r.entry.charges}
    for name in child_files(folder):
        if name not in wanted and not name.startswith("."):
            remove_file(folder / name)
    for r in outcome.days:
        if r.entry.charges and r.part_stat is None:
            if r.charges is None:
                raise ValueError(f"charges of {client_id} {r.day} are neither stored nor read")
            part = store.charges_part(month, client_id, r.day)
            if r.encoded is not None:  # encoded for the cache: the same bytes, not encoded again
                write_bytes(r.encoded, part)
            else:
                write_parquet(r.charges, part)
            r.part_stat = file_stat(part)
        r.encoded = None
    errors_file = store.rule_errors_file(month, client_id)
    if outcome.errors.is_empty():
        remove_tree(errors_file.parent)
    else:
        write_parquet(outcome.errors, errors_file)
    # Compact: with ``indent`` json encodes in pure Python, ~4.4 ms a client-month for a
    # month's per-day sums (~230 KB at day 30), over a second a night at 300 clients; the C
    # encoder ~0.8 ms.
    state = json.dumps(outcome.state(), sort_keys=True, separators=(",", ":")) + "\n"
    write_bytes(state.encode(), charges_state_file(store, month, client_id))
    # Last, and apart from the state file (whose bytes are part of invoice and closing
    # fingerprints): file stats differ from one copy of the outputs to another.
    parts = {
        r.day.isoformat(): {"key": r.entry.key, "charges": r.entry.charges, "stat": r.part_stat}
        for r in outcome.days
    }
    with atomic_path(_parts_file(store, month, client_id), durable=False) as tmp:
        tmp.write_text(json.dumps(parts, sort_keys=True))


def read_charges(
    store: Store, month: str, client_id: str, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """A client-month's stored charges, in order (its parts by day); empty when none."""
    folder = store.charges_dir(month, client_id)
    parts = [
        folder / name
        for name in child_files(folder)
        if name.endswith(".parquet") and not name.startswith((".", "_"))
    ]
    if not parts:
        schema = CHARGES_SCHEMA if columns is None else {c: CHARGES_SCHEMA[c] for c in columns}
        return pl.DataFrame(schema=schema)
    scan = scan_parquet(parts)  # in order: one scan of the days, not a read per day
    return (scan if columns is None else scan.select(columns)).collect()


def _parts_file(store: Store, month: str, client_id: str) -> DataPath:
    return charges_state_file(store, month, client_id).with_name("parts.json")


def charges_written(store: Store, month: str, client_id: str) -> bool:
    """Has the charges asset stored this client-month (with or without charge lines)?"""
    return charges_state_file(store, month, client_id).exists()


def charges_state_file(store: Store, month: str, client_id: str):
    return (
        store.root
        / "_state"
        / "charges"
        / check_month(month)
        / check_client_id(client_id)
        / "inputs.json"
    )


def read_charges_state(store: Store, month: str, client_id: str) -> dict | None:
    path = charges_state_file(store, month, client_id)
    return json.loads(path.read_text()) if path.exists() else None
