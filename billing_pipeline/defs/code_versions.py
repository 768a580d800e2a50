"""Code versions that make the UI show partitions as stale when rules change."""

from __future__ import annotations

import hashlib

from billing_pipeline.config import Paths


def lua_code_version() -> str:
    """sha256 over every Lua file under the rules directory, read when the code loads.

    Dagster has one code version per asset, not per partition, so an edit to any rules file
    marks every client-month stale; each partition's own ``rules_sha256`` (metadata and the
    charges dataset) tells which ones really changed, and ``billing rules diff`` shows how.
    """
    root = Paths.from_env().lua
    digest = hashlib.sha256(b"billing-pipeline charges v1\n")
    if root.is_dir():
        for path in sorted(root.rglob("*.lua")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
