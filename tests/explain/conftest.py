"""The explain tests bill the same fixture month as the reconciliation tests."""

from tests.reconciliation.conftest import env, finance, world

__all__ = ["env", "finance", "world"]
