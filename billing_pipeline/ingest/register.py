"""A client's dedup register, kept in segments so that a night reads and writes what it
touches rather than all the client's history.

The register holds the key columns and outcome of every well-formed line the client ever
landed (``classify.REGISTER_SCHEMA``): SPEC §4 deduplicates across every delivery, so it
only grows. Read, sorted and written whole every night, it cost ~0.4 µs per row ever landed
(about two minutes a night after a month at 10 million events a day) and sat whole in
memory. Now a night:

1. probes every segment for the rows of the event ids it brings, and of the files it parsed
   again: one scan that filters on ``event_id`` and ``file_id`` (the Parquet reader decodes
   the other columns only for the rows that match). A segment's fences (the first and last event id
   of each block of ``FENCE_ROWS`` rows, kept in the index) say which blocks can hold one of
   the night's ids, and only those are read, unless the night re-parsed a file (whose old rows
   may be anywhere);
2. classifies those event ids again (a row's outcome depends only on the rows with its event
   id, ``classify``);
3. writes the new rows as a new segment, and a new version of each segment whose rows'
   outcomes moved (copy on write);
4. merges the newest segments while the one before the newest is less than twice its size,
   so a client has about log2(nights) segments and each row is rewritten about that often.

Layout under ``_staging/register/client_id=ID/``: ``index.json`` (the segments in creation
order with their row counts, their fences, and the number the next segment file takes) and
``seg-NNNNNN.parquet`` files, each sorted by event id, source file and line. A register
written before segments existed (``part-0.parquet``, no index) is read as one segment.

Writes are safe to kill: segment files get new names, the index is replaced atomically
after them, and only then are the files it no longer names removed (any run removes such
leftovers). Writers hold the ingest lock (``billing_pipeline.locks``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from billing_pipeline.fences import blocks_holding_in, fences_of
from billing_pipeline.ingest.classify import (
    OUTCOME,
    REGISTER_SCHEMA,
    classify_client,
    outcome_moved,
    trusted_fingerprints,
)
from billing_pipeline.storage import (
    PART,
    DataPath,
    Store,
    child_files,
    read_parquet,
    remove_file,
    remove_tree,
    scan_parquet,
    write_bytes,
    write_parquet,
)

INDEX = "index.json"
ORDER = ["event_id", "source_file", "source_line"]
KEY = ["file_id", "source_line"]
# A merge reads both segments whole: no merge makes a segment of more rows than this
# (~150 bytes a row in memory), and segments this large are left as they are.
MAX_SEGMENT_ROWS = 2_000_000
# Rows per block (and Parquet row group) of a segment. The probe reads the blocks whose range
# of event ids holds one of the night's ids: reading every id ever landed each night cost
# ~0.06 µs a row of history (~18 s a night after a month at 10 million events a day), growing
# for ever. Event ids that grow with time (most WMS number them in order) fall in the newest
# blocks; ids in no order (random UUIDs) hit every block, as before.
FENCE_ROWS = 65_536


@dataclass
class Segments:
    """The index of one client's register: segment file names and row counts, oldest first."""

    folder: DataPath
    names: list[str]
    rows: list[int]
    next: int
    # segment name -> {"every": rows per block, "first" and "last": the event id of each
    # block's first and last row}; a segment written before fences has none (read whole)
    fences: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, store: Store, client_id: str) -> Segments:
        folder = store.register_dir(client_id)
        try:
            index = json.loads((folder / INDEX).read_bytes())
        except FileNotFoundError:
            if not (folder / PART).exists():
                return cls(folder, [], [], 1)
            rows = read_parquet(folder / PART, columns=["event_id"]).height
            return cls(folder, [PART], [rows], 1)
        return cls(
            folder,
            [s[0] for s in index["segments"]],
            [s[1] for s in index["segments"]],
            index["next"],
            index.get("fences", {}),
        )

    def paths(self) -> list[DataPath]:
        return [self.folder / name for name in self.names]

    def new_name(self) -> str:
        name = f"seg-{self.next:06d}.parquet"
        self.next += 1
        return name

    def commit(self) -> None:
        """Write the index, then remove every file of the folder it does not name. A
        register left without rows (a re-parsed file dropped all the client's lines) is
        removed: the client has none, as if it had never landed any."""
        if not self.names:
            remove_tree(self.folder)
            return
        segments = [[n, r] for n, r in zip(self.names, self.rows, strict=True)]
        # Not flushed to disk, like the segments and the rest of ingestion's staging
        # (storage.atomic_path): a flush per client cost ~3 ms of a night's wall time.
        fences = {name: self.fences[name] for name in self.names if name in self.fences}
        index = json.dumps({"segments": segments, "next": self.next, "fences": fences}).encode()
        write_bytes(index, self.folder / INDEX, durable=False)
        named = {INDEX, *self.names}
        for name in child_files(self.folder):
            if name not in named:
                remove_file(self.folder / name)


