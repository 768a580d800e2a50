from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from billing_pipeline.invoices import ActivitySummary, invoice_id, render_invoice_files
from billing_pipeline.pricing import ChargeRow, price_month
from billing_pipeline.ratecards import RateCard, load_ratecard

MARCH = date(2026, 3, 1)
CARD = """\
client_id: acme
name: {name}
currency: {currency}
timezone: America/New_York
versions:
  - effective_from: 2026-01-01
    charges:
      PICK_ORDER: {{model: per_unit, rate: "2.65", gl_account: "4030",
                   description: {pick_description}}}
      PICK_ADD_UNIT: {{model: graduated, gl_account: "4030",
                      tiers: [{{up_to: 10, rate: "0.65"}}, {{up_to: null, rate: "0.55"}}]}}
      SHIP_LABEL: {{model: cost_plus, markup_pct: "12.5", gl_account: "4050",
                   description: Shipping label}}
      ACCOUNT_MGMT: {{model: flat, amount: "{flat}", gl_account: "4090",
                     description: Account management}}
    minimums:
      - {{code: MIN_FULFILLMENT, covers: [PICK_ORDER, PICK_ADD_UNIT], amount: "100.00",
         gl_account: "4030", description: Monthly minimum}}
"""
ROWS = [
    ChargeRow(date(2026, 3, 2), "PICK_ORDER", D("1.000000")),
    ChargeRow(date(2026, 3, 3), "PICK_ORDER", D("1")),
    ChargeRow(date(2026, 3, 3), "PICK_ORDER", D("1")),
    ChargeRow(date(2026, 3, 3), "PICK_ADD_UNIT", D("12.500000")),
    ChargeRow(date(2026, 3, 9), "SHIP_LABEL", D("1"), D("7.42")),
    ChargeRow(date(2026, 3, 10), "SHIP_LABEL", D("1"), D("8.100000")),
]
PRINTS = {"rules": "r" * 64, "events": "e" * 64}


def make_card(
    tmp_path: Path,
    *,
    name: str = "Acme Outdoor Co.",
    currency: str = "USD",
    flat: str = "250.00",
    pick_description: str = "'Order pick, \"express\"'",
) -> RateCard:
    path = tmp_path / "acme.yaml"
    path.write_text(
        CARD.format(name=name, currency=currency, flat=flat, pick_description=pick_description)
    )
    return load_ratecard(path)


def render(card: RateCard, rows: list[ChargeRow] = ROWS, **kw: object) -> dict[str, bytes]:
    priced = price_month(card, MARCH, rows)
    options: dict[str, object] = {"status": "draft", "fingerprints": PRINTS, "activity": {}}
    options.update(kw)
    return render_invoice_files(card, "2026-03", priced, **options)  # type: ignore[arg-type]


