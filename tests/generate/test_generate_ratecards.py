from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import yaml

from billing_pipeline.decimals import parse_decimal
from billing_pipeline.generate import GenerateOptions, GenerateSummary
from billing_pipeline.generate.clients import build_clients
from billing_pipeline.generate.ratecards import build_ratecard

DOC = Path(__file__).resolve().parents[2] / "docs" / "charge-codes.md"
MODELS = {"per_unit", "cost_plus", "graduated", "volume", "package", "flat"}


def documented_codes() -> tuple[set[str], set[str]]:
    """(codes every client can produce, codes only heavy_parcel.lua produces), from the doc."""
    common: set[str] = set()
    heavy: set[str] = set()
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 7 or not cells[1].startswith("`"):
            continue
        code_cell, notes = cells[2], cells[5]
        codes: list[str] = []
        for token in re.findall(r"`([A-Z0-9_<>]+)`", code_cell):
            if token.startswith("_"):  # `RECV_CONTAINER_20FT` / `_40FT`: same stem
                codes.append(codes[-1].rsplit("_", 1)[0] + token)
            elif token == "MAT_<CODE>":
                codes += ["MAT_" + m for m in re.findall(r"`([A-Z_]+)`", notes.split("uses", 1)[1])]
            else:
                codes.append(token)
        (heavy if "heavy_parcel.lua" in notes else common).update(codes)
    assert {"PICK_ORDER", "MAT_DUNNAGE", "RECV_CONTAINER_45FT", "STORAGE_BIN"} <= common
    assert heavy == {"SHIP_HEAVY"}
    return common, heavy


def _cards(options: GenerateOptions) -> dict[str, dict]:
    return {
        p.stem: yaml.safe_load(p.read_text())
        for p in sorted((Path(options.out) / "ratecards").glob("*.yaml"))
    }


def test_every_client_has_a_card_that_prices_its_codes(
    generated: tuple[GenerateOptions, GenerateSummary],
) -> None:
    options, summary = generated
    common, heavy = documented_codes()
    cards = _cards(options)
    assert sorted(cards) == sorted(summary.clients)
    for client_id, card in cards.items():
        assert card["client_id"] == client_id
        assert card["rounding"] == "half_up"
        assert card["currency"] in {"USD", "CAD"}
        needed = common | (heavy if card.get("rules") == "heavy_parcel.lua" else set())
        for version in card["versions"]:
            charges = version["charges"]
            assert needed <= set(charges), (client_id, needed - set(charges))
            assert charges["ACCOUNT_MGMT"]["model"] == "flat"
            assert [m["code"] for m in version["minimums"]] == ["MIN_FULFILLMENT"]
            if card.get("rules") == "heavy_parcel.lua":
                assert version["params"] == {"heavy_lb": 50}


def test_cards_are_well_formed(generated: tuple[GenerateOptions, GenerateSummary]) -> None:
    options, _ = generated
    end = options.start + timedelta(days=options.days)
    second_versions = 0
    for client_id, card in _cards(options).items():
        versions = card["versions"]
        assert 1 <= len(versions) <= 2
        assert versions[0]["effective_from"] <= options.start
        if len(versions) == 2:
            second_versions += 1
            changed = versions[1]["effective_from"]
            assert changed.day == 1 and options.start < changed < end
        for version in versions:
            for code, charge in version["charges"].items():
                assert re.match(r"^[A-Z][A-Z0-9_]{0,63}$", code)
                assert charge["model"] in MODELS, code
                assert isinstance(charge["gl_account"], str) and charge["description"]
                for name in ("rate", "amount", "markup_pct"):
                    if name in charge:
                        assert isinstance(charge[name], str), (client_id, code, name)
                        parse_decimal(charge[name])
                if charge["model"] == "graduated":
                    tiers = charge["tiers"]
                    assert tiers[-1]["up_to"] is None
                    bounds = [t["up_to"] for t in tiers[:-1]]
                    assert bounds == sorted(bounds)
            storage = {
                c: version["charges"][c]["aggregate"]
                for c in ("STORAGE_PALLET", "STORAGE_SHELF", "STORAGE_BIN")
            }
            assert storage == {
                "STORAGE_PALLET": "average",
                "STORAGE_SHELF": "max",
                "STORAGE_BIN": "max",
            }
    assert second_versions >= 1


def test_prices_are_in_line_with_3pl_price_sheets() -> None:
    for client in build_clients(12, seed=4):
        if client.currency != "USD":
            continue
        card = build_ratecard(client, date(2026, 3, 1), date(2026, 4, 1), 4, 10000.0)
        for version in card["versions"]:
            charges = version["charges"]
            assert Decimal("2.40") <= Decimal(charges["PICK_ORDER"]["rate"]) <= Decimal("3.20")
            first_tier = Decimal(charges["PICK_ADD_UNIT"]["tiers"][0]["rate"])
            assert Decimal("0.50") <= first_tier <= Decimal("0.75")
            assert Decimal(25) <= Decimal(charges["STORAGE_PALLET"]["rate"]) <= Decimal(40)
            assert Decimal(8) <= Decimal(charges["SHIP_LABEL"]["markup_pct"]) <= Decimal(15)
            assert Decimal(version["minimums"][0]["amount"]) >= 500


def test_client_mix_profiles_zones_and_currencies() -> None:
    clients = build_clients(20, seed=9)
    assert len({c.client_id for c in clients}) == 20
    assert {c.profile for c in clients} == {"dtc", "b2b", "subscription"}
    assert [c.currency for c in clients].count("CAD") == 1
    zones = {c.timezone for c in clients}
    assert "Europe/London" in zones and len(zones) >= 4
    assert all(1 <= len(c.warehouses) <= 3 for c in clients)
    shares = sorted((c.share for c in clients), reverse=True)
    assert abs(sum(shares) - 1) < 1e-9
    assert shares[0] > 5 * shares[-1]  # a few big clients, a long tail
    assert [c.client_id for c in build_clients(20, seed=1)] == [c.client_id for c in clients]
    many = build_clients(300, seed=1)
    assert len({c.client_id for c in many}) == 300
    assert all(re.match(r"^[a-z0-9][a-z0-9_-]{0,63}$", c.client_id) for c in many)
