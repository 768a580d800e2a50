"""The nightly schedule: at 02:00 (``BILLING_SCHEDULE_CRON``) in ``BILLING_SCHEDULE_TZ`` (UTC).

It launches one ``landing_files`` run tagged with the night it bills (yesterday in the
schedule's time zone). Which activity dates that run must re-materialize is only known once
the files are parsed, so the rest of the night -- activity, charges, invoices,
reconciliation -- is requested by the sensors that follow each stage (``sensors.py``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from zoneinfo import ZoneInfo

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

from billing_pipeline.defs.orchestration.jobs import CAUSE_TAG, NIGHT_TAG, landing_job

DEFAULT_CRON = "0 2 * * *"


def schedule_timezone() -> str:
    """``BILLING_SCHEDULE_TZ`` (IANA), default UTC; a bad zone fails the code location load."""
    zone = os.environ.get("BILLING_SCHEDULE_TZ") or "UTC"
    ZoneInfo(zone)  # raises for an unknown zone: better at load than at 02:00
    return zone


@schedule(
    name="billing_nightly",
    job=landing_job,
    cron_schedule=os.environ.get("BILLING_SCHEDULE_CRON") or DEFAULT_CRON,
    execution_timezone=schedule_timezone(),
    default_status=DefaultScheduleStatus.RUNNING,
    description="Bills yesterday: ingests what landed; the stage sensors re-materialize the "
    "activity dates it touched and the charges, invoices and reconciliation of their months.",
)
def billing_nightly(context: ScheduleEvaluationContext) -> RunRequest:
    zone = ZoneInfo(schedule_timezone())
    night = context.scheduled_execution_time.astimezone(zone).date() - timedelta(days=1)
    return RunRequest(
        run_key=f"nightly:{night.isoformat()}",
        tags={NIGHT_TAG: night.isoformat(), CAUSE_TAG: "nightly"},
    )


SCHEDULES = [billing_nightly]
