from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.catalog import CATALOG
from billing_pipeline.generate import GenerateOptions, GenerateSummary, generate
from billing_pipeline.generate.clients import UNCONFIGURED_CLIENTS

from ._checker import Ingested, ingest, parse_time


def test_clean_run_is_all_valid_catalog_events(tmp_path: Path) -> None:
    options = GenerateOptions(
        out=tmp_path,
        clients=12,
        start=date(2026, 11, 29),
        days=3,
        events_per_day=3000,
        seed=2,
        fault_rate=0,
    )
    summary = generate(options)
    result = ingest(tmp_path / "landing", set(summary.clients))
    assert result.reasons == Counter()
    assert result.duplicates == 0
    assert result.lines == summary.lines == len(result.valid)
    assert all(event["event_type"] in CATALOG for _, event in result.valid)
    assert Counter(e["event_type"] for _, e in result.valid) == summary.events
    assert set(summary.events) == set(CATALOG)  # every catalog type shows up


def test_fault_counts_match_the_files(
    generated: tuple[GenerateOptions, GenerateSummary], ingested: Ingested
) -> None:
    _, summary = generated
    faults = summary.faults
    assert ingested.lines == summary.lines
    for reason in (
        "invalid_json",
        "not_an_object",
        "missing_field",
        "invalid_field",
        "unknown_client",
    ):
        assert ingested.reasons[reason] == faults[reason] > 0, reason
    assert ingested.reasons["duplicate_conflict"] == faults["duplicate_conflict"] > 0
    assert ingested.duplicates == faults["redelivery"] > 0
    unknown_types = [e for _, e in ingested.valid if e["event_type"] not in CATALOG]
    assert len(unknown_types) == faults["unknown_event_type"] > 0
    known = Counter(e["event_type"] for _, e in ingested.valid if e["event_type"] in CATALOG)
    assert known == summary.events
    # Conservation, as the pipeline's asset check will see it.
    quarantined = sum(ingested.reasons.values())
    assert ingested.lines == len(ingested.valid) + ingested.duplicates + quarantined
    assert (len(ingested.valid), ingested.duplicates, quarantined) == (
        summary.expected_valid,
        summary.expected_duplicates,
        summary.expected_quarantined,
    )
    fault_lines = sum(faults[k] for k in faults if k not in ("redelivery", "late_file"))
    assert 0.01 < fault_lines / summary.lines < 0.03  # fault_rate 0.02


def test_unknown_clients_are_never_configured(
    generated: tuple[GenerateOptions, GenerateSummary],
) -> None:
    options, summary = generated
    assert not set(UNCONFIGURED_CLIENTS) & set(summary.clients)
    for client in UNCONFIGURED_CLIENTS:
        assert not (Path(options.out) / "ratecards" / f"{client}.yaml").exists()


def test_redelivered_file_is_an_identical_copy(
    generated: tuple[GenerateOptions, GenerateSummary],
) -> None:
    options, _ = generated
    landing = Path(options.out) / "landing"
    copies = list(landing.rglob("*_redelivery.*"))
    assert len(copies) == 1
    copy = copies[0]
    original = next(landing.rglob(copy.name.replace("_redelivery", "")))
    assert original.read_bytes() == copy.read_bytes()
    assert original.parent.name < copy.parent.name  # delivered on a later day


def test_one_late_file(
    generated: tuple[GenerateOptions, GenerateSummary], ingested: Ingested
) -> None:
    _, summary = generated
    late: dict[str, int] = {}
    for source, event in ingested.valid:
        folder = date.fromisoformat(source.split("/")[1])
        moment = parse_time(event["occurred_at"])
        assert moment is not None
        if moment.astimezone(UTC).date() < folder and "_redelivery" not in source:
            late[source] = late.get(source, 0) + 1
    assert len(late) == 1
    ((source, count),) = late.items()
    assert count == ingested.lines_by_file[source] == summary.faults["late_file"] > 0


