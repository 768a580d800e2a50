"""The sensors and the nightly schedule with the outputs on an object store (moto's S3
server): the same nights as on a local directory give the same invoices and reports."""

from __future__ import annotations

from datetime import date

import boto3
import pytest
from dagster import instance_for_test

from tests import s3_server
from tests.orchestration.conftest import World, pick, ship, start_chain, tick
from tests.orchestration.test_nightly_flow import nightly
from tests.s3_server import s3_keys

# The server's fixtures, for the test below to ask for by name.
s3_endpoint, s3_bucket = s3_server.s3_endpoint, s3_server.s3_bucket

Said = list[list[str]]


def _nights(world: World) -> Said:
    """Two nights either side of a month end and a ledger report; the sensors' stages."""
    stages: Said = []
    with instance_for_test() as instance:
        tick("billing_clients_sensor", instance, world)
        start_chain(instance, world)
        world.land(
            "2026-10-31/wms.ndjson",
            [
                pick("A1", "alpha", "2026-10-31T10:00:00Z", 3),
                ship("A2", "alpha", "2026-10-31T15:00:00Z", "7.00"),
                pick("B1", "beta", "2026-10-31T11:00:00Z", 2),
            ],
        )
        stages.append([name for name, _ in nightly(instance, world, date(2026, 10, 31))])
        (world.root / "finance" / "gl_revenue_2026-10.csv").write_text(
            "period,client_id,gl_account,amount\n2026-10,alpha,4030,20.00\n"
        )
        world.land("2026-11-01/wms.ndjson", [pick("B2", "beta", "2026-11-01T09:00:00Z", 1)])
        stages.append([name for name, _ in nightly(instance, world, date(2026, 11, 1))])
        # Nothing new: the landing sensor reads the manifest back and asks for nothing.
        assert tick("billing_landing_sensor", instance, world).run_requests == []
    return stages


@pytest.mark.slow
def test_the_nightly_chain_on_s3_bills_as_on_disk(
    world: World,
    s3_endpoint: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local_stages = _nights(world)
    local = {
        p.relative_to(world.data).as_posix(): p.read_bytes()
        for p in world.data.rglob("*")
        if p.is_file() and p.relative_to(world.data).parts[0] in ("invoices", "reconciliation")
    }
    # Start again from the same inputs, outputs on S3.
    for path in (world.landing, world.root / "finance"):
        for file in sorted(path.rglob("*"), reverse=True):
            file.unlink() if file.is_file() else file.rmdir()
    world.cursors.clear()
    monkeypatch.setenv("BILLING_DATA_DIR", f"s3://{s3_bucket}/warehouse")
    remote_stages = _nights(world)

    assert remote_stages == local_stages
    assert "billing_reconciliation_sensor" in local_stages[1]
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    remote = {
        key.removeprefix("warehouse/"): client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        for key in s3_keys(s3_endpoint, s3_bucket, "warehouse/")
        if key.split("/")[1] in ("invoices", "reconciliation")
    }
    assert sorted(remote) == sorted(local)
    assert "invoices/2026-10/alpha/invoice.html" in local
    assert "reconciliation/2026-10/reconciliation.csv" in local
    for name, data in local.items():
        assert remote[name] == data, name
