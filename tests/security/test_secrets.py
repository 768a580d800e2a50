"""No secrets in the repository; connection strings come from the environment only
(issue 8, item 6)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
SECRETS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"aws_secret_access_key\s*[=:]\s*\S{20,}", re.I),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    "Slack token": re.compile(r"\bxox[abeprs]-[A-Za-z0-9-]{10,}"),
    "password assignment": re.compile(
        r"""\b(password|passwd|secret)\s*[=:]\s*["'][^"'\s]{4,}["']""", re.I
    ),
}
# user:password@ in a URL; placeholders in upper case (USER:PASSWORD) are documentation.
URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://([^/\s:@'\"]+):([^@\s/'\"]+)@")


def _tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True, check=True
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the tree
        skip = {".git", ".venv", "demo", "data", ".dagster_home", "__pycache__"}
        return [
            p
            for p in PROJECT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(PROJECT).parts)
        ]
    return [PROJECT / name for name in listed.split("\0") if name]


def test_no_secret_is_committed() -> None:
    files = _tracked_files()
    assert len(files) > 100
    found = []
    for path in files:
        if "corpus" in path.parts:  # fuzz seeds are hostile on purpose, and hold no secret
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for name, pattern in SECRETS.items():
            if pattern.search(text):
                found.append(f"{path.relative_to(PROJECT)}: {name}")
        for user, password in URL_CREDENTIALS.findall(text):
            if not re.fullmatch(r"[A-Z_]+|\$\{?\w+\}?|<\w+>", password):
                found.append(f"{path.relative_to(PROJECT)}: credentials in a URL ({user}:...)")
    assert not found, found


def test_the_checker_finds_what_it_looks_for() -> None:
    """Control: the patterns match real-looking secrets (built here, not committed)."""
    samples = [
        "-----BEGIN " + "RSA PRIVATE KEY-----",
        "AKIA" + "Q" * 16,
        "gh" + "p_" + "a1" * 18,
        'password = "' + "hunter22" + '"',
    ]
    for sample in samples:
        assert any(p.search(sample) for p in SECRETS.values()), sample
    url = "postgresql+psycopg2://billing:" + "s3cret" + "@db:5432/x"
    assert URL_CREDENTIALS.findall(url) == [("billing", "s3cret")]


def test_connection_strings_come_from_the_environment() -> None:
    config = yaml.safe_load((PROJECT / "deploy" / "dagster.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    # No database URL is written into the package's code.
    for path in (PROJECT / "billing_pipeline").rglob("*.py"):
        assert not re.search(r"postgres(ql)?(\+\w+)?://", path.read_text()), path