def test_lifecycles_are_consistent(
    ingested: Ingested, generated: tuple[GenerateOptions, GenerateSummary]
) -> None:
    _, summary = generated
    clients = set(summary.clients)
    orders: dict[tuple[str, str], dict[str, list[datetime]]] = defaultdict(
        lambda: defaultdict(list)
    )
    returns = []
    for _, e in ingested.valid:
        if e["client_id"] not in clients or e["event_type"] not in CATALOG:
            continue
        kind = e["event_type"]
        when = parse_time(e["occurred_at"])
        if kind in ("order.picked", "order.packed", "order.shipped"):
            orders[(e["client_id"], e["payload"]["order_id"])][kind].append(when)
        elif kind == "order.cancelled":
            orders[(e["client_id"], e["payload"]["order_id"])][e["payload"]["stage"]].append(when)
        elif kind == "return.processed":
            returns.append(e)
    shipped = 0
    for key, steps in orders.items():
        assert all(len(times) == 1 for times in steps.values()), key
        if "order.shipped" in steps:
            shipped += 1
            (pick,), (pack,), (ship,) = (
                steps["order.picked"],
                steps["order.packed"],
                steps["order.shipped"],
            )
            assert pick <= pack <= ship, key
            assert (ship - pick).total_seconds() < 48 * 3600, key
            assert "after_pick" not in steps and "before_pick" not in steps
        elif "after_pick" in steps:
            (pick,), (cancel,) = steps["order.picked"], steps["after_pick"]
            assert pick <= cancel and "order.packed" not in steps, key
        elif "before_pick" in steps:
            assert set(steps) == {"before_pick"}, key
        else:
            # Picked (and maybe packed) at the very end of the range is the only excuse.
            raise AssertionError(f"order {key} neither shipped nor cancelled: {dict(steps)}")
    cancels = Counter(
        s for steps in orders.values() for s in steps if s in ("before_pick", "after_pick")
    )
    assert shipped > 1000 and cancels["before_pick"] > 0 and cancels["after_pick"] > 0
    assert returns
    for e in returns:
        key = (e["client_id"], e["payload"]["order_id"])
        assert "order.shipped" in orders[key], key
        assert orders[key]["order.shipped"][0] < parse_time(e["occurred_at"])


def test_events_have_the_advertised_variety(ingested: Ingested) -> None:
    events = [e for _, e in ingested.valid if e["event_type"] in CATALOG]
    stamps = [e["occurred_at"] for e in events]
    assert any(s.endswith("Z") for s in stamps)
    assert any(s[-6] in "+-" for s in stamps)
    shipped = [e["payload"] for e in events if e["event_type"] == "order.shipped"]
    assert any(isinstance(p["label_cost"], str) for p in shipped)
    assert any(isinstance(p["label_cost"], float) for p in shipped)
    receipts = {
        e["payload"]["receipt_type"] for e in events if e["event_type"] == "receipt.completed"
    }
    assert receipts == {"parcel", "carton", "pallet", "container"}
    sizes = {
        e["payload"].get("container_size") for e in events if e["event_type"] == "receipt.completed"
    }
    assert {"20ft", "40ft", "45ft"} <= sizes
    channels = {e["payload"]["channel"] for e in events if e["event_type"] == "order.picked"}
    assert channels == {"dtc", "b2b", "wholesale"}
    # One inventory snapshot per client, warehouse, location type and local day.
    snapshots = Counter(
        (e["client_id"], e["warehouse_id"], e["payload"]["location_type"], e["occurred_at"][:10])
        for e in events
        if e["event_type"] == "inventory.snapshot" and e["occurred_at"].endswith("Z")
    )
    assert snapshots and max(snapshots.values()) == 1
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))


def test_subscription_clients_spike_early_in_the_month(ingested: Ingested) -> None:
    per_day: Counter[str] = Counter()
    for _, e in ingested.valid:
        if e["client_id"] == "monthly-munch" and e["event_type"] == "order.picked":
            per_day[e["occurred_at"][:10]] += 1
    # 2026-03-30 is a Monday, 2026-04-01 a Wednesday of the spike.
    assert per_day["2026-04-01"] > 2 * per_day["2026-03-30"]


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10**6),
    clients=st.integers(1, 12),
    fault_rate=st.sampled_from([0.0, 0.01, 0.1, 0.5]),
    start=st.dates(date(2025, 1, 1), date(2027, 12, 31)),
)
def test_conservation_holds_for_any_options(
    tmp_path_factory, seed: int, clients: int, fault_rate: float, start: date
) -> None:
    out = tmp_path_factory.mktemp("prop")
    summary = generate(
        GenerateOptions(
            out=out,
            clients=clients,
            start=start,
            days=2,
            events_per_day=600,
            seed=seed,
            fault_rate=fault_rate,
        )
    )
    result = ingest(out / "landing", set(summary.clients))
    quarantined = sum(result.reasons.values())
    assert result.lines == summary.lines
    assert (len(result.valid), result.duplicates, quarantined) == (
        summary.expected_valid,
        summary.expected_duplicates,
        summary.expected_quarantined,
    )
