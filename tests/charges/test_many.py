"""Many client-months' batches through one engine worker (rules/many.py, issue 7).

The charges asset evaluates a run's client-months in one forked worker instead of one
each; these check that every job gets what ``RuleEngine.evaluate`` alone gives it, that
each job has a deadline of its own, and that a job that times out, crashes or cannot load
its rules costs only itself.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.rules import Budgets, RuleEngine, RuleLoadError
from billing_pipeline.rules.many import Job, evaluate_many
from billing_pipeline.rules.worker import Progress, RunningMany, run_many_with_deadline
from tests.rules.conftest import event, frame

GOOD = """
return {
  picked = function(e, charge, ctx) charge("PICK", e.payload.qty, {memo = ctx.client_id}) end,
  slow = function(e, charge)
    string.find(string.rep("a", 40), string.rep("a-", 20) .. "b")
  end,
  bad = function(e, charge) error("boom") end,
}
"""


@pytest.fixture
def engine(tmp_path: Path) -> RuleEngine:
    root = tmp_path / "lua"
    (root / "rules").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "rules" / "good.lua").write_text(GOOD)
    (root / "rules" / "broken.lua").write_text("return {\n  picked = \n")
    return RuleEngine(root, Budgets(instructions=200_000, memory_bytes=64 << 20, batch_seconds=1.5))


def _events(prefix: str, n: int, types: tuple[str, ...] = ("picked",)) -> pl.DataFrame:
    rows = [event(f"{prefix}{i}", types[i % len(types)], {"qty": i % 5 + 1}) for i in range(n)]
    return frame(rows)


def _same(a, b) -> None:
    assert a.charges.equals(b.charges)
    assert a.errors.equals(b.errors)


def test_each_job_gets_what_evaluate_alone_gives_it(engine: RuleEngine) -> None:
    jobs = [
        Job(_events("a", 300), "acme", "good.lua", []),
        Job(_events("m", 50), "beta", "missing.lua", []),
        Job(_events("b", 40, ("picked", "bad")), "beta", "good.lua", []),
        Job(_events("e", 1).clear(), "gamma", "good.lua", []),
        Job(_events("s", 9, ("picked", "slow", "picked")), "delta", "good.lua", []),
        Job(_events("c", 20), "omega", "broken.lua", []),
        Job(_events("z", 100), "zulu", "good.lua", []),
    ]
    results = evaluate_many(engine, jobs)
    assert len(results) == len(jobs)
    for job, result in zip(jobs, results, strict=True):
        if job.rules_file == "missing.lua":
            assert isinstance(result, RuleLoadError)
            with pytest.raises(RuleLoadError):
                engine.evaluate(
                    job.events,
                    client_id=job.client_id,
                    rules_file=job.rules_file,
                    versions=job.versions,
                )
            continue
        alone = engine.evaluate(
            job.events, client_id=job.client_id, rules_file=job.rules_file, versions=job.versions
        )
        _same(result, alone)
    # ctx.client_id is each job's own, in the one worker
    assert set(results[0].charges["memo"]) == {"acme"}
    assert set(results[6].charges["memo"]) == {"zulu"}
    # the runaway event is blamed, its job's other events and the jobs after it are charged
    assert results[4].errors["event_id"].to_list() == ["s1", "s4", "s7"]
    assert "wall-clock" in results[4].errors["message"][0]
    assert results[4].charges.height == 6
    assert results[6].charges.height == 100
    assert results[5].errors.height == 20  # rules that do not load: every event in error


# Impure on purpose (SPEC §5 asks handlers to be pure; nothing makes them): a module's table
# and a rules file's upvalue count the events they saw. The worker keeps one Lua runtime for
# all its jobs (batch.py), so these would carry one job's events into the next if a job's
# rules and modules were not made afresh for it.
TALLY = "local seen = {n = 0}\nreturn seen\n"
STATEFUL = """
local seen = require("lib.tally")
local calls = 0
return {
  picked = function(e, charge)
    seen.n = seen.n + 1
    calls = calls + 1
    charge("PICK", seen.n, {memo = tostring(calls)})
  end,
}
"""
OTHER_STATEFUL = """
local seen = require("lib.tally")
return {
  picked = function(e, charge)
    seen.n = seen.n + 10
    charge("PICK", seen.n)
  end,
}
"""


def test_nothing_a_job_keeps_reaches_the_next_job(engine: RuleEngine) -> None:
    (engine.lua_dir / "lib" / "tally.lua").write_text(TALLY)
    (engine.lua_dir / "rules" / "stateful.lua").write_text(STATEFUL)
    (engine.lua_dir / "rules" / "other.lua").write_text(OTHER_STATEFUL)
    # the first job is large enough to warm the runtime (batch.JIT_MIN_EVENTS): the later,
    # small ones then run compiled, on the traces it left
    jobs = [
        Job(_events("a", 3_500), "acme", "stateful.lua", []),
        Job(_events("b", 7), "beta", "stateful.lua", []),
        Job(_events("c", 5), "gamma", "other.lua", []),
        Job(_events("d", 4), "delta", "stateful.lua", []),
    ]
    results = evaluate_many(engine, jobs)
    for job, result in zip(jobs, results, strict=True):
        assert not isinstance(result, Exception)
        alone = engine.evaluate(
            job.events, client_id=job.client_id, rules_file=job.rules_file, versions=job.versions
        )
        _same(result, alone)
        # worked out by hand: the k-th event of a job (from 1) sees a count of k (stateful)
        # or 10 * k (other), whatever ran before it in the worker
        step = 10 if job.rules_file == "other.lua" else 1
        counts = range(1, job.events.height + 1)
        assert result.charges["quantity"].to_list() == [Decimal(step * k) for k in counts]
        if job.rules_file == "stateful.lua":
            assert result.charges["memo"].to_list() == [str(k) for k in counts]


def test_one_worker_for_every_job(engine: RuleEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    forks = []
    real_fork = os.fork

    def counted() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counted)
    jobs = [Job(_events(f"j{k}-", 30), f"c{k}", "good.lua", []) for k in range(12)]
    results = evaluate_many(engine, jobs)
    assert len(forks) == 1
    assert [r.charges.height for r in results] == [30] * 12


def test_each_function_has_a_deadline_of_its_own() -> None:
    progress = Progress()

    def nap(value: int):
        def run() -> int:
            time.sleep(0.4)
            return value

        return run

    def forever() -> None:
        time.sleep(60)

    def boom() -> None:
        raise RuntimeError("boom")

    began = time.monotonic()
    outcomes = run_many_with_deadline([nap(1), nap(2), nap(3)], 1.0, progress)
    assert [(o.kind, o.value) for o in outcomes] == [("ok", 1), ("ok", 2), ("ok", 3)]
    assert time.monotonic() - began >= 1.2  # longer than one deadline, and none was missed

    outcomes = run_many_with_deadline([nap(1), forever, nap(3)], 1.0, progress)
    assert [o.kind for o in outcomes] == ["ok", "timeout"]

    outcomes = run_many_with_deadline([nap(1), boom, nap(3)], 1.0, progress)
    assert [o.kind for o in outcomes] == ["ok", "crash"]
    assert "boom" in outcomes[1].detail

    def dies() -> None:
        os._exit(3)

    outcomes = run_many_with_deadline([dies, nap(2)], 1.0, progress)
    assert [o.kind for o in outcomes] == ["crash"]
    assert "status" in outcomes[0].detail


def test_an_interrupted_parent_leaves_no_worker_running() -> None:
    """A run stopped while its worker is busy must not leave the worker going through its
    batches with no deadline over it."""
    import signal

    progress = Progress()
    pid_file = Progress()  # a shared int: the child writes its pid there

    def record_and_hang() -> None:
        pid_file.set(os.getpid())
        time.sleep(60)

    def interrupt(*_args) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_many_with_deadline([record_and_hang], 30.0, progress)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    child = pid_file.get()
    assert child > 0
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # killed and reaped


def test_a_started_worker_runs_while_the_caller_works_and_stops_when_cancelled() -> None:
    """RunningMany (what lets the charges asset finish one group while the next group's
    Lua runs): the child works while the caller does, its outcomes come when asked for,
    and cancel() leaves no child running."""
    progress = Progress()
    pid_file = Progress()

    def nap() -> int:
        time.sleep(0.3)
        return os.getpid()

    began = time.monotonic()
    running = RunningMany([nap, nap], 5.0, progress)
    assert time.monotonic() - began < 0.25  # started, not waited for
    outcomes = running.outcomes()
    assert [o.kind for o in outcomes] == ["ok", "ok"]
    assert outcomes[0].value == outcomes[1].value != os.getpid()  # one child for both

    def record_and_hang() -> None:
        pid_file.set(os.getpid())
        time.sleep(60)

    running = RunningMany([record_and_hang], 30.0, progress)
    while pid_file.get() <= 0:
        time.sleep(0.01)
    running.cancel()
    with pytest.raises(ProcessLookupError):
        os.kill(pid_file.get(), 0)  # killed and reaped
