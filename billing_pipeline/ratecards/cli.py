"""``billing ratecard validate [FILE ...]`` (SPEC §10)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from billing_pipeline.ratecards.loader import card_files, validate_files

EXIT_OK = 0
EXIT_BAD = 2  # a refused rate card is bad configuration (SPEC §10)


def main_validate(argv: Sequence[str], default_dir: Path) -> int:
    """Check the given cards (files or directories), or every card in ``default_dir``.

    Problems go to stderr, one per line; a one-line OK summary goes to stdout. Exit 0 when
    every card is good, 2 for any problem (including no cards to check).
    """
    parser = argparse.ArgumentParser(
        prog="billing ratecard validate",
        description="Check rate cards (SPEC §6). Without FILE, every card in the rate cards "
        "directory.",
    )
    parser.add_argument("files", nargs="*", metavar="FILE", type=Path)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse has already printed the usage line
        return EXIT_OK if exc.code == 0 else EXIT_BAD

    targets: list[Path] = list(args.files) or [Path(default_dir)]
    paths: list[Path] = []
    problems: list[str] = []
    for target in targets:
        if target.is_dir():
            found = card_files(target)
            if not found:
                problems.append(f"{target}: no rate cards (*.yaml, *.yml) in this directory")
            paths.extend(found)
        elif target.exists() or args.files:
            paths.append(target)
        else:
            problems.append(f"{target}: rate cards directory not found")

    problems.extend(validate_files(paths))
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD
    names = ", ".join(p.stem for p in paths)
    plural = "" if len(paths) == 1 else "s"
    print(f"OK: {len(paths)} rate card{plural} valid ({names})")
    return EXIT_OK
