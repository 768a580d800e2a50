"""The outputs directory (SPEC §4.1): dataset paths and atomic, reproducible writes.

The outputs directory is a local directory or an object-store URI (``s3://bucket/prefix``,
SPEC §2 and §11). A local root is a ``pathlib.Path`` and every operation is the plain local
one, so local runs do not pay for a remote layer. A URI root is a ``upath.UPath`` over fsspec
(s3fs for ``s3://``): it has the ``Path`` API (``/``, ``exists``, ``iterdir``, ``glob``,
``read_text``, ``open``), so most call sites read the same for both. What ``Path`` cannot do
on an object store goes through the functions here, one way for each thing: atomic writes
(``atomic_path``, ``write_parquet``, ``write_bytes``), Parquet reads (``read_parquet``,
``scan_parquet``) and removing a partition (``remove_tree``).

Locally every file is written to a temporary name in its final directory and renamed into
place, so a run killed midway leaves the previous file or none, never a partial one. An
object store has no rename; there the finished file is written to a local temporary file and
uploaded in one PUT (a multipart upload above 100 MiB): S3 shows a reader the old object or
the new one, never part of one, and an upload that fails leaves the old object. Credentials,
region and endpoint come from the standard AWS environment variables only.

Listings are not cached (``use_listings_cache=False``): sensors, run workers and ingestion's
parse processes write the same prefix from different processes, and a cached listing would
hide their files. Parquet is written with fixed options and rows in a fixed order so the
same inputs give the same rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from datetime import date
from pathlib import Path

import polars as pl
from upath import UPath

from billing_pipeline.catalog import CLIENT_ID_PATTERN
from billing_pipeline.config import DataPath, data_root

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


def is_remote(path: DataPath) -> bool:
    """On an object store (a UPath that is not a local path)?"""
    return not isinstance(path, Path)


def host_dir(root: DataPath, kind: str) -> Path:
    """A directory of this host's for the outputs at ``root`` (when they are on an object
    store, which cannot hold locks or scratch files): ``<tmp>/billing-<kind>/<digest>``,
    one per outputs URI, so that runs for other outputs on the same host keep theirs."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"billing-{kind}" / digest


def file_id(source_file: str) -> str:
    """A short stable directory name for a landing path (paths may hold any characters)."""
    return hashlib.sha256(source_file.encode()).hexdigest()[:20]


class Store:
    """Paths of the datasets under ``$BILLING_DATA_DIR``."""

    def __init__(self, root: str | os.PathLike[str] | UPath) -> None:
        self.root = data_root(root)

    # Contract datasets (SPEC §4.1)
    def activity_dir(self, day: date) -> DataPath:
        return self.root / "activity" / f"activity_date={day.isoformat()}"

    def activity_file(self, day: date, client_id: str) -> DataPath:
        return self.activity_dir(day) / f"client_id={check_client_id(client_id)}" / PART

    def quarantine_file(self, fid: str) -> DataPath:
        return self.root / "quarantine" / f"file_id={fid}" / PART

    def manifest_file(self) -> DataPath:
        return self.root / "manifest" / PART

    def charges_dir(self, month: str, client_id: str) -> DataPath:
        """The client-month's charges: one part file per activity day (``charges_part``)."""
        return self._month_client_file("charges", month, client_id).parent

    def charges_part(self, month: str, client_id: str, day: date) -> DataPath:
        # One file per day, so a night rewrites only the days whose charges changed (the
        # month's other days are left as they are); named by date so that the folder's
        # files in name order are the month's rows in order.
        return self.charges_dir(month, client_id) / f"part-{day.isoformat()}.parquet"

    def rule_errors_file(self, month: str, client_id: str) -> DataPath:
        return self._month_client_file("rule_errors", month, client_id)

    def _month_client_file(self, dataset: str, month: str, client_id: str) -> DataPath:
        month_dir = f"month={check_month(month)}"
        return self.root / dataset / month_dir / f"client_id={check_client_id(client_id)}" / PART

    def invoice_dir(self, month: str, client_id: str) -> DataPath:
        return self.root / "invoices" / check_month(month) / check_client_id(client_id)

    def reconciliation_dir(self, month: str) -> DataPath:
        return self.root / "reconciliation" / check_month(month)

    # Internal state of ingestion, not part of the contract.
    def lines_file(self, fid: str) -> DataPath:
        return self.root / "_staging" / "lines" / f"file_id={fid}" / PART

    def status_file(self, fid: str) -> DataPath:
        return self.root / "_staging" / "status" / f"file_id={fid}" / PART

    def register_dir(self, client_id: str) -> DataPath:
        """A client's dedup register: segment files and their index (ingest/register.py)."""
        return self.root / "_staging" / "register" / f"client_id={check_client_id(client_id)}"

    def landing_identities_file(self) -> DataPath:
        return self.root / "_staging" / "landing_identities.parquet"

    def clients_file(self) -> DataPath:
        return self.root / "_staging" / "clients.parquet"


