"""Line to record: JSON syntax, object shape, required fields and JSON types.

This layer decides what only the raw JSON can tell (is it JSON, an object, is a field there,
is it a string or an integer). Value rules (patterns, ranges, enums, timestamps) are checked
afterwards by the Pandera schemas over typed Polars columns (``schemas.py``). A field whose
JSON type is wrong is set to null for Pandera and its failure recorded here, so the two
layers together give each line the first reason in the order of SPEC §4.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from operator import attrgetter

import msgspec
from msgspec import UNSET

from billing_pipeline.catalog import CATALOG, ENVELOPE_FIELDS, Field
from billing_pipeline.decimals import DecimalError, parse_decimal
from billing_pipeline.ingest import fastpath

# Field order decides which failure a line reports when it has several: envelope first, in
# the order of the SPEC table, then schema_version, then payload fields in catalog order.
ENVELOPE_ORDER = {name: i for i, name in enumerate((*ENVELOPE_FIELDS, "schema_version"))}
PAYLOAD_BASE = len(ENVELOPE_ORDER)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# json.loads turns "\ud800" into a lone UTF-16 surrogate, which is no character and which
# UTF-8 (Polars, Parquet) cannot hold; such a line is refused as invalid_json (RFC 7493).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_DETAIL = "a \\u escape names a lone UTF-16 surrogate, which is not a character"


class _InvalidConstant(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _InvalidConstant(f"{name} is not valid JSON")


def _canonical(value: object) -> str | None:
    """The canonical text, or None for a number the canonical form cannot hold (> 64 bits)."""
    try:
        return fastpath.canonical_payload(json.dumps(value).encode())
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


@dataclass(frozen=True)
class Failure:
    order: int
    reason: str  # missing_field | invalid_field
    detail: str


_ENVELOPE_COLUMNS = (
    "event_id",
    "event_type",
    "occurred_at_raw",
    "client_id",
    "warehouse_id",
    "schema_version",
    "payload",
)


@dataclass
class TypedRows:
    """Typed payload values of one event type, column-wise, for its Pandera schema."""

    rows: list[int] = field(default_factory=list)  # row numbers in the batch (``Columns``)
    values: dict[str, list[object]] = field(default_factory=dict)  # field -> one per row


@dataclass
class Columns:
    """Column lists for a batch of lines; one entry per line in every list."""

    source_line: list[int] = field(default_factory=list)
    raw_line: list[str] = field(default_factory=list)
    reason: list[str | None] = field(default_factory=list)
    detail: list[str | None] = field(default_factory=list)
    event_id: list[str | None] = field(default_factory=list)
    event_type: list[str | None] = field(default_factory=list)
    occurred_at_raw: list[str | None] = field(default_factory=list)
    client_id: list[str | None] = field(default_factory=list)
    warehouse_id: list[str | None] = field(default_factory=list)
    schema_version: list[int | None] = field(default_factory=list)
    payload: list[str | None] = field(default_factory=list)
    # Typed payload values for the per-type Pandera schemas. Decimal fields hold the JSON
    # value as given (string or number) for fast-path rows, an exact Decimal for slow ones;
    # a materials field holds the item count.
    typed_payloads: dict[str, TypedRows] = field(default_factory=dict)
    # Failures only JSON could show (missing fields, wrong JSON types), kept per row.
    failures: dict[int, Failure] = field(default_factory=dict)

    def typed(self, event_type: str) -> TypedRows:
        found = self.typed_payloads.get(event_type)
        if found is None:
            specs = CATALOG[event_type]
            found = TypedRows(values={spec.name: [] for spec in specs})
            self.typed_payloads[event_type] = found
        return found

    def __len__(self) -> int:
        return len(self.source_line)

    def add_unparsed(self, number: int, text: str, reason: str, detail: str) -> None:
        """A line quarantined before its envelope could be read: only its text is kept."""
        self.source_line.append(number)
        self.raw_line.append(text)
        self._fill_empty(reason, detail)

    def _fill_empty(self, reason: str, detail: str) -> None:
        self.reason.append(reason)
        self.detail.append(detail)
        for name in _ENVELOPE_COLUMNS:
            getattr(self, name).append(None)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _typed(spec: Field, value: object) -> tuple[object, str | None]:
    """The value as its schema column holds it, or the broken rule when the JSON type is wrong."""
    if spec.kind in ("str", "enum"):
        return (value, None) if isinstance(value, str) else (None, spec.rule())
    if spec.kind == "int":
        ok = _is_int(value) and _INT64_MIN <= value <= _INT64_MAX
        return (value, None) if ok else (None, spec.rule())
    if spec.kind == "dec":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return None, spec.rule()
        try:
            number = parse_decimal(value)
        except DecimalError as exc:
            return None, f"{spec.rule()}: {exc}"
        return number, None
    # materials: a list of {code: str, qty: int >= 1}; checked whole here, it has no column.
    if not isinstance(value, list):
        return None, spec.rule()
    for i, item in enumerate(value):
        ok = (
            isinstance(item, dict)
            and isinstance(item.get("code"), str)
            and _is_int(item.get("qty"))
            and item["qty"] >= 1
        )
        if not ok:
            return None, f"{spec.rule()} (item {i + 1} is not)"
    return len(value), None


def _first(failures: list[Failure]) -> Failure | None:
    return min(failures, key=lambda f: (f.reason != "missing_field", f.order), default=None)


def parse_block(cols: Columns, first: int, texts: list[str]) -> int:
    """Append a block's non-blank lines (``texts[i]`` is line ``first + i``): the typed fast
    path in bulk, the rest slowly. Returns the number of blank lines.

    Rows are appended fast ones first; callers sort by ``source_line`` at the end.
    """
    count = len(texts)
    # Only a line shaped like an object can be typed; blank lines never are.
    shaped = [i for i, text in enumerate(texts) if text[:1] == "{" and text[-1:] == "}"]
    whole = len(shaped) == count
    try:
        events = fastpath.decode_many(texts if whole else [texts[i] for i in shaped])
    except RecursionError:
        # msgspec refuses nesting thousands deep by raising; the slow path (the authority
        # on reasons) quarantines such a line, so the batch goes that way.
        events = [None] * len(shaped)
    if None in events:
        keep = [i for i, event in zip(shaped, events, strict=True) if event is not None]
        events = [event for event in events if event is not None]
    else:
        keep = shaped
    if len(keep) == count:
        _add_fast(cols, list(range(first, first + count)), texts, events)
        return 0
    if events:
        _add_fast(cols, [first + i for i in keep], [texts[i] for i in keep], events)
    blank = 0
    kept = set(keep)
    for i in range(count):
        if i in kept:
            continue
        text = texts[i]
        if not text or text.isspace():
            blank += 1
        else:
            _parse_slowly(cols, first + i, text)
    return blank


_EVENT_ID, _OCCURRED_AT, _CLIENT_ID, _WAREHOUSE_ID, _SCHEMA_VERSION, _PAYLOAD = (
    attrgetter(name)
    for name in (
        "event_id",
        "occurred_at",
        "client_id",
        "warehouse_id",
        "schema_version",
        "payload",
    )
)


def _add_fast(cols: Columns, numbers: list[int], texts: list[str], events: list) -> None:
    base = len(cols)
    count = len(events)
    cols.source_line.extend(numbers)
    cols.raw_line.extend(texts)
    cols.reason.extend([None] * count)
    cols.detail.extend([None] * count)
    types = fastpath.EVENT_TYPE_OF
    cols.event_id.extend(map(_EVENT_ID, events))
    cols.event_type.extend([types[e.__class__] for e in events])
    cols.occurred_at_raw.extend(map(_OCCURRED_AT, events))
    cols.client_id.extend(map(_CLIENT_ID, events))
    cols.warehouse_id.extend(map(_WAREHOUSE_ID, events))
    cols.schema_version.extend(map(_SCHEMA_VERSION, events))
    payloads = list(map(_PAYLOAD, events))
    cols.payload.extend(fastpath.canonical_payloads(payloads))
    groups: dict[type, list[int]] = {}
    for offset, payload in enumerate(payloads):
        groups.setdefault(payload.__class__, []).append(offset)
    for offsets in groups.values():
        event_type = types[events[offsets[0]].__class__]
        typed = cols.typed(event_type)
        typed.rows.extend([base + o for o in offsets])
        group = [payloads[o] for o in offsets]
        for spec in CATALOG[event_type]:
            values = list(map(attrgetter(spec.name), group))
            if not spec.required:
                values = [None if v is UNSET else v for v in values]
            if spec.kind == "materials":
                values = [len(v) for v in values]
            typed.values[spec.name].extend(values)


def _parse_slowly(cols: Columns, number: int, text: str) -> None:
    """json.loads and field-by-field checks: the authority on reasons for any doubtful line."""
    row = len(cols)
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        cols.add_unparsed(number, text, "invalid_json", str(exc))
        return
    if _SURROGATE_ESCAPE.search(text) and _has_surrogate(obj):
        cols.add_unparsed(number, text, "invalid_json", _SURROGATE_DETAIL)
        return
    if not isinstance(obj, dict):
        cols.add_unparsed(
            number, text, "not_an_object", f"a JSON {_json_name(obj)} is not an object"
        )
        return
    cols.source_line.append(number)
    cols.raw_line.append(text)
    failures: list[Failure] = []

    def envelope_str(name: str) -> str | None:
        value = obj.get(name)
        if value is None:
            failures.append(Failure(ENVELOPE_ORDER[name], "missing_field", name))
            return None
        if not isinstance(value, str):
            failures.append(Failure(ENVELOPE_ORDER[name], "invalid_field", f"{name}: a string"))
            return None
        return value

    cols.event_id.append(envelope_str("event_id"))
    event_type = envelope_str("event_type")
    cols.event_type.append(event_type)
    cols.occurred_at_raw.append(envelope_str("occurred_at"))
    cols.client_id.append(envelope_str("client_id"))
    cols.warehouse_id.append(envelope_str("warehouse_id"))

    version = obj.get("schema_version", 1)
    if not _is_int(version) or not _INT64_MIN <= version <= _INT64_MAX:
        failures.append(
            Failure(ENVELOPE_ORDER["schema_version"], "invalid_field", "schema_version: an integer")
        )
        version = None
    cols.schema_version.append(version)

    payload = obj.get("payload")
    if payload is None:
        failures.append(Failure(ENVELOPE_ORDER["payload"], "missing_field", "payload"))
        cols.payload.append(None)
    elif not isinstance(payload, dict):
        failures.append(Failure(ENVELOPE_ORDER["payload"], "invalid_field", "payload: an object"))
        cols.payload.append(None)
    else:
        finite = all(math.isfinite(v) for v in _floats(payload))
        canonical = _canonical(payload) if finite else None
        finite = canonical is not None
        cols.payload.append(canonical)
        specs = CATALOG.get(event_type) if event_type is not None else None
        if specs is not None:
            failures.extend(_payload_failures(cols, row, event_type, specs, payload))
        if not finite:
            detail = "payload: a number is out of range"
            failures.append(Failure(ENVELOPE_ORDER["payload"], "invalid_field", detail))
    first = _first(failures)
    if first is not None:
        cols.failures[row] = first
    cols.reason.append(None)
    cols.detail.append(None)


def _payload_failures(
    cols: Columns, row: int, event_type: str, specs: tuple[Field, ...], payload: dict
) -> list[Failure]:
    failures = []
    typed: dict[str, object] = {}
    for i, spec in enumerate(specs):
        order = PAYLOAD_BASE + i
        value = payload.get(spec.name)
        if value is None:
            if spec.required:
                failures.append(Failure(order, "missing_field", f"payload.{spec.name}"))
            typed[spec.name] = None
            continue
        typed_value, broken = _typed(spec, value)
        if broken is not None:
            failures.append(Failure(order, "invalid_field", f"payload.{spec.name}: {broken}"))
        typed[spec.name] = typed_value
    rows = cols.typed(event_type)
    rows.rows.append(row)
    for name, value in typed.items():
        rows.values[name].append(value)
    return failures


def _floats(value: object) -> list[float]:
    """Floats anywhere in a payload, to refuse 1e400 (read as infinity) in extra fields too."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _floats(v)]
    if isinstance(value, list):
        return [s for v in value for s in _floats(v)]
    return [value] if isinstance(value, float) else []


def _has_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def _json_name(obj: object) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(obj), "null"
    )
