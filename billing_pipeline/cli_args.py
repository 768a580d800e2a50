"""Argument parsing shared by the ``billing`` subcommands.

argparse prints its whole usage block and exits with status 2 on bad usage; the contract
(SPEC §10) wants a one-line message saying what and where, so the parser raises instead and
each command prints the line and returns 2.
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import NoReturn


class UsageError(Exception):
    """Bad usage or configuration: exit status 2 with this one-line message."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
