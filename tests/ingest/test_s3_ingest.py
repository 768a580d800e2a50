"""Ingestion into an object store (moto's S3 server), with the parse in worker processes
that write their staging to the bucket themselves: the same datasets as on a local disk."""

from __future__ import annotations

import io
import tempfile
from datetime import date
from pathlib import Path

import boto3
import polars as pl
import pytest

from billing_pipeline.generate import GenerateOptions, generate
from billing_pipeline.ingest import landing
from billing_pipeline.ingest.activity import build_activity_range
from billing_pipeline.ingest.landing import dates_around, ingest_landing
from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.storage import Store, host_dir
from tests import s3_server
from tests.s3_server import s3_keys

# The server's fixtures, for the test below to ask for by name.
s3_endpoint, s3_bucket = s3_server.s3_endpoint, s3_server.s3_bucket

DATASETS = ("activity", "quarantine", "manifest")


def _ingest(landing_dir: Path, zones: dict[str, str], store: Store) -> list[tuple]:
    result = ingest_landing(landing_dir, store, zones)
    built = build_activity_range(store, sorted(dates_around(result.touched_dates)), zones)
    return [(r.day, r.events, r.files_read) for r in built]


@pytest.mark.slow
def test_ingesting_into_s3_with_worker_processes_gives_the_local_datasets(
    tmp_path: Path,
    s3_endpoint: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generate(
        GenerateOptions(
            out=tmp_path,
            clients=3,
            start=date(2026, 3, 30),
            days=2,
            events_per_day=300,
            seed=5,
            fault_rate=0.03,
        )
    )
    cards, _ = load_ratecards(tmp_path / "ratecards")
    zones = {c: card.timezone for c, card in cards.items()}
    local_root = tmp_path / "warehouse"
    local_built = _ingest(tmp_path / "landing", zones, Store(local_root))

    # Every batch to the two spawned parse processes, which upload their staged lines.
    monkeypatch.setattr(landing, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(landing, "POOL_BATCH_BYTES", 16 * 1024)
    # A killed run's activity scratch folder (on this host: the bucket holds no scratch)
    # goes with the next build; one of other outputs on the same host stays.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "host-tmp"))
    (tmp_path / "host-tmp").mkdir()
    remote = Store(f"s3://{s3_bucket}/w")
    left = host_dir(remote.root, "scratch") / ".activity-killed"
    other = host_dir(Store(f"s3://{s3_bucket}/other").root, "scratch") / ".activity-live"
    for folder in (left, other):
        (folder / "2026-03-30").mkdir(parents=True)
    remote_built = _ingest(tmp_path / "landing", zones, remote)
    assert not left.exists() and other.exists()
    assert remote_built == local_built
    assert sum(events for _, events, _ in local_built) > 0

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = s3_keys(s3_endpoint, s3_bucket, "w/")
    for dataset in DATASETS:
        local = {
            f.relative_to(local_root).as_posix(): pl.read_parquet(f)
            for f in sorted((local_root / dataset).rglob("*.parquet"))
        }
        remote = {
            key.removeprefix("w/"): pl.read_parquet(
                io.BytesIO(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
            )
            for key in keys
            if key.startswith(f"w/{dataset}/")
        }
        assert local, dataset
        assert sorted(remote) == sorted(local), dataset
        for name, frame in local.items():
            assert remote[name].equals(frame), name
    # The staging the workers wrote is in the bucket, not on the local disk.
    assert any(k.startswith("w/_staging/lines/") for k in keys)
    assert not (Path.cwd() / "s3:").exists()
