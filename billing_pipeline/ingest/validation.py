"""One landing file's lines to a frame of parsed lines with their reasons (SPEC §4).

``parse_file`` is a pure function of the file's bytes: the result is cached by sha256 and
never recomputed for an unchanged file. Reasons that depend on anything else (rate cards for
``unknown_client``, other files for duplicates) are decided later, in ``classify.py``.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.catalog import CATALOG, ORDER_ID_TYPES, Field
from billing_pipeline.decimals import DecimalError, parse_decimal
from billing_pipeline.ingest.parsing import (
    ENVELOPE_ORDER,
    PAYLOAD_BASE,
    Columns,
    Failure,
    parse_block,
)
from billing_pipeline.ingest.reading import Line, read_lines
from billing_pipeline.ingest.schemas import (
    DECIMAL_DTYPE,
    ENVELOPE_RULES,
    PAYLOAD_MODELS,
    Envelope,
    failing_rows,
    parse_timestamps,
    payload_frame,
)

PARSED_SCHEMA = {
    "source_file": pl.Utf8,
    "source_line": pl.Int64,
    "raw_line": pl.Utf8,
    "reason": pl.Utf8,
    "detail": pl.Utf8,
    "event_id": pl.Utf8,
    "event_type": pl.Utf8,
    "occurred_at_raw": pl.Utf8,
    "occurred_at": pl.Datetime("us", "UTC"),
    "client_id": pl.Utf8,
    "warehouse_id": pl.Utf8,
    "schema_version": pl.Int64,
    "payload": pl.Utf8,
    "order_id": pl.Utf8,  # see _order_ids
}


def _envelope_failures(frame: pl.DataFrame) -> dict[int, Failure]:
    failures: dict[int, Failure] = {}
    cases = failing_rows(Envelope, frame)
    for index, column in cases.iter_rows():
        name = "occurred_at" if column == "occurred_at_raw" else column
        failure = Failure(
            ENVELOPE_ORDER[name], "invalid_field", f"{name}: {ENVELOPE_RULES[column]}"
        )
        _keep_first(failures, index, failure)
    return failures


def _payload_failures(cols: Columns) -> dict[int, Failure]:
    failures: dict[int, Failure] = {}
    for event_type, typed in cols.typed_payloads.items():
        specs = CATALOG[event_type]
        order = {spec.name: (PAYLOAD_BASE + i, spec) for i, spec in enumerate(specs)}
        rows = typed.rows
        columns: dict[str, object] = {}
        for position, spec in enumerate(specs, start=PAYLOAD_BASE):
            values = typed.values[spec.name]
            if spec.kind == "dec":
                columns[spec.name] = _decimals(values, spec, failures, rows, position)
            else:
                columns[spec.name] = values
        frame = payload_frame(event_type, columns)
        for index, column in failing_rows(PAYLOAD_MODELS[event_type], frame).iter_rows():
            position, spec = order[column]
            failure = Failure(position, "invalid_field", f"payload.{column}: {spec.rule()}")
            _keep_first(failures, rows[index], failure)
    return failures


_PLAIN_DECIMAL = r"^[0-9]{1,20}(\.[0-9]{1,6})?$"


def _decimals(
    values: list[object],
    spec: Field,
    failures: dict[int, Failure],
    rows: list[int],
    position: int,
) -> pl.Series:
    """A decimal field as exact decimals: plain text in bulk, anything else one by one.

    Numbers are read by their shortest representation (``repr``, as ``parse_decimal``
    does); text the plain pattern does not cover (``1e3``, ``-0.5``, `` 7.42``, too many
    places) goes through ``parse_decimal``, whose refusal becomes the row's failure.
    Slow-path rows hold exact Decimals already; they take the one-by-one way too.
    """
    texts = [v if v.__class__ is str else _number_text(v) for v in values]
    series = pl.Series(spec.name, texts, dtype=pl.Utf8)
    plain = series.str.contains(_PLAIN_DECIMAL).fill_null(False)
    result = series.zip_with(plain, pl.Series([None], dtype=pl.Utf8)).str.to_decimal(
        scale=DECIMAL_DTYPE.scale
    )
    result = result.cast(DECIMAL_DTYPE)
    others = [i for i in (~plain).arg_true().to_list() if values[i] is not None]
    if not others:
        return result
    exact = [_exact(values[i], spec, failures, rows[i], position) for i in others]
    return result.scatter(others, pl.Series(exact, dtype=DECIMAL_DTYPE, strict=False))


_DECIMAL_LIMIT = Decimal(10) ** (DECIMAL_DTYPE.precision - DECIMAL_DTYPE.scale)


def _number_text(value: object) -> str | None:
    """Shortest text of a JSON number (``repr``); None for what is not a plain number."""
    if value.__class__ is float or value.__class__ is int:
        return repr(value)
    return None


def _exact(
    value: object, spec: Field, failures: dict[int, Failure], row: int, position: int
) -> Decimal | None:
    """A decimal field as an exact Decimal; a refused value becomes this row's failure."""
    if value is None:
        return None
    try:
        number = value if isinstance(value, Decimal) else parse_decimal(value)
    except DecimalError as exc:
        detail = f"payload.{spec.name}: {spec.rule()}: {exc}"
        _keep_first(failures, row, Failure(position, "invalid_field", detail))
        return None
    if abs(number) >= _DECIMAL_LIMIT:  # beyond what the Decimal(38, 6) column holds
        detail = f"payload.{spec.name}: {spec.rule()}: out of range"
        _keep_first(failures, row, Failure(position, "invalid_field", detail))
        return None
    return number


