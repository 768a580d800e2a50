"""Strict reading of rate card files (SPEC §6).

A card is read whole and checked whole: every problem in the file is collected, each naming
the file, the path to the field and what is wrong, and no ``RateCard`` is built unless there
are none. Plain code rather than pydantic, because the messages must follow the
``file: versions[1].charges.PICK_ORDER.rate: what`` shape exactly and the rules cross fields
(tiers in order, minimums covering codes of the same version).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from billing_pipeline.decimals import DecimalError, parse_decimal, places
from billing_pipeline.ratecards.currencies import MINOR_UNITS
from billing_pipeline.ratecards.model import (
    AGGREGATES,
    CATEGORIES,
    MODELS,
    ROUNDINGS,
    RULES_FILE,
    ChargeSpec,
    Minimum,
    RateCard,
    Tier,
    Version,
    default_category,
)

CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CHARGE_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
CARD_SUFFIXES = (".yaml", ".yml")
DEFAULT_RULES = "default.lua"
# A rate card is a page of YAML; anything this big is a mistake.
MAX_BYTES = 1 << 20
# Values in the card once every alias is expanded: a small file can name a value that names
# another nine times, and so on (a "billion laughs"), which params would hand to Lua whole.
MAX_VALUES = 100_000

_TOP_KEYS = ("client_id", "name", "currency", "timezone", "rounding", "rules", "versions")
_TOP_REQUIRED = ("client_id", "name", "currency", "timezone", "versions")
_VERSION_KEYS = ("effective_from", "params", "charges", "minimums")
_VERSION_REQUIRED = ("effective_from", "charges")
_CHARGE_COMMON = ("model", "description", "gl_account", "category")
_MODEL_KEYS: Mapping[str, tuple[str, ...]] = {
    "per_unit": ("rate", "aggregate"),
    "graduated": ("tiers", "aggregate"),
    "volume": ("tiers", "aggregate"),
    "package": ("rate", "package_size", "aggregate"),
    "cost_plus": ("markup_pct",),
    "flat": ("amount",),
}
_MODEL_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "per_unit": ("rate",),
    "graduated": ("tiers",),
    "volume": ("tiers",),
    "package": ("rate", "package_size"),
    "cost_plus": ("markup_pct",),
    "flat": ("amount",),
}
_ALL_CHARGE_KEYS = tuple(
    dict.fromkeys(_CHARGE_COMMON + tuple(k for keys in _MODEL_KEYS.values() for k in keys))
)
_TIER_KEYS = ("up_to", "rate")
_MINIMUM_KEYS = ("code", "covers", "amount", "description", "gl_account", "category")
_MINIMUM_REQUIRED = ("code", "covers", "amount", "gl_account")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Cards already checked in this process, by file name and exact bytes. A nightly run loads
# the directory once per stage (runner, ingestion, charges, invoices, reconciliation), and
# the pure-Python YAML parse and checks cost ~10 ms a card: seconds at 300 clients, each
# time. The result is a function of the file's path (its name is checked, and the card keeps
# its path) and bytes (their sha256) only; RateCard is frozen.
_PARSED: OrderedDict[tuple[str, str], tuple[RateCard | None, tuple[str, ...]]] = OrderedDict()
_PARSED_MAX = 4096
_PARSED_LOCK = threading.Lock()


class RateCardError(Exception):
    """A rate card (or several) refused; ``problems`` holds one message per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


# --- YAML -------------------------------------------------------------------------------


