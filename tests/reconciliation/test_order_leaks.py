"""The order checks' cache (reconciliation/order_leaks.py): what a night finds from the cache
is what the activity files say, night after night, whatever changed; and a night reads the new
days and the index blocks that can hold their orders, not the month.

The reference (``expected``) is the checks' definition over plain Python sets of every event
in the files, independent of the module's frames and joins."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.ingest.activity import ACTIVITY_SCHEMA
from billing_pipeline.reconciliation import order_leaks as module
from billing_pipeline.reconciliation.day_digests import activity_stats
from billing_pipeline.reconciliation.order_leaks import cache_dir, order_leaks
from billing_pipeline.storage import Store, write_parquet
from tests.reconciliation.builders import event_row

CLIENT = "acme"
FEB = [date(2026, 2, 1) + timedelta(days=k) for k in range(28)]
MAR = [date(2026, 3, 1) + timedelta(days=k) for k in range(31)]
TYPES = ("order.picked", "order.shipped", "order.cancelled", "order.packed", "receipt.completed")

# an event: (event_id, event_type, order id, day)
Event = tuple[str, str, str, date]


def write_day(store: Store, day: date, events: list[Event]) -> None:
    """The client's activity file of ``day`` (none when no event)."""
    path = store.activity_file(day, CLIENT)
    rows = [
        event_row(CLIENT, n, (eid, kind, {"order_id": order}, day))
        for n, (eid, kind, order, _) in enumerate(events, start=1)
    ]
    if rows:
        write_parquet(pl.DataFrame(rows, schema=ACTIVITY_SCHEMA), path)
    else:
        path.unlink(missing_ok=True)


def night(store: Store, month: str, days: list[date]) -> tuple[set, set]:
    """order_leaks over ``days`` (both months') as (order, event) sets (an event at most
    once)."""
    found = order_leaks(store, month, CLIENT, activity_stats(store, CLIENT, days))
    out = []
    for frame in (found.shipped_without_pick, found.picked_not_shipped):
        pairs = list(frame.select("order_id", "event_id").iter_rows())
        assert len(pairs) == len(set(pairs)), pairs
        out.append(set(pairs))
    return out[0], out[1]


def expected(events: list[Event], month: str) -> tuple[set, set]:
    """The checks by their definition (leakage.py's docstring), over every event given: the
    month's events and the month before's."""
    picked = {order for _, kind, order, _ in events if kind == "order.picked"}
    closed = {order for _, kind, order, _ in events if kind in ("order.shipped", "order.cancelled")}
    mine = [(eid, kind, order) for eid, kind, order, day in events if f"{day:%Y-%m}" == month]
    return (
        {(o, e) for e, k, o in mine if k == "order.shipped" and o not in picked},
        {(o, e) for e, k, o in mine if k == "order.picked" and o not in closed},
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "data")


@pytest.fixture
def read_days(monkeypatch: pytest.MonkeyPatch) -> list[list[date]]:
    """The days of each activity read ``order_leaks`` makes (clear it before the night)."""
    read: list[list[date]] = []
    order_events = module._order_events

    def spy(store: Store, client_id: str, days: list[date], columns: list[str]):
        read.append(days)
        return order_events(store, client_id, days, columns)

    monkeypatch.setattr(module, "_order_events", spy)
    return read


def test_two_months_by_hand(store: Store) -> None:
    # February: O1 picked, O2 picked and shipped, O9 shipped without a pick (not March's).
    # March 1: O1 shipped (its pick was in February: matched), O3 picked, O4 shipped (no
    # pick anywhere). March 2: O3 cancelled, O5 picked, O4 picked (late: matches the ship).
    feb = [
        ("f1", "order.picked", "O1", FEB[3]),
        ("f2", "order.picked", "O2", FEB[3]),
        ("f3", "order.shipped", "O2", FEB[4]),
        ("f4", "order.shipped", "O9", FEB[4]),
    ]
    mar1 = [
        ("m1", "order.shipped", "O1", MAR[0]),
        ("m2", "order.picked", "O3", MAR[0]),
        ("m3", "order.shipped", "O4", MAR[0]),
    ]
    mar2 = [("m4", "order.cancelled", "O3", MAR[1]), ("m5", "order.picked", "O5", MAR[1]),
            ("m6", "order.picked", "O4", MAR[1])]  # fmt: skip
    for day in {e[3] for e in feb + mar1 + mar2}:
        write_day(store, day, [e for e in feb + mar1 + mar2 if e[3] == day])
    window = [FEB[3], FEB[4], MAR[0]]
    # after March 1: O4's ship has no pick; O3 is picked and open
    assert night(store, "2026-03", window) == ({("O4", "m3")}, {("O3", "m2")})
    # after March 2: O4 is picked now (its ship on March 1 closes it), O3 cancelled: only O5
    # is picked and not shipped
    assert night(store, "2026-03", [*window, MAR[1]]) == (set(), {("O5", "m5")})