@contextmanager
def atomic_path(target: DataPath, durable: bool = True, rename: bool = True) -> Iterator[Path]:
    """A local temporary path whose file replaces ``target`` only if the block succeeds.

    ``durable`` flushes the file to disk before the rename, so that a power cut leaves the
    old file or the new one. Internal files that are rebuilt from the landing directory
    when lost (ingestion's staging) skip it: an fsync costs milliseconds per file. On an
    object store the finished file is uploaded in one PUT, which is atomic by itself.
    ``rename=False`` (local only, ``write_files``): the block renames the file itself; the
    temporary file is removed if it is still there at the end.
    """
    if is_remote(target):
        with _uploaded(target) as tmp_path:
            yield tmp_path
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not rename:
            return
        if durable:
            _fsync(tmp_path)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def _uploaded(target: UPath) -> Iterator[Path]:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # The type a browser or a download tool goes by (invoice.html, invoice.json).
        kind = mimetypes.guess_type(target.name)[0]
        target.fs.put_file(tmp, target.path, **({"ContentType": kind} if kind else {}))
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet(
    frame: pl.DataFrame,
    target: DataPath,
    durable: bool = True,
    row_group_size: int | None = None,
    **encoding: object,
) -> None:
    """``frame`` to ``target`` atomically: zstd with statistics unless ``encoding`` (options
    of ``polars.DataFrame.write_parquet``) says otherwise."""
    options = {"compression": "zstd", "statistics": True, **encoding}
    with atomic_path(target, durable=durable) as tmp:
        frame.write_parquet(tmp, row_group_size=row_group_size, **options)


def parquet_bytes(
    frame: pl.DataFrame,
    metadata: dict[str, str] | None = None,
    row_group_size: int | None = None,
) -> bytes:
    """What ``write_parquet`` writes for ``frame``: for a frame stored twice (``write_bytes``
    each time), encoded and compressed once, or whose bytes are hashed. ``metadata``:
    key-value entries of the file."""
    buffer = io.BytesIO()
    frame.write_parquet(
        buffer,
        compression="zstd",
        statistics=True,
        metadata=metadata,
        row_group_size=row_group_size,
    )
    return buffer.getvalue()


def write_bytes(data: bytes, target: DataPath, durable: bool = True) -> None:
    with atomic_path(target, durable=durable) as tmp:
        tmp.write_bytes(data)


def write_files(files: Sequence[tuple[bytes, DataPath]]) -> None:
    """``write_bytes`` for several files, renamed into place in the order given (each file
    atomic and durable, as there). Locally the flushes to disk run side by side: an fsync
    waits on the disk, not the CPU, and the file system commits concurrent ones together
    (three small files: ~2 ms rather than ~8 ms one after the other)."""
    if not files or any(is_remote(target) for _, target in files):
        for data, target in files:
            write_bytes(data, target)
        return
    with ExitStack() as stack:
        tmps = []
        for data, target in files:
            tmp = stack.enter_context(atomic_path(target, durable=False, rename=False))
            tmp.write_bytes(data)
            tmps.append(tmp)
        with ThreadPoolExecutor(max_workers=len(tmps)) as pool:
            list(pool.map(_fsync, tmps))
        for tmp, (_, target) in zip(tmps, files, strict=True):
            os.replace(tmp, target)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def read_parquet(
    path: DataPath,
    schema: dict[str, pl.DataType] | None = None,
    columns: Sequence[str] | None = None,
    dataset: dict[str, pl.DataType] | None = None,
) -> pl.DataFrame:
    """The file's rows (``columns`` of them), or an empty frame of ``schema`` when there is
    no file yet. ``dataset``: the dataset's schema now; a column of it that the file lacks
    (written before the column was added) is read as nulls."""
    missing = _missing_columns(dataset)
    try:
        if is_remote(path):
            # One GET; a missing key is FileNotFoundError. (open(), or cat_file's default
            # concurrent download, first asks the size: a HEAD, and a LIST when missing.)
            data = path.fs.cat_file(path.path, max_concurrency=1)
            return pl.read_parquet(io.BytesIO(data), columns=columns, **missing)
        if path.exists():
            return pl.read_parquet(path, columns=columns, **missing)
    except FileNotFoundError:
        pass
    if schema is None:
        raise FileNotFoundError(path)
    empty = pl.DataFrame(schema=schema)
    return empty if columns is None else empty.select(columns)


def _missing_columns(dataset: dict[str, pl.DataType] | None) -> dict:
    """Polars' reader options that read a ``dataset`` column a file lacks as nulls."""
    return {"schema": dataset, "missing_columns": "insert"} if dataset else {}


