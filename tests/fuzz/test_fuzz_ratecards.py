"""Hostile rate cards (issue 8, items 5 and 6): the corpus in ``corpus/ratecards`` and
hypothesis mutations of a good card never crash the loader; a refused card gets problems
that each name the file and fit on one line; YAML is loaded safely (no tag constructs
anything, an alias bomb is refused before it is built)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.ratecards.loader import RateCardError, load_ratecard, validate_files
from tests.fuzz.conftest import FUZZ_EXAMPLES, corpus_files, one_line

SEEDS = corpus_files("ratecards", ".yaml")
# Seeds that are good cards, hostile-looking or not: markup in a name is text (the invoice
# escapes it, tests/security), merge keys are plain YAML, a BOM is allowed by YAML.
LOADS = {"good", "merge_keys", "bom", "octal_gl", "script_text"}


def _load_alone(seed: Path, tmp_path: Path) -> list[str]:
    """The problems of a directory holding only this card (none when it loads)."""
    folder = tmp_path / seed.stem
    folder.mkdir()
    shutil.copy(seed, folder / seed.name)
    good, bad = load_ratecards(folder)
    assert set(good) | {p.removesuffix(".yaml") for p in bad} == {seed.stem}
    return [] if seed.stem in good else bad[seed.name].problems


@pytest.mark.parametrize("seed", SEEDS, ids=[s.stem for s in SEEDS])
def test_every_seed_loads_or_is_refused_with_one_line_problems(seed: Path, tmp_path: Path) -> None:
    began = time.monotonic()
    problems = _load_alone(seed, tmp_path)
    assert (not problems) == (seed.stem in LOADS), problems
    for problem in problems:
        assert problem.startswith(f"{seed.name}: ") and one_line(problem), problem
    if "laughs" in seed.stem:  # refused from the node graph, never expanded
        assert time.monotonic() - began < 2
        assert problems == [f"{seed.name}: more than 100000 values once YAML aliases are expanded"]


def test_no_yaml_tag_constructs_anything(tmp_path: Path) -> None:
    for name in ("python_object", "python_name", "custom_tag"):
        (problem,) = _load_alone(next(s for s in SEEDS if s.stem == name), tmp_path)
        assert "not valid YAML" in problem and "constructor" in problem, problem
    assert not Path("/tmp/pwned").exists()


def test_rules_names_cannot_leave_lua_rules(tmp_path: Path) -> None:
    for name in ("rules_traversal", "rules_absolute", "rules_dotted", "rules_hidden"):
        (problem,) = _load_alone(next(s for s in SEEDS if s.stem == name), tmp_path)
        assert f"{name}.yaml: rules: must be a file name in lua/rules/" in problem


def test_validate_reads_the_whole_corpus_without_a_crash() -> None:
    problems = validate_files(SEEDS)
    assert problems and all(one_line(p) for p in problems)
    named = {p.split(":", 1)[0] for p in problems}
    assert named == {s.name for s in SEEDS if s.stem not in LOADS}


GOOD = next(s for s in SEEDS if s.stem == "good").read_text()
SNIPPETS = [
    "*a",
    "&a ",
    "!!python/object/apply:os.system ['true'] ",
    "!!binary aGk= ",
    "<<: *b\n",
    "\x00",
    "\ufeff",
    ": ",
    "- ",
    "{",
    "[",
    '"',
    "'",
    "\t",
    "\n  ",
    "\n",
    ".nan",
    "1e999999999",
    "~",
    "0o777",
    "2026-02-30",
    "../../x",
    "%YAML 1.2\n---\n",
    "? ",
    "|\n",
]


@st.composite
def mutated_card(draw: st.DrawFn) -> str:
    text = GOOD
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at + cut :]
    return text


@settings(
    max_examples=FUZZ_EXAMPLES * 5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mutated_card())
def test_mutated_cards_never_crash_the_loader(tmp_path: Path, text: str) -> None:
    path = tmp_path / "good.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        card = load_ratecard(path)
    except RateCardError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith("good.yaml: ") and one_line(problem), problem
    else:
        assert card.client_id == "good" and card.versions