def _keep_first(failures: dict[int, Failure], row: int, failure: Failure) -> None:
    current = failures.get(row)
    if current is None or _rank(failure) < _rank(current):
        failures[row] = failure


def _rank(failure: Failure) -> tuple[bool, int]:
    return (failure.reason != "missing_field", failure.order)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Parsing creates millions of small objects and no cycles; the cyclic collector would
    rescan them over and over (measured: it doubles the parse time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_file(path: Path, source_file: str) -> tuple[pl.DataFrame, int]:
    """Every non-blank line of the file with its parse-level reason; also the blank-line count."""
    return parse_files([(path, source_file)])[0]


def parse_files(files: Sequence[tuple[Path, str]]) -> list[tuple[pl.DataFrame, int]]:
    """``parse_file`` for several files at once: one Pandera validation for all their lines.

    Validation has a fixed cost per call (a few milliseconds per schema); landing files are
    many and small, so they are validated together and split apart afterwards.
    """
    parsed = parse_batch(files)
    results = []
    offset = 0
    for count, blank in zip(parsed.counts, parsed.blanks, strict=True):
        results.append((parsed.frame.slice(offset, count).drop("file_pos"), blank))
        offset += count
    return results


@dataclass
class ParsedBatch:
    """The lines of several files in one frame: PARSED_SCHEMA plus ``file_pos`` (the file's
    index in the batch), sorted by file and line; each file's line and blank-line counts."""

    frame: pl.DataFrame
    counts: list[int]
    blanks: list[int]


def parse_batch(files: Sequence[tuple[Path, str]]) -> ParsedBatch:
    """``parse_files`` without splitting the result: per-file work can then be done once
    for the whole batch (a Polars call per file costs more than its rows)."""
    cols = Columns()
    counts: list[int] = []
    blanks: list[int] = []
    with gc_paused():
        for path, _ in files:
            start = len(cols)
            blanks.append(_read_into(cols, path))
            counts.append(len(cols) - start)
        frame = _finish(cols)
    positions = pl.Series(
        "file_pos", [i for i, count in enumerate(counts) for _ in range(count)], pl.UInt32
    )
    names = pl.Series([source for _, source in files], dtype=pl.Utf8)
    frame = (
        frame.with_columns(positions, names.gather(positions).alias("source_file"))
        .select("file_pos", *PARSED_SCHEMA)
        .sort("file_pos", "source_line")
    )
    return ParsedBatch(frame, counts, blanks)


def _order_ids(cols: Columns) -> pl.Series:
    """Each line's payload ``order_id`` as the decoder read it, for the types that have one
    (null elsewhere, and where the field is missing or not a string: such lines are
    quarantined). The activity build takes it from here instead of matching the payload text
    again."""
    out = pl.Series("order_id", [None] * len(cols), dtype=pl.Utf8)
    for event_type in ORDER_ID_TYPES:
        typed = cols.typed_payloads.get(event_type)
        if typed is not None and typed.rows:
            values = [v if v.__class__ is str else None for v in typed.values["order_id"]]
            out = out.scatter(typed.rows, pl.Series(values, dtype=pl.Utf8))
    return out


def _read_into(cols: Columns, path: Path) -> int:
    """Append the file's non-blank lines to the batch; the number of blank lines."""
    blank = 0
    for item in read_lines(path):
        if isinstance(item, Line):
            cols.add_unparsed(item.number, item.text, item.problem or "", item.detail)
            continue
        blank += parse_block(cols, item.first, item.texts)
    return blank


def _finish(cols: Columns) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "source_line": cols.source_line,
            "raw_line": cols.raw_line,
            "reason": cols.reason,
            "detail": cols.detail,
            "event_id": cols.event_id,
            "event_type": cols.event_type,
            "occurred_at_raw": cols.occurred_at_raw,
            "client_id": cols.client_id,
            "warehouse_id": cols.warehouse_id,
            "schema_version": cols.schema_version,
            "payload": cols.payload,
        },
        schema={
            k: v
            for k, v in PARSED_SCHEMA.items()
            if k not in {"source_file", "occurred_at", "order_id"}
        },
    )
    # Lazy, not frame.with_columns: parse_timestamps names the instant twice, and only a
    # lazy query's common-subexpression elimination parses it once (eager: 0.29 against
    # 0.15 CPU s a million lines).
    frame = (
        frame.lazy()
        .with_columns(
            _order_ids(cols), parse_timestamps(pl.col("occurred_at_raw")).alias("occurred_at")
        )
        .collect()
    )
    failures = dict(cols.failures)
    for row, failure in _envelope_failures(frame).items():
        _keep_first(failures, row, failure)
    for row, failure in _payload_failures(cols).items():
        _keep_first(failures, row, failure)
    if failures:
        rows = sorted(failures)
        marks = pl.DataFrame(
            {
                "row": rows,
                "f_reason": [failures[r].reason for r in rows],
                "f_detail": [failures[r].detail for r in rows],
            },
            schema={"row": pl.UInt32, "f_reason": pl.Utf8, "f_detail": pl.Utf8},
        )
        frame = (
            frame.with_row_index("row")
            .join(marks, on="row", how="left", maintain_order="left")
            .with_columns(
                pl.coalesce("reason", "f_reason").alias("reason"),
                pl.coalesce("detail", "f_detail").alias("detail"),
            )
            .drop("row", "f_reason", "f_detail")
        )
    return frame
