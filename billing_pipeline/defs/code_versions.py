"""Code versions that make the UI show partitions as stale when rules change."""

from __future__ import annotations

import hashlib
from pathlib import Path

from billing_pipeline.config import Paths


def lua_tree_hash(root: Path) -> str:
    """sha256 over every Lua file under ``root`` (names and contents), shortened."""
    digest = hashlib.sha256(b"billing-pipeline charges v1\n")
    if root.is_dir():
        for path in sorted(root.rglob("*.lua")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def lua_code_version() -> str:
    """The Lua tree's hash when the code loads: the ``charges`` asset's code version.

    Dagster has one code version per asset, not per partition, so an edit to any rules file
    marks every client-month stale; each partition's own ``rules_sha256`` (metadata and the
    charges dataset) tells which ones really changed, and ``billing rules diff`` shows how.
    """
    return lua_tree_hash(Paths.from_env().lua)
