"""Reconciliation domain: month-end reports against the general ledger (SPEC §9)."""
