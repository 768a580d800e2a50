"""The Lua charge engine (SPEC §5): events in, charge lines and rule errors out.

Runtime choice and figures
--------------------------
LuaJIT 2.1 (``lupa.luajit21``) with the JIT on for everything, rule code included. The
instruction budget is not a count hook (LuaJIT never runs hooks inside compiled traces, and
a hook set makes the interpreter check every instruction): rule source is rewritten before
loading (instrument.py) so that every loop body, function entry and ``goto`` calls the
budget counter ``__tick(W)`` with W the block's estimated instruction cost; the JIT inlines
it. Line numbers are unchanged by the rewrite.

The driver (driver.lua) reads the polars columns in place through the Arrow C data interface
and LuaJIT's FFI, groups the rows by event type (a counting sort), and runs one loop per
type, loaded afresh per type so that each has its own traces: build ``e``, call the handler
under its budget, ``charge`` writing to malloc'd C arrays. The loop calls handlers directly
and runs under one ``pcall``; when a handler fails, its charges are rolled back and the loop
resumes after that event. A charge line is four int32 ids (code, quantity, basis, memo:
indexes into small tables of the distinct values; a whole quantity below 65536 is its own
id). The lines are then put back in input order (event by event, each event's lines where
its handler began) straight into memory shared with the parent (worker.SharedOutput); the
parent imports them in place through the Arrow C interface (no Python object per value, no
copy), converts each distinct quantity and basis to a decimal once and gathers. Payloads
are decoded by a
decoder generated per event type from the shape of its payloads (straight-line code: no loop
inside the event loop, which LuaJIT would refuse to compile), falling back to the generic
decoder for any payload that does not match. A failed handler call is run once more,
interpreted, under ``xpcall`` so the message names the rule's file and line even for errors
raised without one.

Tables are lazy: interning a new unique string costs LuaJIT ~250 ns, and each event carries
3-5 (event_id, occurred_at, order ids, tracking numbers) that handlers mostly never read. So
``e`` holds only its payload and gets its other fields from the columns on read (a
metatable ``__index``),
and the shape decoders leave payload strings pending (a hidden key holding the string's
position in the payload text; made on read). The sandbox's ``next``, ``pairs``, ``rawget``,
``rawset``, ``getmetatable``, ``setmetatable`` and any write to an absent key fill such a
table completely first (and drop its hidden keys and metatable), so rules see the same
tables as before; the metatable is never reachable from rule code (tests/rules/test_lazy.py).

Measured on the 2-core development machine (shared, load average 2-5 during the runs) with
``benchmarks/bench_rules.py`` (1,000,000 DTC-like events, default rules, sandbox and budgets
on, median of 3, both engines back to back in one sitting): before (e848332: eager tables,
lupa's memory-capped allocator, charges sorted in polars) 2.92 s = ~342,000 events/s,
worker CPU ~1.85-2.1 s, parent CPU ~0.70 s; d5dd32b 1.47 s = ~680,000 events/s, worker CPU
~0.96-1.0 s, parent CPU ~0.43 s. Where that gain came from (worker CPU per million): lazy
``e`` ~0.5 s, LuaJIT's own allocator instead of lupa's counting one ~0.3 s; parent: Arrow
import of the result arrays instead of ``array`` -> Series (~0.18 s), the sort moved into
Lua (~0.09 s), integral quantities converted in one cast.

Now, against d5dd32b (same machine, interleaved runs, load average 4-7 from other work, so
wall times swing by up to 2x from one run to the next). ``bench_rules.py``, two rounds, median
of 3: d5dd32b 1.72 s and 1.56 s (~580,000-640,000 events/s), now 1.19 s and 1.64 s
(~610,000-840,000 events/s; single runs 1.10-2.01 s). A harness timing each step (median of
3 per process, three rounds): evaluate 3.38 -> 1.21 s, 3.86 -> 2.36 s, 1.71 -> 2.11 s;
parent CPU 0.55-0.57 s -> 0.33-0.38 s in every round; worker CPU 1.08-1.15 s -> 0.76-0.92 s
in two rounds, 1.71 s in the third (the slow JIT mode, below). Same charges: the benchmark
prints a hash; with the Lua files of d5dd32b it is 6a2ad54e5d809f06 byte for byte, and
without the rules_sha256 column (which the util.lua edit changes) it is the same as theirs.
Step by step:

- charge arrays through shared memory (worker.SharedOutput, a memfd made before the fork)
  instead of pickled through the pipe: pickle 0.04 s + pipe + unpickle 0.03 s + a 55 MB
  copy in the child gone; the parent reads the arrays in place (no copy).
- the parent no longer waits for the child's teardown once the whole result is in
  (worker.py reaps it on a thread): 0.04-0.06 s of wall time.
- ``encode`` makes every column one chunk (the child used to do it, 0.035 s), so gathers of
  event_id per charge line run on one chunk (0.05 s -> 0.005-0.015 s).
- ``floats_to_decimal`` converts the few fractional quantities (labor hours) on their rows
  only (scatter) instead of a when/then over every row: 0.09 s -> 0.035 s.
- ``lib/util.lua``'s ``code_part`` memoizes by material code (``gsub`` is a C call the JIT
  cannot compile): order.packed 0.27-0.45 s -> 0.18-0.55 s of worker CPU (bimodal, below).

Tried and dropped: taking order.packed's first two materials without the ``ipairs`` loop
(same charges, messages and lines): ~0.19 s when its loop compiled, but no better on
average; a larger GC pause (slower: the heap leaves the cache); running each type in chunks
and re-enabling blacklisted functions with ``jit.on`` (did not stop the bad mode below).

JIT note: the worker's time used to be bimodal, ~0.65-0.9 s or 1.1-1.7 s CPU per million,
varying between processes. Trace-abort logs (``jit.attach`` on a worker run in-process)
showed why: the root trace of the order.shipped (sometimes order.packed) loop failed with
"too many spill slots" (the decoder's C calls with every field value kept alive across
them), after ~11 such aborts LuaJIT ran the loop interpreted, and the interpreter's many
calls of the payload tables' ``__index`` got that blacklisted too, which slowed every later
type. Handlers called through ``pcall`` aborted their own traces ("NYI: return to lower
frame") besides. Fixed by: one ``pcall`` per run of events (above); decoders that compare
keys with int32 loads instead of ``memcmp``, check the whole payload for a backslash once
(one ``memchr`` per string instead of two) and store each table as soon as it is made (no
sunk allocation keeping values alive); and LuaJIT's loop optimization off while the event
loops are compiled (it copies the loop body and keeps values alive across iterations). In
~18 traced in-process runs of this code: no spill-slot abort, no blacklisting (before: about
one run in three; the dropped short-integer reader below brought one back).

Now, against 02d854a (same machine, load average 8-12 from other work, so wall times mean
little; ``bench_rules.py``, two interleaved rounds, 3 runs each): CPU per million events
(parent with its polars threads + worker) median 1.42 s -> 1.25 s (~700,000 -> ~800,000
events per CPU-second); worker 0.93-1.51 s (median 1.05) -> 0.83-0.88 s (median 0.85), the
spread gone; parent 0.35-0.38 s -> 0.37-0.41 s (unchanged: noise). Where the worker's gain
came from (in-process, per million): the two-key ``e`` 0.86-0.93 s -> 0.80-0.83 s; the sort
written straight into the shared output file (no second 55 MB copy: minor faults 47k ->
35k); the rest is the slow mode gone. Charges identical (the benchmark's hashes).

Tried and dropped this round: decoding each type in blocks of 128 events before running
their handlers (smaller traces; no better once the spill-slot aborts were gone); reading
short integers without ``strtod`` (new "too many snapshots" aborts in order.packed, gain
within noise); a larger or smaller GC pause (within noise, or slower at 100); jemalloc's
``oversize_threshold:0`` for the parent (more page faults, not fewer).

Now, against f366de2 (``bench_rules.py``, four invocations each, interleaved, 3 runs per
invocation, load average 7-10 from other work, so wall times say little): CPU per million
events (parent with its polars threads + worker), median of the 12 runs, 0.99 s -> 0.81 s
(~1,006,000 -> ~1,235,000 events per CPU-second); parent 0.31 -> 0.21 s, worker 0.69 ->
0.60 s; wall median 2.91 -> 1.78 s at that load (at load ~4, with the first change below
only: median 0.79 s = ~1,260,000 events/s). Charges identical (the benchmark's hashes).
Where it came from:

- charge lines as int32 ids (above): 16 bytes a line in the worker, 20 in the shared output
  (32 and 32 before), so ~20k fewer page faults per million in the worker and ~10k in the
  parent, and no per-line float-to-decimal work in the parent (the quantity conversion
  and the basis when/then over all lines were ~0.05 s with their temporaries);
- the sort back to input order walks the rows and copies each event's lines (no histogram
  over the lines), the first three without an inner loop, from one array of quads: ~0.07
  -> ~0.045 s;
- payload integers read with ``strtoll`` (``strtod`` only for what is not a short integer,
  see parse_scalar): ~7% off order.picked/packed/shipped (~0.03 s). Unlike the inline
  digit reader dropped before, it is one C call as before (no branch per digit); lower
  per-type times in each of ~12 runs, and no slow mode seen;
- ``warehouse_id`` handed over as its string column (not dictionary-encoded per event),
  one rate card version dated without gathers: ~0.02-0.03 s of the parent.

Tried and dropped this round: presizing the decoders' arrays (order.packed's materials)
to skip the growth of the array part (within noise, and the tables would differ from the
generic decoder's in array size); ``MAP_POPULATE`` on the shared output in the worker (within
noise); a lower ``hotloop`` for the first events of each type (no change); waiting for the
worker's exit before building the frames, jemalloc without decay (``_RJEM_MALLOC_CONF``):
the parent's page faults stay the same (they are the first write to each page after the
fork, copy-on-write or fresh); jemalloc with transparent huge pages: 2-3x slower.

The 2,000,000 events/s target is not met (blocked, docs/performance.md, "Session 15"): it
needs ~0.5 s of CPU per million for everything. The same code took, per million
(``bench_rules.py --repeat 5``, three invocations each day): 0.52-0.55 s on a quiet machine
(parent 0.17-0.18 s, worker 0.37-0.39 s; 1.81-1.93 million events per CPU-second, 1.94-2.02
million events a second of wall time), 0.64 s (1.55 million) the day before, 0.57-0.59 s
(1.68-1.74 million) in session 14 and 0.60-0.65 s (1.53-1.68 million) in session 15. It moves
that much because about a fifth of its CPU is page faults, whose cost is the machine's:
the parent's first write to each page after the fork (~48,000 a million events, ~0.05 s)
and the worker's own (~22,600, ~0.06 s of system time); docs/performance.md, "Session 14".
The breakdown below was measured when a million took ~0.8 s (~1,235,000 events per
CPU-second); the worker has lost ~0.2 s since (refilled tables for confined handlers,
session 9), the parent's share is about as it was. What bounded it then, per million
events (CPU, measured in-process or with rusage):

- the worker's event loops ~0.45 s, most of it decoding payloads: with empty handlers
  order.picked still takes ~0.08 s (~270 ns an event: ~90 ns for the loop, ``e`` and the
  call, ~170 ns decoding 4 fields), order.packed ~0.14 s (~490 ns: the payload, the
  materials array and one table per material), order.shipped ~0.09 s (~320 ns, 7 fields);
  with the handlers and charges, 0.08-0.09, 0.15-0.17 and 0.13-0.14 s. The seven other
  types (10% of the events) take ~0.09 s: ~5 ms of warm-up each (their first 3000 events:
  interpreting, compiling their traces) and 650-1300 ns an event after, their rows being
  scattered over the columns (cache misses on every view, payload and id). In samples of
  the worker taken before this round: GC ~18% (``jit.profile``), ``memchr`` ~10% and
  ``strtod`` ~4% (``perf``), the kernel ~22% (page faults and zeroing pages);
- the sort back to input order ~0.045 s; the worker's process (fork, runtime, exports,
  teardown) ~0.03 s, and ~0.03-0.05 s of system time (~22k page faults: the shared output
  and the line array, ~34 MB each);
- the parent ~0.20-0.22 s: ``encode`` ~0.045 s (the event type's unique and Enum cast
  ~0.025 s), the fork and the wait ~0.02 s, ``to_frames`` ~0.13 s of which about half is
  ~48k page faults: the ~190 MB the charges frame is made of (event_id, event_type,
  charge_code and memo are string views, 16 bytes a line each; quantity and basis 16 bytes;
  two date columns), every page of it a first write after the fork.

With the worker at ~0.37 s, the parent's ~0.17 s is now a third of the whole, and half of
``to_frames`` is the page faults of writing the charges frame after the fork. A clear margin
over the target needs a different design of the payload path (e.g. fields decoded once per
type into typed columns and tables made only for what a handler reads) or of the charges
frame (fewer bytes a line written in the parent), not more tuning of this one.

Refilled tables (session 9): SPEC §5 lets a rule keep ``e`` or its payload past the call (in
a table, a closure, a cache keyed on it), so the loop cannot hand every handler the same
tables refilled. It does so for the handlers whose source shows that they cannot keep them
(confined.py: the parameter is only ever indexed by field name, the payload only indexed or
named by one local that is only indexed, nothing of it inside a nested function); every other
handler gets fresh tables as before, so no rule can tell. A refilled table that a handler
filled (a write to an absent key, pairs, ...) is dropped for a fresh one. A handler may hand
``e`` on as the first argument of a fixed local of its chunk (a wrapper, as heavy_parcel's
``order.shipped`` calls the default one) if that local's function is confined in turn,
which the driver checks at run time. All nine handlers of the default rules and all of
heavy_parcel's are confined. ``ctx.params`` is copied by unrolled code for small flat params
(deep_copy's loop made LuaJIT abort the trace of a loop whose handler read it). Figures:
docs/performance.md, "Session 9".

Limits: the instruction budget is the counter above (reset per handler call; shared by
coroutines; once exceeded, the sandbox's ``pcall``/``xpcall``/``coroutine.resume``
re-raise); the memory cap is a limit on the forked worker's address space
(``lua.MemoryCap``: what it uses when a batch starts, after a full collection, plus the cap;
a worker hosts one runtime, which evaluates its batches one after another, each in a fresh
sandbox, so this is the per-runtime cap of SPEC §5 for each batch, and LuaJIT runs on its own
allocator, ~30% faster than lupa's ``max_memory`` one); the charge arrays live outside the
Lua heap and raise the limit by their own size (what one handler call can add to them is
bounded by its budget); the wall clock is enforced by running each batch in a forked child
(worker.py) that is killed at the deadline. The child reports the row it is on, so a runaway
C call (a backtracking ``string.find``) is pinned on its event, which gets a rule error, and
the rest of the batch is evaluated again without it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from billing_pipeline.rules import modules as mods
from billing_pipeline.rules.batch import (
    Columns,
    RawResult,
    encode,
    load_rules,
    read_arrays,
    run_in_lua,
    subset,
    to_frames,
)
from billing_pipeline.rules.lua import MemoryCap, new_runtime, text
from billing_pipeline.rules.model import (
    EVENT_COLUMNS,
    Budgets,
    Evaluation,
    RateVersion,
    RuleLoadError,
    empty_charges,
    empty_errors,
)
from billing_pipeline.rules.worker import IDLE, Progress, SharedOutput, run_with_deadline

RuleKind = Literal["handler", "false"]


@dataclass
class Prepared:
    """A batch ready for the Lua driver: what evaluate does before any fork."""

    columns: Columns
    modules: dict[str, mods.Module]
    sha: str  # fingerprint of the rules file and what it requires
    versions: list[RateVersion]  # by effective_from


class RuleEngine:
    def __init__(self, lua_dir: Path, budgets: Budgets = Budgets()) -> None:  # noqa: B008
        self.lua_dir = Path(lua_dir)
        self.budgets = budgets
        self._progress = Progress()

    def fingerprint(self, rules_file: str) -> str:
        """sha256 over the rules file and every Lua file it can require, transitively."""
        return mods.fingerprint(mods.collect(self.lua_dir, rules_file))

    def rule_kinds(self, rules_file: str) -> dict[str, RuleKind]:
        """event_type -> "handler" | "false"; absent types are unhandled.

        Raises RuleLoadError when the rules file does not load.
        """
        modules = mods.collect(self.lua_dir, rules_file)
        root = mods.module_for_rules_file(rules_file)
        budgets = self.budgets

        def kinds() -> tuple[str | None, list[str], list[str]]:
            cap = MemoryCap(budgets.memory_bytes)  # in the forked child
            try:
                runtime, driver = new_runtime()
                rules, error = load_rules(driver, runtime, modules, root, budgets)
                if rules is None:
                    return error, [], []
                names, values = driver.rule_kinds(rules)
                names, values = list(names.values()), list(values.values())
            finally:
                cap.lift()
            return None, [text(n) for n in names], [text(v) for v in values]

        outcome = run_with_deadline(kinds, budgets.batch_seconds, self._progress)
        if outcome.kind == "timeout":
            raise RuleLoadError(f"{rules_file}: loading exceeded {budgets.batch_seconds} s")
        if outcome.kind != "ok":
            raise RuleLoadError(f"{rules_file}: loading failed: {outcome.detail}")
        error, names, values = outcome.value
        if error is not None:
            raise RuleLoadError(error)
        return dict(zip(names, values, strict=True))  # type: ignore[arg-type]

    def evaluate(
        self,
        events: pl.DataFrame,
        *,
        client_id: str,
        rules_file: str,
        versions: Sequence[RateVersion],
    ) -> Evaluation:
        prepared = self.prepare(events, rules_file, versions)
        if prepared is None:
            return Evaluation(empty_charges(), empty_errors())
        outputs: list[SharedOutput] = []
        try:
            raws, extra = self._run(prepared, rules_file, client_id, outputs)
            charges, errors = to_frames(
                raws,
                events,
                prepared.columns,
                prepared.versions,
                rules_file=rules_file,
                rules_sha256=prepared.sha,
                extra_errors=extra,
            )
        finally:
            # the charge arrays were read in place (read_arrays); the frames own their data
            for output in outputs:
                output.close()
        return Evaluation(charges, errors)

    def prepare(
        self, events: pl.DataFrame, rules_file: str, versions: Sequence[RateVersion]
    ) -> Prepared | None:
        """Checks the columns, loads the rules' sources and encodes the batch; None for a
        batch without events. Raises RuleLoadError for rules that cannot be collected."""
        missing = [c for c in EVENT_COLUMNS if c not in events.columns]
        if missing:
            raise ValueError(f"events lack columns: {', '.join(missing)}")
        modules = mods.collect(self.lua_dir, rules_file)
        sha = mods.fingerprint(modules)
        if events.height == 0:
            return None
        ordered = sorted(versions, key=lambda v: v.effective_from)
        return Prepared(encode(events, ordered), modules, sha, ordered)

    def lua_call(
        self,
        part: Columns,
        prepared: Prepared,
        rules_file: str,
        client_id: str,
        output: SharedOutput,
    ) -> Callable[[], RawResult]:
        """The driver's run over ``part``, to be called in a forked worker."""
        root = mods.module_for_rules_file(rules_file)
        budgets = self.budgets

        def call() -> RawResult:
            return run_in_lua(
                part,
                modules=prepared.modules,
                root=root,
                client_id=client_id,
                versions=prepared.versions,
                budgets=budgets,
                progress_address=self._progress.address,
                output=output,
            )

        return call

    def _run(
        self,
        prepared: Prepared,
        rules_file: str,
        client_id: str,
        outputs: list[SharedOutput],
    ) -> tuple[list[RawResult], list[tuple[int, int | None, str]]]:
        """Runs the batch in children until every event has charges or an error.

        Each child writes its charge arrays into a SharedOutput of its own, appended to
        ``outputs`` for the caller to close once the frames are built."""
        budgets = self.budgets
        stall = min(1.0, budgets.batch_seconds / 4)
        raws: list[RawResult] = []
        extra: list[tuple[int, int | None, str]] = []
        queue = [prepared.columns]
        while queue:
            part = queue.pop()
            output = SharedOutput()
            try:
                outcome = run_with_deadline(
                    self.lua_call(part, prepared, rules_file, client_id, output),
                    budgets.batch_seconds,
                    self._progress,
                )
                if outcome.kind == "ok" and outcome.value.n_out:
                    read_arrays(outcome.value, output)
                    outputs.append(output)
                    output = None
            finally:
                if output is not None:
                    output.close()
            if outcome.kind == "ok":
                raws.append(outcome.value)
                continue
            rows = part.frame["row"]
            blamed = outcome.row != IDLE and (
                outcome.kind == "crash" or outcome.stalled_seconds >= stall
            )
            if not blamed and rows.len() == 1:
                blamed, outcome.row = True, int(rows[0])
            if blamed:
                extra.append((outcome.row, None, _why(outcome.kind, budgets, outcome.detail)))
                rest = rows.filter(rows != outcome.row)
                if rest.len():
                    queue.append(subset(part, rest))
            else:
                half = rows.len() // 2
                queue.extend([subset(part, rows[half:]), subset(part, rows[:half])])
        return raws, extra


def _why(kind: str, budgets: Budgets, detail: str) -> str:
    if kind == "timeout":
        return (
            f"wall-clock limit exceeded ({budgets.batch_seconds:g} s for the batch); the handler"
            " was stuck in a call the instruction budget cannot see, such as a pattern match"
            " that backtracks"
        )
    last = [ln for ln in detail.strip().splitlines() if ln.strip()]
    reason = re.sub(r"\s+", " ", last[-1]) if last else "unknown failure"
    return f"rule evaluation failed: {reason}"
