"""The LuaJIT runtime that hosts the driver and one sandboxed rules file."""

from __future__ import annotations

import functools
import os
import resource
from collections.abc import Mapping
from importlib import resources
from typing import Any

import lupa.luajit21 as luajit

from billing_pipeline.rules.confined import confined_spans
from billing_pipeline.rules.instrument import InstrumentError, instrument
from billing_pipeline.rules.modules import Module

_DRIVER = resources.files("billing_pipeline.rules").joinpath("driver.lua").read_bytes()


def new_runtime() -> tuple[Any, Any]:
    """A runtime without any Python object registered in it, and the driver module.

    ``encoding=None`` keeps Lua strings as bytes, so binary results come back untouched;
    every string going in is encoded by ``to_lua``. The runtime uses LuaJIT's own allocator:
    lupa's ``max_memory`` allocator (malloc plus accounting per object) made the event loop
    ~30% slower (child CPU 1.1 s vs 0.8 s per million events). The memory cap is
    ``MemoryCap`` on the forked worker instead.
    """
    runtime = luajit.LuaRuntime(
        register_eval=False,
        register_builtins=False,
        unpack_returned_tuples=True,
        encoding=None,
    )
    driver = runtime.execute(_DRIVER)
    return runtime, driver


class MemoryCap:
    """SPEC §5's memory cap per runtime, as a limit on the worker process that hosts it.

    Each runtime lives in its own forked worker (worker.py), so capping the worker's growth
    caps the runtime: the soft ``RLIMIT_AS`` becomes the address space in use now plus
    ``memory_bytes``. An allocation beyond it fails, which LuaJIT raises as "not enough
    memory" in the handler that asked (a rule error, like lupa's ``max_memory`` gave). The
    charge arrays that driver.lua mallocs outside the Lua heap raise the limit by their own
    size (they grow with the batch, not with what a handler does). ``lift()`` restores the
    limit before Python copies the results out.
    """

    def __init__(self, memory_bytes: int) -> None:
        self._old = resource.getrlimit(resource.RLIMIT_AS)
        hard = self._old[1]
        with open("/proc/self/statm") as statm:
            in_use = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = in_use + memory_bytes
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

    def lift(self) -> None:
        resource.setrlimit(resource.RLIMIT_AS, self._old)


def to_lua(runtime: Any, value: Any) -> Any:
    """Plain data (dict/list/str/int/float/bool/None) as Lua values; nothing else goes in.

    None becomes nil (a key with a None value is left out), lists become 1-based sequences.
    """
    if value is None or isinstance(value, bool | int | float | bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, Mapping):
        table = {}
        for key, item in value.items():
            if item is None:
                continue
            table[to_lua(runtime, key)] = to_lua(runtime, item)
        return runtime.table_from(table)
    if isinstance(value, list | tuple):
        table = {}
        for index, item in enumerate(value, start=1):
            if item is not None:
                table[index] = to_lua(runtime, item)
        return runtime.table_from(table)
    raise TypeError(f"cannot hand a {type(value).__name__} to Lua")


def modules_table(runtime: Any, modules: Mapping[str, Module]) -> Any:
    """Module name -> {source (instrumented, see instrument.py), chunkname, confined (see
    confined.py)} or {error} or {refused}."""
    entries: dict[str, dict[str, Any]] = {}
    for name, module in modules.items():
        if module.source is None:
            entries[name] = {"refused": module.refused or "refused"}
            continue
        try:
            source = _instrumented(module.source)
        except InstrumentError as exc:
            entries[name] = {"error": f"{module.chunkname}:{exc}"}
            continue
        entries[name] = {
            "source": source,
            "chunkname": "@" + module.chunkname,
            "confined": {
                span: list(callees) for span, callees in confined_spans(module.source).items()
            },
        }
    return to_lua(runtime, entries)


@functools.lru_cache(maxsize=64)
def _instrumented(source: bytes) -> bytes:
    return instrument(source)


def text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
