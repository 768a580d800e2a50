"""One batch: columns prepared in polars, evaluated by the Lua driver, results back as frames."""

from __future__ import annotations

import ctypes
import datetime
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from billing_pipeline.decimals import DecimalError, parse_decimal, round_quantity, shortest_decimal
from billing_pipeline.rules.arrow import Exported, float64_series, int32_series
from billing_pipeline.rules.lua import MemoryCap, modules_table, new_runtime, text, to_lua
from billing_pipeline.rules.model import (
    CHARGES_SCHEMA,
    ERRORS_SCHEMA,
    QUANTITY,
    Budgets,
    RateVersion,
)
from billing_pipeline.rules.modules import Module

_EPOCH = datetime.date(1970, 1, 1)


@dataclass
class Columns:
    """The batch as driver.lua reads it: int32 codes and string views, one row per event."""

    frame: pl.DataFrame  # row, event_id, occurred_at_raw, payload, t, w, d, v (Int32 codes)
    types: list[str]
    warehouses: list[str]
    dates: dict[int, str]


def encode(events: pl.DataFrame, versions: Sequence[RateVersion]) -> Columns:
    """Dictionary-encodes the low-cardinality columns and finds each event's rate version."""
    types = sorted(events["event_type"].unique().to_list())
    warehouses = sorted(events["warehouse_id"].unique().to_list())
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
        pl.col("event_type").cast(pl.Enum(types)).to_physical().cast(pl.Int32).alias("t"),
        pl.col("warehouse_id").cast(pl.Enum(warehouses)).to_physical().cast(pl.Int32).alias("w"),
        pl.col("activity_date").to_physical().cast(pl.Int32).alias("d"),
        version.alias("v"),
    )
    return Columns(frame, types, warehouses, dates)


def subset(columns: Columns, rows: pl.Series) -> Columns:
    frame = columns.frame.filter(pl.col("row").is_in(rows.implode()))
    return Columns(frame, columns.types, columns.warehouses, columns.dates)


@dataclass
class RawResult:
    """What a child sends back: binary arrays and small lists, no polars objects."""

    load_error: str | None = None
    ev: bytes = b""
    code: bytes = b""
    q: bytes = b""
    bn: bytes = b""
    bs: bytes = b""
    memo: bytes = b""
    codes: list[str] | None = None
    strings: list[str] | None = None
    err_rows: list[int] | None = None
    err_lines: list[int] | None = None
    err_messages: list[str] | None = None


def _seq(table: Any, n: int | None = None) -> list[Any]:
    if n is None:
        n = len(table)
    return [table[i] for i in range(1, n + 1)]


def load_rules(driver: Any, runtime: Any, modules: dict[str, Module], root: str, budgets: Budgets):
    rules, error = driver.load_rules(
        modules_table(runtime, modules), root.encode(), budgets.instructions
    )
    return rules, (text(error) if rules is None else None)


def run_in_lua(
    columns: Columns,
    *,
    modules: dict[str, Module],
    root: str,
    client_id: str,
    versions: Sequence[RateVersion],
    budgets: Budgets,
    progress_address: int,
) -> RawResult:
    """Evaluates the batch in a fresh runtime; runs only in the forked child (it caps the
    process's memory while Lua runs)."""
    cap = MemoryCap(budgets.memory_bytes)
    exported: dict[str, Exported] = {}
    try:
        runtime, driver = new_runtime()
        rules, error = load_rules(driver, runtime, modules, root, budgets)
        if rules is None:
            return RawResult(load_error=error)
        frame = columns.frame
        exported = {name: Exported(frame[name]) for name in frame.columns}
        spec = to_lua(
            runtime,
            {
                "client_id": client_id,
                "instructions": budgets.instructions,
                "types": dict(enumerate(columns.types)),
                "warehouses": dict(enumerate(columns.warehouses)),
                "dates": columns.dates,
                "n_versions": len(versions),
                "params": {i + 1: dict(v.params) for i, v in enumerate(versions)},
                "progress": progress_address,
                "rlimit_as": resource.RLIMIT_AS,
                "event_id": exported["event_id"].describe(),
                "occurred_at": exported["occurred_at_raw"].describe(),
                "payload": exported["payload"].describe(),
                "event_type": exported["t"].describe(),
                "warehouse_id": exported["w"].describe(),
                "activity_date": exported["d"].describe(),
                "version": exported["v"].describe(),
                "row": exported["row"].describe(),
            },
        )
        run = driver.new_batch(rules, spec)
        result = run(0, frame.height - 1)
    finally:
        cap.lift()
        for column in exported.values():
            column.close()
    n_out = int(result[b"n_out"])
    errors = result[b"errors"]
    n_err = result[b"n_err"]
    out = result[b"out"]

    def copied(name: bytes, size: int) -> bytes:
        return ctypes.string_at(int(out[name]), size * n_out) if n_out else b""

    raw = RawResult(
        ev=copied(b"ev", 4),
        code=copied(b"code", 4),
        q=copied(b"q", 8),
        bn=copied(b"bn", 8),
        bs=copied(b"bs", 4),
        memo=copied(b"memo", 4),
        codes=[text(c) for c in _seq(result[b"codes"])],
        strings=[text(s) for s in _seq(result[b"strings"])],
        err_rows=[int(r) for r in _seq(errors[b"ev"], n_err)],
        err_lines=[int(r) for r in _seq(errors[b"line"], n_err)],
        err_messages=[text(m) for m in _seq(errors[b"msg"], n_err)],
    )
    driver.free_output(result)
    return raw


