"""``billing run`` with its outputs on an object store (SPEC §2, §11): moto's S3 server, real
in-process Dagster runs on SQLite, compared file by file with the same commands run with a
local outputs directory. The inputs (landing, rate cards, Lua, ledgers) stay local."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import boto3
import polars as pl
import pytest
from dagster import instance_for_test

from billing_pipeline.closing import close_month
from billing_pipeline.config import Paths
from billing_pipeline.explain import main_explain
from billing_pipeline.generate import GenerateOptions, generate
from billing_pipeline.rules_diff import main_rules_diff
from billing_pipeline.runner import run_billing
from tests import s3_server
from tests.pipeline.conftest import PROJECT
from tests.s3_server import s3_keys

# The server's fixtures, for the test below to ask for by name.
s3_endpoint, s3_bucket = s3_server.s3_endpoint, s3_server.s3_bucket

# Small, and across a month end: one run bills two months, and October can then be closed.
START, DAYS = date(2026, 10, 30), 3
FIRST, LAST = date(2026, 10, 29), date(2026, 11, 2)
PREFIX = "outputs/warehouse"
# Contract datasets compared row for row. Staging and state are the pipeline's own.
DATASETS = ("activity", "charges", "quarantine", "rule_errors", "manifest")

Tree = dict[str, bytes]


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "billing"
    options = GenerateOptions(
        out=root, clients=2, start=START, days=DAYS, events_per_day=150, seed=11, fault_rate=0.02
    )
    generate(options)
    shutil.copytree(PROJECT / "lua", root / "lua")
    for var, sub in (
        ("BILLING_LANDING_DIR", "landing"),
        ("BILLING_RATECARDS_DIR", "ratecards"),
        ("BILLING_LUA_DIR", "lua"),
        ("BILLING_FINANCE_DIR", "finance"),
    ):
        monkeypatch.setenv(var, str(root / sub))
    return root


def _local_tree(root: Path) -> Tree:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _s3_tree(endpoint: str, bucket: str) -> Tree:
    client = boto3.client("s3", endpoint_url=endpoint)
    return {
        key.removeprefix(PREFIX + "/"): client.get_object(Bucket=bucket, Key=key)["Body"].read()
        for key in s3_keys(endpoint, bucket, PREFIX + "/")
    }


def _commands(capsys: pytest.CaptureFixture[str], root: str) -> dict[str, object]:
    """Everything the commands print and write, for one outputs directory."""
    with instance_for_test() as instance:
        report = run_billing(FIRST, LAST, instance=instance, progress=lambda _: None)
    assert report.runs_ok
    out: dict[str, object] = {
        "report": [(cm.client_id, cm.month, cm.total) for cm in report.client_months]
    }
    client = report.client_months[0].client_id
    for name, argv, main in (
        ("explain", ["--client", client, "--month", "2026-10", "--line", "1"], main_explain),
        ("rules diff", ["--client", client, "--month", "2026-10"], main_rules_diff),
    ):
        status = main(argv)
        printed = capsys.readouterr().out
        out[name] = (status, printed.replace(root, "<outputs>"))
    outcomes = close_month(Paths.from_env(), "2026-10", today=date(2026, 11, 5))
    out["close"] = sorted((o.client_id, o.status, o.total) for o in outcomes)
    # Billing October again after its close: final invoices stay as they are, and the
    # invoices that would carry adjustments (November) are found through the closed state.
    with instance_for_test() as instance:
        again = run_billing(
            date(2026, 10, 30), date(2026, 10, 31), instance=instance, progress=lambda _: None
        )
    assert again.runs_ok
    out["again"] = [(cm.client_id, cm.month, cm.invoice, cm.total) for cm in again.client_months]
    return out


def _rows(tree: Tree, dataset: str) -> dict[str, pl.DataFrame]:
    return {
        name: pl.read_parquet(io.BytesIO(data))
        for name, data in tree.items()
        if name.startswith(dataset + "/") and name.endswith(".parquet")
    }


def _same_outputs(local: Tree, remote: Tree, wanted: Callable[[str], bool]) -> None:
    names = sorted(k for k in local if wanted(k))
    assert names
    assert sorted(k for k in remote if wanted(k)) == names
    for name in names:
        assert remote[name] == local[name], name


@pytest.mark.slow
def test_billing_on_s3_writes_what_it_writes_on_disk(
    inputs: Path,
    s3_endpoint: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    local_root = inputs / "warehouse"
    monkeypatch.setenv("BILLING_DATA_DIR", str(local_root))
    local_said = _commands(capsys, str(local_root))
    local = _local_tree(local_root)

    remote_root = f"s3://{s3_bucket}/{PREFIX}"
    monkeypatch.setenv("BILLING_DATA_DIR", remote_root)
    remote_said = _commands(capsys, remote_root)
    remote = _s3_tree(s3_endpoint, s3_bucket)

    # The S3 run wrote nothing locally (the local tree is as the local run left it).
    assert _local_tree(local_root) == local
    assert remote_said == local_said
    assert {s for _, s, _ in local_said["close"]} == {"closed"}  # type: ignore[union-attr]
    assert local_said["explain"][0] == 0  # type: ignore[index]

    # Invoices: the same files, byte for byte: October final, November draft.
    _same_outputs(local, remote, lambda k: k.startswith("invoices/"))
    assert {k.rsplit(".", 1)[1] for k in local if k.startswith("invoices/")} == {
        "csv",
        "json",
        "html",
    }
    assert (
        b'"status": "final"'
        in local[
            next(
                k for k in local if k.startswith("invoices/2026-10/") and k.endswith("invoice.json")
            )
        ]
    )
    # The reconciliation report and the closed snapshots too.
    _same_outputs(local, remote, lambda k: k.startswith(("reconciliation/", "_state/closed/")))
    # Datasets: the same Parquet files with the same rows.
    for dataset in DATASETS:
        local_rows, remote_rows = _rows(local, dataset), _rows(remote, dataset)
        assert sorted(remote_rows) == sorted(local_rows), dataset
        for name, frame in local_rows.items():
            assert remote_rows[name].equals(frame), name
    for dataset in ("activity", "charges", "quarantine", "manifest"):
        assert _rows(local, dataset), f"the run wrote no {dataset}: the comparison proves nothing"
    # Every object is a finished one: no temporary name was uploaded.
    assert not [k for k in remote if k.rsplit("/", 1)[-1].startswith(".")]
