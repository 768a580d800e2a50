"""Pandera (Polars backend) schemas: the envelope, and one DataFrameModel per event type.

The payload models are generated from ``catalog.CATALOG`` so the catalog stays the single
statement of the rules. Columns are nullable on purpose: a null is either an optional field
that is absent or a value whose JSON type was already refused by ``parsing.py``; the
missing/mistyped cases are decided there, the value rules here.
"""

from __future__ import annotations

import re

import pandera.polars as pa
import polars as pl

from billing_pipeline.catalog import (
    CATALOG,
    CLIENT_ID_PATTERN,
    EVENT_ID_PATTERN,
    SCHEMA_VERSIONS,
    WAREHOUSE_ID_PATTERN,
    Field,
)

RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
DECIMAL_DTYPE = pl.Decimal(38, 6)


def parse_timestamps(column: pl.Expr) -> pl.Expr:
    """RFC 3339 text to a UTC instant; null where the text is not a real timestamp.

    Only UTC years 0002-9998: the date of the instant in any time zone must be one that
    Python and Parquet can hold (9999-12-31T23:59:59-23:59 is in the year 10000 in UTC).
    The expression uses the parsed instant twice: in a lazy query (``collect``) the parse
    runs once; an eager ``select`` or ``with_columns`` does not eliminate common
    subexpressions and parses every text twice.
    """
    instant = column.str.to_datetime("%+", strict=False, time_zone="UTC", time_unit="us")
    return pl.when(instant.dt.year().is_between(2, 9998)).then(instant)


class Envelope(pa.DataFrameModel):
    """SPEC §3 envelope. ``occurred_at_raw`` is the text as delivered; ``occurred_at`` is
    ``parse_timestamps`` of it, which every frame of envelopes carries: parsing computes it
    once (a second parse here cost ~0.37 µs a row, at parse time and in the activity check).
    """

    event_id: pl.Utf8 = pa.Field(nullable=True, str_matches=EVENT_ID_PATTERN)
    event_type: pl.Utf8 = pa.Field(nullable=True, str_matches=EVENT_TYPE_PATTERN)
    occurred_at_raw: pl.Utf8 = pa.Field(nullable=True, str_matches=RFC3339_PATTERN)
    occurred_at: pl.Datetime("us", "UTC") = pa.Field(nullable=True)
    client_id: pl.Utf8 = pa.Field(nullable=True, str_matches=CLIENT_ID_PATTERN)
    warehouse_id: pl.Utf8 = pa.Field(nullable=True, str_matches=WAREHOUSE_ID_PATTERN)
    schema_version: pl.Int64 = pa.Field(nullable=True, isin=list(SCHEMA_VERSIONS))

    @pa.check("occurred_at_raw", name="real_timestamp")
    @classmethod
    def _real_timestamp(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """The pattern admits 2026-13-45T99:00:00Z; the calendar does not: such text has no
        instant (``parse_timestamps`` gives null)."""
        instant = pl.col("occurred_at")
        return data.lazyframe.select(pl.col(data.key).is_null() | instant.is_not_null())

    class Config:
        strict = False


ENVELOPE_RULES = {
    "event_id": "1-128 characters of [A-Za-z0-9._:-]",
    "event_type": "1-128 characters of [A-Za-z0-9._:-]",
    "occurred_at_raw": "an RFC 3339 timestamp with Z or an explicit offset, years 0002-9998",
    "client_id": "matches ^[a-z0-9][a-z0-9_-]{0,63}$",
    "warehouse_id": "matches ^[A-Z0-9][A-Z0-9_-]{0,31}$",
    "schema_version": "one of " + ", ".join(str(v) for v in SCHEMA_VERSIONS),
}


def _dtype(spec: Field) -> pl.DataType:
    if spec.kind == "int" or spec.kind == "materials":
        return pl.Int64()  # materials: the item count; its items are checked in parsing.py
    if spec.kind == "dec":
        return DECIMAL_DTYPE
    return pl.Utf8()


def _field(spec: Field) -> pa.Field:
    kwargs: dict[str, object] = {"nullable": True}
    if spec.kind == "enum":
        kwargs["isin"] = list(spec.choices)
    elif spec.positive:
        kwargs["gt"] = 0
    else:
        if spec.minimum is not None:
            kwargs["ge"] = spec.minimum
        if spec.maximum is not None:
            kwargs["le"] = spec.maximum
    return pa.Field(**kwargs)


def _model_name(event_type: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", event_type)) + "Payload"


def _payload_model(event_type: str, specs: tuple[Field, ...]) -> type[pa.DataFrameModel]:
    attrs: dict[str, object] = {
        "__annotations__": {spec.name: _dtype(spec) for spec in specs},
        "__doc__": f"Payload of {event_type} (SPEC §3).",
        "Config": type("Config", (), {"strict": False}),
    }
    attrs.update({spec.name: _field(spec) for spec in specs})
    return type(_model_name(event_type), (pa.DataFrameModel,), attrs)


PAYLOAD_MODELS: dict[str, type[pa.DataFrameModel]] = {
    event_type: _payload_model(event_type, specs) for event_type, specs in CATALOG.items()
}


def payload_frame(event_type: str, columns: dict[str, list[object]]) -> pl.DataFrame:
    schema = {spec.name: _dtype(spec) for spec in CATALOG[event_type]}
    return pl.DataFrame(columns, schema=schema, strict=False)


def failing_rows(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> pl.DataFrame:
    """(index, column) of every failed check; empty when the frame is valid."""
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        return cases.filter(pl.col("index").is_not_null()).select(
            pl.col("index").cast(pl.Int64), pl.col("column").cast(pl.Utf8)
        )
    return pl.DataFrame(schema={"index": pl.Int64, "column": pl.Utf8})
