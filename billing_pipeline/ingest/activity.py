"""One activity date's partition of the valid-events dataset (SPEC §4.1), for all clients.

Built from the stored lines and statuses of the landing files that can hold events of that
date: any file with an event whose UTC date is within a day of it (time zone offsets are
under a day). A late file that carries old events therefore lands them in the old dates'
partitions as soon as those partitions are re-materialized.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
from polars.io.partition import FileProviderArgs

from billing_pipeline.catalog import ORDER_ID_TYPES
from billing_pipeline.ingest.landing import MANIFEST_SCHEMA, local_date_expr
from billing_pipeline.storage import (
    DataPath,
    Store,
    atomic_path,
    child_dirs,
    file_id,
    host_dir,
    is_remote,
    read_parquet,
    remove_tree,
    scan_parquet,
    write_parquet,
)

ACTIVITY_SCHEMA = {
    "event_id": pl.Utf8,
    "event_type": pl.Utf8,
    "occurred_at": pl.Datetime("us", "UTC"),
    "occurred_at_raw": pl.Utf8,
    "activity_date": pl.Date,
    "client_id": pl.Utf8,
    "warehouse_id": pl.Utf8,
    "schema_version": pl.Int64,
    "payload": pl.Utf8,
    "order_id": pl.Utf8,  # an extension: see ORDER_ID_TYPES
    "raw_line": pl.Utf8,
    "source_file": pl.Utf8,
    "source_line": pl.Int64,
}

# ``order_id`` is the payload's order id, as a column, for the event types whose payload has
# one (ORDER_ID_TYPES; null for the others). Reconciliation joins picks, ships and cancels on
# it every night over the whole month; reading it from the payload text there cost a JSON
# match per order event and per night (~3 CPU s at 30 days of 100,000 events). Parsing
# stages it as the decoder read it (``validation._order_ids``), so here it costs nothing;
# lines staged before that get it from their payload text (``_staged_lines``). Analysts
# querying the dataset get it for free.


def order_id_expr() -> pl.Expr:
    """``order_id`` from ``event_type`` and ``payload`` (for files that predate the column)."""
    return (
        pl.when(pl.col("event_type").is_in(ORDER_ID_TYPES))
        .then(pl.col("payload").str.json_path_match("$.order_id"))
        .alias("order_id")
    )


@dataclass
class ActivityResult:
    day: date
    events_by_client: dict[str, int] = field(default_factory=dict)
    events_by_type: dict[str, int] = field(default_factory=dict)
    files_read: int = 0
    # Known clients without a readable time zone (refused rate card): their partitions of
    # the day were left as they were, neither rebuilt nor removed.
    clients_left: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(self.events_by_client.values())


def build_activity(
    store: Store, day: date, timezones: Mapping[str, str], keep: Collection[str] = ()
) -> ActivityResult:
    """Write ``activity/activity_date=DAY/client_id=*/`` from the landed files; drop stale ones.

    ``keep``: clients whose partitions are left as they are (see ``build_activity_range``).
    """
    return build_activity_range(store, [day], timezones, keep)[0]


def build_activity_range(
    store: Store, days: Iterable[date], timezones: Mapping[str, str], keep: Collection[str] = ()
) -> list[ActivityResult]:
    """``build_activity`` for several days, reading each candidate staging file once per
    group of clients instead of once per day. Results in date order.

    ``keep`` names clients that have a rate card whose time zone cannot be read: their
    events cannot be dated, so their existing partitions are neither rebuilt nor removed.
    """
    days = sorted(set(days))
    results = {day: ActivityResult(day) for day in days}
    if not days:
        return []
    _remove_dead_scratch(store)
    zones = {c: z for c, z in timezones.items() if c not in keep}
    manifest = read_parquet(store.manifest_file(), MANIFEST_SCHEMA)
    window = sorted({day + timedelta(days=k) for day in days for k in (-1, 0, 1)})
    candidates = manifest.filter(
        pl.col("utc_dates").list.eval(pl.element().is_in(window)).list.any()
    )
    # The UTC spans of the local days in every known zone: row-group statistics skip the
    # parts of a file (often the whole file) that cannot hold events of the days.
    in_span = pl.any_horizontal(
        [
            pl.col("occurred_at").is_between(lo, hi, closed="left")
            for lo, hi in _merged_spans([_utc_span(day, zones) for day in days])
        ]
    )
    local = local_date_expr(zones)
    sources = dict(zip(manifest["file_id"], manifest["source_file"], strict=True))
    by_source = {s: file_id(s) for s in sources.values()}
    # Every candidate's statuses in one scan (one Polars call per file cost more than the
    # rows): the valid events of dated clients, by source file and line.
    fids = [fid for fid in candidates["file_id"] if store.status_file(fid).exists()]
    status_paths = [str(store.status_file(fid)) for fid in fids]
    written: dict[date, set[str]] = {day: set() for day in days}
    files_read: dict[date, set[str]] = {day: set() for day in days}
    valid = pl.DataFrame(
        schema={"source_file": pl.Categorical, "source_line": pl.Int64, "client_id": pl.Categorical}
    )
    if fids:
        valid = (
            scan_parquet(status_paths, include_file_paths="_path")
            .filter((pl.col("status") == "valid") & pl.col("client_id").is_in(list(zones)))
            .select(
                pl.col("_path")
                .replace_strict(status_paths, [sources[fid] for fid in fids], return_dtype=pl.Utf8)
                .cast(pl.Categorical)
                .alias("source_file"),
                "source_line",
                pl.col("client_id").cast(pl.Categorical),
            )
            .collect()
        )
    position = {sources[fid]: i for i, fid in enumerate(fids)}
    # Each candidate's footer read once, not once per group of clients.
    with_order_id: dict[DataPath, bool] = {}
    per_client = dict(valid.group_by("client_id").len().iter_rows())
    # One streaming pass per group of clients writes all their partitions. A pass holds up
    # to a row group of each partition it writes until the group is full, so groups are
    # cut at GROUP_ROWS candidate events: memory stays bounded however many clients there
    # are; a client larger than that has a pass of its own.
    for group in _client_groups(per_client):
        wanted = valid.filter(pl.col("client_id").is_in(group)).select("source_file", "source_line")
        # In source-file order (the manifest's): staged lines are sorted by client and line
        # within a file, so every partition's rows come out in (source_file, source_line)
        # order.
        holding = sorted(wanted["source_file"].unique().cast(pl.Utf8), key=position.get)
        files = [store.lines_file(by_source[source]) for source in holding]
        query = (
            _staged_lines(files, with_order_id)
            .filter(pl.col("client_id").is_in(group) & in_span)
            .with_columns(pl.col("source_file").cast(pl.Categorical))
            .join(
                wanted.lazy(), on=["source_file", "source_line"], how="semi", maintain_order="left"
            )
            .with_columns(pl.col("source_file").cast(pl.Utf8), local.alias("activity_date"))
            .filter(pl.col("activity_date").is_in(days))
            .select(list(ACTIVITY_SCHEMA))
        )
        for (day, client_id), rows in _write_partitions(store, query):
            written[day].add(client_id)
            files_read[day] |= {by_source[s] for s in rows["source_file"].unique()}
            result = results[day]
            result.events_by_client[client_id] = rows.height
            for event_type, count in rows["event_type"].value_counts().iter_rows():
                result.events_by_type[event_type] = result.events_by_type.get(event_type, 0) + count
    for day in days:
        results[day].files_read = len(files_read[day])
        results[day].clients_left = _remove_stale_clients(store, day, written[day], set(keep))
    return [results[day] for day in days]


def _staged_lines(files: Sequence[DataPath], with_order_id: dict[DataPath, bool]) -> pl.LazyFrame:
    """The staged lines of ``files``, in their order, with ``order_id``: staged since parsing
    read it; taken from the payload text for files staged before (a JSON match per line,
    ~0.8 µs: about a fifth of the activity build's CPU). Runs of files of one kind are
    scanned together, so the order holds. ``with_order_id`` remembers which kind a file is
    (filled in here)."""
    runs: list[tuple[bool, list[DataPath]]] = []
    for path in files:
        staged = with_order_id.get(path)
        if staged is None:
            staged = with_order_id[path] = _has_order_id(path)
        if runs and runs[-1][0] == staged:
            runs[-1][1].append(path)
        else:
            runs.append((staged, [path]))
    scans = [
        scan_parquet(run) if staged else scan_parquet(run).with_columns(order_id_expr())
        for staged, run in runs
    ]
    return scans[0] if len(scans) == 1 else pl.concat(scans, how="vertical")


def _has_order_id(path: DataPath) -> bool:
    """Was the file staged with ``order_id``? (Its footer only; remote files are fetched
    whole by the scan anyway, so they take the payload's, as before.)"""
    if is_remote(path):
        return False
    return "order_id" in pl.read_parquet_schema(path)


# Rows per row group of an activity file: also what a streaming pass buffers per partition.
ROW_GROUP = 8192
# Each pass scans every candidate file (its footer, the row groups of its clients): fewer,
# larger groups cost less. 10M events x 300 clients, in process: 250,000 rows a group
# (40 passes) 16.9-17.1 s, 1,000,000 (10) 15.0-15.5 s, both ~1.05 GB peak; 4,000,000
# 13.9 s but 1.34 GB, and one pass of a whole 4M-event day held 1.7 GB.
GROUP_ROWS = 1_000_000
# How an activity file is written, by the streaming pass and otherwise: zstd level 1 made
# the 10M x 300 day's build 14.5-15.7 -> 12.8-14.3 s wall and its files 3 % smaller than
# the default level (in process, three alternated rounds).
ENCODING: dict = {
    "compression": "zstd",
    "compression_level": 1,
    "statistics": True,
    "row_group_size": ROW_GROUP,
}


def _client_groups(per_client: Mapping[str, int]) -> list[list[str]]:
    """Clients in sorted order, cut into groups of at most GROUP_ROWS candidate events."""
    groups: list[list[str]] = []
    size = 0
    for client_id in sorted(per_client):
        if not groups or (size + per_client[client_id] > GROUP_ROWS and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(client_id)
        size += per_client[client_id]
    return groups


def _write_partitions(
    store: Store, query: pl.LazyFrame
) -> Iterator[tuple[tuple[date, str], pl.DataFrame]]:
    """Every (activity date, client) partition of ``query`` in one streaming pass.

    The pass writes all partitions at once into a scratch folder, in bounded memory however
    large a client's day is; each file then replaces its partition atomically. Yields each
    partition's key and its rows' source_file, source_line and event_type (read back).
    """
    with _scratch(store) as folder:
        query.sink_parquet(
            pl.PartitionBy(
                folder,
                key=["activity_date", "client_id"],
                include_key=True,
                file_path_provider=_partition_path,
                max_rows_per_file=None,
                approximate_bytes_per_file=None,
            ),
            **ENCODING,
            mkdir=True,
            engine="streaming",
        )
        for day_dir in sorted(folder.iterdir()):
            for client_dir in sorted(day_dir.iterdir()):
                key = (date.fromisoformat(day_dir.name), client_dir.name)
                yield key, _place(store, key, sorted(client_dir.iterdir()))


def _partition_path(args: FileProviderArgs) -> str:
    day, client_id = args.partition_keys.row(0)
    return f"{day.isoformat()}/{client_id}/{args.index_in_partition:06d}.parquet"


def _place(store: Store, key: tuple[date, str], parts: list[Path]) -> pl.DataFrame:
    """Move a partition's file into place (one file in source order, as the streaming
    pass writes it; anything else is merged and sorted first); its rows' key columns."""
    columns = ["source_file", "source_line", "event_type"]
    rows = pl.read_parquet(parts, columns=columns)
    target = store.activity_file(*key)
    if len(parts) == 1 and _in_source_order(rows):
        with atomic_path(target) as tmp:
            shutil.move(parts[0], tmp)
        return rows
    full = pl.read_parquet(parts).sort("source_file", "source_line")  # not expected
    write_parquet(full, target, **ENCODING)
    return full.select(columns)


SCRATCH_PREFIX = ".activity-"


def _scratch_base(store: Store) -> Path:
    """Where the store's scratch folders go: its own ``_staging`` on a local disk (files are
    then renamed into place, not copied), else a directory of this host's for the store."""
    if is_remote(store.root):
        return host_dir(store.root, "scratch")
    return Path(store.root) / "_staging"


def _remove_dead_scratch(store: Store) -> None:
    """Remove the scratch folders of killed runs: a run killed in the streaming pass leaves
    its folder, up to a whole day's activity. Writers of a store's activity hold its ingest
    lock (billing_pipeline.locks; with outputs on an object store, per host, like the
    scratch folders), so no live run owns one."""
    base = _scratch_base(store)
    if base.is_dir():
        for left in base.glob(f"{SCRATCH_PREFIX}*"):
            shutil.rmtree(left, ignore_errors=True)


@contextmanager
def _scratch(store: Store) -> Iterator[Path]:
    """A scratch folder for one streaming pass (see ``_scratch_base``)."""
    base = _scratch_base(store)
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _in_source_order(rows: pl.DataFrame) -> bool:
    """Are the rows sorted by (source_file, source_line)? One linear pass, no sort."""
    if rows.height < 2:
        return True
    file, line = pl.col("source_file"), pl.col("source_line")
    step = (file > file.shift()) | ((file == file.shift()) & (line > line.shift()))
    return bool(rows.select(step.slice(1).all()).item())


def _utc_span(day: date, timezones: Mapping[str, str]) -> tuple[datetime, datetime]:
    """UTC instants [lo, hi) between which the local date is ``day`` in some known zone."""
    zones = set(timezones.values()) or {"UTC"}
    starts, ends = [], []
    for zone in zones:
        tz = ZoneInfo(zone)
        starts.append(datetime.combine(day, time(), tz).astimezone(UTC))
        ends.append(datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC))
    return min(starts), max(ends)


def _merged_spans(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _remove_stale_clients(store: Store, day: date, written: set[str], keep: set[str]) -> list[str]:
    """Remove the day's partitions of clients not written; those of ``keep`` stay (and are
    returned)."""
    folder = store.activity_dir(day)
    kept = []
    for name in child_dirs(folder):
        child = folder / name
        client_id = name.removeprefix("client_id=")
        if client_id in keep:
            kept.append(client_id)
        elif client_id not in written:
            remove_tree(child)
    return kept


def read_activity(
    store: Store, client_id: str, days: list[date], columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """A client's valid events on the given dates (``columns`` of them), in source order.

    Files written before the ``order_id`` column existed get it from their payloads here, so
    a warehouse needs no rebuild; only such files pay the JSON match.
    """
    wanted = list(ACTIVITY_SCHEMA) if columns is None else list(columns)
    if "order_id" not in wanted:
        return _read_days(store, client_id, days, wanted)
    read = [*wanted, *(c for c in ("event_type",) if c not in wanted)]
    frame = _read_days(store, client_id, days, read)
    # A required order id is null only where the file predates the column.
    lacking = pl.col("order_id").is_null() & pl.col("event_type").is_in(ORDER_ID_TYPES)
    if frame.select(lacking.any()).item():
        frame = _read_days(store, client_id, days, [*read, "payload"]).with_columns(
            pl.coalesce("order_id", order_id_expr())
        )
    return frame.select(wanted)


def _read_days(store: Store, client_id: str, days: list[date], wanted: list[str]) -> pl.DataFrame:
    frames = []
    if is_remote(store.root):
        for day in days:
            # Read, not exists() then read: a missing object costs one request on S3, not
            # three.
            try:
                path = store.activity_file(day, client_id)
                frames.append(read_parquet(path, columns=wanted, dataset=ACTIVITY_SCHEMA))
            except FileNotFoundError:
                continue
    else:
        # one scan of the days' files: a read per day cost several times as much
        files = [f for f in (store.activity_file(d, client_id) for d in days) if f.exists()]
        if files:
            frames.append(scan_parquet(files, dataset=ACTIVITY_SCHEMA).select(wanted).collect())
    if not frames:
        return pl.DataFrame(schema={c: ACTIVITY_SCHEMA[c] for c in wanted})
    return pl.concat(frames, how="vertical_relaxed")