class _Strict:
    """A ``yaml.SafeLoader`` (no Python tags, ever) that also notices duplicate keys.

    Plain ``safe_load`` keeps the last of two equal keys without a word, which would let a
    pasted ``rate:`` line silently override the one above it. Merge keys (``<<: *base``)
    stay legal: only keys written in the mapping itself are compared.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                self.duplicates.append((key_node.value, key_node.start_mark.line + 1))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _timestamp_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    # 2026-02-30 looks like a YAML date but is none; keep the text so the checker can say
    # which field holds it instead of the whole file failing with "day is out of range".
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


class _StrictPyLoader(_Strict, yaml.SafeLoader):
    """Pure Python: its error messages are the ones analysts see (and tests pin)."""


# libyaml's parser parses a card ~8x faster (1.5 against 11.5 ms for a 3.7 KB card: 3 s
# per process at 300 clients); the constructors are the same Python code. Its error texts
# differ, so a card it refuses is parsed again by the pure Python loader for the message.
_StrictCLoader = (
    type("_StrictCLoader", (_Strict, yaml.CSafeLoader), {})
    if getattr(yaml, "__with_libyaml__", False)
    else _StrictPyLoader
)
for _loader in {_StrictPyLoader, _StrictCLoader}:
    _loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)


def _yaml_problem(exc: Exception) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = exc.problem or exc.context or "unreadable"
        if "python/" in what or "tag:" in what:
            what += "; only plain YAML data (no tags) is allowed"
        return f"not valid YAML{where}: {what}"
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return f"not valid YAML: character {char:#06x} at offset {exc.position} is not allowed"
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"not valid YAML: {first}"


# --- checking ---------------------------------------------------------------------------


def _at(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


class _Checker:
    """Collects problems for one file; every check carries on after a failure."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[str] = []

    def add(self, path: str, what: str) -> None:
        problem = f"{self.filename}: {path}: {what}" if path else f"{self.filename}: {what}"
        # Values quoted from the card may hold line breaks (a folded YAML scalar): a problem
        # is one line whatever the card holds.
        self.problems.append(
            _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), problem)
        )

    def mapping(
        self,
        value: object,
        path: str,
        allowed: Sequence[str],
        required: Sequence[str],
        *,
        known_elsewhere: Callable[[str], str | None] | None = None,
    ) -> dict[Any, Any] | None:
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping with {', '.join(required)}, got {_show(value)}")
            return None
        for key in value:
            if key in allowed:
                continue
            note = known_elsewhere(key) if known_elsewhere and isinstance(key, str) else None
            if note:
                self.add(_at(path, key), note)
            else:
                self.add(
                    _at(path, key), f"unknown key (a typo? expected one of: {', '.join(allowed)})"
                )
        for key in required:
            if key not in value:
                self.add(_at(path, key), "missing")
        return value

    def text(self, value: object, path: str) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            # An unquoted 0430 is octal to YAML and becomes 280: never guess.
            self.add(path, f'must be a string (quote it: "{value}"), got a number')
        else:
            self.add(path, f"must be a non-empty string, got {_show(value)}")
        return None

    def choice(self, value: object, path: str, options: Sequence[str], noun: str) -> str | None:
        if isinstance(value, str) and value in options:
            return value
        self.add(path, f"unknown {noun} {_show(value)} (one of: {', '.join(options)})")
        return None

    def decimal(
        self,
        value: object,
        path: str,
        *,
        positive: bool = False,
        max_places: int | None = None,
        unit: str = "",
    ) -> Decimal | None:
        if value is None:
            self.add(path, "missing value")
            return None
        try:
            number = parse_decimal(value)
        except DecimalError as exc:
            self.add(path, str(exc))
            return None
        if positive and number <= 0:
            self.add(path, f"must be greater than 0: {value}")
            return None
        if number < 0:
            self.add(path, f"must not be negative: {value}")
            return None
        if max_places is not None and places(number) > max_places:
            self.add(path, f"more than {max_places} decimal places for {unit}: {value}")
            return None
        return number

    def day(self, value: object, path: str) -> date | None:
        if isinstance(value, datetime):
            self.add(path, f"must be a date (YYYY-MM-DD), not a timestamp: {value}")
            return None
        if isinstance(value, date):
            return value
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                self.add(path, f"not a real date: {value}")
                return None
        self.add(path, f"must be a date (YYYY-MM-DD), got {_show(value)}")
        return None


