"""The landing-files stage: parse what is new, classify, and record every line's outcome.

One call brings the outputs up to date with the landing directory and the rate cards:

1. every landing file whose sha256 is not in the manifest is parsed (``validation``) and its
   lines stored; an unchanged file is never parsed again;
2. for every client that appears in a new file, the event ids the run brings (or whose
   lines a re-parsed file dropped) are classified again, and the client's register of
   every line it ever landed is updated (``register``, ``classify``); a client whose rate
   card appeared or vanished is classified again whole;
3. files whose line outcomes changed get their status, quarantine partition and manifest
   row rewritten.

The daily activity partitions are built from the stored lines and statuses by
``activity.build_activity``; this stage reports which UTC dates it touched so the caller
knows which partitions to re-materialize.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TypeVar

import polars as pl

from billing_pipeline.ingest.classify import (
    FINGERPRINT_OF,
    OUTCOME,
    REGISTER_SCHEMA,
    content_fingerprint,
    outcome_moved,
)
from billing_pipeline.ingest.reading import file_sha256, landing_entries
from billing_pipeline.ingest.register import registered, update_register
from billing_pipeline.ingest.validation import parse_batch
from billing_pipeline.storage import (
    Store,
    file_id,
    file_stat,
    read_parquet,
    remove_tree,
    scan_parquet,
    write_bytes,
    write_parquet,
)

_T = TypeVar("_T")

MANIFEST_SCHEMA = {
    "source_file": pl.Utf8,
    "file_id": pl.Utf8,
    "sha256": pl.Utf8,
    "lines": pl.Int64,
    "valid": pl.Int64,
    "duplicates": pl.Int64,
    "quarantined": pl.Int64,
    "blank_lines": pl.Int64,
    "problem": pl.Utf8,
    "utc_dates": pl.List(pl.Date),
}
STATUS_SCHEMA = {
    "source_line": pl.Int64,
    "client_id": pl.Utf8,
    "status": pl.Utf8,
    "reason": pl.Utf8,
    "detail": pl.Utf8,
}
QUARANTINE_SCHEMA = {
    "source_file": pl.Utf8,
    "source_line": pl.Int64,
    "raw_line": pl.Utf8,
    "reason": pl.Utf8,
    "detail": pl.Utf8,
    "client_id": pl.Utf8,
    "event_id": pl.Utf8,
    "event_type": pl.Utf8,
    "occurred_at": pl.Datetime("us", "UTC"),
    "activity_date": pl.Date,
}
CLIENTS_SCHEMA = {"client_id": pl.Utf8, "timezone": pl.Utf8}
# Files are parsed and validated in batches of about this much text (gzip counted as
# GZ_RATIO times its size): big enough that validation's fixed costs vanish, small enough
# that a batch's Python objects stay well under the memory budget.
BATCH_BYTES = 48 * 1024 * 1024
GZ_RATIO = 5
# Runs with more than PARALLEL_MIN_BYTES of text to parse use PARSE_WORKERS processes
# (spawned, not forked: Polars keeps threads), each parsing batches of POOL_BATCH_BYTES and
# writing their staging itself; smaller runs parse in-process (a spawn costs about a second).
PARSE_WORKERS = 2
PARALLEL_MIN_BYTES = 64 * 1024 * 1024
POOL_BATCH_BYTES = 16 * 1024 * 1024
# Each worker's Polars runs on one thread: the workers already fill the cores, and a parse
# batch is many small queries (Pandera's checks: ~14 collects a model) for which a second
# thread is dispatch overhead, four threads on two cores. Two workers parsing the 1M day
# side by side: 6.0-6.7 s wall for the pair with one thread each, 6.9-7.2 s with two.
WORKER_ENVIRONMENT = {"POLARS_MAX_THREADS": "1"}
REFRESH_THREADS = 2
REGISTER_THREADS = 2
# File-level problems (reading.py) a manifest row names, beyond the per-line reasons.
FILE_PROBLEMS = ("unreadable_file", "invalid_encoding", "line_too_long")


@dataclass
class LandingResult:
    files_seen: int = 0
    files_parsed: list[str] = field(default_factory=list)
    files_refreshed: list[str] = field(default_factory=list)
    clients_classified: list[str] = field(default_factory=list)
    touched_dates: set[date] = field(default_factory=set)
    # Activity dates to re-materialize: those of touched_dates, and those of earlier runs
    # whose activity has not been built since (see pending_activity).
    activity_dates: set[date] = field(default_factory=set)
    manifest: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=MANIFEST_SCHEMA))


# Columns of a staged line that a quarantine row carries (besides its file and activity date).
_QUARANTINE_SOURCE = (
    "source_line",
    "raw_line",
    "reason",
    "detail",
    "client_id",
    "event_id",
    "event_type",
    "occurred_at",
)


@dataclass
class _Fresh:
    """What the rest of the run needs of a file parsed in this run, kept so that its staged
    lines are not read back: its line count, UTC dates, and the lines parsing refused."""

    lines: int
    dates: set[date]
    refused: pl.DataFrame  # _QUARANTINE_SOURCE columns of the lines with a parse reason


@dataclass
class _Parsed:
    """One file parsed in this run: all the run needs of it (its lines are in staging)."""

    source: str
    sha: str
    file_id: str
    blank: int
    problem: str | None
    fresh: _Fresh


_Batch = tuple[list[_Parsed], dict[str, pl.DataFrame]]


def _parse_batch(batch: list[tuple[Path, str, str]], root: Path) -> _Batch:
    """Parse a batch of files and write their staged lines; what the run needs of each file,
    and the batch's register rows by client (compact: see ``_register_rows``).

    Runs in-process or in a worker process; what it returns is small next to the lines.
    Per-file facts are computed for the whole batch at once and looked up by file.
    """
    store = Store(root)
    parsed = parse_batch([(path, source) for path, source, _ in batch])
    lines = parsed.frame
    fids = [file_id(source) for _, source, _ in batch]
    # Sorted by client, in small row groups: the activity build reads a group of clients
    # at a time, and row-group statistics let it skip the other clients' rows.
    staged = lines.sort("file_pos", "client_id", "source_line", nulls_last=True).drop("file_pos")
    refused = lines.filter(pl.col("reason").is_not_null())
    refused_by_file = refused.partition_by("file_pos", as_dict=True, include_key=False)
    problems = dict(
        refused.filter(pl.col("reason").is_in(FILE_PROBLEMS))
        .group_by("file_pos")
        .agg(pl.col("reason").unique().sort().str.join(", "))
        .iter_rows()
    )
    dates = dict(
        lines.group_by("file_pos")
        .agg(pl.col("occurred_at").dt.date().drop_nulls().unique())
        .iter_rows()
    )
    empty = refused.clear().drop("file_pos")
    out = []
    offset = 0
    for pos, ((_, source, sha), fid, count, blank) in enumerate(
        zip(batch, fids, parsed.counts, parsed.blanks, strict=True)
    ):
        write_staging(
            staged.slice(offset, count), store.lines_file(fid), row_group_size=LINES_ROW_GROUP
        )
        offset += count
        out.append(
            _Parsed(
                source=source,
                sha=sha,
                file_id=fid,
                blank=blank,
                problem=problems.get(pos),
                fresh=_Fresh(
                    count,
                    set(dates.get(pos, ())),
                    refused_by_file.get((pos,), empty).select(_QUARANTINE_SOURCE),
                ),
            )
        )
    rows = _register_rows(lines, fids)
    del parsed, lines, staged
    by_client = {
        key[0]: part.drop("client_id")
        for key, part in rows.partition_by("client_id", as_dict=True).items()
    }
    return out, by_client


def _parse_all(todo: list[tuple[Path, str, str]], store: Store) -> Iterator[_Batch]:
    """Every file of ``todo`` parsed and staged, in ``todo`` order."""
    total = sum(_text_size(path) for path, _, _ in todo)
    if PARSE_WORKERS < 2 or total < PARALLEL_MIN_BYTES:
        for batch in _batches(todo, BATCH_BYTES):
            yield _parse_batch(batch, store.root)
        return
    batches = list(_batches(todo, POOL_BATCH_BYTES))
    done = 0
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(PARSE_WORKERS, mp_context=context) as pool:
            futures = submit_all(pool, _parse_batch, [(batch, store.root) for batch in batches])
            for future in futures:
                parsed = future.result()
                done += 1
                yield parsed
    except BrokenProcessPool:
        # A worker could not start or died (a main module that cannot be re-imported, the
        # OOM killer): what is left is parsed here, more slowly but the same.
        for batch in batches[done:]:
            yield _parse_batch(batch, store.root)


def submit_all(
    pool: ProcessPoolExecutor, fn: Callable[..., _T], calls: list[tuple]
) -> list[Future[_T]]:
    """``fn(*args)`` for each of ``calls`` in a pool of spawned parse workers, which the pool
    starts on the first submits: with WORKER_ENVIRONMENT, which only they get."""
    with _environment(WORKER_ENVIRONMENT):
        return [pool.submit(fn, *args) for args in calls]


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` inside (for processes started there), as before after."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ingest_landing(
    landing_dir: Path,
    store: Store,
    timezones: Mapping[str, str],
    log: Callable[[str], None] = lambda _: None,
    known: Collection[str] | None = None,
) -> LandingResult:
    """Bring manifest, statuses and quarantine up to date.

    ``known`` are the clients with a rate card file, good or refused (SPEC §4: only a client
    without one is ``unknown_client``); by default the clients of ``timezones``, which gives
    the billing zone of those whose zone is known (quarantine rows of the others get no
    activity date).
    """
    known_clients = set(timezones) if known is None else set(known) | set(timezones)
    result = LandingResult()
    old_manifest = read_parquet(store.manifest_file(), MANIFEST_SCHEMA)
    known_sha = dict(zip(old_manifest["source_file"], old_manifest["sha256"], strict=True))
    entries = landing_entries(landing_dir)
    result.files_seen = len(entries)

    new_rows: dict[str, list[pl.DataFrame]] = {}  # client -> its new register rows
    parsed: dict[str, tuple[int, str | None]] = {}  # file_id -> (blank lines, problem)
    fresh_files: dict[str, _Fresh] = {}
    todo = []
    sources = [source for source, _ in entries]
    paths = [path for _, path in entries]
    shas = _landing_shas(store, paths, sources)
    for path, source, sha in zip(paths, sources, shas, strict=True):
        if known_sha.get(source) == sha and _staged(store, file_id(source)):
            continue
        todo.append((path, source, sha))
    for files, by_client in _parse_all(todo, store):
        for parsed_file in files:
            fid = parsed_file.file_id
            parsed[fid] = (parsed_file.blank, parsed_file.problem)
            fresh_files[fid] = parsed_file.fresh
            known_sha[parsed_file.source] = parsed_file.sha
            result.files_parsed.append(parsed_file.source)
        if files:
            # One line per batch, not per file: in a Dagster run each is an event-log write
            # (~7 ms with SQLite: 1.2 s for a night of 168 files).
            lines = sum(f.fresh.lines for f in files)
            first, last = files[0].source, files[-1].source
            span = first if len(files) == 1 else f"{first} .. {last}"
            log(f"parsed {len(files)} files, {lines} lines: {span}")
        for client_id, rows in by_client.items():
            new_rows.setdefault(client_id, []).append(rows)
        del files, by_client
    changed_files = set(parsed)

    clients_before = read_parquet(store.clients_file(), CLIENTS_SCHEMA)
    # A client whose rate card appeared or vanished flips between valid and unknown_client;
    # a re-parsed file may have lost a client that its old version had.
    flipped = set(clients_before["client_id"]) ^ known_clients
    dropped = _clients_in(store, changed_files & set(old_manifest["file_id"]))
    fresh_by_client = new_rows
    affected = sorted(
        set(fresh_by_client) | _registered(store, flipped) | _registered(store, dropped)
    )

    # A run killed after writing a register but before the statuses, quarantine and
    # manifest that follow from it would leave them stale for good: the next run compares
    # against the new register and sees nothing to change. The journal names the clients
    # being reclassified until the manifest is written; a run that finds it takes every
    # row of those clients as changed, which rewrites all that depends on them.
    journal = _journal_file(store)
    interrupted = _read_journal(journal)
    affected = sorted(set(affected) | _registered(store, interrupted))
    if affected:
        write_bytes(json.dumps({"clients": affected}).encode(), journal)

    changed = list(changed_files)

    def update_one(client_id: str) -> pl.DataFrame:
        before, after = update_register(
            store,
            client_id,
            # popped here, so a client's new rows are let go once its register is updated
            _plain(fresh_by_client.pop(client_id, None)),
            changed,
            known=client_id in known_clients,
            whole=client_id in interrupted or client_id in flipped,
        )
        return _changes(
            before.clear() if client_id in interrupted else before, after, changed_files
        ).with_columns(client_id=pl.lit(client_id), file_id=pl.col("file_id").cast(pl.Categorical))

    # Clients' registers are independent and the work is mostly Polars, which releases the
    # GIL: two threads keep both cores busy (one client after another left one idle, ~13 s of
    # a 10M-event night at 300 clients). Results keep the clients' order.
    with ThreadPoolExecutor(REGISTER_THREADS) as threads:
        futures = [threads.submit(update_one, client_id) for client_id in affected]
        try:
            updates = [future.result() for future in futures]
        except BaseException:
            for future in futures:  # the journal makes the next run redo these clients
                future.cancel()
            raise
    result.clients_classified = affected
    zones = sorted(known_clients)
    write_parquet(
        pl.DataFrame(
            {"client_id": zones, "timezone": [timezones.get(c) for c in zones]},
            schema=CLIENTS_SCHEMA,
        ),
        store.clients_file(),
        durable=False,
    )

    changes = (
        pl.concat(updates, how="vertical_relaxed")
        if updates
        else pl.DataFrame(schema={"file_id": pl.Categorical, **STATUS_SCHEMA})
    )
    del updates
    changes_by_file = {
        key[0]: part.drop("file_id")
        for key, part in changes.partition_by("file_id", as_dict=True).items()
    }
    del changes
    refresh = sorted(changed_files | set(changes_by_file))
    by_id = {file_id(s): s for s in known_sha}
    manifest = {row["file_id"]: row for row in old_manifest.iter_rows(named=True)}
    empty_changes = pl.DataFrame(schema=STATUS_SCHEMA)
    local_date = local_date_expr(timezones)  # built once: a big expression costs to build

    def refresh_one(fid: str) -> tuple[dict, set[date]]:
        return _refresh_file(
            store,
            fid,
            by_id[fid],
            changes_by_file.pop(fid, empty_changes),
            local_date,
            fresh=fresh_files.pop(fid, None),
            old_row=manifest.get(fid),
        )

    # Files are independent; Polars and the file system release the GIL, so two threads
    # overlap one file's writes with the next one's work.
    with ThreadPoolExecutor(REFRESH_THREADS) as threads:
        refreshed = list(threads.map(refresh_one, refresh))
    for fid, (row, dates) in zip(refresh, refreshed, strict=True):
        source = by_id[fid]
        blank, problem = parsed.get(fid, (manifest.get(fid, {}).get("blank_lines", 0), None))
        if fid not in parsed and fid in manifest:
            problem = manifest[fid]["problem"]
        row.update(sha256=known_sha[source], blank_lines=blank, problem=problem)
        manifest[fid] = row
        result.touched_dates |= dates
    result.files_refreshed = [by_id[f] for f in refresh]
    result.manifest = pl.DataFrame(
        sorted(manifest.values(), key=lambda r: r["source_file"]), schema=MANIFEST_SCHEMA
    )
    pending = pending_activity(store)
    result.activity_dates = pending | dates_around(result.touched_dates)
    if result.activity_dates != pending:
        _write_pending(store, result.activity_dates)
    write_parquet(result.manifest, store.manifest_file())
    journal.unlink(missing_ok=True)
    return result


IDENTITY_SCHEMA = {
    "source_file": pl.Utf8,
    "size": pl.Int64,
    "mtime_ns": pl.Int64,
    "ctime_ns": pl.Int64,
    "inode": pl.UInt64,
    "sha256": pl.Utf8,
}


def landing_identities(store: Store) -> dict[str, tuple[list[int | str], str]]:
    """Per landing file, the ``file_stat`` it had when a landing run last hashed it, and
    that sha256."""
    frame = read_parquet(store.landing_identities_file(), IDENTITY_SCHEMA)
    return {row[0]: (list(row[1:5]), row[5]) for row in frame.iter_rows()}


def _landing_shas(store: Store, paths: list[Path], sources: list[str]) -> list[str]:
    """Each landing file's sha256; hashed again only when its ``file_stat`` (size, mtime,
    ctime, inode) changed since it was last hashed. Hashing every file ever landed each night grew
    without end (the landing folder keeps them all); the manifest stays keyed by content.

    The identity is taken before hashing, so a file changed while it is hashed is hashed
    again next time. The record is internal (file stats are no data, SPEC §4.1), written
    without fsync: lost, every file is hashed once more.
    """
    identities = [file_stat(path) for path in paths]
    known = landing_identities(store)
    shas: list[str | None] = []
    for source, identity in zip(sources, identities, strict=True):
        found = known.get(source)
        shas.append(found[1] if found and found[0] == identity else None)
    todo = [i for i, sha in enumerate(shas) if sha is None]
    with ThreadPoolExecutor(2) as hashing:  # hashlib releases the GIL on big blocks
        for i, sha in zip(todo, hashing.map(file_sha256, [paths[i] for i in todo]), strict=True):
            shas[i] = sha
    if todo or len(known) != len(sources):
        rows = [
            (source, *identity, sha)
            for source, identity, sha in zip(sources, identities, shas, strict=True)
        ]
        frame = pl.DataFrame(rows, schema=IDENTITY_SCHEMA, orient="row")
        write_parquet(frame, store.landing_identities_file(), durable=False)
    return [sha or "" for sha in shas]  # every one is set by now


# A run killed after its manifest is written, before Dagster records the dates it touched
# (or before the activity run they start), would leave those dates unbuilt for good: the
# next run finds no new file. So the dates wait in a file until ``activity_built``.
def _pending_file(store: Store) -> Path:
    return store.clients_file().parent / "activity_pending.json"


def pending_activity(store: Store) -> set[date]:
    """Activity dates that landing runs reported and no activity run has built since."""
    try:
        return {date.fromisoformat(d) for d in json.loads(_pending_file(store).read_bytes())}
    except FileNotFoundError:
        return set()


def _write_pending(store: Store, days: set[date]) -> None:
    if days:
        write_bytes(json.dumps(sorted(d.isoformat() for d in days)).encode(), _pending_file(store))
    else:
        _pending_file(store).unlink(missing_ok=True)


def activity_built(store: Store, days: Collection[date]) -> None:
    """Record that the activity partitions of ``days`` are built from the current staging."""
    pending = pending_activity(store)
    if pending & set(days):
        _write_pending(store, pending - set(days))


def _journal_file(store: Store) -> Path:
    return store.clients_file().parent / "reclassifying.json"


def _read_journal(journal: Path) -> set[str]:
    """Clients whose reclassification a killed run left unfinished (see ingest_landing)."""
    try:
        return set(json.loads(journal.read_bytes())["clients"])
    except FileNotFoundError:
        return set()


def _staged(store: Store, fid: str) -> bool:
    """Is the file's staging in place? Staging is written without fsync (it is rebuilt from
    the landing file): a file whose lines were lost is parsed again."""
    try:
        return store.lines_file(fid).stat().st_size > 12  # a Parquet file is longer
    except FileNotFoundError:
        return False


def _plain(parts: list[pl.DataFrame] | None) -> pl.DataFrame:
    """New register rows in full: categorical columns (compact in memory) back as text, the
    status columns (all null until classified) and the fingerprint's version added."""
    if not parts:
        return pl.DataFrame(schema=REGISTER_SCHEMA)
    return (
        pl.concat(parts, how="vertical_relaxed")
        .with_columns(
            pl.col("file_id", "source_file").cast(pl.Utf8),
            pl.lit(None, pl.Utf8).alias("status"),
            pl.lit(None, pl.Utf8).alias("reason"),
            pl.lit(None, pl.Utf8).alias("detail"),
            pl.lit(FINGERPRINT_OF, pl.Utf8).alias("fingerprint_of"),
        )
        .select(list(REGISTER_SCHEMA))
    )


