"""``billing generate`` command line (SPEC §10)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from billing_pipeline.cli_args import OneLineParser, UsageError, iso_date
from billing_pipeline.config import Paths
from billing_pipeline.generate.billed import billed_amounts
from billing_pipeline.generate.core import GenerateError, GenerateOptions, generate
from billing_pipeline.generate.ledger import write_ledger_reports

PROG = "billing generate"


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG, description="Write synthetic WMS activity logs and matching rate cards."
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output directory (landing/, ratecards/)"
    )
    parser.add_argument("--clients", type=int, required=True, help="number of clients, >= 1")
    parser.add_argument(
        "--start", type=iso_date, required=True, help="first activity date, YYYY-MM-DD"
    )
    parser.add_argument("--days", type=int, required=True, help="number of days, >= 1")
    parser.add_argument(
        "--events-per-day",
        type=int,
        required=True,
        help="events on an average weekday, all clients",
    )
    parser.add_argument("--seed", type=int, required=True, help="same seed, same bytes")
    parser.add_argument(
        "--fault-rate", type=float, default=0.005, help="share of bad lines (default 0.005)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace existing DIR/landing and DIR/ratecards"
    )
    parser.add_argument(
        "--no-ledger",
        action="store_true",
        help="skip DIR/finance/ (the ledger bills the data once; benchmarks skip it)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def main_generate(argv: Sequence[str]) -> int:
    try:
        try:
            args = _parser().parse_args(list(argv))
        except SystemExit as exc:  # --help: argparse has printed it and wants to exit
            return int(exc.code or 0)
        options = GenerateOptions(
            out=args.out,
            clients=args.clients,
            start=args.start,
            days=args.days,
            events_per_day=args.events_per_day,
            seed=args.seed,
            fault_rate=args.fault_rate,
            overwrite=args.force,
        )
        options.check()
    except (UsageError, GenerateError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"  {message}", file=sys.stderr)

    try:
        summary = generate(options, progress)
    except GenerateError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    rate = summary.lines / summary.seconds if summary.seconds else 0.0
    print(f"landing:   {summary.landing} ({summary.files} files, {summary.lines:,} lines)")
    print(f"ratecards: {summary.ratecards} ({len(summary.clients)} clients)")
    print(f"months:    {', '.join(summary.months) or '-'}")
    print("events:    " + ", ".join(f"{k} {v:,}" for k, v in summary.events.items()))
    print("faults:    " + ", ".join(f"{k} {v:,}" for k, v in summary.faults.items()))
    print(
        f"expect:    valid {summary.expected_valid:,}, duplicates {summary.expected_duplicates:,}, "
        f"quarantined {summary.expected_quarantined:,}"
    )
    print(f"took:      {summary.seconds:.1f}s ({rate:,.0f} lines/s)")
    if not args.no_ledger:
        progress("billing the generated data for the ledger reports")
        lua = Paths.from_env().lua
        billed = billed_amounts(summary.landing, summary.ratecards, lua)
        reports = write_ledger_reports(Path(args.out) / "finance", billed, args.seed)
        print(f"finance:   {Path(args.out) / 'finance'} ({len(reports)} ledger reports)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main_generate(sys.argv[1:]))