_ints = int32_series
_floats = float64_series


def floats_to_decimal(values: pl.Series) -> pl.Series:
    """Lua numbers as SPEC §5 reads them: shortest decimal, half-up to 6 places.

    Integers (the common case) convert exactly in bulk; other values go through
    ``decimals`` once per distinct value.
    """
    nan = values.is_nan()
    if nan.all():  # a basis column with no numeric basis at all
        return pl.repeat(None, values.len(), dtype=QUANTITY, eager=True)
    whole = (values == values.floor()) & (values.abs() < 2.0**53)
    if (whole | nan).all():  # the common case: integers (and NaN = none)
        return values.cast(pl.Int64, strict=False).cast(QUANTITY)
    frame = pl.DataFrame({"x": values})
    integral = (pl.col("x") == pl.col("x").floor()) & (pl.col("x").abs() < 2.0**53)
    odd = frame.filter(~integral & pl.col("x").is_not_nan())["x"].unique().to_list()
    exact = [round_quantity(shortest_decimal(x)) for x in odd]
    mapped = (
        pl.col("x").replace_strict(odd, pl.Series(exact, dtype=QUANTITY), default=None)
        if odd
        else pl.lit(None, dtype=QUANTITY)
    )
    return frame.select(
        pl.when(pl.col("x").is_nan())
        .then(pl.lit(None, dtype=QUANTITY))
        .when(integral)
        .then(pl.col("x").cast(pl.Int64).cast(QUANTITY))
        .otherwise(mapped)
        .alias("x")
    )["x"]


def strings_to_decimal(strings: list[str]) -> pl.Series:
    """The basis strings (already checked in Lua) as exact decimals, index 0 = none."""
    out: list[Any] = [None]
    for s in strings:
        try:
            out.append(round_quantity(parse_decimal(s)))
        except DecimalError:  # not a basis string (a memo): never looked up as a basis
            out.append(None)
    return pl.Series(out, dtype=QUANTITY)


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
    base = events.select("event_id", "activity_date", "event_type").with_columns(
        columns.frame["v"].alias("_v")
    )
    charge_parts, error_parts = [], []
    for raw in raws:
        if raw.load_error is not None:
            continue
        if raw.ev:
            ev = _ints(raw.ev)
            codes = pl.Series([None, *(raw.codes or [])], dtype=pl.String)
            strings = pl.Series([None, *(raw.strings or [])], dtype=pl.String)
            string_decimals = strings_to_decimal(raw.strings or [])
            bs = _ints(raw.bs)
            basis_from_number = floats_to_decimal(_floats(raw.bn))
            picked = base[ev]
            charge_parts.append(
                pl.DataFrame(
                    {
                        "_ev": ev,
                        "event_id": picked["event_id"],
                        "activity_date": picked["activity_date"],
                        "event_type": picked["event_type"],
                        "charge_code": codes.gather(_ints(raw.code)),
                        "quantity": floats_to_decimal(_floats(raw.q)),
                        "basis": pl.select(
                            pl.when(bs > 0)
                            .then(string_decimals.gather(bs))
                            .otherwise(basis_from_number)
                        ).to_series(),
                        "memo": strings.gather(_ints(raw.memo)),
                        "ratecard_version": effective.gather(picked["_v"]),
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
        picked = base[errs["_ev"]]
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