def _text_size(path: Path) -> int:
    return path.stat().st_size * (GZ_RATIO if path.name.endswith(".gz") else 1)


def _batches(
    todo: list[tuple[Path, str, str]], limit: int = BATCH_BYTES
) -> Iterator[list[tuple[Path, str, str]]]:
    """Files in path order, grouped so that one batch holds about ``limit`` bytes of text."""
    batch: list[tuple[Path, str, str]] = []
    size = 0
    for item in todo:
        size += _text_size(item[0])
        batch.append(item)
        if size >= limit:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _register_rows(lines: pl.DataFrame, fids: list[str]) -> pl.DataFrame:
    """The well-formed lines of a batch as compact register rows awaiting classification
    (``_plain`` completes them): a run holds these for every line it parsed. ``fids[i]``
    is the file id of ``file_pos`` i."""
    return lines.filter(pl.col("reason").is_null()).select(
        "client_id",
        "event_id",
        pl.col("file_pos")
        .replace_strict(list(range(len(fids))), fids, return_dtype=pl.Utf8)
        .cast(pl.Categorical)
        .alias("file_id"),
        pl.col("source_file").cast(pl.Categorical),
        "source_line",
        pl.col("occurred_at").dt.date().alias("utc_date"),
        content_fingerprint().alias("fingerprint"),
    )


