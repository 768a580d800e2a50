"""Where the pipeline reads and writes (SPEC §2).

Every location is resolved from the environment at call time, not import time, so tests
and the CLI can point a fresh process at another tree by setting ``BILLING_*`` variables.
Relative defaults are taken against the project root: the current directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    landing: Path
    data: Path
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
            data=pick("BILLING_DATA_DIR", "data/warehouse"),
            ratecards=pick("BILLING_RATECARDS_DIR", "ratecards"),
            lua=pick("BILLING_LUA_DIR", "lua"),
            finance=pick("BILLING_FINANCE_DIR", "data/finance"),
        )
