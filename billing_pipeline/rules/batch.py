"""One batch: columns prepared in polars, evaluated by the Lua driver, results back as frames."""

from __future__ import annotations

import datetime
import os
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from billing_pipeline.decimals import parse_decimal, round_quantity, shortest_decimal
from billing_pipeline.rules.arrow import Exported, borrowed_series
from billing_pipeline.rules.lua import MemoryCap, modules_table, new_runtime, text, to_lua
from billing_pipeline.rules.model import (
    CHARGES_SCHEMA,
    ERRORS_SCHEMA,
    QUANTITY,
    Budgets,
    RateVersion,
)
from billing_pipeline.rules.modules import Module
from billing_pipeline.rules.worker import SharedOutput

_EPOCH = datetime.date(1970, 1, 1)

# Batches of fewer events run with LuaJIT's JIT off while their worker's runtime is fresh
# (see _worker_runtime): on a small batch compiling the traces costs more than they save.
# Once the runtime has run this many events its traces are compiled and every later batch
# runs with the JIT on. Measured by
# benchmarks/bench_jit_sizes.py (default rules, DTC-like events, CPU of one evaluate, JIT
# on vs off, medians of 7): 1,000 events 46 vs 32 ms, 2,000 51 vs 41, 3,000 53 vs 51,
# 4,000 46 vs 60, 10,000 64 vs 127, 100,000 127 vs 901. In a nightly run most client-months
# are below it (1M events over 300 clients: median ~530 events).
JIT_MIN_EVENTS = 3_000


@dataclass
class Columns:
    """The batch as driver.lua reads it: int32 codes and string views, one row per event."""

    frame: pl.DataFrame  # row, event_id, occurred_at_raw, payload, warehouse_id, t, d, v
    types: list[str]
    dates: dict[int, str]


def encode(events: pl.DataFrame, versions: Sequence[RateVersion]) -> Columns:
    """Dictionary-encodes the event types (the driver groups the rows by type), finds each
    event's rate version and day. The warehouse stays a string column: rules seldom read it,
    and Lua makes the string from the column when one does (encoding it cost ~15 ms per
    million events here)."""
    types = sorted(events["event_type"].unique().to_list())
    days = events["activity_date"].to_physical()
    dates = {
        int(day): (_EPOCH + datetime.timedelta(days=int(day))).isoformat()
        for day in days.unique().to_list()
    }
    effective = pl.Series([(v.effective_from - _EPOCH).days for v in versions], dtype=pl.Int32)
    # version k (1-based) is in effect when effective[k-1] <= day < effective[k]; 0 = none
    version = effective.search_sorted(days.cast(pl.Int32), side="right").cast(pl.Int32)
    frame = events.select(
        pl.int_range(pl.len(), dtype=pl.Int32).alias("row"),
        pl.col("event_id"),
        pl.col("occurred_at_raw"),
        pl.col("payload"),
        pl.col("warehouse_id").cast(pl.String),
        pl.col("event_type").cast(pl.Enum(types)).to_physical().cast(pl.Int32).alias("t"),
        pl.col("activity_date").to_physical().cast(pl.Int32).alias("d"),
        version.alias("v"),
    ).rechunk()  # one chunk per column: what the child exports, and fast gathers (to_frames)
    return Columns(frame, types, dates)


def subset(columns: Columns, rows: pl.Series) -> Columns:
    frame = columns.frame.filter(pl.col("row").is_in(rows.implode()))
    return Columns(frame, columns.types, columns.dates)


# the charge arrays in the output file (int32 each), in driver.lua's order (OUT_ARRAYS): the
# line's row, and ids into the tables of distinct codes, quantities, bases and memos
_ARRAYS = ("ev", "code", "q", "b", "memo")


@dataclass
class RawResult:
    """What a child sends back through the pipe: small lists, and where in the shared output
    (worker.SharedOutput) it put the charge arrays; no polars objects, no bulk data."""

    load_error: str | None = None
    n_out: int = 0
    layout: list[tuple[int, int]] | None = None  # (offset, nbytes) per _ARRAYS entry
    codes: list[str] | None = None
    strings: list[str] | None = None  # memos
    q_direct: int = 0  # a quantity id below this is the quantity itself
    quantities: list[float] | None = None  # the quantity of id q_direct + k
    bases: list[float | str] | None = None  # the basis of id k + 1 (numbers and strings)
    err_rows: list[int] | None = None
    err_lines: list[int] | None = None
    err_messages: list[str] | None = None
    # filled in the parent by read_arrays(): the charge arrays as Series
    arrays: dict[str, pl.Series] | None = None