def _clients_in(store: Store, file_ids: set[str]) -> set[str]:
    found: set[str] = set()
    for fid in file_ids:
        status = read_parquet(store.status_file(fid), STATUS_SCHEMA)
        found |= set(status["client_id"].unique())
    return found


def _registered(store: Store, clients: set[str]) -> set[str]:
    return {c for c in clients if registered(store, c)}


def _changes(old: pl.DataFrame, new: pl.DataFrame, changed_files: set[str]) -> pl.DataFrame:
    """Rows whose outcome is new: all rows of re-parsed files, and any whose outcome moved."""
    keys = ["file_id", "source_line"]
    compared = new.join(
        old.select(*keys, *[pl.col(c).alias(f"o_{c}") for c in OUTCOME]), on=keys, how="left"
    )
    moved = pl.col("file_id").is_in(list(changed_files)) | outcome_moved("o_")
    return compared.filter(moved).select("file_id", *STATUS_SCHEMA.keys() - {"client_id"})


def _refresh_file(
    store: Store,
    fid: str,
    source: str,
    changes: pl.DataFrame,
    local_date: pl.Expr,
    fresh: _Fresh | None,
    old_row: dict | None,
) -> tuple[dict, set[date]]:
    """Rewrite one file's statuses and quarantine partition; its manifest counts and dates.

    Only the quarantined lines are read back from staging (most lines are valid): for a file
    parsed in this run, only those classification quarantined, the others are in memory.
    """
    if fresh is not None:  # every line of a file parsed in this run is a change
        status = changes.select(list(STATUS_SCHEMA)).sort("source_line")
    else:
        old = read_parquet(store.status_file(fid), STATUS_SCHEMA)
        status = pl.concat(
            [
                old.join(changes.select("source_line"), on="source_line", how="anti"),
                changes.select(list(STATUS_SCHEMA)),
            ],
            how="vertical_relaxed",
        ).sort("source_line")
    write_staging(status, store.status_file(fid))

    held = status.filter(pl.col("status") == "quarantined")["source_line"]
    if fresh is not None:
        lines = fresh.refused
        if not held.is_empty():
            staged = scan_parquet(store.lines_file(fid)).filter(
                pl.col("source_line").is_in(held.implode())
            )
            lines = pl.concat([lines, staged.select(_QUARANTINE_SOURCE).collect()])
    else:
        lines = (
            scan_parquet(store.lines_file(fid))
            .filter(pl.col("reason").is_not_null() | pl.col("source_line").is_in(held.implode()))
            .select(_QUARANTINE_SOURCE)
            .collect()
        )
    joined = lines.join(
        status.select(
            "source_line",
            pl.col("status").alias("s_status"),
            pl.col("reason").alias("s_reason"),
            pl.col("detail").alias("s_detail"),
        ),
        on="source_line",
        how="left",
    )
    quarantined = joined.filter(
        pl.col("reason").is_not_null() | (pl.col("s_status") == "quarantined")
    ).select(
        pl.lit(source).alias("source_file"),
        "source_line",
        "raw_line",
        pl.coalesce("reason", "s_reason").alias("reason"),
        pl.coalesce("detail", "s_detail").alias("detail"),
        "client_id",
        "event_id",
        "event_type",
        "occurred_at",
        local_date.alias("activity_date"),
    )
    target = store.quarantine_file(fid)
    if quarantined.is_empty():
        remove_tree(target.parent)
    else:
        write_parquet(quarantined.sort("source_line"), target)

    counts = status["status"].value_counts()
    count = dict(zip(counts["status"], counts["count"], strict=True))
    if fresh is not None:
        height, dates = fresh.lines, fresh.dates
    elif old_row is not None:
        height, dates = old_row["lines"], set(old_row["utc_dates"] or ())
    else:  # no manifest row (never expected): count from the staged lines
        staged = read_parquet(store.lines_file(fid), columns=["occurred_at"])
        height = staged.height
        dates = set(staged["occurred_at"].dt.date().drop_nulls().unique().to_list())
    row = {
        "source_file": source,
        "file_id": fid,
        "lines": height,
        "valid": count.get("valid", 0),
        "duplicates": count.get("duplicate", 0),
        "quarantined": quarantined.height,
        "utc_dates": sorted(dates),
    }
    return row, dates


