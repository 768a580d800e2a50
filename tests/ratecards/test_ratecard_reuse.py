"""A card read again in the same process with the same bytes is not parsed again (a nightly
run loads the directory once per stage), and a changed file is never served stale."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing_pipeline.ratecards import RateCardError, load_ratecard, load_ratecards, loader

Write = Callable[..., Path]


def test_same_bytes_give_the_same_card_without_a_parse(
    write: Write, base: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(base)
    first = load_ratecard(path)
    parses: list[Path] = []
    real = loader._parse

    def counting(path: Path, *args: object) -> object:
        parses.append(path)
        return real(path, *args)

    monkeypatch.setattr(loader, "_parse", counting)
    again = load_ratecard(path)
    cards, bad = load_ratecards(path.parent)
    assert again is first and cards == {"acme": first} and not bad
    assert parses == []


def test_a_changed_file_is_read_again(write: Write, base: dict[str, Any]) -> None:
    path = write(base)
    assert load_ratecard(path).versions[0].charges["PICK_ORDER"].rate == Decimal("2.65")
    base["versions"][0]["charges"]["PICK_ORDER"]["rate"] = "2.70"
    write(base)
    assert load_ratecard(path).versions[0].charges["PICK_ORDER"].rate == Decimal("2.70")


def test_a_refused_card_stays_refused_and_a_fix_is_seen(write: Write, base: dict[str, Any]) -> None:
    base["currency"] = "XXQ"
    path = write(base)
    for _ in range(2):
        with pytest.raises(RateCardError) as info:
            load_ratecard(path)
        assert any("currency" in p for p in info.value.problems)
    base["currency"] = "EUR"
    write(base)
    assert load_ratecard(path).currency == "EUR"


def test_the_same_bytes_under_another_name_are_checked_for_that_name(
    write: Write, base: dict[str, Any]
) -> None:
    load_ratecard(write(base, name="acme.yaml"))
    with pytest.raises(RateCardError) as info:
        load_ratecard(write(base, name="other.yaml"))
    assert any('expected "other"' in p for p in info.value.problems)
