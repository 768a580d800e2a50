"""A small, independent re-reading of the landing files by the rules of SPEC §3-§4.

It exists to check the generator (every generated event valid, every fault where the summary
says), not to be the pipeline's ingestion: it is written from the contract, reusing only
the catalog table and the decimal reader.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from billing_pipeline.catalog import (
    CATALOG,
    CLIENT_ID_PATTERN,
    ENVELOPE_FIELDS,
    EVENT_ID_PATTERN,
    WAREHOUSE_ID_PATTERN,
)
from billing_pipeline.decimals import DecimalError, parse_decimal

_NAME = re.compile(r"\.(ndjson|jsonl)(\.gz)?$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def landing_files(landing: Path) -> list[Path]:
    return sorted(
        (p for p in landing.rglob("*") if p.is_file() and _NAME.search(p.name)),
        key=lambda p: p.relative_to(landing).as_posix(),
    )


def read_lines(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    text = data.decode("utf-8")
    assert text.endswith("\n"), f"{path} does not end with a newline"
    return text[:-1].split("\n")


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not _RFC3339.match(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _field_problem(spec: object, value: object) -> bool:
    kind = spec.kind  # type: ignore[attr-defined]
    if kind == "str":
        return not isinstance(value, str)
    if kind == "enum":
        return value not in spec.choices  # type: ignore[attr-defined]
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            return True
        low, high = spec.minimum, spec.maximum  # type: ignore[attr-defined]
        return (low is not None and value < low) or (high is not None and value > high)
    if kind == "dec":
        try:
            number = parse_decimal(value)
        except DecimalError:
            return True
        if spec.positive:  # type: ignore[attr-defined]
            return number <= 0
        return spec.minimum is not None and number < spec.minimum  # type: ignore[attr-defined]
    if kind == "materials":
        if not isinstance(value, list):
            return True
        return any(
            not isinstance(m, dict)
            or not isinstance(m.get("code"), str)
            or not isinstance(m.get("qty"), int)
            or isinstance(m.get("qty"), bool)
            or m["qty"] < 1
            for m in value
        )
    raise AssertionError(kind)


def classify(raw: str, clients: set[str]) -> tuple[str | None, dict | None]:
    """(quarantine reason or None, parsed object) for one line, duplicates aside."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError:
        return "invalid_json", None
    if not isinstance(obj, dict):
        return "not_an_object", None
    if any(name not in obj for name in ENVELOPE_FIELDS):
        return "missing_field", obj
    payload = obj["payload"]
    spec = CATALOG.get(obj["event_type"]) if isinstance(obj["event_type"], str) else None
    required = [f.name for f in spec or () if f.required]
    if isinstance(payload, dict) and any(name not in payload for name in required):
        return "missing_field", obj
    envelope_ok = (
        isinstance(obj["event_id"], str)
        and re.match(EVENT_ID_PATTERN, obj["event_id"]) is not None
        and isinstance(obj["event_type"], str)
        and parse_time(obj["occurred_at"]) is not None
        and isinstance(obj["client_id"], str)
        and re.match(CLIENT_ID_PATTERN, obj["client_id"]) is not None
        and isinstance(obj["warehouse_id"], str)
        and re.match(WAREHOUSE_ID_PATTERN, obj["warehouse_id"]) is not None
        and isinstance(payload, dict)
        and obj.get("schema_version", 1) == 1
    )
    if not envelope_ok:
        return "invalid_field", obj
    if spec is not None and any(
        f.name in payload and _field_problem(f, payload[f.name]) for f in spec
    ):
        return "invalid_field", obj
    if obj["client_id"] not in clients:
        return "unknown_client", obj
    return None, obj


@dataclass
class Ingested:
    lines: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    valid: list[tuple[str, dict]] = field(default_factory=list)  # (source file, event)
    lines_by_file: dict[str, int] = field(default_factory=dict)


def ingest(landing: Path, clients: set[str]) -> Ingested:
    """Every line ends valid, duplicate or quarantined; first occurrence in path order wins."""
    result = Ingested()
    first: dict[tuple[str, str], dict] = {}
    for path in landing_files(landing):
        rel = path.relative_to(landing).as_posix()
        lines = read_lines(path)
        result.lines_by_file[rel] = len(lines)
        for raw in lines:
            result.lines += 1
            reason, obj = classify(raw, clients)
            if reason is None:
                assert obj is not None
                key = (obj["event_id"], obj["client_id"])
                seen = first.get(key)
                if seen is not None:
                    if seen == obj:
                        result.duplicates += 1
                    else:
                        result.reasons["duplicate_conflict"] += 1
                    continue
                first[key] = obj
                result.valid.append((rel, obj))
            else:
                result.reasons[reason] += 1
    return result