def test_a_night_reads_its_new_day_and_the_blocks_of_its_orders(
    store: Store, monkeypatch: pytest.MonkeyPatch, read_days: list[list[date]]
) -> None:
    # each day picks 4 orders numbered in sequence and ships the day before's 4
    monkeypatch.setattr(module, "INDEX_ROWS", 2)
    events: list[Event] = []
    for k, day in enumerate(MAR[:10]):
        events += [(f"p{k}.{i}", "order.picked", f"SO-{4 * k + i:03d}", day) for i in range(4)]
        events += [
            (f"s{k}.{i}", "order.shipped", f"SO-{4 * (k - 1) + i:03d}", day) for i in range(4) if k
        ]
        write_day(store, day, [e for e in events if e[3] == day])
    night(store, "2026-03", MAR[:9])
    read_days.clear()
    read_rows: list[int] = []
    holding = module.blocks_holding_in

    def spy_blocks(files: list[tuple[dict, int]], wanted: pl.Series) -> list:
        found = holding(files, wanted)
        read_rows.extend(length for runs in found for _, length in runs)
        return found

    monkeypatch.setattr(module, "blocks_holding_in", spy_blocks)
    assert night(store, "2026-03", MAR[:10]) == expected(events, "2026-03")
    assert read_days == [[MAR[9]]]
    # day 10 ships SO-032..035, which day 9 picked: day 9's index is c:SO-028..031 (its
    # ships) and p:SO-032..035 in blocks of 2, and the two p: blocks hold them; day 10 picks
    # SO-036..039, whose c: keys fall between blocks of every day: nothing more is read
    assert sum(read_rows) == 4


def test_the_day_before_written_again_with_more_events_is_read_alone(
    store: Store, read_days: list[list[date]]
) -> None:
    # each night writes the day before again (its late events, a time zone west of UTC):
    # March 2 gains O3's pick (its ship on March 1 now has one) and O4's ship
    mar1 = [("a", "order.picked", "O1", MAR[0]), ("b", "order.shipped", "O3", MAR[0])]
    mar2 = [("c", "order.shipped", "O1", MAR[1]), ("d", "order.picked", "O4", MAR[1])]
    mar3 = [("e", "order.picked", "O5", MAR[2])]
    for events in (mar1, mar2, mar3):
        write_day(store, events[0][3], events)
    assert night(store, "2026-03", MAR[:2]) == ({("O3", "b")}, {("O4", "d")})
    mar2 += [("f", "order.picked", "O3", MAR[1]), ("g", "order.shipped", "O4", MAR[1])]
    write_day(store, MAR[1], mar2)
    read_days.clear()
    assert night(store, "2026-03", MAR[:3]) == (set(), {("O5", "e")})
    # March 2 read once (to see that it lost nothing, and as a new day), then March 3;
    # March 1 not at all
    assert read_days == [[MAR[1]], [MAR[2]]]


def test_an_event_gone_from_a_day_that_still_closes_its_orders_is_gone(store: Store) -> None:
    # March 1 ships O9 twice, without a pick; a re-ingest drops the first ship: the day
    # still closes O9 (nothing it closed opens again), but its first ship is no leak any more
    ships = [("s1", "order.shipped", "O9", MAR[0]), ("s2", "order.shipped", "O9", MAR[0])]
    write_day(store, MAR[0], ships)
    assert night(store, "2026-03", MAR[:1]) == ({("O9", "s1"), ("O9", "s2")}, set())
    write_day(store, MAR[0], ships[1:])
    assert night(store, "2026-03", MAR[:1]) == ({("O9", "s2")}, set())


def test_a_day_another_month_indexed_again_is_not_taken_for_this_months_index(
    store: Store,
) -> None:
    # March 31 picks O1, which March 30 shipped; then March 31 is written again with O5's
    # pick instead, and April's report indexes it so (the days' index files are shared).
    # March's report must not compare March 31 with that index: it lost O1's pick, so
    # March 30's ship of O1 has no pick any more.
    write_day(store, MAR[29], [("s1", "order.shipped", "O1", MAR[29])])
    write_day(store, MAR[30], [("p1", "order.picked", "O1", MAR[30])])
    write_day(store, date(2026, 4, 1), [("x", "order.picked", "O7", date(2026, 4, 1))])
    assert night(store, "2026-03", MAR[29:31]) == (set(), set())
    write_day(store, MAR[30], [("p5", "order.picked", "O5", MAR[30])])
    night(store, "2026-04", [*MAR[29:31], date(2026, 4, 1)])
    assert night(store, "2026-03", MAR[29:31]) == ({("O1", "s1")}, {("O5", "p5")})


def test_a_months_first_report_starts_from_the_month_befores_index(
    store: Store, read_days: list[list[date]]
) -> None:
    events = [("f1", "order.picked", "O1", FEB[26]), ("f2", "order.picked", "O2", FEB[27]),
              ("m1", "order.shipped", "O1", MAR[0])]  # fmt: skip
    for day in (FEB[26], FEB[27], MAR[0]):
        write_day(store, day, [e for e in events if e[3] == day])
    assert night(store, "2026-02", [FEB[26], FEB[27]]) == expected(events[:2], "2026-02")
    read_days.clear()
    assert night(store, "2026-03", [FEB[26], FEB[27], MAR[0]]) == expected(events, "2026-03")
    assert read_days == [[MAR[0]]]  # February's days came indexed


