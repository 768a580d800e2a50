"""Synthetic WMS activity, rate cards and ledger reports for demos, tests and load runs.

See SPEC §10 ``billing generate``. Same options give byte-identical files.
"""

from billing_pipeline.generate.cli import main_generate
from billing_pipeline.generate.core import GenerateError, GenerateOptions, GenerateSummary, generate
from billing_pipeline.generate.faults import DUPLICATES, FAULT_KINDS, QUARANTINED
from billing_pipeline.generate.ledger import PlantedDifferences, ledger_rows, write_ledger_reports

__all__ = [
    "DUPLICATES",
    "FAULT_KINDS",
    "QUARANTINED",
    "GenerateError",
    "GenerateOptions",
    "GenerateSummary",
    "PlantedDifferences",
    "generate",
    "ledger_rows",
    "main_generate",
    "write_ledger_reports",
]
