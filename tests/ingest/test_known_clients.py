"""A client with a refused rate card is still known (SPEC §4: ``unknown_client`` means no card).

Its events stay valid; with a readable time zone its activity is built as usual, without one
its activity partitions are left as they are and the activity asset says so.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
from dagster import materialize

from billing_pipeline.defs.ingest.assets import activity
from billing_pipeline.defs.resources import BillingSettings
from billing_pipeline.ingest.activity import build_activity, build_activity_range
from billing_pipeline.ingest.clients import client_zones
from billing_pipeline.ingest.landing import ingest_landing
from billing_pipeline.ratecards import load_ratecards
from tests.ingest.conftest import TIMEZONES, Landing, event, line

PROJECT = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 2)


def _cards(tmp_path: Path) -> Path:
    """acme good; bolt refused but its zone readable; coda refused with a broken zone."""
    folder = tmp_path / "ratecards"
    folder.mkdir()
    shutil.copy(PROJECT / "ratecards" / "acme.yaml", folder / "acme.yaml")
    text = (PROJECT / "ratecards" / "acme.yaml").read_text()
    bolt = text.replace("client_id: acme", "client_id: bolt").replace(
        "America/New_York", "Europe/London"
    )
    (folder / "bolt.yaml").write_text(bolt.replace('rate: "2.65"', 'rate: "2,65"'))
    (folder / "coda.yaml").write_text("client_id: coda\ntimezone: Mars/Olympus\nversions: [")
    return folder


def quarantine(landing: Landing) -> pl.DataFrame:
    files = sorted((landing.store.root / "quarantine").glob("*/part-0.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def test_client_zones_know_every_card_file(tmp_path: Path) -> None:
    folder = _cards(tmp_path)
    cards, bad = load_ratecards(folder)
    assert set(cards) == {"acme"} and set(bad) == {"bolt.yaml", "coda.yaml"}
    zones = client_zones(folder, cards, bad)
    assert zones.timezones == {"acme": "America/New_York", "bolt": "Europe/London"}
    assert zones.unzoned == {"coda"}
    assert zones.known == {"acme", "bolt", "coda"}


def test_two_refused_files_that_disagree_have_no_zone(tmp_path: Path) -> None:
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / "dual.yaml").write_text("timezone: UTC\n")
    (folder / "dual.yml").write_text("timezone: Asia/Tokyo\n")
    cards, bad = load_ratecards(folder)
    zones = client_zones(folder, cards, bad)
    assert zones.unzoned == {"dual"} and zones.timezones == {}


def test_events_of_a_client_with_a_refused_card_stay_valid(landing: Landing) -> None:
    landing.write(
        "a.ndjson",
        [
            line(event(event_id="e1", client_id="coda")),
            line(event(event_id="e2", client_id="nobody")),
            line(event(event_id="e3", client_id="coda", payload={"units": -1})),
        ],
    )
    result = ingest_landing(landing.dir, landing.store, TIMEZONES, known={"acme", "coda"})
    row = result.manifest.row(0, named=True)
    assert (row["lines"], row["valid"], row["duplicates"], row["quarantined"]) == (3, 1, 0, 2)
    q = quarantine(landing).sort("source_line")
    assert q["reason"].to_list() == ["unknown_client", "invalid_field"]
    assert q["client_id"].to_list() == ["nobody", "coda"]
    assert q["activity_date"].to_list() == [None, None]  # neither zone is known


def test_card_going_bad_does_not_quarantine_the_clients_events(landing: Landing) -> None:
    landing.write("a.ndjson", [line(event(event_id="e1"))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    # acme's card is refused now and its zone unreadable: still known, nothing flips.
    result = ingest_landing(landing.dir, landing.store, {}, known={"acme"})
    assert result.manifest["valid"].to_list() == [1]
    assert quarantine(landing).is_empty()
    # A client that loses its card file altogether does flip to unknown_client.
    ingest_landing(landing.dir, landing.store, {})
    assert quarantine(landing)["reason"].to_list() == ["unknown_client"]


def test_partitions_of_a_client_without_zone_are_left_as_they_are(landing: Landing) -> None:
    zones = {**TIMEZONES, "bolt": "Europe/London"}
    landing.write(
        "a.ndjson",
        [line(event(event_id="e1")), line(event(event_id="e2", client_id="bolt"))],
    )
    ingest_landing(landing.dir, landing.store, zones)
    build_activity(landing.store, DAY, zones)
    bolt_file = landing.store.activity_file(DAY, "bolt")
    before = bolt_file.read_bytes()
    # bolt's card breaks (zone unreadable) and its event is changed meanwhile.
    landing.write(
        "a.ndjson",
        [
            line(event(event_id="e1")),
            line(event(event_id="e2", client_id="bolt", payload={"units": 7})),
        ],
    )
    ingest_landing(landing.dir, landing.store, TIMEZONES, known={"acme", "bolt"})
    [result] = build_activity_range(landing.store, [DAY], TIMEZONES, keep={"bolt"})
    assert result.clients_left == ["bolt"]
    assert result.events_by_client == {"acme": 1}
    assert bolt_file.read_bytes() == before  # neither rebuilt nor removed
    # Once the card is fixed the partition is rebuilt from the current lines.
    build_activity(landing.store, DAY, zones)
    assert '"units":7' in pl.read_parquet(bolt_file)["payload"][0]


def test_activity_range_equals_day_by_day(landing: Landing) -> None:
    zones = {**TIMEZONES, "bolt": "Asia/Tokyo"}
    stamps = ["2026-11-01T03:00:00Z", "2026-11-02T15:00:00Z", "2026-11-02T23:30:00Z"]
    landing.write(
        "a.ndjson",
        [
            line(event(event_id=f"e{i}", client_id=client, occurred_at=ts))
            for i, (client, ts) in enumerate((c, t) for c in ("acme", "bolt") for t in stamps)
        ],
    )
    ingest_landing(landing.dir, landing.store, zones)
    days = [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]
    ranged = build_activity_range(landing.store, days, zones)
    snapshot = {
        p.relative_to(landing.store.root): pl.read_parquet(p)
        for p in sorted((landing.store.root / "activity").rglob("*.parquet"))
    }
    singles = [build_activity(landing.store, d, zones) for d in days]
    assert [r.events_by_client for r in ranged] == [r.events_by_client for r in singles]
    assert sum(r.events for r in ranged) == 6
    for path, frame in snapshot.items():
        assert pl.read_parquet(landing.store.root / path).equals(frame)


def test_activity_asset_reports_clients_left_unchanged(tmp_path: Path) -> None:
    folder = _cards(tmp_path)
    data = tmp_path / "out"
    landing_dir = tmp_path / "landing"
    landing_dir.mkdir()
    settings = BillingSettings(
        landing_dir=str(landing_dir), data_dir=str(data), ratecards_dir=str(folder)
    )
    result = materialize(
        [activity], partition_key=DAY.isoformat(), resources={"settings": settings}
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("activity")
    text = materialization.metadata["clients_without_timezone"].value
    assert "coda" in text and "bolt" not in text
