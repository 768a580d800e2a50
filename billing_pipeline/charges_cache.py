"""Charges cached per client and activity day, keyed by a fingerprint of that day's inputs.

Rules are pure per event (SPEC §5): an event's charges and rule errors depend only on the
event, the client's rules (the file and everything it requires), ``ctx.params`` of the rate
card version in effect on its activity date, ``ctx.client_id``, the engine and its budgets.
So a client-month's charges are the concatenation, day by day, of each day's charges, and a
day whose inputs have not changed need not go through Lua again: the nightly run of the 30th
costs about what the 1st does.

The key of a day hashes: the activity partition file's content (sha256 of its bytes), the
rules fingerprint (``RuleEngine.fingerprint``), the rules file name, the client id, the rate
card version in effect that day (its ``effective_from`` and ``params``; rates and every other
part of the card only matter to pricing, which is not cached), the budgets, and the engine's
own source (every file of ``billing_pipeline/rules``): a new engine recomputes everything.

Layout, under the outputs directory (internal state, not part of SPEC §4.1)::

    _cache/charges/client_id=C/activity_date=D/entry.json         which key is stored
    _cache/charges/client_id=C/activity_date=D/KEY.charges.parquet
    _cache/charges/client_id=C/activity_date=D/KEY.errors.parquet      only when there are any

``entry.json`` is written last and names its key, and the data files carry the key in their
names, so a run killed midway leaves either the old entry (whose files are still there) or
the new one; a stale file is never read under a key it was not computed for. One entry is
kept per client-day. Re-hashing an unchanged activity file every night would read the whole
month, so the entry also records the file's size, mtime and inode: when they are unchanged,
the stored content hash is reused (the store replaces files by rename, so a rewrite always
gets a new inode and mtime); when they changed, the file is hashed, and a rewrite with the
same bytes (the activity asset rebuilds the days around the ones that got files) still hits.

The entry also holds the day's charges summed per code (``codes``: charge_summaries.py), and
the charges dataset keeps one part file per day (``charging.write_charges``) named in the
month's state file with its key. So a night reads no cached day's lines at all: the month
is priced, counted and invoiced from the entries, and only the new day's part is written.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

import billing_pipeline.rules as rules_package
from billing_pipeline.config import DataPath
from billing_pipeline.ratecards import RateCard
from billing_pipeline.rules import ERRORS_SCHEMA, Budgets
from billing_pipeline.storage import (
    Store,
    atomic_path,
    parquet_bytes,
    read_parquet,
    write_bytes,
    write_parquet,
)

CACHE_FORMAT = "charges-cache v3"


@functools.cache
def engine_version() -> str:
    """sha256 over the charge engine's source files (Python and Lua driver), shortened."""
    root = Path(rules_package.__file__).parent
    digest = hashlib.sha256(CACHE_FORMAT.encode() + b"\n")
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".lua"}:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def day_key(
    *,
    activity_sha256: str,
    card: RateCard,
    day: date,
    rules_sha256: str,
    budgets: Budgets,
) -> str:
    """The fingerprint of everything one client-day's charges and rule errors depend on."""
    version = card.version_on(day)
    inputs = {
        "format": CACHE_FORMAT,
        "engine": engine_version(),
        "budgets": asdict(budgets),
        "client_id": card.client_id,
        "rules_file": card.rules,
        "rules_sha256": rules_sha256,
        "version": None if version is None else version.effective_from.isoformat(),
        "params": None if version is None else version.params,
        "activity_sha256": activity_sha256,
    }
    text = json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# Shared by every day without rule errors (most): building an empty frame costs ~0.1 ms,
# once per cached day and night. Frames are never changed in place here.
_NO_ERRORS = pl.DataFrame(schema=ERRORS_SCHEMA)


