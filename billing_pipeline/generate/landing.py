"""Landing files as a WMS drops them: one file per warehouse and UTC delivery hour.

Events of an hour can be written while later hours are still being generated (a pick now,
its shipment hours later), so every file of the generation window stays open and is closed
once generation has moved past its hour; memory stays flat however big the day is.
A quarter of the files are gzipped; they are written plain first and compressed on close
with ``mtime=0`` and no file name in the header, so the bytes depend on the seed only.
"""

from __future__ import annotations

import gzip
import shutil
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

REDELIVERY = "redelivery"
LATE = "late"


def _extension(seed: int, warehouse: str, hour: int) -> str:
    bucket = zlib.crc32(f"{seed}:{warehouse}:{hour}".encode()) % 100
    if bucket < 25:
        return ".ndjson.gz"
    if bucket < 40:
        return ".jsonl"
    return ".ndjson"


def _day(hour: int, plus_days: int = 0) -> datetime:
    return datetime.fromtimestamp(hour * 3600, UTC) + timedelta(days=plus_days)


class LandingWriter:
    def __init__(self, landing: Path, seed: int, special: dict[tuple[str, int], str]) -> None:
        self.landing = landing
        self.seed = seed
        # (warehouse, hour) -> REDELIVERY (copied again later) or LATE (lands a day late).
        self.special = special
        self.files: list[Path] = []
        self.special_lines: dict[str, int] = {REDELIVERY: 0, LATE: 0}
        self.first_hour: int | None = None
        self.last_hour: int | None = None
        self._open: dict[tuple[str, int], tuple[TextIO, Path, Path]] = {}

    def handle(self, warehouse: str, hour: int) -> TextIO:
        """The open file for a warehouse-hour; callers cache it in ``open_files``."""
        key = (warehouse, hour)
        entry = self._open.get(key)
        if entry is not None:
            return entry[0]
        final = self._path(warehouse, hour)
        final.parent.mkdir(parents=True, exist_ok=True)
        plain = final.with_name(final.name[:-3] + ".part") if final.name.endswith(".gz") else final
        handle = plain.open("w", encoding="utf-8", newline="\n", buffering=1 << 16)
        self._open[key] = (handle, plain, final)
        if self.first_hour is None or hour < self.first_hour:
            self.first_hour = hour
        if self.last_hour is None or hour > self.last_hour:
            self.last_hour = hour
        return handle

    @property
    def open_files(self) -> dict[tuple[str, int], tuple[TextIO, Path, Path]]:
        return self._open

    def _path(self, warehouse: str, hour: int, *, plus_days: int = 0, tag: str = "") -> Path:
        moment = _day(hour)
        if self.special.get((warehouse, hour)) == LATE:
            plus_days = 1
        folder = _day(hour, plus_days).strftime("%Y-%m-%d")
        extension = _extension(self.seed, warehouse, hour)
        name = f"{warehouse}_{moment.strftime('%Y%m%dT%H')}{tag}{extension}"
        return self.landing / warehouse / folder / name

    def close_through(self, hour: int) -> None:
        """Close every file whose hour is ``<= hour``: no later event can belong to it."""
        for key in sorted(k for k in self._open if k[1] <= hour):
            self._close(key)

    def close_all(self) -> None:
        for key in sorted(self._open):
            self._close(key)

    def _close(self, key: tuple[str, int]) -> None:
        handle, plain, final = self._open.pop(key)
        handle.close()
        kind = self.special.get(key)
        if kind is not None:
            with plain.open("rb") as raw:
                self.special_lines[kind] += sum(
                    chunk.count(b"\n") for chunk in iter(lambda: raw.read(1 << 20), b"")
                )
        if plain != final:
            # filename="" and mtime=0 keep the gzip header free of run-specific bytes.
            with (
                plain.open("rb") as src,
                final.open("wb") as raw,
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=5) as gz,
            ):
                shutil.copyfileobj(src, gz, 1 << 20)
            plain.unlink()
        self.files.append(final)
        if kind == REDELIVERY:
            # The WMS sends the same file again the next day under another name.
            copy = self._path(key[0], key[1], plus_days=1, tag="_redelivery")
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(final, copy)
            self.files.append(copy)
