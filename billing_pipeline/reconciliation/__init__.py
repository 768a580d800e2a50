"""Month-end reports (SPEC §9): billed revenue against the ledger, rule coverage, leakage,
and the month's quarantine and rule errors, under ``reconciliation/<YYYY-MM>/``.

Pure logic over the stored datasets; the Dagster asset lives in
``billing_pipeline.defs.reconciliation``. Decisions where the contract is silent:

- Billed amounts are the written ``invoice_lines.csv`` files, so a blocked client-month
  (no invoice) bills nothing and its ledger rows show as ``missing_in_billing``.
- The side a row is missing from is written empty and counts as 0 in ``difference``.
- A missing or malformed ledger file is not an error of the run: every billed row is
  ``missing_in_ledger`` and ``summary.json`` (and the asset's metadata and check) say why.
  Several ledger rows for one (client, gl_account) are summed; rows of another period are
  ignored and counted in ``summary.json``.
- Amounts are written with the client's currency decimals (from its invoice, else its rate
  card, else 2); a ledger amount booked with more places is written as booked.
- Rows are sorted by client, then GL account / event type / kind; see each module.
- ``summary.json`` beside the CSV files holds the ledger's state and the counts.
"""

from billing_pipeline.reconciliation.coverage import COVERAGE_HEADER, coverage_rows, type_status
from billing_pipeline.reconciliation.leakage import KINDS as LEAKAGE_KINDS
from billing_pipeline.reconciliation.leakage import LEAKAGE_HEADER, leakage_rows
from billing_pipeline.reconciliation.ledger import (
    RECONCILIATION_HEADER,
    STATUSES,
    Ledger,
    ReconciliationRow,
    ledger_path,
    read_billed,
    read_ledger,
    reconcile,
)
from billing_pipeline.reconciliation.report import (
    REPORT_FILES,
    MonthReport,
    build_month_report,
    parse_tolerance,
    problem_cells,
    render_files,
    write_month_report,
)

__all__ = [
    "COVERAGE_HEADER",
    "LEAKAGE_HEADER",
    "LEAKAGE_KINDS",
    "RECONCILIATION_HEADER",
    "REPORT_FILES",
    "STATUSES",
    "Ledger",
    "MonthReport",
    "ReconciliationRow",
    "build_month_report",
    "coverage_rows",
    "leakage_rows",
    "ledger_path",
    "parse_tolerance",
    "problem_cells",
    "read_billed",
    "read_ledger",
    "reconcile",
    "render_files",
    "type_status",
    "write_month_report",
]
