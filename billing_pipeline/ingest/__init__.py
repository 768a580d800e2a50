"""Ingestion: landing files to validated, deduplicated, date-partitioned events (SPEC §3, §4)."""
