"""The one resource every asset uses: where things are, and the knobs an operator turns.

Paths default to the ``BILLING_*`` environment variables of SPEC §2 (read when a run starts,
not when the code loads), so the same Definitions serve the demo, tests and a deployment.
"""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from billing_pipeline.config import Paths, data_root
from billing_pipeline.ingest.clients import ClientZones, client_zones
from billing_pipeline.ratecards import RateCard, RateCardError, load_ratecards
from billing_pipeline.storage import Store


class BillingSettings(ConfigurableResource):
    """Locations (None = from the environment) and thresholds of the billing pipeline."""

    landing_dir: str | None = Field(default=None, description="Overrides BILLING_LANDING_DIR")
    data_dir: str | None = Field(default=None, description="Overrides BILLING_DATA_DIR")
    ratecards_dir: str | None = Field(default=None, description="Overrides BILLING_RATECARDS_DIR")
    lua_dir: str | None = Field(default=None, description="Overrides BILLING_LUA_DIR")
    finance_dir: str | None = Field(default=None, description="Overrides BILLING_FINANCE_DIR")
    quarantine_warn_share: float = Field(
        default=0.02, description="Warn when more than this share of a run's lines is quarantined"
    )
    reconciliation_tolerance: str = Field(
        default="0.00", description="Largest |billed - ledger| still reported as a match"
    )

    def paths(self) -> Paths:
        env = Paths.from_env()
        return Paths(
            landing=Path(self.landing_dir) if self.landing_dir else env.landing,
            data=data_root(self.data_dir) if self.data_dir else env.data,
            ratecards=Path(self.ratecards_dir) if self.ratecards_dir else env.ratecards,
            lua=Path(self.lua_dir) if self.lua_dir else env.lua,
            finance=Path(self.finance_dir) if self.finance_dir else env.finance,
        )

    def store(self) -> Store:
        return Store(self.paths().data)

    def ratecards(self) -> tuple[dict[str, RateCard], dict[str, RateCardError]]:
        return load_ratecards(self.paths().ratecards)

    def timezones(self) -> dict[str, str]:
        """Billing time zone of every client with a good rate card (the known clients)."""
        cards, _ = self.ratecards()
        return {client_id: card.timezone for client_id, card in cards.items()}

    def client_zones(self) -> ClientZones:
        """Clients ingestion knows: every client with a rate card file, good or refused
        (SPEC §4: ``unknown_client`` means no rate card), with the zone where readable."""
        directory = self.paths().ratecards
        cards, bad = load_ratecards(directory)
        return client_zones(directory, cards, bad)
