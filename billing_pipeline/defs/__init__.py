"""Dagster definitions by domain; ``billing_pipeline.definitions`` assembles them."""
