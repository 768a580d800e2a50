"""Many evaluations in one engine worker: ``RuleEngine.evaluate`` for each job, one fork.

A nightly run charges hundreds of client-months, most of them small; forking a worker for
each cost more than their Lua did (issue 7). Here every job's batch is encoded first, then
one forked child (``worker.RunningMany``) evaluates them one after another, each
in a fresh sandbox (its rules and modules loaded afresh: nothing one job's rules keep reaches
the next) under its own memory cap and its own wall-clock deadline, so the results are the
frames ``RuleEngine.evaluate`` gives in a child of its own. The child keeps one Lua runtime
for all of them (batch._worker_runtime), so the code LuaJIT compiled for one client-month
serves the next: with a fresh runtime per job, compiling again cost most of the Lua time of
the small client-months.

A job whose batch times out or crashes the child is evaluated again on its own by
``RuleEngine.evaluate``, which pins the event to blame and evaluates the rest without it (a
runaway rule costs one deadline more than it would alone); the jobs after it go on in a new
child. A job that cannot start (a rules file that does not load, columns missing) gets its
exception back in place of its result, so one client's failure stays that client's.

``Evaluations`` starts the child and returns: its results are collected on a thread while
the caller goes on (the charges asset finishes the previous group of client-months), and
``results()`` waits for them. ``evaluate_many`` is the two at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from billing_pipeline.rules.batch import RawResult, read_arrays, to_frames
from billing_pipeline.rules.engine import Prepared, RuleEngine
from billing_pipeline.rules.model import Evaluation, RateVersion, empty_charges, empty_errors
from billing_pipeline.rules.worker import RunningMany, SharedOutput


@dataclass
class Job:
    events: pl.DataFrame
    client_id: str
    rules_file: str
    versions: Sequence[RateVersion]


@dataclass
class _Prepared:
    index: int
    batch: Prepared
    output: SharedOutput


def evaluate_many(engine: RuleEngine, jobs: Sequence[Job]) -> list[Evaluation | Exception]:
    """One result per job, in order: its Evaluation, or the exception evaluate would raise."""
    return Evaluations(engine, jobs).results()


class Evaluations:
    """``evaluate_many`` started: the jobs are encoded and their worker forked here, and the
    worker runs while the caller does other work (RunningMany); ``results()`` waits for it
    and builds the frames. ``cancel()`` stops the worker when the results will not be read."""

    def __init__(self, engine: RuleEngine, jobs: Sequence[Job]) -> None:
        self._engine, self._jobs = engine, jobs
        self._results: list[Evaluation | Exception | None] = [None] * len(jobs)
        self._prepared: list[_Prepared] = []
        try:
            for index, job in enumerate(jobs):
                try:
                    item = _prepare(engine, index, job)
                except Exception as exc:  # handed back as that job's result
                    self._results[index] = exc
                    continue
                if item is None:
                    self._results[index] = Evaluation(empty_charges(), empty_errors())
                else:
                    self._prepared.append(item)
            self._running = self._start(self._prepared)
        except BaseException:
            self._close()
            raise

    def _start(self, batch: list[_Prepared]) -> RunningMany:
        engine = self._engine
        return RunningMany(
            [_runner(engine, self._jobs[p.index], p) for p in batch],
            engine.budgets.batch_seconds,
            engine._progress,
        )

    def results(self) -> list[Evaluation | Exception]:
        engine, jobs, prepared = self._engine, self._jobs, self._prepared
        try:
            start = 0
            while start < len(prepared):
                batch = prepared[start:]
                outcomes = self._running.outcomes()
                for item, outcome in zip(batch, outcomes, strict=False):
                    job = jobs[item.index]
                    if outcome.kind != "ok":
                        item.output.close()
                        item.output = None  # type: ignore[assignment]
                        self._results[item.index] = _alone(engine, job)
                        continue
                    try:
                        self._results[item.index] = _frames(job, item, outcome.value)
                    except Exception as exc:  # handed back as that job's result
                        self._results[item.index] = exc
                    # the frames own their data now (to_frames gathers from the arrays)
                    item.output.close()
                    item.output = None  # type: ignore[assignment]
                start += len(outcomes)
                if start < len(prepared):  # the worker stopped early: the rest in a new one
                    self._running = self._start(prepared[start:])
        except BaseException:
            self._running.cancel()  # interrupted: no worker goes on without its results read
            raise
        finally:
            self._close()
        return self._results  # type: ignore[return-value]

    def cancel(self) -> None:
        self._running.cancel()
        self._close()

    def _close(self) -> None:
        for item in self._prepared:
            if item.output is not None:
                item.output.close()
                item.output = None  # type: ignore[assignment]


def _prepare(engine: RuleEngine, index: int, job: Job) -> _Prepared | None:
    batch = engine.prepare(job.events, job.rules_file, job.versions)
    return None if batch is None else _Prepared(index, batch, SharedOutput())


def _frames(job: Job, item: _Prepared, raw: RawResult) -> Evaluation:
    if raw.n_out:
        read_arrays(raw, item.output)
    charges, errors = to_frames(
        [raw],
        job.events,
        item.batch.columns,
        item.batch.versions,
        rules_file=job.rules_file,
        rules_sha256=item.batch.sha,
    )
    return Evaluation(charges, errors)


def _runner(engine: RuleEngine, job: Job, item: _Prepared):
    return engine.lua_call(
        item.batch.columns, item.batch, job.rules_file, job.client_id, item.output
    )


def _alone(engine: RuleEngine, job: Job) -> Evaluation | Exception:
    try:
        return engine.evaluate(
            job.events, client_id=job.client_id, rules_file=job.rules_file, versions=job.versions
        )
    except Exception as exc:  # handed back as that job's result
        return exc
