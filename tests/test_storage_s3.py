"""storage.py on an object store: moto's S3 server, started by the test, through the same
functions the pipeline uses for a local outputs directory."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

import boto3
import polars as pl
import pytest
from upath import UPath

from billing_pipeline.config import Paths, data_root
from billing_pipeline.storage import (
    Store,
    atomic_path,
    child_dirs,
    child_files,
    file_stat,
    file_stats,
    read_parquet,
    remove_tree,
    scan_parquet,
    write_bytes,
    write_parquet,
)
from tests import s3_server
from tests.s3_server import s3_keys

# The server's fixtures, for the tests below to ask for by name.
s3_endpoint, s3_bucket = s3_server.s3_endpoint, s3_server.s3_bucket


@pytest.fixture
def store(s3_bucket: str) -> Store:
    return Store(f"s3://{s3_bucket}/billing/out")


def test_a_uri_is_a_remote_root_and_a_directory_stays_a_local_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_DATA_DIR", "s3://some-bucket/a/prefix")
    data = Paths.from_env(tmp_path).data
    assert isinstance(data, UPath) and str(data) == "s3://some-bucket/a/prefix"
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path / "warehouse"))
    local = Paths.from_env(tmp_path).data
    # Exactly a pathlib.Path: local I/O does not go through fsspec.
    assert type(local) is type(Path()) and local == tmp_path / "warehouse"
    assert data_root("file://" + str(tmp_path)) == tmp_path


def test_written_files_read_back_and_are_single_objects(
    store: Store,
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    frame = pl.DataFrame({"client_id": ["a", "b"], "n": [1, 2]})
    part = store.charges_part("2026-10", "a", date(2026, 10, 5))
    write_parquet(frame, part)
    write_bytes(b"invoice_id,total\r\nINV-1,1.00\r\n", store.invoice_dir("2026-10", "a") / "x.csv")

    assert read_parquet(part).equals(frame)
    assert read_parquet(part, columns=["n"])["n"].to_list() == [1, 2]
    assert scan_parquet([part] * 2).collect().height == 4
    assert child_files(store.charges_dir("2026-10", "a")) == ["part-2026-10-05.parquet"]
    # one listing gives what file_stat asks of each file (a part's stat is how the charges
    # asset knows the part is the one it wrote)
    assert file_stats(store.charges_dir("2026-10", "a")) == {
        "part-2026-10-05.parquet": file_stat(part)
    }
    text = (store.invoice_dir("2026-10", "a") / "x.csv").read_bytes()
    assert text == b"invoice_id,total\r\nINV-1,1.00\r\n"
    # What the server holds: the two finished objects under the prefix, nothing else.
    assert s3_keys(s3_endpoint, s3_bucket) == [
        "billing/out/charges/month=2026-10/client_id=a/part-2026-10-05.parquet",
        "billing/out/invoices/2026-10/a/x.csv",
    ]


def test_a_missing_file_is_an_empty_frame_of_the_schema_or_an_error(store: Store) -> None:
    schema = {"a": pl.Int64, "b": pl.Utf8}
    assert read_parquet(store.manifest_file(), schema).schema == pl.Schema(schema)
    assert read_parquet(store.manifest_file(), schema, columns=["b"]).columns == ["b"]
    with pytest.raises(FileNotFoundError):
        read_parquet(store.manifest_file())


def test_a_failed_write_keeps_the_previous_object_and_leaves_nothing_behind(
    store: Store,
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    target = store.manifest_file()
    write_parquet(pl.DataFrame({"a": [1, 2]}), target)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_bytes(b"PAR1 half a file")
        local_tmp = tmp
        raise Boom
    assert read_parquet(target)["a"].to_list() == [1, 2]
    assert s3_keys(s3_endpoint, s3_bucket) == ["billing/out/manifest/part-0.parquet"]
    assert not local_tmp.exists()  # the local temporary file is gone too


def test_an_upload_that_fails_raises_and_leaves_no_local_temporary(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # A bucket that does not exist: the PUT itself fails, after the file was written.
    target = Store(f"s3://no-such-{s3_bucket}/out").manifest_file()
    with pytest.raises(FileNotFoundError, match="bucket does not exist"):
        write_parquet(pl.DataFrame({"a": [2]}), target)
    assert list(tmp_path.iterdir()) == []


def test_listing_sees_what_another_client_wrote(
    store: Store,
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    folder = store.root / "activity" / "activity_date=2026-10-01"
    write_parquet(pl.DataFrame({"a": [1]}), store.activity_file(date(2026, 10, 1), "alpha"))
    assert [p.name for p in folder.iterdir()] == ["client_id=alpha"]
    # Written behind fsspec's back, as a sensor or another run worker would: no stale listing.
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=s3_bucket,
        Key="billing/out/activity/activity_date=2026-10-01/client_id=beta/part-0.tmp",
        Body=b"1",
    )
    assert sorted(p.name for p in folder.iterdir()) == ["client_id=alpha", "client_id=beta"]
    assert sorted(p.parent.name for p in folder.glob("client_id=*/part-0.parquet")) == [
        "client_id=alpha"
    ]


def test_removing_a_partition_deletes_every_object_under_its_prefix(
    store: Store,
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    write_parquet(pl.DataFrame({"a": [1]}), store.quarantine_file("f1"))
    write_parquet(pl.DataFrame({"a": [1]}), store.quarantine_file("f10"))
    write_bytes(b"{}", store.quarantine_file("f1").parent / "extra.json")
    remove_tree(store.quarantine_file("f1").parent)
    remove_tree(store.quarantine_file("missing").parent)  # nothing there: no error
    # The sibling whose name starts the same is not under the removed prefix.
    assert s3_keys(s3_endpoint, s3_bucket) == ["billing/out/quarantine/file_id=f10/part-0.parquet"]
    assert not store.quarantine_file("f1").parent.exists()


def test_child_dirs_lists_the_same_names_on_s3_and_on_disk(store: Store, tmp_path: Path) -> None:
    local = Store(tmp_path / "out")
    for root in (store, local):
        for client in ("beta", "alpha"):
            write_parquet(pl.DataFrame({"a": [1]}), root.activity_file(date(2026, 10, 1), client))
        write_bytes(b"x", root.activity_dir(date(2026, 10, 1)) / "stray.txt")
    for root in (store, local):
        assert child_dirs(root.activity_dir(date(2026, 10, 1))) == [
            "client_id=alpha",
            "client_id=beta",
        ]
        assert child_dirs(root.activity_dir(date(2026, 10, 2))) == []


def test_a_column_a_file_predates_reads_as_nulls_on_s3_and_on_disk(
    store: Store, tmp_path: Path
) -> None:
    # ``dataset``: the dataset's schema now; a file written before a column was added has
    # it as nulls, whichever of the files comes first
    dataset = {"event_id": pl.Utf8, "order_id": pl.Utf8}
    old = pl.DataFrame({"event_id": ["e1"]})
    new = pl.DataFrame({"event_id": ["e2"], "order_id": ["o2"]})
    expected = pl.DataFrame({"event_id": ["e1", "e2"], "order_id": [None, "o2"]}, dataset)
    for root in (store, Store(tmp_path / "out")):
        first, second = (
            root.activity_file(date(2026, 10, 1), "a"),
            root.activity_file(date(2026, 10, 2), "a"),
        )
        write_parquet(old, first)
        write_parquet(new, second)
        read = read_parquet(first, columns=["event_id", "order_id"], dataset=dataset)
        assert read.equals(expected.head(1))
        for files, rows in (([first, second], expected), ([second, first], expected.reverse())):
            scanned = scan_parquet(files, dataset=dataset).select("event_id", "order_id")
            assert scanned.collect().equals(rows), (root, files)
