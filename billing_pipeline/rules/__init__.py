"""The Lua charge engine: sandboxed billing rules turning events into charge lines (SPEC §5)."""

from billing_pipeline.rules.engine import RuleEngine, RuleKind
from billing_pipeline.rules.model import (
    CHARGES_SCHEMA,
    ERRORS_SCHEMA,
    Budgets,
    Evaluation,
    RateVersion,
    RuleLoadError,
)

__all__ = [
    "CHARGES_SCHEMA",
    "ERRORS_SCHEMA",
    "Budgets",
    "Evaluation",
    "RateVersion",
    "RuleEngine",
    "RuleKind",
    "RuleLoadError",
]