def local_date_expr(timezones: Mapping[str, str]) -> pl.Expr:
    """Each row's date in its client's zone (SPEC §4); null where the zone is not known.
    Clients are grouped by zone: one conversion per zone, not per client."""
    by_zone: dict[str, list[str]] = {}
    for client_id, zone in sorted(timezones.items()):
        by_zone.setdefault(zone, []).append(client_id)
    expr = pl.lit(None, pl.Date)
    for zone, clients in sorted(by_zone.items()):
        local = pl.col("occurred_at").dt.convert_time_zone(zone).dt.date()
        expr = pl.when(pl.col("client_id").is_in(clients)).then(local).otherwise(expr)
    return expr


LINES_ROW_GROUP = 1024


def write_staging(frame: pl.DataFrame, target: Path, row_group_size: int | None = None) -> None:
    """Internal staging files: written atomically like the datasets but not fsynced (they are
    rebuilt from the landing files: see ``_staged``), compressed cheaply (lz4 writes several
    times faster than zstd; these files are read back within the run and by the daily
    partitions, never by users)."""
    write_parquet(frame, target, durable=False, row_group_size=row_group_size, compression="lz4")


def dates_around(days: set[date]) -> set[date]:
    """Activity dates a set of UTC dates can fall on in any zone (offsets are under a day)."""
    return {d + timedelta(days=k) for d in days for k in (-1, 0, 1)}
