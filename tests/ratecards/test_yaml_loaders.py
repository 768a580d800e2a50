"""libyaml parses rate cards for speed; it must read every card as the pure Python parser does.

The corpus: the shipped card, the hostile fuzz cards (aliases, bombs, tags, duplicate keys,
broken syntax, control characters) and the cards ``billing generate`` writes.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from billing_pipeline.generate.clients import build_clients
from billing_pipeline.generate.ratecards import build_ratecard, write_ratecard
from billing_pipeline.ratecards.loader import _load_yaml, _StrictCLoader, _StrictPyLoader

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "tests" / "fuzz" / "corpus" / "ratecards").glob("*.yaml")) + sorted(
    (ROOT / "ratecards").glob("*.yaml")
)
ERRORS = (yaml.YAMLError, ValueError, TypeError, RecursionError)


def outcome(text: str, kind: type) -> object:
    try:
        return _load_yaml(text, kind)
    except ERRORS:
        return "refused"  # the message comes from the pure Python parser either way


def test_libyaml_is_in_use() -> None:
    # a wheel without libyaml would quietly give the slow parser
    assert _StrictCLoader is not _StrictPyLoader


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_both_parsers_read_the_corpus_alike(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    assert outcome(text, _StrictCLoader) == outcome(text, _StrictPyLoader)


def test_both_parsers_read_generated_cards_alike(tmp_path: Path) -> None:
    cards = [
        write_ratecard(tmp_path, build_ratecard(c, date(2026, 1, 1), date(2026, 4, 1), 3, 5000), 3)
        for c in build_clients(12, 3)
    ]
    for path in cards:
        text = path.read_text()
        parsed = _load_yaml(text, _StrictCLoader)
        assert parsed is not None and parsed == _load_yaml(text, _StrictPyLoader), path.name


def test_duplicate_keys_are_found_by_both_at_the_same_line() -> None:
    text = "a: 1\nb:\n  c: 2\n  c: 3\na: 4\n"
    # a mapping's own keys are compared before its values are built: the outer one first
    expected = ({"a": 4, "b": {"c": 3}}, [("a", 5), ("c", 4)])
    assert _load_yaml(text, _StrictCLoader) == expected
    assert _load_yaml(text, _StrictPyLoader) == expected