def read_arrays(raw: RawResult, output: SharedOutput) -> None:
    """In the parent, once the child is done: the charge arrays as Series over the shared
    output, without a copy; ``output`` must stay open until to_frames() has run."""
    arrays: dict[str, pl.Series] = {}
    for name, (offset, nbytes) in zip(_ARRAYS, raw.layout or [], strict=False):
        arrays[name] = borrowed_series(output.address(offset), nbytes, pl.Int32)
    raw.arrays = arrays


def _seq(table: Any, n: int | None = None) -> list[Any]:
    if n is None:
        n = len(table)
    return [table[i] for i in range(1, n + 1)]


def load_rules(driver: Any, runtime: Any, modules: dict[str, Module], root: str, budgets: Budgets):
    rules, error = driver.load_rules(
        modules_table(runtime, modules), root.encode(), budgets.instructions
    )
    return rules, (text(error) if rules is None else None)


@dataclass
class _WorkerRuntime:
    """The Lua runtime of a worker process. It serves every batch the worker evaluates, one
    after another, each in a fresh sandbox (driver.lua's CHUNKS): the traces LuaJIT compiled
    for one client-month's rules and payloads serve the next ones, where a fresh runtime per
    batch compiled them again each time (most client-months are small)."""

    pid: int
    runtime: Any
    driver: Any
    events: int = 0  # events it has evaluated

    @property
    def warm(self) -> bool:
        """Its traces are compiled: every later batch runs with the JIT on, however small."""
        return self.events >= JIT_MIN_EVENTS


_runtime: _WorkerRuntime | None = None


