from __future__ import annotations

from pathlib import Path

import pytest

from billing_pipeline.generate import main_generate

GOOD = [
    "--clients",
    "3",
    "--start",
    "2026-03-02",
    "--days",
    "1",
    "--events-per-day",
    "300",
    "--seed",
    "1",
]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--start", "2026-02-30"], "--start"),
        (["--start", "yesterday"], "--start"),
        (["--clients", "0"], "--clients"),
        (["--days", "0"], "--days"),
        (["--events-per-day", "-1"], "--events-per-day"),
        (["--fault-rate", "2"], "--fault-rate"),
        (["--seed", "abc"], "--seed"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_usage_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    argv = ["--out", str(tmp_path), *GOOD]
    for i in range(0, len(args), 2):
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += args[i : i + 2]
    assert main_generate(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("billing generate: error:") and needle in err


def test_missing_required_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_generate(["--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_run_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_generate(["--out", str(tmp_path), "--quiet", *GOOD]) == 0
    out = capsys.readouterr().out
    assert "landing:" in out and "faults:" in out
    assert (tmp_path / "ratecards" / "acme-outdoor.yaml").exists()
    # A second run into the same directory is refused, then allowed with --force.
    assert main_generate(["--out", str(tmp_path), "--quiet", *GOOD]) == 2
    assert main_generate(["--out", str(tmp_path), "--quiet", "--force", *GOOD]) == 0