@dataclass
class DayEntry:
    """What a cached client-day holds besides its two frames."""

    key: str
    activity_sha256: str
    activity_stat: list[int | str]  # file_stat of the activity file when hashed
    events: int
    events_sha256: str  # charging.events_fingerprint of the day's events
    events_by_type: dict[str, int] = field(default_factory=dict)
    rule_errors: int = 0  # rows in KEY.errors.parquet; no file when 0 (the common case)
    # charge code -> the day's charges of that code summed (charge_summaries.CodeDay as
    # JSON), so a month is priced, counted and invoiced without its lines
    codes: dict[str, dict] = field(default_factory=dict)

    @property
    def charges(self) -> int:
        return sum(int(c["rows"]) for c in self.codes.values())


@dataclass
class DayResult:
    day: date
    entry: DayEntry
    cached: bool
    # None when not read: the day came from the cache and its part of the charges dataset
    # is already what the entry says (charging.ChargesOutcome.charges reads it from there)
    charges: pl.DataFrame | None
    errors: pl.DataFrame
    # storage.file_stat of the dataset's part for this day when it already holds these
    # charges (None otherwise, and for a day without charges, which has no part)
    part_stat: list[int | str] | None = None
    # the charges as storage.write_parquet encodes them, when the cache has encoded them
    # already: the dataset's part is written from these bytes (dropped once written)
    encoded: bytes | None = None


class ChargesCache:
    """Per client-day charges under ``_cache/charges``; ``write=False`` only reads it."""

    def __init__(self, store: Store, write: bool = True) -> None:
        self.store = store
        self.write = write

    def day_dir(self, client_id: str, day: date) -> Path:
        return (
            self.store.root
            / "_cache"
            / "charges"
            / f"client_id={client_id}"
            / f"activity_date={day.isoformat()}"
        )

    def entry(self, client_id: str, day: date) -> DayEntry | None:
        path = self.day_dir(client_id, day) / "entry.json"
        if not path.exists():
            return None
        try:
            return DayEntry(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            return None  # unreadable or from another format: recompute the day

    # No schema in the reads below: a missing file raises (FileNotFoundError) rather than
    # reading as empty.
    def load_charges(self, client_id: str, day: date, entry: DayEntry) -> pl.DataFrame:
        return read_parquet(self.day_dir(client_id, day) / f"{entry.key}.charges.parquet")

    def load_errors(self, client_id: str, day: date, entry: DayEntry) -> pl.DataFrame:
        if not entry.rule_errors:
            return _NO_ERRORS
        return read_parquet(self.day_dir(client_id, day) / f"{entry.key}.errors.parquet")

    def save(
        self,
        client_id: str,
        day: date,
        entry: DayEntry,
        charges: pl.DataFrame,
        errors: pl.DataFrame,
    ) -> bytes | None:
        """Stores the day; returns its charges' Parquet bytes (None when not writing), which
        the charges dataset's part for the day can be written from as they are."""
        if not self.write:
            return None
        folder = self.day_dir(client_id, day)
        # Rebuildable from the activity, so no fsync (storage.atomic_path's ``durable``): a
        # file lost or torn by a crash fails to load and the day is simply computed again.
        encoded = parquet_bytes(charges)
        write_bytes(encoded, folder / f"{entry.key}.charges.parquet", durable=False)
        entry.rule_errors = errors.height
        if errors.height:
            write_parquet(errors, folder / f"{entry.key}.errors.parquet", durable=False)
        self.save_entry(client_id, day, entry)
        for stale in folder.glob("*.parquet"):
            if not stale.name.startswith(entry.key + "."):
                stale.unlink(missing_ok=True)
        return encoded

    def save_entry(self, client_id: str, day: date, entry: DayEntry) -> None:
        if not self.write:
            return
        target = self.day_dir(client_id, day) / "entry.json"
        with atomic_path(target, durable=False) as tmp:
            tmp.write_text(json.dumps(asdict(entry), sort_keys=True))


def read_hashed(path: DataPath, columns: Sequence[str] | None = None) -> tuple[pl.DataFrame, str]:
    """The activity file's rows (``columns`` of them) and the sha256 of its bytes, reading it
    once."""
    data = path.read_bytes()
    wanted = None if columns is None else list(columns)
    return pl.read_parquet(io.BytesIO(data), columns=wanted), hashlib.sha256(data).hexdigest()
