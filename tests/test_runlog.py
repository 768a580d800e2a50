"""Routine records go out many to a log entry, one line each, and split back whole."""

from __future__ import annotations

from billing_pipeline.runlog import LINES_PER_ENTRY, RunLog, records


class _Captured:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []

    def debug(self, msg: str) -> None:
        self.entries.append(("debug", msg))

    def info(self, msg: str) -> None:
        self.entries.append(("info", msg))

    def warning(self, msg: str) -> None:
        self.entries.append(("warning", msg))

    def error(self, msg: str) -> None:
        self.entries.append(("error", msg))


def test_info_lines_fill_entries_of_at_most_lines_per_entry_in_order() -> None:
    captured = _Captured()
    log = RunLog(captured, "run-1")
    count = 2 * LINES_PER_ENTRY + 7  # two full entries and a part
    many = [("charges.computed", {"client": f"c{i:03d}", "month": "2026-03"}) for i in range(count)]

    log.info_lines(many)

    assert [len(text.split("\n")) for _, text in captured.entries] == [
        LINES_PER_ENTRY,
        LINES_PER_ENTRY,
        7,
    ]
    back = [r for _, text in captured.entries for r in records(text)]
    assert [fields["client"] for _, fields in back] == [f"c{i:03d}" for i in range(count)]
    assert {event for event, _ in back} == {"charges.computed"}
    assert all(fields["run_id"] == "run-1" and fields["month"] == "2026-03" for _, fields in back)


def test_a_value_with_a_line_break_stays_on_its_record_s_line() -> None:
    captured = _Captured()
    RunLog(captured, "run-1").info_lines(
        [("invoice.blocked", {"client": "a", "reason": "two\nlines"}), ("invoice.issued", {})]
    )

    ((_, text),) = captured.entries
    assert records(text) == [
        ("invoice.blocked", {"client": "a", "reason": "two\nlines", "run_id": "run-1"}),
        ("invoice.issued", {"run_id": "run-1"}),
    ]


def test_no_records_write_no_entry() -> None:
    captured = _Captured()
    RunLog(captured, "run-1").info_lines([])
    assert captured.entries == []
