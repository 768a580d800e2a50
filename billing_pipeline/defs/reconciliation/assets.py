"""The ``reconciliation`` asset: one month's reports under reconciliation/YYYY-MM/ (SPEC §9).

Monthly, over all clients: the ledger is one file per month for every client. It depends on
every client's invoice of the month; a missing ledger or a difference is a warning, never a
failed run (finance often books days after billing closes).
"""

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    MultiToSingleDimensionPartitionMapping,
    asset,
)

from billing_pipeline.defs.metadata import counts_table, md_table
from billing_pipeline.defs.partitions import monthly_partitions
from billing_pipeline.defs.resources import BillingSettings
from billing_pipeline.reconciliation import (
    RECONCILIATION_HEADER,
    MonthReport,
    build_month_report,
    parse_tolerance,
    problem_cells,
    write_month_report,
)
from billing_pipeline.rules import RuleEngine
from billing_pipeline.runlog import RunLog

GROUP = "reconciliation"


@asset(
    group_name=GROUP,
    partitions_def=monthly_partitions,
    deps=[
        AssetDep(
            "invoices",
            partition_mapping=MultiToSingleDimensionPartitionMapping(
                partition_dimension_name="month"
            ),
        )
    ],
    backfill_policy=BackfillPolicy.single_run(),
    description=(
        "Month-end reports: reconciliation/YYYY-MM/reconciliation.csv (invoices against "
        "$BILLING_FINANCE_DIR/gl_revenue_YYYY-MM.csv), coverage.csv, leakage.csv, "
        "quarantine_summary.csv, rule_errors_summary.csv and summary.json."
    ),
    check_specs=[
        AssetCheckSpec(
            "ledger_matches",
            asset="reconciliation",
            description="The ledger report exists and every (client, GL account) matches "
            "billing within the tolerance.",
        )
    ],
    kinds={"csv"},
)
def reconciliation(context: AssetExecutionContext, settings: BillingSettings):
    paths = settings.paths()
    store = settings.store()
    tolerance = parse_tolerance(settings.reconciliation_tolerance)
    cards, _ = settings.ratecards()
    engine = RuleEngine(paths.lua)
    reports: list[MonthReport] = []
    folders = []
    log = RunLog(context.log, context.run_id)
    for key in context.partition_keys:
        month = key[:7]
        report = build_month_report(
            store, paths.finance, month, cards, engine.rule_kinds, tolerance
        )
        folder = write_month_report(store, report)
        reports.append(report)
        folders.append(str(folder))
        if not report.ledger.usable:
            log.warning(
                "reconciliation.ledger",
                month=month,
                status=report.ledger.status,
                detail=report.ledger.detail,
            )
        counts = " ".join(f"{k}:{v}" for k, v in sorted(report.status_counts().items()))
        log.info("reconciliation.written", month=month, rows=counts or None, folder=folder)
    yield _check(reports)
    metadata = _metadata(reports)
    metadata["folders"] = MetadataValue.md("\n".join(f"- `{f}`" for f in folders))
    yield MaterializeResult(metadata=metadata)


def _check(reports: list[MonthReport]) -> AssetCheckResult:
    no_ledger = [
        f"{r.month}: {r.ledger.status} ({r.ledger.detail})" for r in reports if not r.ledger.usable
    ]
    problems = [row for r in reports for row in problem_cells(r)]
    return AssetCheckResult(
        check_name="ledger_matches",
        passed=not no_ledger and not problems,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "ledger": MetadataValue.md("\n".join(f"- {m}" for m in no_ledger) or "_present_"),
            "differences": len(problems),
            "not_matching": md_table(_frame(problems), limit=50),
        },
    )


def _frame(rows: list[dict[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={name: pl.Utf8 for name in RECONCILIATION_HEADER})


def _metadata(reports: list[MonthReport]) -> dict:
    statuses: dict[str, int] = {}
    coverage: dict[str, int] = {}
    leakage: dict[str, int] = {}
    for r in reports:
        for counts, into in (
            (r.status_counts(), statuses),
            (r.column_counts(r.coverage, 5), coverage),
            (r.column_counts(r.leakage, 2), leakage),
        ):
            for name, n in counts.items():
                into[name] = into.get(name, 0) + n
    metadata: dict = {
        "months": ", ".join(r.month for r in reports),
        "ledger": ", ".join(f"{r.month}: {r.ledger.status}" for r in reports),
        "reconciliation_rows": counts_table(statuses, "status"),
        "mismatches": md_table(_frame([row for r in reports for row in problem_cells(r)]), 50),
        "coverage_rows": counts_table(coverage, "status"),
        "leakage_rows": counts_table(leakage, "kind"),
        "quarantined_lines": sum(int(row[3]) for r in reports for row in r.quarantine),
        "rule_errors": sum(int(row[5]) for r in reports for row in r.rule_errors),
    }
    if len(reports) == 1:
        metadata["ledger_file"] = MetadataValue.path(str(reports[0].ledger.path))
    return metadata