def registered(store: Store, client_id: str) -> bool:
    """Has the client a register (any row ever landed)?"""
    folder = store.register_dir(client_id)
    return (folder / INDEX).exists() or (folder / PART).exists()


def read_register(store: Store, client_id: str) -> pl.DataFrame:
    """Every row of the client's register, in event id, source file and line order."""
    segments = Segments.load(store, client_id)
    if not segments.names:
        return pl.DataFrame(schema=REGISTER_SCHEMA)
    return scan_parquet(segments.paths(), dataset=REGISTER_SCHEMA).collect().sort(ORDER)


def update_register(
    store: Store,
    client_id: str,
    fresh: pl.DataFrame,
    changed: list[str],
    known: bool,
    whole: bool,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Bring the client's register up to date: the rows of ``changed`` files replaced by
    ``fresh`` (REGISTER_SCHEMA, unclassified). Returns the rows whose outcome may have
    moved, as they were and as they are. ``whole`` (a client whose rate card came or went,
    or one a killed run left half done) classifies every row."""
    segments = Segments.load(store, client_id)
    if whole:
        return _update_whole(store, client_id, segments, fresh, changed, known)
    old = _probe(segments, fresh["event_id"], changed)
    if old.is_empty():  # a new client, or no copy of anything landed before: most nights
        again = classify_client(store, client_id, fresh, known)
    else:
        gone = old.filter(pl.col("file_id").is_in(changed))["event_id"].unique()
        extra = gone.filter(~gone.is_in(fresh["event_id"].implode()))
        if not extra.is_empty():
            more = _probe(segments, extra, []).join(old, on=KEY, how="anti")
            old = pl.concat([old, more])
        kept = old.filter(~pl.col("file_id").is_in(changed))
        rows = pl.concat([kept.drop("_segment"), fresh], how="vertical_relaxed")
        again = classify_client(store, client_id, rows, known)
        _rewrite_touched(segments, old, kept, again)
    new_rows = again.filter(pl.col("file_id").is_in(changed))
    if not new_rows.is_empty():
        _append(segments, new_rows)
    _merge_newest(segments)
    segments.commit()
    return old.drop("_segment"), again


def _probe(segments: Segments, ids: pl.Series, files: list[str]) -> pl.DataFrame:
    """The rows of the given event ids or files, with ``_segment``: the file holding each."""
    empty = pl.DataFrame(schema={**REGISTER_SCHEMA, "_segment": pl.Utf8})
    if not segments.names or (ids.is_empty() and not files):
        return empty
    wanted = ids.drop_nulls().unique().sort()
    hit = pl.col("event_id").is_in(wanted.implode())
    if files:  # most nights re-parse no file: no file_id column to read
        hit = hit | pl.col("file_id").is_in(files)

    def scan(name: str) -> pl.LazyFrame:
        tag = pl.lit(name).alias("_segment")
        return scan_parquet(segments.folder / name, dataset=REGISTER_SCHEMA).with_columns(tag)

    fenced = [
        (name, segments.fences[name], rows)
        for name, rows in zip(segments.names, segments.rows, strict=True)
        if not files and segments.fences.get(name) is not None
    ]
    has_fences = {name for name, _, _ in fenced}
    whole = [scan(name) for name in segments.names if name not in has_fences]
    blocks = []
    # one search over every segment's fences, and a scan (which reads the file's footer when
    # made) only for the segments to read
    held = blocks_holding_in([(f, rows) for _, f, rows in fenced], wanted) if fenced else []
    for (name, _, _), runs in zip(fenced, held, strict=True):
        if runs:
            segment = scan(name)
            blocks += [segment.slice(start, length) for start, length in runs]
    found = []
    if whole:  # the filter reads event_id (and file_id) and the other columns of matches only
        found.append(pl.concat(whole).filter(hit))
    if blocks:
        # A few blocks of rows: one semi-join, whose table of the night's ids is built once;
        # the filter, pushed into each block's scan, built it again for each (~5 ms for
        # 50,000 ids, which made the probe grow with the number of segments).
        night = pl.LazyFrame({"event_id": wanted})
        found.append(pl.concat(blocks).join(night, on="event_id", how="semi"))
    if not found:
        return empty
    frame = pl.concat(found).select(*REGISTER_SCHEMA, "_segment").collect()
    return trusted_fingerprints(frame)


def _fences(rows: pl.DataFrame) -> dict | None:
    """The fences of a segment's rows (sorted by ORDER, not empty)."""
    return fences_of(rows["event_id"], FENCE_ROWS)


def _rewrite_touched(
    segments: Segments, old: pl.DataFrame, kept: pl.DataFrame, again: pl.DataFrame
) -> None:
    """A new version of each segment that lost rows (of re-parsed files) or whose rows'
    outcomes moved; the others stay as they are."""
    moved = (
        kept.join(again.select(*KEY, *[pl.col(c).alias(f"new_{c}") for c in OUTCOME]), on=KEY)
        .filter(outcome_moved("new_"))
        .select("_segment")
    )
    lost = old.join(kept.select(KEY), on=KEY, how="anti")  # rows of re-parsed files
    rewrite = set(moved["_segment"]) | set(lost["_segment"])
    for name in [n for n in segments.names if n in rewrite]:
        position = segments.names.index(name)  # an emptied segment before it is gone
        ours = old.filter(pl.col("_segment") == name)
        updated = again.join(kept.filter(pl.col("_segment") == name).select(KEY), on=KEY)
        rows = pl.concat(
            [
                read_parquet(segments.folder / name, dataset=REGISTER_SCHEMA).join(
                    ours.select(KEY), on=KEY, how="anti"
                ),
                updated,
            ],
            how="vertical_relaxed",
        )
        _replace(segments, position, rows)


def _append(segments: Segments, rows: pl.DataFrame) -> None:
    segments.names.append("")
    segments.rows.append(0)
    _replace(segments, len(segments.names) - 1, rows)


def _replace(segments: Segments, position: int, rows: pl.DataFrame) -> None:
    """Write ``rows`` as a new file for the segment at ``position`` (none when empty)."""
    if rows.is_empty():
        del segments.names[position], segments.rows[position]
        return
    name = segments.new_name()
    rows = rows.select(list(REGISTER_SCHEMA)).sort(ORDER)
    write_parquet(rows, segments.folder / name, durable=False, row_group_size=FENCE_ROWS)
    segments.names[position], segments.rows[position] = name, rows.height
    segments.fences[name] = _fences(rows)


def _merge_newest(segments: Segments) -> None:
    rows = segments.rows
    while len(rows) >= 2 and rows[-2] < 2 * rows[-1] and rows[-2] + rows[-1] <= MAX_SEGMENT_ROWS:
        merged = pl.concat(
            [read_parquet(p, dataset=REGISTER_SCHEMA) for p in segments.paths()[-2:]],
            how="vertical_relaxed",
        )
        del segments.names[-1], segments.rows[-1]
        _replace(segments, len(rows) - 1, merged)


def _update_whole(
    store: Store,
    client_id: str,
    segments: Segments,
    fresh: pl.DataFrame,
    changed: list[str],
    known: bool,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    old = trusted_fingerprints(read_register(store, client_id))
    kept = old.filter(~pl.col("file_id").is_in(changed))
    new = classify_client(store, client_id, pl.concat([kept, fresh], how="vertical_relaxed"), known)
    segments.names, segments.rows = [], []
    if new.height > MAX_SEGMENT_ROWS:
        new = new.sort(ORDER)  # cut in event id order (each segment is sorted when written)
    for start in range(0, new.height, MAX_SEGMENT_ROWS):
        _append(segments, new.slice(start, MAX_SEGMENT_ROWS))
    segments.commit()
    return old, new