def _show(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _card(doc: object, path: Path, ck: _Checker, sha: str) -> RateCard | None:
    top = ck.mapping(doc, "", _TOP_KEYS, _TOP_REQUIRED)
    if top is None:
        return None

    client_id = None
    if "client_id" in top:
        client_id = ck.text(top["client_id"], "client_id")
        if client_id is not None:
            if not CLIENT_ID.match(client_id):
                ck.add("client_id", f'"{client_id}" does not match ^[a-z0-9][a-z0-9_-]{{0,63}}$')
            elif client_id != path.stem:
                ck.add(
                    "client_id",
                    f'"{client_id}" does not match the file name (expected "{path.stem}")',
                )
    name = ck.text(top["name"], "name") if "name" in top else None

    currency, minor = None, None
    if "currency" in top:
        raw = top["currency"]
        if isinstance(raw, str) and raw in MINOR_UNITS:
            currency, minor = raw, MINOR_UNITS[raw]
        else:
            hint = (
                " (codes are upper case)"
                if isinstance(raw, str) and raw.upper() in MINOR_UNITS
                else ""
            )
            ck.add("currency", f"not an ISO 4217 currency code: {_show(raw)}{hint}")

    timezone = None
    if "timezone" in top:
        timezone = _timezone(top["timezone"], ck)
    rounding = ck.choice(top.get("rounding", "half_up"), "rounding", ROUNDINGS, "rounding mode")
    rules = _rules(top.get("rules", DEFAULT_RULES), ck)

    versions: list[Version] = []
    if "versions" in top:
        raw_versions = top["versions"]
        if not isinstance(raw_versions, list) or not raw_versions:
            ck.add("versions", f"must be a list of one or more versions, got {_show(raw_versions)}")
        else:
            first_seen: dict[date, int] = {}
            for i, raw in enumerate(raw_versions):
                version = _version(raw, f"versions[{i}]", ck, currency, minor)
                if version is None:
                    continue
                earlier = first_seen.setdefault(version.effective_from, i)
                if earlier != i:
                    ck.add(
                        f"versions[{i}].effective_from",
                        f"duplicate effective_from {version.effective_from} "
                        f"(also versions[{earlier}])",
                    )
                versions.append(version)

    if ck.problems:
        return None
    assert client_id and name and currency and minor is not None and timezone and rounding
    assert rules
    return RateCard(
        client_id=client_id,
        name=name,
        currency=currency,
        minor_units=minor,
        timezone=timezone,
        rounding=rounding,
        rules=rules,
        versions=tuple(sorted(versions, key=lambda v: v.effective_from)),
        sha256=sha,
        path=path,
    )


def _timezone(value: object, ck: _Checker) -> str | None:
    if isinstance(value, str) and value and not value.startswith(("/", ".")):
        try:
            ZoneInfo(value)
            return value
        except (ZoneInfoNotFoundError, ValueError):
            pass
    ck.add("timezone", f"not an IANA time zone: {_show(value)}")
    return None


def _rules(value: object, ck: _Checker) -> str | None:
    # The engine's own rule for a rules file name (a plain NAME.lua in lua/rules/: no
    # directories, no dots but the suffix), so a card the loader accepts never fails to load
    # its rules for the name alone.
    if isinstance(value, str) and len(value) <= 128 and RULES_FILE.match(value):
        return value
    ck.add("rules", f"must be a file name in lua/rules/ ending in .lua, got {_show(value)}")
    return None


def _version(
    raw: object, path: str, ck: _Checker, currency: str | None, minor: int | None
) -> Version | None:
    before = len(ck.problems)
    obj = ck.mapping(raw, path, _VERSION_KEYS, _VERSION_REQUIRED)
    if obj is None:
        return None
    effective = (
        ck.day(obj["effective_from"], _at(path, "effective_from"))
        if "effective_from" in obj
        else None
    )
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        ck.add(_at(path, "params"), f"must be a mapping, got {_show(params)}")
        params = {}
    for key in params:
        if not isinstance(key, str):
            ck.add(_at(path, "params"), f"keys must be strings, got {_show(key)}")

    charges: dict[str, ChargeSpec] = {}
    raw_charges = obj.get("charges")
    if "charges" in obj and not isinstance(raw_charges, dict):
        ck.add(
            _at(path, "charges"),
            f"must be a mapping of charge code to charge, got {_show(raw_charges)}",
        )
    elif isinstance(raw_charges, dict):
        for code, spec in raw_charges.items():
            cpath = _at(_at(path, "charges"), code)
            if not isinstance(code, str) or not CHARGE_CODE.match(code):
                ck.add(cpath, f"charge code {_show(code)} does not match ^[A-Z][A-Z0-9_]{{0,63}}$")
                continue
            charge = _charge(code, spec, cpath, ck, currency, minor)
            if charge is not None:
                charges[code] = charge

    minimums: list[Minimum] = []
    raw_minimums = obj.get("minimums", [])
    if raw_minimums is None:
        raw_minimums = []
    if not isinstance(raw_minimums, list):
        ck.add(_at(path, "minimums"), f"must be a list, got {_show(raw_minimums)}")
    else:
        codes_in_charges = raw_charges if isinstance(raw_charges, dict) else {}
        seen: set[str] = set()
        for j, raw_min in enumerate(raw_minimums):
            minimum = _minimum(
                raw_min, f"{path}.minimums[{j}]", ck, codes_in_charges, currency, minor
            )
            if minimum is None:
                continue
            if minimum.code in seen:
                ck.add(f"{path}.minimums[{j}].code", f"duplicate minimum code {minimum.code}")
            seen.add(minimum.code)
            minimums.append(minimum)

    if len(ck.problems) > before or effective is None:
        return None
    return Version(
        effective_from=effective,
        params=MappingProxyType(dict(params)),
        charges=MappingProxyType(charges),
        minimums=tuple(minimums),
    )


def _charge(
    code: str, raw: object, path: str, ck: _Checker, currency: str | None, minor: int | None
) -> ChargeSpec | None:
    before = len(ck.problems)
    if not isinstance(raw, dict):
        ck.add(path, f"must be a mapping with model and gl_account, got {_show(raw)}")
        return None
    model = None
    if "model" in raw:
        model = ck.choice(raw["model"], _at(path, "model"), MODELS, "model")
    allowed = _CHARGE_COMMON + _MODEL_KEYS[model] if model else _ALL_CHARGE_KEYS
    required = ("model", "gl_account") + (_MODEL_REQUIRED[model] if model else ())

    def not_for_model(key: str) -> str | None:
        if model is None or key not in _ALL_CHARGE_KEYS:
            return None
        if key == "aggregate":
            why = (
                "it is priced day by day from the summed basis"
                if model == "cost_plus"
                else "a flat fee is one line a month"
            )
            return f"not allowed for model {model} ({why})"
        return f"not used by model {model} (it takes: {', '.join(allowed)})"

    ck.mapping(raw, path, allowed, required, known_elsewhere=not_for_model)

    gl = ck.text(raw["gl_account"], _at(path, "gl_account")) if "gl_account" in raw else None
    description = code
    if "description" in raw:
        description = ck.text(raw["description"], _at(path, "description")) or code
    category = default_category(code)
    if "category" in raw:
        category = (
            ck.choice(raw["category"], _at(path, "category"), CATEGORIES, "category") or category
        )
    aggregate = "sum"
    if "aggregate" in raw and model in ("per_unit", "graduated", "volume", "package"):
        aggregate = (
            ck.choice(raw["aggregate"], _at(path, "aggregate"), AGGREGATES, "aggregate") or "sum"
        )
    if model is None:
        return None

    keys = _MODEL_KEYS[model]
    rate = ck.decimal(raw["rate"], _at(path, "rate")) if "rate" in raw and "rate" in keys else None
    markup = (
        ck.decimal(raw["markup_pct"], _at(path, "markup_pct"))
        if "markup_pct" in raw and "markup_pct" in keys
        else None
    )
    size = (
        ck.decimal(raw["package_size"], _at(path, "package_size"), positive=True)
        if "package_size" in raw and "package_size" in keys
        else None
    )
    amount = None
    if "amount" in raw and "amount" in keys:
        amount = ck.decimal(
            raw["amount"], _at(path, "amount"), max_places=minor, unit=currency or ""
        )
    tiers: tuple[Tier, ...] = ()
    if "tiers" in raw and "tiers" in keys:
        tiers = _tiers(raw["tiers"], _at(path, "tiers"), ck) or ()

    if len(ck.problems) > before or gl is None:
        return None
    return ChargeSpec(
        code=code,
        model=model,
        gl_account=gl,
        description=description,
        category=category,
        aggregate=aggregate,
        rate=rate,
        amount=amount,
        markup_pct=markup,
        package_size=size,
        tiers=tiers,
    )


def _tiers(raw: object, path: str, ck: _Checker) -> tuple[Tier, ...] | None:
    if not isinstance(raw, list) or not raw:
        ck.add(path, f"must be a list of one or more {{up_to, rate}} tiers, got {_show(raw)}")
        return None
    tiers: list[Tier] = []
    previous: Decimal | None = None
    last = len(raw) - 1
    for i, item in enumerate(raw):
        tpath = f"{path}[{i}]"
        obj = ck.mapping(item, tpath, _TIER_KEYS, _TIER_KEYS)
        if obj is None:
            continue
        rate = ck.decimal(obj["rate"], _at(tpath, "rate")) if "rate" in obj else None
        up_to: Decimal | None = None
        if "up_to" in obj:
            if obj["up_to"] is None:
                if i != last:
                    ck.add(
                        _at(tpath, "up_to"),
                        "null (no upper bound) is only allowed on the last tier",
                    )
            else:
                up_to = ck.decimal(obj["up_to"], _at(tpath, "up_to"), positive=True)
                if up_to is not None and previous is not None and up_to <= previous:
                    ck.add(
                        _at(tpath, "up_to"),
                        f"must be greater than the previous tier's up_to ({previous}): {up_to}",
                    )
                if up_to is not None and i == last:
                    ck.add(
                        _at(tpath, "up_to"),
                        f"the last tier must have up_to: null, or quantities above {up_to} "
                        "would have no price",
                    )
        if up_to is not None:
            previous = up_to
        if rate is not None:
            tiers.append(Tier(up_to=up_to, rate=rate))
    return tuple(tiers)


def _minimum(
    raw: object,
    path: str,
    ck: _Checker,
    charges: Mapping[object, object],
    currency: str | None,
    minor: int | None,
) -> Minimum | None:
    before = len(ck.problems)
    obj = ck.mapping(raw, path, _MINIMUM_KEYS, _MINIMUM_REQUIRED)
    if obj is None:
        return None
    code = None
    if "code" in obj:
        code = obj["code"]
        if not isinstance(code, str) or not CHARGE_CODE.match(code):
            ck.add(_at(path, "code"), f"{_show(code)} does not match ^[A-Z][A-Z0-9_]{{0,63}}$")
            code = None
        elif code in charges:
            ck.add(_at(path, "code"), f"{code} is also a charge code of this version")
    covers: tuple[str, ...] | str | None = None
    if "covers" in obj:
        covers = _covers(obj["covers"], _at(path, "covers"), ck, charges)
    amount = (
        ck.decimal(obj["amount"], _at(path, "amount"), max_places=minor, unit=currency or "")
        if "amount" in obj
        else None
    )
    gl = ck.text(obj["gl_account"], _at(path, "gl_account")) if "gl_account" in obj else None
    description = code or ""
    if "description" in obj:
        description = ck.text(obj["description"], _at(path, "description")) or description
    category = "fees"
    if "category" in obj:
        category = (
            ck.choice(obj["category"], _at(path, "category"), CATEGORIES, "category") or category
        )
    if len(ck.problems) > before or code is None or covers is None or amount is None or gl is None:
        return None
    return Minimum(
        code=code,
        covers=covers,  # type: ignore[arg-type]
        amount=amount,
        description=description,
        gl_account=gl,
        category=category,
    )


def _covers(
    raw: object, path: str, ck: _Checker, charges: Mapping[object, object]
) -> tuple[str, ...] | str | None:
    if raw == "all":
        return "all"
    if not isinstance(raw, list) or not raw:
        ck.add(path, f'must be "all" or a list of charge codes of this version, got {_show(raw)}')
        return None
    codes: list[str] = []
    ok = True
    for j, code in enumerate(raw):
        if not isinstance(code, str) or code not in charges:
            ck.add(f"{path}[{j}]", f"{_show(code)} is not a charge code of this version")
            ok = False
        elif code in codes:
            ck.add(f"{path}[{j}]", f"{code} is listed twice")
            ok = False
        else:
            codes.append(code)
    return tuple(codes) if ok else None


# --- files ------------------------------------------------------------------------------


def _read(path: Path) -> tuple[RateCard | None, list[str]]:
    ck = _Checker(path.name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        ck.add("", f"cannot read: {exc.strerror or exc}")
        return None, ck.problems
    if len(data) > MAX_BYTES:
        ck.add("", f"too large for a rate card ({len(data)} bytes, at most {MAX_BYTES})")
        return None, ck.problems
    sha = hashlib.sha256(data).hexdigest()
    key = (str(path), sha)
    with _PARSED_LOCK:
        known = _PARSED.get(key)
        if known is not None:
            _PARSED.move_to_end(key)
    if known is not None:
        return known[0], list(known[1])
    card, problems = _parse(path, data, sha, ck)
    with _PARSED_LOCK:
        _PARSED[key] = (card, tuple(problems))
        if len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    return card, problems


def _parse(path: Path, data: bytes, sha: str, ck: _Checker) -> tuple[RateCard | None, list[str]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        ck.add("", f"not UTF-8 text (byte {exc.start})")
        return None, ck.problems
    try:
        loaded = _load_yaml(text, _StrictCLoader)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        loaded = None
    if loaded is None:  # refused (or too big): the pure Python loader says why, in its words
        try:
            loaded = _load_yaml(text, _StrictPyLoader)
        except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
            ck.add("", _yaml_problem(exc))
            return None, ck.problems
        if loaded is None:
            ck.add("", f"more than {MAX_VALUES} values once YAML aliases are expanded")
            return None, ck.problems
    doc, duplicates = loaded
    for key, line in duplicates:
        ck.add("", f"line {line}: duplicate key {key} (each key may appear once in a mapping)")
    card = _card(doc, path, ck, sha)
    return (card if not ck.problems else None), ck.problems


def _load_yaml(text: str, kind: type[_Strict]) -> tuple[object, list[tuple[str, int]]] | None:
    """The document and its duplicate keys; None when aliases expand past ``MAX_VALUES``."""
    loader = None
    try:
        # The constructor already reads the text: a NUL byte raises from it.
        loader = kind(text)
        node = loader.get_single_node()
        if node is not None and _expanded_size(node) > MAX_VALUES:
            return None
        doc = loader.construct_document(node) if node is not None else None
        return doc, loader.duplicates
    finally:
        if loader is not None:
            loader.dispose()


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in the document with aliases expanded, counted over the shared node graph
    (an alias is the same node object), so the bomb is measured without being built."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        total = min(total, MAX_VALUES + 1)
        sizes[id(node)] = total
        return total

    return size(root)


def load_ratecard(path: Path) -> RateCard:
    """Read and check one rate card; raise ``RateCardError`` listing every problem in it."""
    card, problems = _read(Path(path))
    if problems or card is None:
        raise RateCardError(problems or [f"{Path(path).name}: not a rate card"])
    return card


def card_files(directory: Path) -> list[Path]:
    """The rate card files of a directory (not recursive; hidden and editor files skipped)."""
    return sorted(
        p
        for p in Path(directory).iterdir()
        if p.suffix in CARD_SUFFIXES and p.is_file() and not p.name.startswith((".", "#", "~"))
    )


def load_ratecards(directory: Path) -> tuple[dict[str, RateCard], dict[str, RateCardError]]:
    """Every card of a directory: the good ones by client_id, the refused ones by file name.

    A bad card never blocks the others; a card that is a link out of the directory is
    refused. Two files for one client (``acme.yaml`` and
    ``acme.yml``) are both refused: there is no telling which one the analyst meant.
    Raises ``RateCardError`` only when the directory itself is missing.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RateCardError([f"{directory}: rate cards directory not found"])
    good: dict[str, RateCard] = {}
    bad: dict[str, RateCardError] = {}
    by_client: dict[str, list[Path]] = {}
    root = directory.resolve()
    for path in card_files(directory):
        by_client.setdefault(path.stem, []).append(path)
        if not path.resolve().is_relative_to(root):
            # As for landing files and Lua modules: a link may point within the directory
            # (a ConfigMap's ..data/), never out of it, whose text would show in problems.
            bad[path.name] = RateCardError(
                [f"{path.name}: a link to a file outside the rate cards directory; refused"]
            )
            continue
        try:
            good[path.stem] = load_ratecard(path)
        except RateCardError as exc:
            bad[path.name] = exc
    for client_id, paths in by_client.items():
        if len(paths) > 1:
            good.pop(client_id, None)
            for path in paths:
                others = ", ".join(p.name for p in paths if p != path)
                problem = f"{path.name}: client {client_id} is also defined by {others}"
                previous = bad.get(path.name)
                bad[path.name] = RateCardError([*(previous.problems if previous else []), problem])
    return good, bad


def validate_files(paths: Sequence[Path]) -> list[str]:
    """Every problem of every given card, in file order (for ``billing ratecard validate``)."""
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.suffix not in CARD_SUFFIXES:
            problems.append(f"{path.name}: not a rate card file name (expected <client_id>.yaml)")
            continue
        card, found = _read(path)
        problems.extend(found)
        if card is not None:
            other = seen.get(card.client_id)
            if other is not None and other.resolve() != path.resolve():
                problems.append(
                    f"{path.name}: client {card.client_id} is also defined by {other.name}"
                )
            seen.setdefault(card.client_id, path)
    return problems
