"""The outputs directory (SPEC §4.1): dataset paths and atomic, reproducible writes.

Every file is written to a temporary name in its final directory and renamed into place, so
a run killed midway leaves the previous file or none, never a partial one; readers never
see a half-written file. Parquet is written with fixed options and rows in a fixed order so
the same inputs give the same rows.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import polars as pl

from billing_pipeline.catalog import CLIENT_ID_PATTERN

PART = "part-0.parquet"
# Path segments made of a client id or a month: checked here too, whatever the caller
# validated, so that no value (a Dagster partition key added by hand, say) names a
# directory outside the outputs root.
_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def check_client_id(client_id: str) -> str:
    """The client id, if it is one; ValueError otherwise (it would name a directory)."""
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise ValueError(f"not a client id: {client_id!r} (expected {_CLIENT_ID.pattern})")
    return client_id


def check_month(month: str) -> str:
    """The month (YYYY-MM), if it is one; ValueError otherwise."""
    if not isinstance(month, str) or not _MONTH.match(month):
        raise ValueError(f"not a month: {month!r} (expected YYYY-MM)")
    return month


def file_id(source_file: str) -> str:
    """A short stable directory name for a landing path (paths may hold any characters)."""
    return hashlib.sha256(source_file.encode()).hexdigest()[:20]


class Store:
    """Paths of the datasets under ``$BILLING_DATA_DIR``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # Contract datasets (SPEC §4.1)
    def activity_dir(self, day: date) -> Path:
        return self.root / "activity" / f"activity_date={day.isoformat()}"

    def activity_file(self, day: date, client_id: str) -> Path:
        return self.activity_dir(day) / f"client_id={check_client_id(client_id)}" / PART

    def quarantine_file(self, fid: str) -> Path:
        return self.root / "quarantine" / f"file_id={fid}" / PART

    def manifest_file(self) -> Path:
        return self.root / "manifest" / PART

    def charges_file(self, month: str, client_id: str) -> Path:
        return (
            self.root
            / "charges"
            / f"month={check_month(month)}"
            / f"client_id={check_client_id(client_id)}"
            / PART
        )

    def rule_errors_file(self, month: str, client_id: str) -> Path:
        return (
            self.root
            / "rule_errors"
            / f"month={check_month(month)}"
            / f"client_id={check_client_id(client_id)}"
            / PART
        )

    def invoice_dir(self, month: str, client_id: str) -> Path:
        return self.root / "invoices" / check_month(month) / check_client_id(client_id)

    def reconciliation_dir(self, month: str) -> Path:
        return self.root / "reconciliation" / check_month(month)

    # Internal state of ingestion, not part of the contract.
    def lines_file(self, fid: str) -> Path:
        return self.root / "_staging" / "lines" / f"file_id={fid}" / PART

    def status_file(self, fid: str) -> Path:
        return self.root / "_staging" / "status" / f"file_id={fid}" / PART

    def register_file(self, client_id: str) -> Path:
        return (
            self.root / "_staging" / "register" / f"client_id={check_client_id(client_id)}" / PART
        )

    def clients_file(self) -> Path:
        return self.root / "_staging" / "clients.parquet"


@contextmanager
def atomic_path(target: Path, durable: bool = True) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it only if the block succeeds.

    ``durable`` flushes the file to disk before the rename, so that a power cut leaves the
    old file or the new one. Internal files that are rebuilt from the landing directory
    when lost (ingestion's staging) skip it: an fsync costs milliseconds per file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if durable:
            with open(tmp_path, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_parquet(frame: pl.DataFrame, target: Path, durable: bool = True) -> None:
    with atomic_path(target, durable=durable) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)


def write_bytes(data: bytes, target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def read_parquet(path: Path, schema: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """The file's rows, or an empty frame of ``schema`` when there is no file yet."""
    if path.exists():
        return pl.read_parquet(path)
    if schema is None:
        raise FileNotFoundError(path)
    return pl.DataFrame(schema=schema)


def remove_tree(path: Path) -> None:
    """Remove a partition directory (used when a partition no longer has rows)."""
    if path.exists():
        shutil.rmtree(path)
