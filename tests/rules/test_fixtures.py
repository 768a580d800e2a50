from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from billing_pipeline.rules.fixtures import main_rules_test, run_fixtures

SHIPPED = Path(__file__).resolve().parents[2] / "lua"


def test_shipped_fixtures_pass_and_cover_every_catalog_type():
    import yaml

    from billing_pipeline.catalog import CATALOG

    report = run_fixtures(SHIPPED)
    assert report.results and not report.failed, [(r.path, r.diff) for r in report.failed]
    covered = {
        yaml.safe_load(p.read_text())["event"]["event_type"]
        for p in (SHIPPED / "tests" / "default").glob("*.yaml")
    }
    assert set(CATALOG) <= covered


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(SHIPPED, tmp_path / "lua")
    (tmp_path / "ratecards").mkdir()
    (tmp_path / "ratecards" / "heavy.yaml").write_text(
        "client_id: heavy\nrules: heavy_parcel.lua\n"
    )
    (tmp_path / "ratecards" / "plain.yaml").write_text("client_id: plain\n")
    monkeypatch.setenv("BILLING_LUA_DIR", str(tmp_path / "lua"))
    monkeypatch.setenv("BILLING_RATECARDS_DIR", str(tmp_path / "ratecards"))
    return tmp_path


def test_client_runs_the_fixtures_of_its_rules_file(tree: Path):
    heavy = run_fixtures(tree / "lua", "heavy", tree / "ratecards")
    plain = run_fixtures(tree / "lua", "plain", tree / "ratecards")
    assert {r.path.parent.name for r in heavy.results} == {"heavy_parcel"}
    assert {r.path.parent.name for r in plain.results} == {"default"}


def test_failing_fixture_prints_a_diff_and_exits_1(tree: Path, capsys):
    path = tree / "lua" / "tests" / "default" / "kit.yaml"
    path.write_text(path.read_text().replace("'15'", "'16'"))
    assert main_rules_test([]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "kit.yaml" in out
    assert "- KIT_COMPONENT quantity=16" in out
    assert "+ KIT_COMPONENT quantity=15" in out


def test_unknown_client_is_bad_usage(tree: Path, capsys):
    assert main_rules_test(["nobody"]) == 2
    err = capsys.readouterr().err
    assert "nobody" in err and err.count("\n") == 1


def test_unreadable_fixture_is_bad_usage(tree: Path, capsys):
    (tree / "lua" / "tests" / "default" / "broken.yaml").write_text("event: [unclosed\n")
    assert main_rules_test([]) == 2
    assert "broken.yaml" in capsys.readouterr().err


def test_all_pass_exits_0(tree: Path):
    assert main_rules_test(["heavy"]) == 0
