"""Client ids, rules file names, rate card files and landing paths cannot name anything
outside their directories (issue 8, item 6): path traversal and symlinks."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from billing_pipeline.charging import charges_state_file
from billing_pipeline.ingest.landing import ingest_landing
from billing_pipeline.ingest.reading import list_landing_files
from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.rules import RuleEngine
from billing_pipeline.rules.model import RuleLoadError
from billing_pipeline.storage import Store

HOSTILE_CLIENTS = ["../../x", "a/b", ".", "..", "", "a" * 65, "acme\x00", "/etc", "ACME", "a\\b"]
CARD = """\
client_id: {client}
name: Acme
currency: USD
timezone: UTC
versions:
  - effective_from: 2026-01-01
    charges:
      PICK_ORDER: {{model: per_unit, rate: "1.00", gl_account: "4030"}}
"""


@pytest.mark.parametrize("client", HOSTILE_CLIENTS)
def test_the_store_names_no_directory_after_a_hostile_client_id(
    tmp_path: Path, client: str
) -> None:
    store = Store(tmp_path)
    for path_of in (
        lambda: store.charges_dir("2026-03", client),
        lambda: store.charges_part("2026-03", client, date(2026, 3, 1)),
        lambda: store.rule_errors_file("2026-03", client),
        lambda: store.invoice_dir("2026-03", client),
        lambda: store.activity_file(date(2026, 3, 1), client),
        lambda: store.register_dir(client),
        lambda: charges_state_file(store, "2026-03", client),
    ):
        with pytest.raises(ValueError, match="not a client id"):
            path_of()


@pytest.mark.parametrize("month", ["../2026-03", "2026-3", "2026-13", "..", "2026-03/x"])
def test_the_store_names_no_directory_after_a_hostile_month(tmp_path: Path, month: str) -> None:
    store = Store(tmp_path)
    with pytest.raises(ValueError, match="not a month"):
        store.invoice_dir(month, "acme")
    with pytest.raises(ValueError, match="not a month"):
        store.reconciliation_dir(month)


def test_good_ids_still_name_their_directories(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.invoice_dir("2026-03", "acme-eu_2") == tmp_path / "invoices/2026-03/acme-eu_2"


def _event(client: str) -> str:
    return json.dumps(
        {
            "event_id": "e1",
            "event_type": "order.picked",
            "occurred_at": "2026-03-10T12:00:00Z",
            "client_id": client,
            "warehouse_id": "NJ1",
            "payload": {"order_id": "o", "channel": "dtc", "lines": 1, "units": 1},
        }
    )


def test_hostile_client_ids_in_events_are_quarantined_and_name_no_directory(
    tmp_path: Path,
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "f.ndjson").write_text("\n".join(_event(c) for c in HOSTILE_CLIENTS) + "\n")
    out = tmp_path / "out"
    result = ingest_landing(landing, Store(out), {"acme": "UTC"})
    (row,) = result.manifest.iter_rows(named=True)
    assert row["quarantined"] == len(HOSTILE_CLIENTS) and row["valid"] == 0
    made = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*")}
    assert made == {"landing", "out"}
    assert not list(out.rglob("client_id=*"))


def test_a_landing_link_out_of_the_landing_directory_is_not_read(tmp_path: Path) -> None:
    """Decision: links that resolve inside the landing directory are followed, links out
    of it (to a file or a directory) are not: a landing path names data delivered here."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.ndjson").write_text(_event("acme") + "\n")
    landing = tmp_path / "landing"
    (landing / "in").mkdir(parents=True)
    (landing / "in" / "real.ndjson").write_text(_event("acme").replace("e1", "e2") + "\n")
    (landing / "leak.ndjson").symlink_to(outside / "secret.ndjson")
    (landing / "dir").symlink_to(outside, target_is_directory=True)
    (landing / "alias.ndjson").symlink_to(landing / "in" / "real.ndjson")

    found = [p.relative_to(landing).as_posix() for p in list_landing_files(landing)]
    assert found == ["alias.ndjson", "in/real.ndjson"]
    result = ingest_landing(landing, Store(tmp_path / "out"), {"acme": "UTC"})
    assert sorted(result.manifest["source_file"]) == ["alias.ndjson", "in/real.ndjson"]
    # The alias is the same delivery seen twice: one valid event, one duplicate.
    assert int(result.manifest["valid"].sum()) == 1
    assert int(result.manifest["duplicates"].sum()) == 1


def test_a_rate_card_linked_from_outside_the_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text(CARD.format(client="evil"))
    cards = tmp_path / "ratecards"
    cards.mkdir()
    (cards / "acme.yaml").write_text(CARD.format(client="acme"))
    (cards / "evil.yaml").symlink_to(outside)
    (cards / "..data").mkdir()  # a Kubernetes ConfigMap keeps its files one link away
    (cards / "..data" / "bolt.yaml").write_text(CARD.format(client="bolt"))
    (cards / "bolt.yaml").symlink_to(cards / "..data" / "bolt.yaml")

    good, bad = load_ratecards(cards)

    assert sorted(good) == ["acme", "bolt"]
    assert bad["evil.yaml"].problems == [
        "evil.yaml: a link to a file outside the rate cards directory; refused"
    ]


@pytest.mark.parametrize(
    "rules_file", ["../../../etc/passwd", "/etc/passwd.lua", "a/b.lua", "..lua", "a.b.lua"]
)
def test_rules_file_names_cannot_leave_lua_rules(tmp_path: Path, rules_file: str) -> None:
    (tmp_path / "lua" / "rules").mkdir(parents=True)
    with pytest.raises(RuleLoadError, match="bad rules file name"):
        RuleEngine(tmp_path / "lua").fingerprint(rules_file)


def test_a_rules_file_linked_out_of_lua_rules_is_refused(tmp_path: Path) -> None:
    rules = tmp_path / "lua" / "rules"
    rules.mkdir(parents=True)
    (tmp_path / "outside.lua").write_text("return {}\n")
    (rules / "escape.lua").symlink_to(tmp_path / "outside.lua")
    with pytest.raises(RuleLoadError, match="resolves outside lua/rules/"):
        RuleEngine(tmp_path / "lua").fingerprint("escape.lua")
