"""Orchestration: the nightly schedule, the sensors, and the stage jobs they launch.

Design
------
Every night at 02:00 (``BILLING_SCHEDULE_CRON``; time zone ``BILLING_SCHEDULE_TZ``, default
UTC) the ``billing_nightly`` schedule launches one ``landing_files`` run tagged with the
night it bills (yesterday). Which activity dates need rebuilding is known only after the
files are parsed (a late file can carry events of any old date), so the rest of the night
is a chain of sensors, each reading the materializations of the stage before it:

    schedule / billing_landing_sensor / billing_clients_sensor
        -> billing_landing_job         landing_files
    billing_activity_sensor (dates in landing_files' activity_dates_to_refresh + the night)
        -> billing_activity_job        activity, one run per range of consecutive dates
    billing_charges_sensor (months of those dates)
        -> billing_charges_job         charges, months x ALL clients as one range per run
    billing_invoices_sensor (client-months charged + adjustment months of closed months)
        -> billing_invoices_job        invoices, same kind of range
    billing_reconciliation_sensor (months with a ledger report; also a new/changed ledger)
        -> billing_reconciliation_job  reconciliation, a month range

One run per stage covers every client (single-run backfill policy with the partition-range
tags ``dagster/asset_partition_range_start/end``, dynamic ``client`` dimension as
``client|YYYY-MM-01`` keys): never one run per client or per day. A stage starts only after
the run before it has *finished* (a sensor does not consume events of a running run), and
invoices get their own run after charges, as ``billing run`` does, so one client's rule
error (a failed blocking check in the charges run) never holds back another's invoice.
Every run carries ``billing/writes=outputs``; ``deploy/dagster.yaml`` limits that tag to one
run at a time, so runs queue in order instead of writing the outputs side by side.

The sensors follow asset events rather than run statuses, so a UI backfill (the rule-fix
procedure in docs/runbook.md) also gets its invoices and adjustment lines refreshed; runs
of ``billing run`` are recognised by their ``billing/command=run`` tag and only get what
that command does not do itself (late dates, adjustment months).

``billing_inputs_sensor`` observes the Lua tree and every rate card and records a data
version (``lua_rules``; ``ratecards`` per client partition) when one changes, so the UI's
"inputs" group shows when rules and rate cards changed and to what. What Dagster can show
as *stale* is limited: ``charges`` carries a code version hashed from every Lua file
(defs/code_versions.py), so after a rule edit and a code-location reload every charges
partition shows "code version changed". Declaring ``lua_rules``/``ratecards`` as deps of the
partitioned ``charges`` was tried and not adopted: in Dagster 1.13 the stale resolver marks
every partition stale right after it is materialized with such deps, which would hide real
staleness. Which client-months a change really affects is ``billing rules diff``'s job
(per client-month, per code); re-billing is never automatic: diff, then backfill
(docs/runbook.md).
"""

from dagster import AssetSpec

from billing_pipeline.defs.orchestration.jobs import JOBS
from billing_pipeline.defs.orchestration.schedules import SCHEDULES
from billing_pipeline.defs.orchestration.sensors import SENSORS
from billing_pipeline.defs.partitions import client_partitions

# Inputs observed by billing_inputs_sensor (external assets: nothing materializes them).
ASSETS = [
    AssetSpec(
        "lua_rules",
        group_name="inputs",
        description="The Lua rules tree ($BILLING_LUA_DIR); data version = sha256 of every "
        "*.lua file, observed by billing_inputs_sensor.",
        kinds={"lua"},
    ),
    AssetSpec(
        "ratecards",
        group_name="inputs",
        partitions_def=client_partitions,
        description="Each client's rate card ($BILLING_RATECARDS_DIR/<client>.yaml); data "
        "version = its sha256, observed by billing_inputs_sensor.",
        kinds={"yaml"},
    ),
]

__all__ = ["ASSETS", "JOBS", "SCHEDULES", "SENSORS"]