def scan_parquet(
    paths: str | DataPath | Sequence[str | DataPath],
    include_file_paths: str | None = None,
    dataset: dict[str, pl.DataType] | None = None,
) -> pl.LazyFrame:
    """A lazy frame over Parquet files; remote files are fetched whole, one GET each.
    ``include_file_paths`` names a column holding each row's file, as ``str(path)``;
    ``dataset`` is as for ``read_parquet``."""
    listed = [paths] if isinstance(paths, (str, Path, UPath)) else paths
    files = [data_root(p) for p in listed]
    if not any(is_remote(p) for p in files):
        return pl.scan_parquet(
            files, include_file_paths=include_file_paths, **_missing_columns(dataset)
        )
    frames = [read_parquet(p, dataset=dataset).lazy() for p in files]
    if include_file_paths is not None:
        frames = [
            frame.with_columns(pl.lit(str(p)).alias(include_file_paths))
            for frame, p in zip(frames, files, strict=True)
        ]
    return pl.concat(frames, how="vertical")


def child_dirs(folder: DataPath) -> list[str]:
    """Sorted names of the directories in ``folder`` (none when it is missing). On an
    object store one listing: asking each child ``is_dir()`` would cost two requests each."""
    if is_remote(folder):
        try:
            entries = folder.fs.ls(folder.path, detail=True)
        except FileNotFoundError:
            return []
        names = (
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
        )
        return sorted(names)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def file_stat(path: DataPath) -> list[int | str]:
    """What changes whenever the file's bytes may have: size, mtime, ctime (which no tool
    sets back, unlike mtime) and inode on disk; size, ETag and last-modified time on an
    object store (which has no inodes)."""
    if is_remote(path):
        return _object_stat(path.fs.info(path.path))
    return _os_stat(path.stat())


def file_stat_or_none(path: DataPath) -> list[int | str] | None:
    """``file_stat``, or None for a missing file (a day without activity is a cache key too)."""
    try:
        return file_stat(path)
    except FileNotFoundError:
        return None


def write_cache(frame: pl.DataFrame, target: DataPath, key: str, meta: dict) -> None:
    """A cache file: ``frame``'s rows, and ``meta`` as JSON in the Parquet file's key-value
    entry ``key`` (the keys its rows were made for). Not flushed to disk: a lost or torn
    write costs a recompute (``read_cache`` takes an unreadable file for a missing one)."""
    data = parquet_bytes(frame, metadata={key: json.dumps(meta, sort_keys=True)})
    write_bytes(data, target, durable=False)


def read_cache(
    target: DataPath, key: str, schema: dict[str, pl.DataType]
) -> tuple[pl.DataFrame, dict] | None:
    """What ``write_cache`` wrote (its rows and meta), or None when the file is missing,
    unreadable, or its rows are not of ``schema``."""
    try:
        data = target.read_bytes()
        meta = json.loads(pl.read_parquet_metadata(io.BytesIO(data))[key])
        rows = pl.read_parquet(io.BytesIO(data))
    except (OSError, KeyError, ValueError, pl.exceptions.PolarsError):
        return None
    if not isinstance(meta, dict) or rows.schema != pl.Schema(schema):
        return None
    return rows, meta


def file_stats(folder: DataPath) -> dict[str, list[int | str]]:
    """``file_stat`` of every file in ``folder``, by name (none when it is missing); one
    listing."""
    if is_remote(folder):
        try:
            entries = folder.fs.ls(folder.path, detail=True)
        except FileNotFoundError:
            return {}
        return {
            e["name"].rsplit("/", 1)[-1]: _object_stat(e) for e in entries if e["type"] == "file"
        }
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as entries:
        return {e.name: _os_stat(e.stat()) for e in entries if e.is_file()}


def _object_stat(info: dict) -> list[int | str]:
    return [int(info["size"]), str(info.get("ETag", "")), str(info.get("LastModified", ""))]


def _os_stat(info: os.stat_result) -> list[int | str]:
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def child_files(folder: DataPath) -> list[str]:
    """Sorted names of the files in ``folder`` (none when it is missing); one listing, and
    on disk no stat per file (``file_stats`` takes one)."""
    if is_remote(folder):
        return sorted(file_stats(folder))
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_file())


def remove_file(path: DataPath) -> None:
    """Remove one file if it is there."""
    if is_remote(path):
        with suppress(FileNotFoundError):
            path.fs.rm_file(path.path)
    else:
        path.unlink(missing_ok=True)


def remove_tree(path: DataPath) -> None:
    """Remove a partition directory (used when a partition no longer has rows); on an
    object store, every object under its prefix."""
    if is_remote(path):
        objects = path.fs.find(path.path)
        if objects:
            path.fs.rm(objects)
    elif path.exists():
        shutil.rmtree(path)
