"""The ``billing`` command (SPEC §10).

Exit status: 0 success; 1 the work ran but found problems (rule errors, unpriced charges,
reconciliation mismatches); 2 bad usage or configuration, with a one-line message on
standard error that says what and where. Heavy imports (Dagster) happen inside the commands
that need them, so ``billing ratecard validate`` answers at once.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from billing_pipeline.cli_args import OneLineParser, UsageError, iso_date

if TYPE_CHECKING:  # dagster is imported late: `billing ratecard validate` stays fast
    from dagster import DagsterInstance

DEMO_DIR = "demo"


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="billing", description="3PL billing pipeline on Dagster.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    demo = sub.add_parser("demo", help="generate a demo month and bill it end to end")
    demo.add_argument("--dir", type=Path, default=Path(DEMO_DIR), help="demo root (./demo)")
    demo.add_argument("--clients", type=int, default=6)
    demo.add_argument("--events-per-day", type=int, default=1500)

    run = sub.add_parser("run", help="bill activity dates through Dagster")
    run.add_argument("--start", type=iso_date, required=True)
    run.add_argument("--end", type=iso_date, required=True)
    run.add_argument("--client", action="append", dest="clients", metavar="ID")

    sub.add_parser("generate", help="synthetic WMS logs, rate cards, ledgers", add_help=False)

    rules = sub.add_parser("rules", help="Lua rule tools")
    rules_sub = rules.add_subparsers(
        dest="rules_command", required=True, parser_class=OneLineParser
    )
    rules_sub.add_parser("test", help="run the rule fixtures", add_help=False)
    rules_sub.add_parser(
        "diff", help="what the current rules and rate card would change, per code", add_help=False
    )
    sub.add_parser("explain", help="trace an invoice line or an event (SPEC §8)", add_help=False)

    ratecard = sub.add_parser("ratecard", help="rate card tools")
    rc_sub = ratecard.add_subparsers(
        dest="ratecard_command", required=True, parser_class=OneLineParser
    )
    rc_sub.add_parser("validate", help="check rate cards (SPEC §6)", add_help=False)

    invoices = sub.add_parser("invoices", help="invoice tools")
    invoices_sub = invoices.add_subparsers(
        dest="invoices_command", required=True, parser_class=OneLineParser
    )
    invoices_sub.add_parser("close", help="finalize a month's invoices (SPEC §7)", add_help=False)

    ui = sub.add_parser("ui", help="open the Dagster UI (dagster dev) on this project")
    ui.add_argument("--demo", action="store_true", help="on the demo's data and instance")
    ui.add_argument("--port", type=int, default=3000)
    return parser


# Commands whose options their own module parses (so `billing X --help` is theirs).
_PASS_THROUGH = {
    ("generate",),
    ("rules", "test"),
    ("rules", "diff"),
    ("explain",),
    ("ratecard", "validate"),
    ("invoices", "close"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    for prefix in _PASS_THROUGH:
        if tuple(args_list[: len(prefix)]) == prefix:
            return _pass_through(prefix, args_list[len(prefix) :])
    try:
        args = _parser().parse_args(args_list)
    except UsageError as exc:
        print(f"billing: {exc}", file=sys.stderr)
        return 2
    if args.command == "run":
        return _run(args.start, args.end, args.clients)
    if args.command == "demo":
        return _demo(args.dir, args.clients, args.events_per_day)
    if args.command == "ui":
        return _ui(args.demo, args.port)
    raise AssertionError(args.command)  # pragma: no cover - argparse requires a command


def _pass_through(prefix: tuple[str, ...], rest: list[str]) -> int:
    if prefix == ("generate",):
        from billing_pipeline.generate import main_generate

        return main_generate(rest)
    if prefix == ("rules", "test"):
        from billing_pipeline.rules.fixtures import main_rules_test

        return main_rules_test(rest)
    if prefix == ("rules", "diff"):
        from billing_pipeline.rules_diff import main_rules_diff

        return main_rules_diff(rest)
    if prefix == ("invoices", "close"):
        from billing_pipeline.closing import main_close

        return main_close(rest)
    if prefix == ("explain",):
        from billing_pipeline.explain import main_explain

        return main_explain(rest)
    from billing_pipeline.config import Paths
    from billing_pipeline.ratecards import main_validate

    return main_validate(rest, Paths.from_env().ratecards)


# The dagster.yaml of a home this command creates. Telemetry off: its first-run banner would
# bury the command's own output. No compute-log capture: ``billing run`` executes its runs in
# its own process, whose standard output and error are already the terminal's, and the
# capture would only copy them into files at the cost of four processes per run (two
# ``tail -F`` and two Python ``watch_orphans``) and their start-up. What the UI shows of a
# run (structured logs, materializations, checks, partitions, lineage) is in the event log,
# not in compute logs. A deployment's daemon-launched runs keep the capture
# (deploy/dagster.yaml): nobody watches their terminal.
INSTANCE_YAML = """\
telemetry:
  enabled: false
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
"""


def _ensure_dagster_home(default: Path) -> Path:
    """SQLite instance under $DAGSTER_HOME; a new user needs no setup (SPEC §2).

    A home this command creates gets ``INSTANCE_YAML``; an existing home is left as is.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or default).resolve()
    if not home.exists():
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _open_instance(home: Path) -> DagsterInstance:
    """The instance, its storages created under a lock in ``home``: two ``billing run``s
    started at once on a new SQLite home would both create its schema, and one of them would
    fail ("table secondary_indexes already exists")."""
    import fcntl

    from dagster import DagsterInstance

    with open(home / ".billing-instance.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        instance = DagsterInstance.get()
        # Each property builds its storage (and a new SQLite file's schema) on first use.
        _ = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
        return instance


def _run(start: date, end: date, clients: list[str] | None) -> int:
    home = _ensure_dagster_home(Path(".dagster_home"))
    from billing_pipeline.runner import (
        UsageError,
        format_report,
        instance_server,
        instance_unreachable,
        run_billing,
    )

    print(f"billing {start}..{end} on the Dagster instance at {home}", file=sys.stderr)
    server = None
    try:
        instance = _open_instance(home)
        server = instance_server(instance)
        report = run_billing(
            start, end, clients, instance, progress=lambda m: print(m, file=sys.stderr)
        )
    except UsageError as exc:
        print(f"billing run: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        message = instance_unreachable(exc, server)
        if message is None:
            raise
        print(f"billing run: {message}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 1 if report.has_problems else 0


def _demo_env(root: Path) -> dict[str, str]:
    root = root.resolve()
    return {
        "BILLING_LANDING_DIR": str(root / "landing"),
        "BILLING_DATA_DIR": str(root / "warehouse"),
        "BILLING_RATECARDS_DIR": str(root / "ratecards"),
        "BILLING_FINANCE_DIR": str(root / "finance"),
        "DAGSTER_HOME": str(root / "dagster_home"),
    }


def _demo(root: Path, clients: int, events_per_day: int) -> int:
    today = date.today()
    last = today.replace(day=1) - timedelta(days=1)
    first = last.replace(day=1)
    env = _demo_env(root)
    os.environ.update(env)
    _ensure_dagster_home(Path(env["DAGSTER_HOME"]))
    from billing_pipeline.generate import main_generate
    from billing_pipeline.runner import format_report, run_billing

    days = (last - first).days + 1
    print(f"demo: generating {first:%B %Y} for {clients} clients into {root}/", file=sys.stderr)
    generated = main_generate(
        [
            "--out", str(root), "--clients", str(clients), "--start", first.isoformat(),
            "--days", str(days), "--events-per-day", str(events_per_day), "--seed", "2026",
            "--force", "--quiet",
        ]
    )  # fmt: skip
    if generated != 0:
        return generated
    print("demo: billing it through Dagster", file=sys.stderr)
    report = run_billing(first, last, progress=lambda m: print(m, file=sys.stderr))
    print(format_report(report))
    warehouse = Path(env["BILLING_DATA_DIR"])
    print()
    print(f"Invoices:       {warehouse / 'invoices' / f'{first:%Y-%m}'}/<client>/invoice.html")
    print(f"Datasets:       {warehouse}/ (activity, quarantine, manifest, charges, rule_errors)")
    print(f"Reconciliation: {warehouse / 'reconciliation' / f'{first:%Y-%m}'}/")
    print("Dagster UI:     billing ui --demo   (then open http://127.0.0.1:3000)")
    if report.reconciliation:
        print(
            "\nThe demo's ledger reports carry differences planted on purpose (one mismatch,"
            "\none row missing, one extra row a month): reconciliation should find exactly those."
        )
    # The demo exists to show the problems it plants; only a failed run is a failure here.
    return 0 if report.runs_ok else 1


def _ui(demo: bool, port: int) -> int:
    if demo:
        os.environ.update(_demo_env(Path(DEMO_DIR)))
    _ensure_dagster_home(Path(".dagster_home"))
    workspace = Path("workspace.yaml")
    if not workspace.exists():
        print("billing ui: workspace.yaml not found: run it from the project root", file=sys.stderr)
        return 2
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-w", str(workspace), "-p", str(port)]
    os.execv(command[0], command)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
