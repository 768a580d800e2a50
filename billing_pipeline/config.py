"""Where the pipeline reads and writes (SPEC §2).

Every location is resolved from the environment at call time, not import time, so tests
and the CLI can point a fresh process at another tree by setting ``BILLING_*`` variables.
Relative defaults are taken against the project root: the current directory. The outputs
directory alone may be an object-store URI (``s3://bucket/prefix``, see storage.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from upath import UPath

# A place under the outputs directory: a local Path, or a UPath on an object store.
DataPath: TypeAlias = Path | UPath


def data_root(location: str | os.PathLike[str] | UPath) -> DataPath:
    """The outputs directory named by ``location``: a UPath for a URI, else a local Path.

    Listings are not cached: other processes (sensors, run workers, ingestion's parse
    processes) write the same prefix, and a cached listing would hide their files.
    """
    if isinstance(location, (Path, UPath)):
        return location
    text = os.fspath(location)
    if "://" in text and not text.startswith("file://"):
        return UPath(text, use_listings_cache=False)
    return Path(text.removeprefix("file://"))


@dataclass(frozen=True)
class Paths:
    landing: Path
    data: DataPath
    ratecards: Path
    lua: Path
    finance: Path

    @classmethod
    def from_env(cls, root: Path | None = None) -> Paths:
        base = Path(root) if root is not None else Path.cwd()

        def pick(var: str, default: str) -> Path:
            value = os.environ.get(var)
            return Path(value) if value else base / default

        return cls(
            landing=pick("BILLING_LANDING_DIR", "data/landing"),
            # Not through Path(): it would fold the `//` of an s3:// URI.
            data=data_root(os.environ.get("BILLING_DATA_DIR") or base / "data/warehouse"),
            ratecards=pick("BILLING_RATECARDS_DIR", "ratecards"),
            lua=pick("BILLING_LUA_DIR", "lua"),
            finance=pick("BILLING_FINANCE_DIR", "data/finance"),
        )
