"""Ingestion assets: ``landing_files`` (parse, classify, quarantine) and daily ``activity``."""

from datetime import date

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from billing_pipeline import locks
from billing_pipeline.defs.ingest.activity_schema import activity_schema_problems
from billing_pipeline.defs.ingest.conservation import conservation_failures
from billing_pipeline.defs.metadata import counts_table, md_table
from billing_pipeline.defs.partitions import daily_partitions
from billing_pipeline.defs.resources import BillingSettings
from billing_pipeline.ingest.activity import build_activity_range
from billing_pipeline.ingest.landing import activity_built, ingest_landing
from billing_pipeline.runlog import RunLog
from billing_pipeline.storage import Store, file_id, read_parquet

GROUP = "ingest"


@asset(
    group_name=GROUP,
    description=(
        "Every landing file parsed once (by sha256), validated with Pandera, deduplicated per "
        "client and classified: the manifest, quarantine and per-line outcomes (SPEC §4). "
        "Quarantine counts and preview are of the files this run wrote; totals of all files."
    ),
    check_specs=[
        AssetCheckSpec(
            "conservation",
            asset="landing_files",
            blocking=True,
            description="Per landing file: lines read = valid + duplicates + quarantined "
            "(the files this run wrote recounted from disk).",
        ),
        AssetCheckSpec(
            "quarantine_share",
            asset="landing_files",
            description="Share of this run's newly read lines that went to quarantine.",
        ),
    ],
    kinds={"python", "parquet"},
)
def landing_files(context: AssetExecutionContext, settings: BillingSettings):
    paths = settings.paths()
    store = settings.store()
    zones = settings.client_zones()
    log = RunLog(context.log, context.run_id)
    with locks.ingest(store, log=context.log.info):
        result = ingest_landing(
            paths.landing,
            store,
            zones.timezones,
            log=lambda text: log.debug("landing.progress", detail=text),
            known=zones.known,
        )
        # What this run wrote: recounting, or reading the quarantine of, every file ever
        # landed would make each night cost more than the last.
        quarantine = _quarantine(store, result.files_refreshed)
        failures = conservation_failures(store, result.manifest, result.files_refreshed)
    manifest = result.manifest
    run_files = manifest.filter(pl.col("source_file").is_in(result.files_parsed))
    totals = {c: int(manifest[c].sum()) for c in ("lines", "valid", "duplicates", "quarantined")}
    run_lines = int(run_files["lines"].sum())
    run_quarantined = int(run_files["quarantined"].sum())
    reasons = _counts(quarantine, "reason")

    yield AssetCheckResult(
        check_name="conservation",
        passed=failures.is_empty(),
        metadata={"files_checked": manifest.height, "failing_files": md_table(failures)},
    )
    share = run_quarantined / run_lines if run_lines else 0.0
    yield AssetCheckResult(
        check_name="quarantine_share",
        passed=share <= settings.quarantine_warn_share,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "share": share,
            "threshold": settings.quarantine_warn_share,
            "lines_read_this_run": run_lines,
            "quarantined_this_run": run_quarantined,
        },
    )
    affected_dates = sorted(result.activity_dates)
    yield MaterializeResult(
        metadata={
            "files_seen": result.files_seen,
            "files_parsed": len(result.files_parsed),
            "files_refreshed": len(result.files_refreshed),
            "clients_classified": len(result.clients_classified),
            "lines_read_this_run": run_lines,
            **{f"total_{k}": v for k, v in totals.items()},
            "quarantine_by_reason": counts_table(reasons, "reason"),
            "quarantine_by_client": counts_table(_counts(quarantine, "client_id"), "client_id"),
            "quarantine_by_event_type": counts_table(
                _counts(quarantine, "event_type"), "event_type"
            ),
            "quarantine_preview": md_table(
                quarantine.select(
                    "source_file", "source_line", "reason", "detail", "client_id", "raw_line"
                )
            ),
            "activity_dates_to_refresh": MetadataValue.text(
                ",".join(d.isoformat() for d in affected_dates)
            ),
            "manifest": MetadataValue.path(str(store.manifest_file())),
        }
    )


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty():
        return {}
    values = frame[column].fill_null("(unreadable)")
    return dict(values.value_counts().iter_rows())


def _quarantine(store: Store, source_files: list[str]) -> pl.DataFrame:
    """The quarantined lines of the given landing files (source paths)."""
    files = [store.quarantine_file(file_id(s)) for s in sorted(source_files)]
    files = [f for f in files if f.exists()]
    if not files:
        return pl.DataFrame(
            schema={
                "source_file": pl.Utf8,
                "source_line": pl.Int64,
                "reason": pl.Utf8,
                "detail": pl.Utf8,
                "client_id": pl.Utf8,
                "event_type": pl.Utf8,
                "raw_line": pl.Utf8,
            }
        )
    return pl.concat([read_parquet(f) for f in files], how="vertical_relaxed")


@asset(
    group_name=GROUP,
    deps=[landing_files],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    description=(
        "Valid events by activity date (the client's time zone) and client: "
        "activity/activity_date=YYYY-MM-DD/client_id=ID/ (SPEC §4.1)."
    ),
    check_specs=[
        AssetCheckSpec(
            "activity_schema",
            asset="activity",
            blocking=True,
            description="Written rows pass the envelope schema, sit in the right date "
            "partition and hold each (client, event_id) once.",
        )
    ],
    kinds={"python", "parquet"},
)
def activity(context: AssetExecutionContext, settings: BillingSettings):
    store = settings.store()
    zones = settings.client_zones()
    by_client: dict[str, int] = {}
    by_type: dict[str, int] = {}
    problems = []
    left: dict[str, list[str]] = {}
    days = [date.fromisoformat(key) for key in context.partition_keys]
    with locks.ingest(store, log=context.log.info):
        results = build_activity_range(store, days, zones.timezones, keep=zones.unzoned)
        for result in results:
            problems.extend(
                activity_schema_problems(store, result.day, list(result.events_by_client))
            )
        activity_built(store, days)
    for result in results:
        for client_id, n in result.events_by_client.items():
            by_client[client_id] = by_client.get(client_id, 0) + n
        for event_type, n in result.events_by_type.items():
            by_type[event_type] = by_type.get(event_type, 0) + n
        for client_id in result.clients_left:
            left.setdefault(client_id, []).append(result.day.isoformat())
    log = RunLog(context.log, context.run_id)
    for client_id in sorted(zones.unzoned):
        log.warning(
            "activity.left_as_it_was",
            client=client_id,
            reason="rate card refused and its time zone unreadable",
        )
    log.info_lines(  # together: see runlog
        [
            ("activity.built", {"client": client_id, "days": len(days), "events": n})
            for client_id, n in sorted(by_client.items())
        ]
    )
    yield AssetCheckResult(
        check_name="activity_schema",
        passed=not problems,
        metadata={"problems": MetadataValue.md("\n".join(problems) or "_none_")},
    )
    yield MaterializeResult(
        metadata={
            "events": sum(by_client.values()),
            "clients": len(by_client),
            "events_by_type": counts_table(by_type, "event_type"),
            "events_by_client": counts_table(by_client, "client_id"),
            # Clients whose rate card file is refused and has no readable time zone: their
            # events stay valid but cannot be dated, so their partitions are left as they
            # were (neither rebuilt nor removed) until the card is fixed.
            "clients_without_timezone": MetadataValue.md(
                "\n".join(
                    f"- {c}: partitions left unchanged"
                    + (f" ({', '.join(left[c])})" if c in left else " (none existed)")
                    for c in sorted(zones.unzoned)
                )
                or "_none_"
            ),
        }
    )