def test_invoice_id() -> None:
    assert invoice_id("acme", "2026-03") == "INV-ACME-202603"
    assert invoice_id("acme-eu_2", "2026-12") == "INV-ACME-EU_2-202612"
    for bad in ("2026-3", "202603", "2026-13", "2026-00"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            invoice_id("acme", bad)


def test_exact_csv(tmp_path: Path) -> None:
    files = render(make_card(tmp_path))
    assert sorted(files) == ["invoice.html", "invoice.json", "invoice_lines.csv"]
    # PICK_ADD_UNIT 12.5: 10 x 0.65 = 6.50; 2.5 x 0.55 = 1.375 -> 1.38
    # PICK_ORDER 3 x 2.65 = 7.95; SHIP_LABEL basis 7.42 + 8.10 = 15.52 x 1.125 = 17.46
    # minimum 100.00 - (6.50 + 1.38 + 7.95) = 84.17
    assert files["invoice_lines.csv"].decode() == (
        "invoice_id,client_id,period,line_no,charge_code,description,gl_account,quantity,"
        "unit_rate,basis_amount,amount,currency\n"
        "INV-ACME-202603,acme,2026-03,1,ACCOUNT_MGMT,Account management,4090,1,250.00,,250.00,USD\n"
        "INV-ACME-202603,acme,2026-03,2,PICK_ADD_UNIT,PICK_ADD_UNIT,4030,10,0.65,,6.50,USD\n"
        "INV-ACME-202603,acme,2026-03,3,PICK_ADD_UNIT,PICK_ADD_UNIT,4030,2.5,0.55,,1.38,USD\n"
        'INV-ACME-202603,acme,2026-03,4,PICK_ORDER,"Order pick, ""express""",4030,3,2.65,,7.95,'
        "USD\n"
        "INV-ACME-202603,acme,2026-03,5,SHIP_LABEL,Shipping label,4050,2,,15.52,17.46,USD\n"
        "INV-ACME-202603,acme,2026-03,6,MIN_FULFILLMENT,Monthly minimum,4030,1,84.17,,84.17,USD\n"
    )


@pytest.mark.parametrize(
    ("currency", "flat", "amount", "total"),
    [
        # 3 x 2.65 = 7.95 -> 8 yen; 10 x 0.65 = 6.5 -> 7; 2.5 x 0.55 = 1.375 -> 1;
        # 15.52 x 1.125 = 17.46 -> 17; minimum 100 - (7 + 1 + 8) = 84; 1500 + 117 = 1617
        ("JPY", "1500", "1500", "1617"),
        # 6.500 + 1.375 + 7.950 = 15.825 covered, minimum 100 - 15.825 = 84.175;
        # total 1.250 + 15.825 + 17.460 + 84.175 = 118.710
        ("KWD", "1.25", "1.250", "118.710"),
    ],
)
def test_amounts_carry_the_currencys_decimals(
    tmp_path: Path, currency: str, flat: str, amount: str, total: str
) -> None:
    files = render(make_card(tmp_path, currency=currency, flat=flat))
    first = files["invoice_lines.csv"].decode().splitlines()[1].split(",")
    assert first[4] == "ACCOUNT_MGMT" and first[10] == amount and first[11] == currency
    assert json.loads(files["invoice.json"])["total"] == total


def test_no_exponent_ever(tmp_path: Path) -> None:
    card = make_card(tmp_path)
    rows = [ChargeRow(date(2026, 3, 2), "PICK_ORDER", D("1E+2"))]  # 100, written oddly
    csv_text = render(card, rows)["invoice_lines.csv"].decode()
    assert ",100,2.65,,265.00," in csv_text
    assert "E+" not in csv_text and "e+" not in csv_text


def test_rerendering_is_byte_identical(tmp_path: Path) -> None:
    card = make_card(tmp_path)
    activity = {
        4: ActivitySummary(3, {"order.picked": 3}, date(2026, 3, 2), date(2026, 3, 3), ["a", "b"]),
        5: ActivitySummary(2, {"order.shipped": 2}, date(2026, 3, 9), date(2026, 3, 10), ["s1"]),
    }
    first = render(card, activity=activity)
    # the same facts built in another order give the same bytes
    reordered = {5: activity[5], 4: activity[4]}
    second = render(card, list(reversed(ROWS)), activity=reordered)
    assert first == second
    for name, data in first.items():
        assert b"\r\n" not in data, name
        assert data.endswith(b"\n"), name


def test_json_document(tmp_path: Path) -> None:
    card = make_card(tmp_path)
    activity = {
        4: ActivitySummary(3, {"order.picked": 3}, date(2026, 3, 2), date(2026, 3, 3), ["a", "b"])
    }
    doc = json.loads(render(card, status="final", activity=activity)["invoice.json"])
    assert {k: doc[k] for k in ("invoice_id", "client_id", "period", "currency", "status")} == {
        "invoice_id": "INV-ACME-202603",
        "client_id": "acme",
        "period": "2026-03",
        "currency": "USD",
        "status": "final",
    }
    # 250.00 + 6.50 + 1.38 + 7.95 + 17.46 + 84.17
    assert doc["total"] == "367.46"
    assert doc["line_count"] == len(doc["lines"]) == 6
    assert doc["fingerprints"] == {"rules": "r" * 64, "events": "e" * 64, "ratecard": card.sha256}
    ship = doc["lines"][4]
    assert ship["charge_code"] == "SHIP_LABEL"
    assert (ship["unit_rate"], ship["basis_amount"], ship["amount"]) == (None, "15.52", "17.46")
    assert (ship["first_date"], ship["last_date"], ship["category"]) == (
        "2026-03-09",
        "2026-03-10",
        "shipping",
    )
    pick = doc["lines"][3]
    assert pick["activity"] == {
        "events": 3,
        "event_types": {"order.picked": 3},
        "first_date": "2026-03-02",
        "last_date": "2026-03-03",
        "example_event_ids": ["a", "b"],
    }
    assert "activity" not in doc["lines"][0]
    assert doc["lines"][1]["tier"] == 1 and doc["lines"][2]["tier"] == 2
    # amounts are strings: a JSON number would be read as a float
    assert all(isinstance(line["amount"], str) for line in doc["lines"])


def test_html_escapes_everything_from_cards_and_events(tmp_path: Path) -> None:
    card = make_card(
        tmp_path,
        name="'<script>alert(\"name\")</script>'",
        pick_description="'<img src=x onerror=alert(1)>'",
    )
    activity = {
        4: ActivitySummary(
            3,
            {'"><script>alert(2)</script>': 3},
            date(2026, 3, 2),
            date(2026, 3, 3),
            ["<script>alert(3)</script>", "ok-1"],
        )
    }
    html = render(card, activity=activity)["invoice.html"].decode()
    assert "<script" not in html.lower()
    assert "<img" not in html
    assert "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_html_is_self_contained_and_grouped(tmp_path: Path) -> None:
    card = make_card(tmp_path)
    activity = {
        4: ActivitySummary(
            3, {"order.picked": 3}, date(2026, 3, 2), date(2026, 3, 3), [f"e{i}" for i in range(9)]
        )
    }
    html = render(card, activity=activity)["invoice.html"].decode()
    for external in ("http:", "https:", "src=", "<link", "@import", "<script"):
        assert external not in html
    assert "@media print" in html
    assert "Acme Outdoor Co." in html and "INV-ACME-202603" in html and "draft" in html
    # groups in order, each with its subtotal: handling 6.50 + 1.38 + 7.95 = 15.83
    handling = html.index("<h2>Handling</h2>")
    shipping = html.index("<h2>Shipping</h2>")
    fees = html.index("<h2>Fees</h2>")
    assert handling < shipping < fees
    assert "<h2>Storage</h2>" not in html  # no empty groups
    assert 'Subtotal Handling</td><td class="num">15.83' in html
    assert 'Subtotal Fees</td><td class="num">334.17' in html  # 250.00 + 84.17
    assert '<span class="num">367.46</span>' in html
    # the activity behind the pick line: count, types, date range, at most 5 examples
    assert "3 events (order.picked 3) · 2026-03-02 – 2026-03-03" in html
    assert "<code>e4</code>" in html and "<code>e5</code>" not in html


def test_refuses_what_must_not_become_an_invoice(tmp_path: Path) -> None:
    card = make_card(tmp_path)
    with pytest.raises(ValueError, match="status"):
        render(card, status="paid")
    with pytest.raises(ValueError, match="unpriced charges block the invoice: NOPE \\(1\\)"):
        render(card, [*ROWS, ChargeRow(date(2026, 3, 5), "NOPE", D(1))])
    priced = price_month(card, MARCH, ROWS)
    with pytest.raises(ValueError, match="is not acme 2026-04"):
        render_invoice_files(card, "2026-04", priced, status="draft", fingerprints={}, activity={})
