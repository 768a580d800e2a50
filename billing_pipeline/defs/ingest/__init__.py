"""Ingestion domain: landing files and the daily activity dataset."""
