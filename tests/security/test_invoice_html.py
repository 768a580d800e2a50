"""The HTML invoice escapes every text that comes from rate cards and events (issue 8, item 6),
checked by rendering it in headless Chromium: no payload runs, each shows as text.

Chromium is a requirement of the suite (``scripts/ensure-chromium`` installs it, and
``make test`` and CI run that first): a missing browser fails here, never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from billing_pipeline.invoices import ActivitySummary, render_invoice_files
from billing_pipeline.pricing import ChargeRow, price_month
from billing_pipeline.ratecards import load_ratecard

# Each payload tries to run script that marks the page: a new title or a #pwned element.
MARK = "PWNED"
PAYLOADS = (
    f"<script>document.title='{MARK}'</script>",
    f'"><img src=x onerror="document.title=\'{MARK}\'">',
    "'><svg onload=\"document.body.insertAdjacentHTML('beforeend','<b id=pwned></b>')\">",
    f"</title></style><script>document.title='{MARK}'</script>",
    f"<iframe srcdoc=\"<script>parent.document.title='{MARK}'</script>\"></iframe>",
)


def _yaml(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _card_text(payload: str) -> str:
    q = _yaml(payload)
    return f"""\
client_id: acme
name: {_yaml("Acme " + payload)}
currency: USD
timezone: UTC
versions:
  - effective_from: 2026-01-01
    charges:
      PICK_ORDER: {{model: per_unit, rate: "2.65", gl_account: {q}, description: {q}}}
      SHIP_LABEL: {{model: cost_plus, markup_pct: "10", gl_account: "4050", description: {q}}}
      STORAGE: {{model: flat, amount: "5.00", gl_account: "4010", category: storage,
                description: {q}}}
    minimums:
      - {{code: MIN_PICK, covers: [PICK_ORDER], amount: "100.00", gl_account: {q},
         description: {q}}}
"""


def _chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail(
            "chromium is not installed: run scripts/ensure-chromium (apt-get install -y chromium)"
        )
    return found


def _dump_dom(page: Path) -> str:
    """The DOM after the page's scripts (if any) had 3 s of virtual time to run."""
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--virtual-time-budget=3000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def _render(tmp_path: Path, payload: str) -> bytes:
    path = tmp_path / "acme.yaml"
    path.write_text(_card_text(payload))
    card = load_ratecard(path)
    rows = [
        ChargeRow(date(2026, 3, 2), "PICK_ORDER", D("3")),
        ChargeRow(date(2026, 3, 9), "SHIP_LABEL", D("1"), D("7.42")),
    ]
    priced = price_month(card, date(2026, 3, 1), rows)
    # Event ids and types reach the page through the activity summaries. Ingestion refuses
    # such values (envelope patterns), so this checks the renderer's own escaping too.
    activity = {
        line.line_no: ActivitySummary(
            events=2,
            event_types={payload: 1, "order.picked": 1},
            first_date=date(2026, 3, 2),
            last_date=date(2026, 3, 9),
            example_event_ids=(payload, "evt-1"),
        )
        for line in priced.lines
    }
    files = render_invoice_files(
        card,
        "2026-03",
        priced,
        status="draft",
        fingerprints={"rules": payload, "events": "e" * 64},
        activity=activity,
    )
    return files["invoice.html"]


def _title(dom: str) -> str:
    return dom.split("<title>", 1)[1].split("</title>", 1)[0]


def test_the_detector_sees_a_payload_that_runs(tmp_path: Path) -> None:
    """Control: the same payloads, not escaped, do change the page in this browser."""
    page = tmp_path / "raw.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>clean</title></head><body>"
        + "".join(f"<p>{p}</p>" for p in PAYLOADS[1:3])
        + "</body></html>"
    )
    dom = _dump_dom(page)
    assert _title(dom) == MARK
    assert 'id="pwned"' in dom


def test_no_text_from_cards_or_events_runs_as_script(tmp_path: Path) -> None:
    pages = []
    for payload in PAYLOADS:
        html = _render(tmp_path, payload)
        assert html.count(b"<script") == 0 and html.count(b"<img") == 0
        pages.append(html.decode())
    # One page with every payload's invoice body, so Chromium starts once.
    page = tmp_path / "invoices.html"
    head, _, _ = pages[0].partition("<body>")
    bodies = [p.partition("<body>")[2].partition("</body>")[0] for p in pages]
    page.write_text(head + "<body>" + "\n".join(bodies) + "</body></html>")

    dom = _dump_dom(page)

    # The title is still the first invoice's own (a script would have replaced it).
    assert _title(dom) == _as_text(f"INV-ACME-202603 · Acme {PAYLOADS[0]}")
    for tag in ("<script", "<img", "<svg", "<iframe", 'id="pwned"'):
        assert tag not in dom, tag
    # Each payload is on the page as text (escaped again by the DOM serializer).
    for payload in PAYLOADS:
        assert _as_text(payload) in dom


def _as_text(text: str) -> str:
    """How Chromium's DOM dump writes a text node."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
