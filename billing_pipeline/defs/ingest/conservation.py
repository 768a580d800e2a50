"""The conservation check (SPEC §4): every line read is valid, a duplicate or quarantined.

Counted from what is on disk, independently of what ingestion reported: the stored lines of
each file, its per-line statuses, and its quarantine partition.
"""

from __future__ import annotations

import polars as pl

from billing_pipeline.storage import Store, read_parquet, scan_parquet


def conservation_failures(store: Store, manifest: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for record in manifest.iter_rows(named=True):
        fid = record["file_id"]
        lines = scan_parquet(store.lines_file(fid)).select(pl.len()).collect().item()
        status_path = store.status_file(fid)
        statuses = (
            read_parquet(status_path, columns=["status"])["status"]
            if status_path.exists()
            else pl.Series("status", [], pl.Utf8)
        )
        valid = int((statuses == "valid").sum())
        duplicates = int((statuses == "duplicate").sum())
        q_path = store.quarantine_file(fid)
        quarantined = (
            scan_parquet(q_path).select(pl.len()).collect().item() if q_path.exists() else 0
        )
        counted = (lines, valid, duplicates, quarantined)
        reported = tuple(record[k] for k in ("lines", "valid", "duplicates", "quarantined"))
        if lines != valid + duplicates + quarantined or counted != reported:
            rows.append(
                {
                    "source_file": record["source_file"],
                    "lines": lines,
                    "valid": valid,
                    "duplicates": duplicates,
                    "quarantined": quarantined,
                    "manifest_says": "/".join(str(v) for v in reported),
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "source_file": pl.Utf8,
            "lines": pl.Int64,
            "valid": pl.Int64,
            "duplicates": pl.Int64,
            "quarantined": pl.Int64,
            "manifest_says": pl.Utf8,
        },
    )
