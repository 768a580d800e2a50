"""One landing file's lines to a frame of parsed lines with their reasons (SPEC §4).

``parse_file`` is a pure function of the file's bytes: the result is cached by sha256 and
never recomputed for an unchanged file. Reasons that depend on anything else (rate cards for
``unknown_client``, other files for duplicates) are decided later, in ``classify.py``.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.catalog import CATALOG, Field
from billing_pipeline.decimals import DecimalError, parse_decimal
from billing_pipeline.ingest.parsing import (
    ENVELOPE_ORDER,
    PAYLOAD_BASE,
    Columns,
    Failure,
    parse_texts,
)
from billing_pipeline.ingest.reading import Line, read_lines
from billing_pipeline.ingest.schemas import (
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
    for event_type, rows in cols.typed_payloads.items():
        specs = CATALOG[event_type]
        order = {spec.name: (PAYLOAD_BASE + i, spec) for i, spec in enumerate(specs)}
        columns: dict[str, list[object]] = {}
        for position, spec in enumerate(specs, start=PAYLOAD_BASE):
            values = [values[spec.name] for _, values in rows]
            if spec.kind == "dec":
                values = [
                    _exact(value, spec, failures, rows[i][0], position)
                    for i, value in enumerate(values)
                ]
            elif spec.kind == "materials":
                values = [len(value) if isinstance(value, list) else value for value in values]
            columns[spec.name] = values
        frame = payload_frame(event_type, columns)
        for index, column in failing_rows(PAYLOAD_MODELS[event_type], frame).iter_rows():
            position, spec = order[column]
            failure = Failure(position, "invalid_field", f"payload.{column}: {spec.rule()}")
            _keep_first(failures, rows[index][0], failure)
    return failures


def _exact(
    value: object, spec: Field, failures: dict[int, Failure], row: int, position: int
) -> Decimal | None:
    """A decimal field as an exact Decimal; a refused value becomes this row's failure."""
    if value is None or isinstance(value, Decimal):
        return value
    try:
        return parse_decimal(value)
    except DecimalError as exc:
        detail = f"payload.{spec.name}: {spec.rule()}: {exc}"
        _keep_first(failures, row, Failure(position, "invalid_field", detail))
        return None


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
    cols = Columns()
    blank = 0
    with gc_paused():
        for item in read_lines(path):
            if isinstance(item, Line):
                cols.add_unparsed(item.number, item.text, item.problem or "", item.detail)
                continue
            keep = [i for i, text in enumerate(item.texts) if text and not text.isspace()]
            blank += len(item.texts) - len(keep)
            if len(keep) == len(item.texts):
                numbers = list(range(item.first, item.first + len(keep)))
                texts = item.texts
            else:
                numbers = [item.first + i for i in keep]
                texts = [item.texts[i] for i in keep]
            parse_texts(cols, numbers, texts)
    return _finish(cols, source_file), blank


def _finish(cols: Columns, source_file: str) -> pl.DataFrame:
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
        schema={k: v for k, v in PARSED_SCHEMA.items() if k not in {"source_file", "occurred_at"}},
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
            .join(marks, on="row", how="left")
            .with_columns(
                pl.coalesce("reason", "f_reason").alias("reason"),
                pl.coalesce("detail", "f_detail").alias("detail"),
            )
            .drop("row", "f_reason", "f_detail")
        )
    frame = frame.with_columns(
        pl.lit(source_file, pl.Utf8).alias("source_file"),
        parse_timestamps(pl.col("occurred_at_raw")).alias("occurred_at"),
    )
    return frame.select(list(PARSED_SCHEMA)).sort("source_line")
