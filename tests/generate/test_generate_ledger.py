from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

from billing_pipeline.generate import ledger_rows, write_ledger_reports

BILLED = {
    "2026-03": {
        ("acme-outdoor", "4030"): Decimal("12450.5"),
        ("acme-outdoor", "4050"): Decimal("8123.456"),
        ("bluebird-b2b", "4010"): Decimal("3300"),
        ("bluebird-b2b", "4020"): Decimal("950.10"),
        ("monthly-munch", "4090"): Decimal("300.00"),
    },
    "2026-04": {
        ("acme-outdoor", "4030"): Decimal("990.00"),
        ("bluebird-b2b", "4020"): Decimal("1010.00"),
    },
    "2026-05": {("acme-outdoor", "4030"): Decimal("5.00")},
}


def _read(path: Path) -> tuple[list[str], dict[tuple[str, str], str]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], {(r[1], r[2]): r[3] for r in rows[1:]}


def test_ledger_plants_exactly_the_documented_differences(tmp_path: Path) -> None:
    paths = write_ledger_reports(tmp_path, BILLED, seed=3)
    assert [p.name for p in paths] == [
        f"gl_revenue_{m}.csv" for m in ("2026-03", "2026-04", "2026-05")
    ]
    for path, (period, billed) in zip(paths, sorted(BILLED.items()), strict=True):
        header, ledger = _read(path)
        assert header == ["period", "client_id", "gl_account", "amount"]
        assert all(len(v.split(".")[1]) == 2 and Decimal(v) >= 0 for v in ledger.values())
        rounded = {k: v.quantize(Decimal("0.01")) for k, v in billed.items()}
        mismatched = [k for k in rounded if k in ledger and Decimal(ledger[k]) != rounded[k]]
        missing = [k for k in rounded if k not in ledger]
        extra = [k for k in ledger if k not in rounded]
        assert len(mismatched) == 1 and len(extra) == 1
        assert len(missing) == (1 if len(billed) > 1 else 0)
        assert 0 < abs(Decimal(ledger[mismatched[0]]) - rounded[mismatched[0]]) <= 25
        _, planted = ledger_rows(
            period, billed, 3, ("acme-outdoor", "bluebird-b2b", "monthly-munch")
        )
        assert (planted.mismatch, planted.missing, planted.extra) == (
            mismatched[0],
            missing[0] if missing else None,
            extra[0],
        )
        with path.open() as handle:
            assert all(line.startswith(period + ",") for line in list(handle)[1:])


def test_ledger_is_deterministic_by_seed(tmp_path: Path) -> None:
    a = write_ledger_reports(tmp_path / "a", BILLED, seed=3)
    b = write_ledger_reports(tmp_path / "b", BILLED, seed=3)
    c = write_ledger_reports(tmp_path / "c", BILLED, seed=4)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in c]


def test_empty_month_has_a_header(tmp_path: Path) -> None:
    (path,) = write_ledger_reports(tmp_path, {"2026-06": {}}, seed=1)
    assert path.read_text() == "period,client_id,gl_account,amount\n"
