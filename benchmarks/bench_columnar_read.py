"""Spike: can a DuckDB columnar read bring ingestion near the NDJSON parse floor? (issue 2)

Run: ``.venv/bin/python benchmarks/bench_columnar_read.py [--events 1000000] [--repeat 3]``
and ``... --cases`` for what DuckDB does with each known coercion case.
Needs ``duckdb`` in the venv (``.venv/bin/pip install duckdb``); it is not a project
dependency. Not an integration: nothing here is used by ``billing_pipeline``.

On the files ``bench_ingest.py`` generates (same helpers, same cache), each in a fresh process,
CPU seconds (rusage, all threads) and wall around the work only:

- **floor**: ``bench_ingest``'s bare ``polars.read_ndjson`` with a fixed schema. It skips
  every file ``read_ndjson`` rejects (one non-object line is enough: 159 of 308 files at 1M),
  so it parses about 87,000 of the 995,000 lines;
- **floor_clean**: the same reader on the same files with those lines taken out beforehand
  (outside the clock): every line parsed, the honest floor;
- **duck**: DuckDB reads each line as text (``read_csv`` with no delimiter or quotes; blank
  and broken lines stay as rows, so the row index within a file is the line number), keeps
  it if ``json_valid``, takes the envelope by one multi-path extract and checks that no
  top-level key repeats; ``json_type`` checks (which refuse a number or ``true`` where a
  string is due, where a VARCHAR column would cast) for the envelope and the payload fields
  of the three most common event types (order.picked, order.packed, order.shipped, ~95 % of
  lines); handed to Polars through the Arrow C stream, then SPEC §3's value rules (the
  project's own patterns and ``parse_timestamps``, enums, ranges, decimals with at most 6
  places) in Polars. Each row ends ``fast`` (fully checked valid) or not (to the existing
  per-line path, which alone decides quarantine reasons);
- **duck_records**: the same checks over DuckDB's record reader (``read_json`` with the
  envelope columns as JSON): less CPU but not exact (with ``ignore_errors`` it keeps the first
  of two duplicate top-level keys, the per-line path the last), so a lower bound only;
- **duck_write**: ``duck`` plus the activity date in the client's time zone and a hive write
  of the fast rows by activity date and client.

``--cases`` probes each known coercion case in both modes; ``--check`` runs the project's
ingest on the same files and compares: fast rows it quarantined (by reason), fast rows with
other envelope values, valid lines of the three types that were not fast.

Not covered (a real fast path needs them): canonical payload text (the spike writes DuckDB's
text of the payload), dedup against the register, unknown clients, the manifest, and a
fallback to the per-line path for a file DuckDB cannot read at all.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ingest as bi

ENVELOPE = ["event_id", "event_type", "occurred_at", "client_id", "warehouse_id"]
INT_TYPES = "('UBIGINT', 'BIGINT')"
# Payload fields of the three common types, in one multi-path extract (one parse per row).
FIELDS = [
    "order_id",
    "channel",
    "lines",
    "units",
    "cartons",
    "materials",
    "inserts",
    "carrier",
    "service",
    "tracking_number",
    "weight_lb",
    "zone",
    "label_cost",
]
P = {name: f"p[{i + 1}]" for i, name in enumerate(FIELDS)}


def _is(field: str, kind: str) -> str:
    t = f"json_type({P[field]})"
    if kind == "str":
        return f"{t} = 'VARCHAR'"
    if kind == "int":
        return f"{t} IN {INT_TYPES}"
    # dec: a string, an integer, or a double written plainly with at most 15 digits, so that
    # its text is the float's shortest representation (what the per-line path reads)
    return (
        f"({t} IN ('VARCHAR', 'UBIGINT', 'BIGINT') OR ({t} = 'DOUBLE'"
        f" AND regexp_full_match({P[field]}::VARCHAR, '-?[0-9]+\\.[0-9]+')"
        f" AND length({P[field]}::VARCHAR) <= 16))"
    )


MATERIALS_OK = (
    f"json_type({P['materials']}) = 'ARRAY' AND coalesce(list_bool_and(list_transform("
    f"json_extract({P['materials']}, '$[*]'), lambda m: json_type(m) = 'OBJECT'"
    f" AND json_type(m, '$.code') = 'VARCHAR' AND json_type(m, '$.qty') IN {INT_TYPES}"
    " AND len(json_keys(m)) = 2)), true)"
)

TYPED = {
    "order.picked": (
        f"{_is('order_id', 'str')} AND {_is('channel', 'str')} AND {_is('lines', 'int')}"
        f" AND {_is('units', 'int')} AND len(k) = 4"
    ),
    "order.packed": (
        f"{_is('order_id', 'str')} AND {_is('cartons', 'int')} AND {MATERIALS_OK}"
        f" AND {_is('inserts', 'int')} AND len(k) = 4"
    ),
    "order.shipped": (
        f"{_is('order_id', 'str')} AND {_is('carrier', 'str')} AND {_is('service', 'str')}"
        f" AND {_is('tracking_number', 'str')} AND {_is('weight_lb', 'dec')}"
        f" AND {_is('label_cost', 'dec')}"
        f" AND (({P['zone']} IS NULL AND len(k) = 6) OR ({_is('zone', 'int')} AND len(k) = 7))"
    ),
}


def duck_sql(mode: str) -> str:
    """``lines``: each line read as text (DuckDB's CSV reader, no delimiter, no quotes),
    ``json_valid``, then every envelope field taken by one multi-path extract, plus the
    line's top-level keys, so that a duplicate envelope key goes to the slow path (reading the
    lines with ``read_json(records='false')`` instead re-serializes each line: duplicate keys
    collapse to the first, integers beyond 64 bits become doubles).
    ``records``: DuckDB's record reader (about half the CPU) which, with ``ignore_errors``,
    silently keeps the first of two duplicate top-level keys where the per-line path keeps
    the last: not exact, measured as a lower bound."""
    envelope_typed = " AND ".join(f"json_type({c}) = 'VARCHAR'" for c in ENVELOPE)
    cases = " ".join(f"WHEN '{t}' THEN {cond}" for t, cond in TYPED.items())
    paths = ", ".join(f"'$.{f}'" for f in FIELDS)
    if mode == "records":
        columns = ", ".join(f"{c}: 'JSON'" for c in [*ENVELOPE, "schema_version", "payload"])
        source = f"""
        r AS (
          SELECT * FROM read_json($files, format = 'newline_delimited', records = 'true',
            ignore_errors = true, filename = true, columns = {{{columns}}})
        ), e AS (
          SELECT *, json_extract(payload, [{paths}]) AS p, json_keys(payload) AS k,
            true AS unique_keys FROM r
        )"""
    else:
        names = [*ENVELOPE, "schema_version", "payload"]
        top = ", ".join(f"'$.{c}'" for c in names)
        picked = ", ".join(f"v[{i + 1}] AS {c}" for i, c in enumerate(names))
        source = f"""
        r AS (
          SELECT filename, CASE WHEN json_valid(line) THEN line END AS j
          FROM read_csv($files, columns = {{'line': 'VARCHAR'}}, delim = chr(1), quote = '',
            escape = '', header = false, auto_detect = false, filename = true)
        ), x AS (
          SELECT filename, json_keys(j) AS tk, json_extract(j, [{top}]) AS v FROM r
        ), e AS (
          SELECT filename, {picked}, json_extract(v[{len(names)}], [{paths}]) AS p,
            json_keys(v[{len(names)}]) AS k, len(tk) = len(list_distinct(tk)) AS unique_keys
          FROM x
        )"""
    return f"""
    WITH {source}
    SELECT filename,
      coalesce(unique_keys AND {envelope_typed} AND json_type(payload) = 'OBJECT'
        AND (schema_version IS NULL OR json_type(schema_version) IN {INT_TYPES})
        AND CASE event_type ->> '$' {cases} ELSE false END, false) AS typed,
      {", ".join(f"{c} ->> '$' AS {c}" for c in ENVELOPE)},
      schema_version ->> '$' AS schema_version,
      {", ".join(f"{P[f]} ->> '$' AS {f}" for f in FIELDS if f != "materials")},
      {P["materials"]}::VARCHAR AS materials,
      payload::VARCHAR AS payload
    FROM e
    """


def value_checks():
    """SPEC §3 value rules of the envelope and the three payloads, as one Polars predicate."""
    import polars as pl

    from billing_pipeline.catalog import (
        CLIENT_ID_PATTERN,
        EVENT_ID_PATTERN,
        WAREHOUSE_ID_PATTERN,
    )
    from billing_pipeline.ingest.schemas import RFC3339_PATTERN, parse_timestamps

    def dec(name: str, positive: bool) -> pl.Expr:
        value = pl.col(name).cast(pl.Decimal(38, 6), strict=False)  # exact: <= 6 places below
        exact = pl.col(name).str.contains(r"^-?[0-9]+(\.[0-9]{1,6})?$")
        return exact & (value > 0 if positive else value >= 0)

    def i(name: str, low: int, high: int | None = None) -> pl.Expr:
        value = pl.col(name).cast(pl.Int64, strict=False)
        ok = value >= low
        return ok & (value <= high) if high is not None else ok

    envelope = (
        pl.col("event_id").str.contains(EVENT_ID_PATTERN)
        & pl.col("client_id").str.contains(CLIENT_ID_PATTERN)
        & pl.col("warehouse_id").str.contains(WAREHOUSE_ID_PATTERN)
        & pl.col("occurred_at").str.contains(RFC3339_PATTERN)
        & parse_timestamps(pl.col("occurred_at")).is_not_null()
        & (pl.col("schema_version").is_null() | (pl.col("schema_version") == "1"))
    )
    picked = pl.col("channel").is_in(["dtc", "b2b", "wholesale"]) & i("lines", 1) & i("units", 1)
    packed = (
        i("cartons", 1)
        & i("inserts", 0)
        # qty >= 1: a typed list of {code, qty}; the JSON types were checked in SQL
        & pl.col("materials")
        .str.json_decode(pl.List(pl.Struct({"code": pl.Utf8, "qty": pl.Int64})))
        .list.eval(pl.element().struct.field("qty") >= 1)
        .list.all()
    )
    shipped = (
        dec("weight_lb", positive=True)
        & dec("label_cost", positive=False)
        & (pl.col("zone").is_null() | i("zone", 1, 9))
    )
    kind = pl.col("event_type")
    payload = (
        pl.when(kind == "order.picked")
        .then(picked)
        .when(kind == "order.packed")
        .then(packed)
        .when(kind == "order.shipped")
        .then(shipped)
        .otherwise(False)
    )
    return (pl.col("typed") & envelope & payload).fill_null(False)


def read_columnar(files: list[str], mode: str):
    import duckdb
    import polars as pl

    con = duckdb.connect()
    relation = con.sql(duck_sql(mode), params={"files": files})
    frame = pl.DataFrame(relation)  # the Arrow C stream interface: no pyarrow needed
    con.close()
    # Rows come in file order (DuckDB preserves insertion order); the row index within a file
    # is the line number only when the file has no blank lines (see the module docstring).
    return frame.with_columns(
        source_line=pl.int_range(1, pl.len() + 1).over("filename"),
        fast=value_checks(),
    )


def activity_dates(frame, timezones: dict[str, str]):
    import polars as pl

    from billing_pipeline.ingest.schemas import parse_timestamps

    frame = frame.with_columns(
        occurred_at=parse_timestamps(pl.col("occurred_at")),
        tz=pl.col("client_id").replace_strict(timezones, default=None),
    )
    parts = []
    for (tz,), part in frame.filter(pl.col("tz").is_not_null()).group_by("tz"):
        parts.append(
            part.with_columns(
                activity_date=pl.col("occurred_at").dt.convert_time_zone(tz).dt.date()
            )
        )
    return pl.concat(parts).drop("tz")


def work_duck(data: Path, mode: str, write: bool) -> dict:
    import polars as pl

    from billing_pipeline.ratecards import load_ratecards

    files = [str(p) for p in bi.landing_files(data)]
    began = time.perf_counter()
    frame = read_columnar(files, mode)
    result = {"rows": frame.height, "fast": int(frame["fast"].sum())}
    if write:
        cards, _ = load_ratecards(data / "ratecards")
        timezones = {client: card.timezone for client, card in cards.items()}
        valid = activity_dates(frame.filter("fast"), timezones)
        valid = valid.select(
            "event_id",
            "event_type",
            "occurred_at",
            "activity_date",
            "client_id",
            "warehouse_id",
            "payload",
            pl.col("filename").alias("source_file"),
            "source_line",
        )
        with tempfile.TemporaryDirectory(dir=bi.OUT) as tmp:
            valid.write_parquet(Path(tmp) / "activity", partition_by=["activity_date", "client_id"])
            result["written"] = valid.height
            result["files_written"] = sum(1 for _ in Path(tmp).rglob("*.parquet"))
    result["seconds"] = time.perf_counter() - began
    return result


def clean_buffers(data: Path) -> list[bytes]:
    """Each landing file without the lines that make ``read_ndjson`` give up on the whole
    file (non-objects, broken JSON); prepared before the clock starts."""
    buffers = []
    for path in bi.landing_files(data):
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        keep = []
        for text in raw.split(b"\n"):
            if text.startswith(b"{"):
                try:
                    json.loads(text)
                except ValueError:
                    continue
                keep.append(text)
        buffers.append(b"\n".join(keep) + b"\n")
    return buffers


def work_floor_clean(buffers: list[bytes]) -> dict:
    """bench_ingest's floor on the cleaned files: every line parsed. bench_ingest's floor
    skips any file ``read_ndjson`` rejects (159 of the 308 files at 1M: one bad line is
    enough), so it parses under a tenth of the lines."""
    import io

    import polars as pl

    schema = bi.floor_schema()
    began = time.perf_counter()
    rows = sum(
        pl.read_ndjson(io.BytesIO(b), schema=schema, ignore_errors=True).height for b in buffers
    )
    return {"seconds": time.perf_counter() - began, "rows": rows}


def worker(kind: str, data: Path) -> None:
    buffers = clean_buffers(data) if kind == "floor_clean" else []
    own, kids = bi._cpu_seconds()
    if kind == "floor":
        result = bi.work_floor(data)
    elif kind == "floor_clean":
        result = work_floor_clean(buffers)
    else:
        mode = "records" if kind == "duck_records" else "lines"
        result = work_duck(data, mode, write=kind == "duck_write")
    own_after, kids_after = bi._cpu_seconds()
    result["cpu_seconds"] = own_after - own + kids_after - kids
    print(json.dumps(result))


KINDS = ["floor", "floor_clean", "duck_records", "duck", "duck_write"]


def measure(kind: str, data: Path) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--data", str(data)]
    out, peak = bi.run_sampled(command, kind)
    result = json.loads(out.strip().splitlines()[-1])
    result["rss_mb"] = peak / 1024
    return result


# --------------------------------------------------------------------------- coercion cases

GOOD = {
    "event_id": "e1",
    "event_type": "order.picked",
    "occurred_at": "2026-03-10T12:00:00Z",
    "client_id": "acme",
    "warehouse_id": "NV2",
    "payload": {"order_id": "SO-1", "channel": "dtc", "lines": 1, "units": 2},
}


def _line(**changes: object) -> bytes:
    event = json.loads(json.dumps(GOOD))
    payload = changes.pop("payload_changes", {})
    event.update(changes)
    event["payload"].update(payload)
    return json.dumps(event).encode()


def _nested(depth: int) -> bytes:
    return _line().replace(b'"units": 2', b'"units": 2, "deep": ' + b"[" * depth + b"]" * depth)


CASES: dict[str, bytes] = {
    "baseline (valid line)": _line(),
    "true as a string field (order_id)": _line(payload_changes={"order_id": True}),
    "true as an envelope string (event_id)": _line(event_id=True),
    "number as an envelope string (client_id)": _line(client_id=42),
    "1e300 as an int field (units)": _line().replace(b'"units": 2', b'"units": 1e300'),
    "integer written 1.0 (units)": _line().replace(b'"units": 2', b'"units": 1.0'),
    "integer > 64 bits (units)": _line().replace(b'"units": 2', b'"units": 18446744073709551616'),
    "lone surrogate \\ud800 (order_id)": _line().replace(b'"SO-1"', b'"SO-\\ud800"'),
    "extra payload field": _line(payload_changes={"colour": "red"}),
    "extra top-level field": _line(note="x"),
    "duplicate key in payload (units twice)": _line().replace(
        b'"units": 2', b'"units": 2, "units": 3'
    ),
    "duplicate key in envelope (client_id twice)": _line().replace(
        b'"client_id": "acme"', b'"client_id": "acme", "client_id": "zeta"'
    ),
    "nested payload 1,000 deep": _nested(1_000),
    "nested payload 100,000 deep": _nested(100_000),
    "invalid UTF-8 in a string": _line().replace(b'"SO-1"', b'"SO-\xff\xfe"'),
    "10 MB line (payload note)": _line(payload_changes={"note": "x" * 10_000_000}),
    "20 MB line (payload note)": _line(payload_changes={"note": "x" * 20_000_000}),
}


def probe(con, path: Path, mode: str) -> str:
    """What one read of a file ``good, case, good`` gives for the middle line."""
    sql = duck_sql(mode).replace("$files", "[$path]")
    try:
        rows = con.sql(sql, params={"path": str(path)}).fetchall()
    except Exception as exc:  # the whole read failed, not one line
        return "whole file fails: " + str(exc).splitlines()[0][:90]
    if len(rows) != 3:
        return f"{len(rows)} rows for 3 lines"
    middle = rows[1]
    typed, event_id, order_id, units = middle[1], middle[2], middle[8], middle[11]
    if all(v is None for v in middle[2:]):
        return "line nulled (ignore_errors): to the slow path"
    return f"row read; typed={typed}, event_id={event_id!r}, order_id={order_id!r}, units={units!r}"


def run_cases() -> None:
    import duckdb

    con = duckdb.connect()
    good = _line()
    files: dict[str, tuple[str, bytes]] = {
        name: ("case.ndjson", good + b"\n" + line + b"\n" + good + b"\n")
        for name, line in CASES.items()
    }
    files["gzipped file (middle: true as event_id)"] = (
        "case.ndjson.gz",
        gzip.compress(good + b"\n" + _line(event_id=True) + b"\n" + good + b"\n"),
    )
    files["blank line between two lines"] = ("case.ndjson", good + b"\n\n" + good + b"\n")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (file_name, content) in files.items():
            path = Path(tmp) / file_name
            path.write_bytes(content)
            for mode in ("lines", "records"):
                print(f"{name:<45} {mode:<7} {probe(con, path, mode)}")


def run_check(data: Path) -> None:
    """Fast rows against the project's ingest (the authority) on the same files: a fast row
    must not be quarantined for a parse or field reason, must carry the same envelope and
    payload values, and every valid line of the three types should be fast (coverage)."""
    import polars as pl

    from billing_pipeline.ingest.activity import build_activity_range
    from billing_pipeline.ingest.landing import dates_around, ingest_landing
    from billing_pipeline.ratecards import load_ratecards
    from billing_pipeline.storage import Store

    landing = data / "landing"
    frame = read_columnar([str(p) for p in bi.landing_files(data)], "lines")
    fast = frame.filter("fast").with_columns(
        source_file=pl.col("filename").map_elements(
            lambda f: str(Path(f).relative_to(landing)), return_dtype=pl.Utf8
        )
    )
    cards, _ = load_ratecards(data / "ratecards")
    timezones = {client: card.timezone for client, card in cards.items()}
    with tempfile.TemporaryDirectory(dir=bi.OUT) as tmp:
        store = Store(Path(tmp))
        result = ingest_landing(landing, store, timezones)
        build_activity_range(store, sorted(dates_around(result.touched_dates)), timezones)
        activity = pl.read_parquet(Path(tmp) / "activity", hive_partitioning=True)
        quarantine = pl.read_parquet(Path(tmp) / "quarantine" / "**" / "*.parquet")
    key = ["source_file", "source_line"]
    reasons = fast.join(quarantine, on=key, how="inner").group_by("reason").len()
    print("fast rows the authority quarantined, by reason:", reasons.rows())
    common = ["event_id", "event_type", "client_id", "warehouse_id"]
    both = fast.select(*key, *common).join(
        activity.select(*key, *common), on=key, how="inner", suffix="_a"
    )
    differ = both.filter(pl.any_horizontal(pl.col(c) != pl.col(c + "_a") for c in common))
    print(f"fast rows valid for the authority: {both.height:,}; with other values: {differ.height}")
    # Payload values: the authority's canonical payload decoded, against the extracted text.
    ints = ["lines", "units", "cartons", "inserts", "zone"]
    decs = ["weight_lb", "label_cost"]
    strs = [f for f in FIELDS if f not in (*ints, *decs, "materials")]
    dtype = pl.Struct(
        {**{f: pl.Utf8 for f in strs}, **{f: pl.Int64 for f in ints}, **{f: pl.Utf8 for f in decs}}
    )
    theirs = activity.select(*key, p=pl.col("payload").str.json_decode(dtype)).unnest("p")
    ours = fast.select(
        *key,
        *strs,
        *(pl.col(f).cast(pl.Int64) for f in ints),
        *(pl.col(f).cast(pl.Decimal(38, 6)) for f in decs),
    )
    theirs = theirs.with_columns(pl.col(f).cast(pl.Decimal(38, 6)) for f in decs)
    paired = ours.join(theirs, on=key, how="inner", suffix="_a")
    fields = [*strs, *ints, *decs]
    off = paired.filter(pl.any_horizontal(pl.col(f).ne_missing(pl.col(f + "_a")) for f in fields))
    print(f"payload fields compared on {paired.height:,} lines; differing: {off.height}")
    three = activity.filter(pl.col("event_type").is_in(list(TYPED)))
    missed = three.join(fast.select(key), on=key, how="anti")
    print(f"valid lines of the three types: {three.height:,}; not fast: {missed.height:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", action="store_true", help="probe the coercion cases only")
    parser.add_argument("--check", action="store_true", help="fast rows against ingest_landing")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data)
        return
    if args.cases:
        run_cases()
        return
    if args.check:
        run_check(bi.ensure_data(args.events[0]))
        return
    bi.OUT.mkdir(parents=True, exist_ok=True)
    for events in args.events:
        data = bi.ensure_data(events)
        runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
        for i in range(args.repeat):  # interleaved, so that load swings hit all three alike
            for kind, done in runs.items():
                run = measure(kind, data)
                done.append(run)
                extra = {
                    k: run[k] for k in ("rows", "fast", "written", "files_written") if k in run
                }
                print(
                    f"  {events:>9,} {kind:<10} run {i + 1}: wall {run['seconds']:.2f}s,"
                    f" cpu {run['cpu_seconds']:.2f}s, peak RSS {run['rss_mb']:.0f} MB {extra}",
                    flush=True,
                )
        floor = statistics.median(r["cpu_seconds"] for r in runs["floor"])
        floor_wall = statistics.median(r["seconds"] for r in runs["floor"])
        print(f"medians of {args.repeat}, {events:,} events")
        for kind, done in runs.items():
            cpu = statistics.median(r["cpu_seconds"] for r in done)
            wall = statistics.median(r["seconds"] for r in done)
            print(
                f"  {kind:<10} cpu {cpu:6.2f}s ({cpu / floor:.2f}x floor)"
                f"  wall {wall:6.2f}s ({wall / floor_wall:.2f}x floor)"
            )


if __name__ == "__main__":
    main()