def test_a_day_the_month_before_rewrote_after_its_report_is_read_again(store: Store) -> None:
    # February's report indexes Feb 27 without O1's pick; a late file then brings it; March's
    # first report must see it: O1's ship on March 1 has a pick
    write_day(store, FEB[26], [("f1", "order.picked", "O7", FEB[26])])
    write_day(store, MAR[0], [("m1", "order.shipped", "O1", MAR[0])])
    night(store, "2026-02", [FEB[26]])
    late = [("f1", "order.picked", "O7", FEB[26]), ("f2", "order.picked", "O1", FEB[26])]
    write_day(store, FEB[26], late)
    assert night(store, "2026-03", [FEB[26], MAR[0]]) == (set(), set())


def test_a_broken_cache_is_recomputed(store: Store) -> None:
    events = [("p1", "order.picked", "O1", MAR[0]), ("s1", "order.shipped", "O2", MAR[0]),
              ("p2", "order.picked", "O2", MAR[1])]  # fmt: skip
    for day in (MAR[0], MAR[1]):
        write_day(store, day, [e for e in events if e[3] == day])
    night(store, "2026-03", [MAR[0]])
    folder = cache_dir(store, CLIENT)
    (folder / "index-2026-03-01.parquet").write_bytes(b"not parquet")
    assert night(store, "2026-03", MAR[:2]) == expected(events, "2026-03")
    (folder / "state-2026-03.parquet").write_bytes(b"")
    assert night(store, "2026-03", MAR[:2]) == expected(events, "2026-03")


def test_old_states_and_unnamed_index_files_go(store: Store) -> None:
    for day in (date(2026, 1, 5), FEB[4], MAR[4], date(2026, 4, 4)):
        write_day(store, day, [(f"e{day:%m%d}", "order.picked", f"O{day:%m%d}", day)])
    night(store, "2026-01", [date(2026, 1, 5)])
    night(store, "2026-02", [date(2026, 1, 5), FEB[4]])
    night(store, "2026-04", [MAR[4], date(2026, 4, 4)])
    names = sorted(p.name for p in cache_dir(store, CLIENT).iterdir())
    # April is the newest: March's and April's states stay (March has none yet), older go,
    # and so do the index files only they named
    assert names == [
        "index-2026-03-05.parquet",
        "index-2026-04-04.parquet",
        "state-2026-04.parquet",
    ]
    # a report of February again (a backfill) keeps what April's state names
    night(store, "2026-02", [date(2026, 1, 5), FEB[4]])
    names = sorted(p.name for p in cache_dir(store, CLIENT).iterdir())
    assert names == [
        "index-2026-01-05.parquet",
        "index-2026-02-05.parquet",
        "index-2026-03-05.parquet",
        "index-2026-04-04.parquet",
        "state-2026-02.parquet",
        "state-2026-04.parquet",
    ]


WINDOW = FEB[:4] + MAR[:6]
event_strategy = st.tuples(st.sampled_from(TYPES), st.integers(0, 8), st.sampled_from(WINDOW))
step_strategy = st.one_of(
    st.tuples(st.just("night"), st.integers(1, 6)),  # report with March days 1..n
    # a day's file written again with other events (a late file, a re-ingest)
    st.tuples(st.just("rewrite"), st.lists(event_strategy, max_size=6), st.sampled_from(WINDOW)),
    st.tuples(st.just("february"), st.just(0)),  # February's report
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    initial=st.lists(event_strategy, max_size=40),
    steps=st.lists(step_strategy, min_size=1, max_size=8),
    index_rows=st.sampled_from([1, 2, 8192]),
)
def test_nights_give_what_the_files_say(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    initial: list,
    steps: list,
    index_rows: int,
) -> None:
    monkeypatch.setattr(module, "INDEX_ROWS", index_rows)
    store = Store(tmp_path_factory.mktemp("leaks"))
    days: dict[date, list[Event]] = {}
    serial = iter(range(10**6))

    def put(day: date, new: list) -> None:
        # order ids of mixed widths (O7, O10) and a few prefixes: blocks in byte order
        days[day] = [(f"e{next(serial)}", kind, f"{'OX'[n % 2]}{n * 7}", day) for kind, n, _ in new]
        write_day(store, day, days[day])

    for day in WINDOW:
        put(day, [e for e in initial if e[2] == day])
    for step in steps:
        if step[0] == "rewrite":
            put(step[2], step[1])
        elif step[0] == "february":
            everything = [e for day in FEB[:4] for e in days[day]]
            assert night(store, "2026-02", FEB[:4]) == expected(everything, "2026-02")
        else:
            window = FEB[:4] + MAR[: step[1]]
            everything = [e for day in window for e in days[day]]
            assert night(store, "2026-03", window) == expected(everything, "2026-03")
