"""Small helpers to show frames and counts in the Dagster UI."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from dagster import MetadataValue


def md_table(frame: pl.DataFrame, limit: int = 20) -> MetadataValue:
    """A Markdown table of the first rows (long cells cut), for asset and check metadata."""
    if frame.is_empty():
        return MetadataValue.md("_none_")
    shown = frame.head(limit)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.iter_rows()]
    more = [f"\n_{frame.height - limit} more rows_"] if frame.height > limit else []
    return MetadataValue.md("\n".join([header, rule, *rows, *more]))


def counts_table(counts: Mapping[str, int], key: str) -> MetadataValue:
    frame = pl.DataFrame(
        {key: list(counts), "count": list(counts.values())},
        schema={key: pl.Utf8, "count": pl.Int64},
    ).sort("count", key, descending=[True, False])
    return md_table(frame, limit=50)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."
