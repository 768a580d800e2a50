"""``billing generate``: synthetic WMS activity logs, rate cards, and their summary."""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from billing_pipeline.generate import volume
from billing_pipeline.generate.activity import ActivityGenerator
from billing_pipeline.generate.clients import WAREHOUSES, Client, build_clients
from billing_pipeline.generate.clock import Clock, hour_of
from billing_pipeline.generate.faults import (
    DUPLICATES,
    FAULT_KINDS,
    LATE_FILE,
    QUARANTINED,
    REDELIVERY,
    FaultInjector,
)
from billing_pipeline.generate.landing import LATE, LandingWriter
from billing_pipeline.generate.landing import REDELIVERY as REDELIVER_FILE
from billing_pipeline.generate.ratecards import build_ratecard, write_ratecard


class GenerateError(ValueError):
    """Options that cannot be generated from; the message says which and why."""


@dataclass(frozen=True)
class GenerateOptions:
    out: Path
    clients: int
    start: date
    days: int
    events_per_day: int
    seed: int
    fault_rate: float = 0.005
    overwrite: bool = False  # replace an existing DIR/landing and DIR/ratecards

    def check(self) -> None:
        if self.clients < 1:
            raise GenerateError(f"--clients must be at least 1, got {self.clients}")
        if self.days < 1:
            raise GenerateError(f"--days must be at least 1, got {self.days}")
        if self.events_per_day < 0:
            raise GenerateError(f"--events-per-day must be >= 0, got {self.events_per_day}")
        if not 0.0 <= self.fault_rate <= 0.5:
            raise GenerateError(f"--fault-rate must be between 0 and 0.5, got {self.fault_rate}")


@dataclass(frozen=True)
class GenerateSummary:
    files: int  # landing files written, re-delivered copy included
    lines: int  # physical lines in all landing files
    events: dict[str, int]  # generated catalog events by type (fault lines excluded)
    faults: dict[str, int]  # lines by fault kind (see faults.FAULT_KINDS)
    clients: tuple[str, ...]  # configured client ids, one rate card each
    months: tuple[str, ...]  # billing months (YYYY-MM) the clients' events fall in
    landing: Path = field(default=Path())
    ratecards: Path = field(default=Path())
    seconds: float = 0.0

    @property
    def expected_quarantined(self) -> int:
        return sum(self.faults.get(kind, 0) for kind in QUARANTINED)

    @property
    def expected_duplicates(self) -> int:
        return sum(self.faults.get(kind, 0) for kind in DUPLICATES)

    @property
    def expected_valid(self) -> int:
        """What ingestion should keep: ``lines = valid + duplicates + quarantined``."""
        return self.lines - self.expected_duplicates - self.expected_quarantined


def generate(
    options: GenerateOptions, progress: Callable[[str], None] | None = None
) -> GenerateSummary:
    options.check()
    began = time.perf_counter()
    landing_dir, ratecard_dir = _prepare(options)
    clients = build_clients(options.clients, options.seed)
    end = options.start + timedelta(days=options.days)

    for client in clients:
        monthly = volume.orders_per_day(client, options.events_per_day) * 22 * 3.5
        card = build_ratecard(client, options.start, end, options.seed, monthly)
        write_ratecard(ratecard_dir, card, options.seed)

    clock = Clock()
    clients_at: dict[str, list[Client]] = {}
    for client in clients:
        for warehouse in client.warehouses:
            clients_at.setdefault(warehouse, []).append(client)
    special = _special_files(options, sorted(clients_at))
    landing = LandingWriter(landing_dir, options.seed, special)
    faults = FaultInjector(options.fault_rate, options.seed, clock, clients_at)
    activity = ActivityGenerator(
        clients, options.start, end, options.events_per_day, options.seed, landing, faults, clock
    )

    zones = {WAREHOUSES[w] for w in clients_at} | {c.timezone for c in clients}
    first = min(hour_of(options.start, z) for z in zones)
    last = max(hour_of(end, z) for z in zones)
    for hour in range(first, last):
        activity.hour(hour)
        # Nothing generated from now on can land before this hour.
        landing.close_through(hour)
        if (hour + 1) % 24 == 0:
            clock.forget_before(hour - 24)
            if progress is not None:
                day = datetime.fromtimestamp(hour * 3600, UTC).date()
                progress(f"{day}: {sum(activity.counts.values()):,} events")
    landing.close_all()

    fault_counts = {kind: faults.counts.get(kind, 0) for kind in FAULT_KINDS}
    fault_counts[REDELIVERY] = landing.special_lines[REDELIVER_FILE]
    fault_counts[LATE_FILE] = landing.special_lines[LATE]
    events = dict(sorted(activity.counts.items()))
    fault_lines = sum(faults.counts.values())
    return GenerateSummary(
        files=len(landing.files),
        lines=sum(events.values()) + fault_lines + fault_counts[REDELIVERY],
        events=events,
        faults=fault_counts,
        clients=tuple(c.client_id for c in clients),
        months=_months(clients, activity.span),
        landing=landing_dir,
        ratecards=ratecard_dir,
        seconds=time.perf_counter() - began,
    )


def _prepare(options: GenerateOptions) -> tuple[Path, Path]:
    landing_dir = options.out / "landing"
    ratecard_dir = options.out / "ratecards"
    for directory in (landing_dir, ratecard_dir):
        if directory.exists() and any(directory.iterdir()):
            if not options.overwrite:
                raise GenerateError(f"{directory} is not empty (pass --force to replace it)")
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
    return landing_dir, ratecard_dir


def _special_files(options: GenerateOptions, warehouses: list[str]) -> dict[tuple[str, int], str]:
    """The file re-delivered the next day and the file that lands a day late.

    Both are busy early-afternoon files of the first day, so they are never empty unless
    the whole run is tiny.
    """
    if options.fault_rate <= 0 or not warehouses:
        return {}
    # A str seed hashes the same in every process, unlike hash()-based choices.
    rng = random.Random(f"special:{options.seed}")
    redeliver = rng.choice(warehouses)
    late = rng.choice([w for w in warehouses if w != redeliver] or warehouses)
    midday = hour_of(options.start, WAREHOUSES[redeliver]) + 13
    afternoon = hour_of(options.start, WAREHOUSES[late]) + 15
    return {(redeliver, midday): REDELIVER_FILE, (late, afternoon): LATE}


def _months(clients: list[Client], span: Mapping[str, list[int]]) -> tuple[str, ...]:
    months: set[str] = set()
    for client in clients:
        seconds = span.get(client.client_id)
        if seconds is None:
            continue
        zone = ZoneInfo(client.timezone)
        day = datetime.fromtimestamp(seconds[0], zone).date()
        last = datetime.fromtimestamp(seconds[1], zone).date()
        while day <= last:
            months.add(f"{day:%Y-%m}")
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        months.add(f"{last:%Y-%m}")
    return tuple(sorted(months))
