from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from billing_pipeline.ratecards import RateCard, load_ratecard


@pytest.fixture
def card(tmp_path: Path) -> Callable[..., RateCard]:
    """A rate card from the YAML of its versions (the header is filled in)."""

    def _card(
        versions: str, *, currency: str = "USD", rounding: str = "half_up", client_id: str = "t"
    ) -> RateCard:
        text = (
            f"client_id: {client_id}\nname: Test Co.\ncurrency: {currency}\n"
            f"timezone: UTC\nrounding: {rounding}\nversions:\n"
            + textwrap.indent(textwrap.dedent(versions).strip("\n") + "\n", "  ")
        )
        path = tmp_path / f"{client_id}.yaml"
        path.write_text(text)
        return load_ratecard(path)

    return _card
