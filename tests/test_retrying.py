"""The retry helper and the structured log lines (issue 8, item 7)."""

from __future__ import annotations

import errno

import pytest

from billing_pipeline.retrying import is_transient, with_retries
from billing_pipeline.runlog import line, parse


class Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def test_transient_errors_are_retried_with_doubling_delays() -> None:
    work = Flaky([OSError(errno.EIO, "io"), TimeoutError("slow"), OSError(errno.ESTALE, "nfs")])
    slept: list[float] = []
    said: list[str] = []
    assert with_retries(work, what="x", sleep=slept.append, log=said.append) == "done"
    assert work.calls == 4
    assert slept == [0.2, 0.4, 0.8]
    assert len(said) == 3 and "attempt 2 of 4 in 0.20s" in said[0]


def test_the_last_transient_error_propagates_after_the_attempts() -> None:
    work = Flaky([OSError(errno.EIO, "io")] * 5)
    slept: list[float] = []
    with pytest.raises(OSError, match="io"):
        with_retries(work, what="x", attempts=3, sleep=slept.append)
    assert work.calls == 3 and slept == [0.2, 0.4]


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError(errno.ENOENT, "gone"),
        PermissionError(errno.EACCES, "no"),
        OSError(errno.ENOSPC, "disk full"),
        ValueError("a bug"),
    ],
)
def test_other_errors_fail_at_once(error: BaseException) -> None:
    work = Flaky([error])
    with pytest.raises(type(error)):
        with_retries(work, what="x", sleep=lambda _: pytest.fail("slept"))
    assert work.calls == 1
    assert not is_transient(error)


def test_log_lines_round_trip() -> None:
    text = line("charges.failed", client="acme", month="2026-03", error='OSError: "x" y=1')
    assert text == 'charges.failed client=acme month=2026-03 error="OSError: \\"x\\" y=1"'
    assert parse(text) == (
        "charges.failed",
        {"client": "acme", "month": "2026-03", "error": 'OSError: "x" y=1'},
    )
    assert line("e", skipped=None, n=0) == "e n=0"