def _worker_runtime() -> _WorkerRuntime:
    """This process's runtime (a forked worker makes its own), emptied of the last batch."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        _runtime = _WorkerRuntime(os.getpid(), *new_runtime())
    else:
        # what the last batch left (its sandbox, event tables) goes before the memory cap
        # is measured
        _runtime.runtime.execute("collectgarbage('collect')")
    return _runtime


def run_in_lua(
    columns: Columns,
    *,
    modules: dict[str, Module],
    root: str,
    client_id: str,
    versions: Sequence[RateVersion],
    budgets: Budgets,
    progress_address: int,
    output: SharedOutput,
) -> RawResult:
    """Evaluates the batch in a fresh sandbox of the worker's runtime; runs only in the forked
    child (it caps the process's memory while Lua runs). The charge arrays go into
    ``output``."""
    worker = _worker_runtime()
    runtime, driver = worker.runtime, worker.driver
    cap = MemoryCap(budgets.memory_bytes)
    exported: dict[str, Exported] = {}
    try:
        rules, error = load_rules(driver, runtime, modules, root, budgets)
        if rules is None:
            return RawResult(load_error=error)
        frame = columns.frame
        exported = {name: Exported(frame[name]) for name in frame.columns}
        spec = to_lua(
            runtime,
            {
                "client_id": client_id,
                "jit": worker.warm or frame.height >= JIT_MIN_EVENTS,
                "instructions": budgets.instructions,
                "types": dict(enumerate(columns.types)),
                "dates": columns.dates,
                "n_versions": len(versions),
                "params": {i + 1: dict(v.params) for i, v in enumerate(versions)},
                "progress": progress_address,
                "rlimit_as": resource.RLIMIT_AS,
                "event_id": exported["event_id"].describe(),
                "occurred_at": exported["occurred_at_raw"].describe(),
                "payload": exported["payload"].describe(),
                "event_type": exported["t"].describe(),
                "warehouse_id": exported["warehouse_id"].describe(),
                "activity_date": exported["d"].describe(),
                "version": exported["v"].describe(),
                "row": exported["row"].describe(),
                "output_fd": output.fd,
            },
        )
        run = driver.new_batch(rules, spec)
        result = run(0, frame.height - 1)
        worker.events += frame.height
    finally:
        cap.lift()
        for column in exported.values():
            column.close()
    n_out = int(result[b"n_out"])
    errors = result[b"errors"]
    n_err = result[b"n_err"]
    return RawResult(
        n_out=n_out,
        layout=[(int(part[1]), int(part[2])) for part in _seq(result[b"layout"])],
        codes=[text(c) for c in _seq(result[b"codes"])],
        strings=[text(s) for s in _seq(result[b"strings"])],
        q_direct=int(result[b"q_direct"]),
        quantities=[float(q) for q in _seq(result[b"quantities"])],
        bases=[text(b) if isinstance(b, bytes) else float(b) for b in _seq(result[b"bases"])],
        err_rows=[int(r) for r in _seq(errors[b"ev"], n_err)],
        err_lines=[int(r) for r in _seq(errors[b"line"], n_err)],
        err_messages=[text(m) for m in _seq(errors[b"msg"], n_err)],
    )


# Text in this form is read exactly by polars' cast to QUANTITY: at most 32 integer digits
# (charge() refuses 1e32 and more) and 6 places. Basis strings are mostly in it (carriers'
# label costs), and so is polars' text of most fractional numbers; other forms charge()
# accepts ("1e3", " 5", "+5", ".5", more places for a number) go one by one.
_PLAIN_DECIMAL = r"^[0-9]{1,32}(\.[0-9]{0,6})?$"


def floats_to_decimal(values: pl.Series) -> pl.Series:
    """Lua numbers as SPEC §5 reads them: shortest decimal, half-up to 6 places.

    Integers (the common case) convert exactly in bulk; other values are converted once per
    distinct value and scattered into their rows (a lookup on the rows that need it only: a
    when/then over every row cost ~3x as much for a column with a few fractional
    quantities). A distinct value is read from polars' text of it, which is the shortest
    round-trip form, the digits of Python's ``repr`` (tests/rules/test_floats_to_decimal.py):
    when that text is plain with at most 6 places (label costs, hours) it is cast as it is,
    with nothing to round; anything else (more places, an exponent, a sign) goes through
    ``decimals``. 2,704 distinct label costs given as numbers: 7.2 ms one by one, 3.6 ms so
    (~1 s of the charges step at 10M events x 300 clients).
    """
    nan = values.is_nan()
    if nan.all():  # a basis column with no numeric basis at all
        return pl.repeat(None, values.len(), dtype=QUANTITY, eager=True)
    whole = (values == values.floor()) & (values.abs() < 2.0**53)
    out = values.cast(pl.Int64, strict=False).cast(QUANTITY)  # NaN (= none) becomes null
    odd_rows = (~whole & ~nan).arg_true()
    if odd_rows.len():
        odd_values = values.gather(odd_rows)
        odd = odd_values.unique()
        text = odd.cast(pl.String)
        exact = text.cast(QUANTITY, strict=False)
        others = (~text.str.contains(_PLAIN_DECIMAL)).arg_true()
        if others.len():
            converted = [round_quantity(shortest_decimal(x)) for x in odd.gather(others)]
            exact = exact.scatter(others, pl.Series(converted, dtype=QUANTITY))
        out = out.scatter(odd_rows, odd_values.replace_strict(odd, exact, return_dtype=QUANTITY))
    return out


def quantity_table(raw: RawResult) -> pl.Series:
    """Quantity id -> exact decimal: ids below ``q_direct`` are whole quantities, the rest
    index ``raw.quantities``; each distinct value converted once, as floats_to_decimal does."""
    direct = pl.int_range(raw.q_direct, dtype=pl.Int64, eager=True).cast(QUANTITY)
    if not raw.quantities:
        return direct
    return direct.append(floats_to_decimal(pl.Series(raw.quantities, dtype=pl.Float64)))


def basis_table(raw: RawResult) -> pl.Series:
    """Basis id -> exact decimal, id 0 = none. Numbers as floats_to_decimal reads them,
    strings (already checked in Lua) as parse_decimal does. A client-month has up to a few
    thousand distinct label costs: one cast for the plain ones. 2,699 distinct strings:
    8.4 ms one by one, 1.0 ms so (medians of 7, /tmp script calling basis_table)."""
    bases = raw.bases or []
    is_number = pl.Series([isinstance(b, float) for b in bases], dtype=pl.Boolean)
    out = pl.repeat(None, len(bases) + 1, dtype=QUANTITY, eager=True)
    if is_number.any():
        numbers = pl.Series([b for b in bases if isinstance(b, float)], dtype=pl.Float64)
        out = out.scatter(is_number.arg_true() + 1, floats_to_decimal(numbers))
    if not is_number.all():
        strings = [b for b in bases if not isinstance(b, float)]
        text = pl.Series(strings, dtype=pl.String)
        plain = text.str.contains(_PLAIN_DECIMAL)
        exact = text.cast(QUANTITY, strict=False)
        odd_rows = (~plain).arg_true()
        if odd_rows.len():
            # charge() refuses a basis string that is not a decimal, so no error is expected
            # here; one propagates (the client-month fails, named) rather than a basis of none
            odd = [round_quantity(parse_decimal(strings[i])) for i in odd_rows.to_list()]
            exact = exact.scatter(odd_rows, pl.Series(odd, dtype=QUANTITY))
        out = out.scatter((~is_number).arg_true() + 1, exact)
    return out


def to_frames(
    raws: Sequence[RawResult],
    events: pl.DataFrame,
    columns: Columns,
    versions: Sequence[RateVersion],
    *,
    rules_file: str,
    rules_sha256: str,
    extra_errors: Sequence[tuple[int, int | None, str]] = (),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Charges and errors in input order (then emission order)."""
    effective = pl.Series([None, *[v.effective_from for v in versions]], dtype=pl.Date)
    # per-row columns from the encoded frame (one chunk each, see encode): a gather there is
    # several times faster than one from the caller's (possibly chunked) frame. event_type is
    # gathered from the caller's column all the same: gathered as codes from the small table
    # of types it takes half the time, same values, but other string buffers, and so other
    # Arrow IPC bytes (which the benchmark's output hash compares)
    frame = columns.frame
    event_types = events["event_type"]
    # one version in effect for the whole batch (the usual month): its date on every line,
    # without two gathers over them
    versions_in = frame["v"]
    single_version = versions_in.max() if versions_in.min() == versions_in.max() else 0
    charge_parts, error_parts = [], []
    for raw in raws:
        if raw.load_error is not None:
            continue
        arrays = raw.arrays or {}
        if raw.n_out and arrays:
            ev = arrays["ev"]
            codes = pl.Series([None, *(raw.codes or [])], dtype=pl.String)
            memos = pl.Series([None, *(raw.strings or [])], dtype=pl.String)
            if single_version:
                ratecard = pl.repeat(effective[single_version], ev.len(), dtype=pl.Date, eager=True)
            else:
                ratecard = effective.gather(frame["v"].gather(ev))
            charge_parts.append(
                pl.DataFrame(
                    {
                        "_ev": ev,
                        "event_id": frame["event_id"].gather(ev),
                        "activity_date": frame["d"].gather(ev).cast(pl.Date),
                        "event_type": event_types.gather(ev),
                        "charge_code": codes.gather(arrays["code"]),
                        "quantity": quantity_table(raw).gather(arrays["q"]),
                        "basis": basis_table(raw).gather(arrays["b"]),
                        "memo": memos.gather(arrays["memo"]),
                        "ratecard_version": ratecard,
                    }
                )
            )
        if raw.err_rows:
            error_parts.append(
                pl.DataFrame(
                    {
                        "_ev": pl.Series(raw.err_rows, dtype=pl.Int32),
                        "line": pl.Series(raw.err_lines, dtype=pl.Int64),
                        "message": pl.Series(raw.err_messages, dtype=pl.String),
                    }
                )
            )
    if extra_errors:
        error_parts.append(
            pl.DataFrame(
                {
                    "_ev": pl.Series([r for r, _, _ in extra_errors], dtype=pl.Int32),
                    "line": pl.Series([ln for _, ln, _ in extra_errors], dtype=pl.Int64),
                    "message": pl.Series([m for _, _, m in extra_errors], dtype=pl.String),
                }
            )
        )
    load_errors = [raw.load_error for raw in raws if raw.load_error is not None]
    if load_errors:
        message = "rules failed to load: " + load_errors[0]
        line = _line_of(load_errors[0])
        error_parts = [
            pl.DataFrame(
                {
                    "_ev": columns.frame["row"],
                    "line": pl.Series([line] * columns.frame.height, dtype=pl.Int64),
                    "message": pl.Series([message] * columns.frame.height, dtype=pl.String),
                }
            )
        ]
        charge_parts = []

    # one part comes back in input order already (driver.lua sorts the lines by row); parts of
    # a batch that was split need the sort
    charges = _finish(charge_parts, CHARGES_SCHEMA, rules_file, rules_sha256)
    if error_parts:
        errs = pl.concat(error_parts).sort("_ev", maintain_order=True)
        picked = events.select("event_id", "activity_date", "event_type")[errs["_ev"]]
        errors = pl.DataFrame(
            {
                "event_id": picked["event_id"],
                "activity_date": picked["activity_date"],
                "event_type": picked["event_type"],
                "rules_file": pl.Series([rules_file] * errs.height, dtype=pl.String),
                "line": errs["line"].replace(-1, None),
                "message": errs["message"],
            }
        )
    else:
        errors = pl.DataFrame(schema=ERRORS_SCHEMA)
    return charges, errors.select([pl.col(c).cast(t) for c, t in ERRORS_SCHEMA.items()])


def _finish(parts: list[pl.DataFrame], schema: dict, rules_file: str, sha: str) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema=schema)
    frame = parts[0] if len(parts) == 1 else pl.concat(parts).sort("_ev", maintain_order=True)
    return frame.with_columns(
        pl.lit(rules_file, dtype=pl.String).alias("rules_file"),
        pl.lit(sha, dtype=pl.String).alias("rules_sha256"),
    ).select([pl.col(c).cast(t) for c, t in schema.items()])


def _line_of(message: str) -> int | None:
    import re

    match = re.match(r"^[^\n]*?\.lua:(\d+):", message)
    return int(match.group(1)) if match else None
