"""The fast path of line parsing: a typed msgspec decode that accepts only well-typed lines.

Most lines are fine, and a compiled, typed decode of the whole line (envelope and payload,
one struct per catalog event type, chosen by ``event_type`` as a tagged union) costs about a
microsecond, where ``json.loads`` plus per-field checks in Python cost ten. Lines are decoded
in batches (``decode_lines`` over a few dozen lines at a time), which avoids most of the
per-call cost; a batch that fails is split at the failing line. Any line the typed decode
refuses goes to the slow path in ``parsing.py``, which alone decides reasons; so the fast
path can only say "well typed", never "quarantined", and the two cannot disagree on a
reason. Value rules (patterns, ranges, enums) are checked for both by the Pandera schemas.

What the typed decode refuses, beyond wrong JSON types: unknown event types, unknown
payload fields (their canonical text needs the generic decode), an explicit ``null`` for an
optional field, and integers outside 64 bits. All go the slow way.
"""

from __future__ import annotations

import re
from typing import Annotated, Union

import msgspec
from msgspec import UNSET, UnsetType

from billing_pipeline.catalog import CATALOG, Field

_INT64 = msgspec.Meta(ge=-(2**63), le=2**63 - 1)


class Material(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    code: str
    qty: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


def _annotation(spec: Field) -> object:
    base: object = {
        "str": str,
        "enum": str,
        "int": Annotated[int, _INT64],
        "dec": Union[str, Annotated[int, _INT64], float],  # noqa: UP007 - a runtime union
        "materials": list[Material],
    }[spec.kind]
    return base if spec.required else Union[base, UnsetType]  # noqa: UP007


def _struct_name(event_type: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", event_type))


def _payload_struct(event_type: str, specs: tuple[Field, ...]) -> type[msgspec.Struct]:
    fields = [
        (spec.name, _annotation(spec)) if spec.required else (spec.name, _annotation(spec), UNSET)
        for spec in specs
    ]
    return msgspec.defstruct(
        _struct_name(event_type) + "Payload",
        fields,
        kw_only=True,
        gc=False,
        forbid_unknown_fields=True,
    )


def _event_struct(event_type: str, payload: type[msgspec.Struct]) -> type[msgspec.Struct]:
    return msgspec.defstruct(
        _struct_name(event_type) + "Event",
        [
            ("event_id", str),
            ("occurred_at", str),
            ("client_id", str),
            ("warehouse_id", str),
            ("payload", payload),
            ("schema_version", Annotated[int, _INT64], 1),
        ],
        kw_only=True,
        gc=False,
        tag_field="event_type",
        tag=event_type,
    )


PAYLOAD_STRUCTS = {et: _payload_struct(et, specs) for et, specs in CATALOG.items()}
EVENT_STRUCTS = {et: _event_struct(et, PAYLOAD_STRUCTS[et]) for et in CATALOG}
EVENT_TYPE_OF = {struct: et for et, struct in EVENT_STRUCTS.items()}
_EVENT_DECODER = msgspec.json.Decoder(Union[tuple(EVENT_STRUCTS.values())])  # noqa: UP007
_ANY = msgspec.json.Decoder()
_CANONICAL = msgspec.json.Encoder(order="sorted")  # sorts dict keys and struct fields alike
_BATCH = 48  # lines per decode_lines call: big enough to amortize, small enough to retry
_AT_INDEX = re.compile(r"at `\$\[(\d+)\]")
_AT_BYTE = re.compile(r"\(byte (\d+)\)")


def canonical_payload(raw: bytes | str | msgspec.Raw) -> str:
    """Sorted keys, no spaces, numbers in shortest form: equal payloads give equal text."""
    return _CANONICAL.encode(_ANY.decode(raw)).decode()


def canonical_payloads(payloads: list[msgspec.Struct]) -> list[str]:
    """The canonical text of decoded payload structs, in one encoder call.

    Struct fields are encoded in sorted order, absent optional fields (UNSET) are left out
    and numbers are written as the generic decode + encode of ``canonical_payload`` writes
    them, so a payload gives the same text by either route.
    """
    if not payloads:
        return []
    return _CANONICAL.encode_lines(payloads).decode().split("\n")[:-1]


def decode_many(texts: list[str]) -> list[msgspec.Struct | None]:
    """The typed event of each line, or None where the slow path must look at the line.

    Every text must be one whole line that starts with ``{`` and ends with ``}``: then no
    JSON value can span two lines of a batch, and a batch that decodes to as many values
    as it has lines decodes line by line.
    """
    out: list[msgspec.Struct | None] = [None] * len(texts)
    for start in range(0, len(texts), _BATCH):
        _decode_batch(texts, start, min(start + _BATCH, len(texts)), out)
    return out


def _decode_batch(texts: list[str], start: int, end: int, out: list) -> None:
    while start < end:
        part = texts[start:end]
        try:
            events = _EVENT_DECODER.decode_lines("\n".join(part))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            bad = _failing_line(exc, part)
            if bad is None or not _decode_prefix(texts, start, start + bad, out):
                _decode_each(texts, start, end, out)
                return
            start += bad + 1  # the failing line stays None: the slow path decides
            continue
        if len(events) != len(part):
            _decode_each(texts, start, end, out)
            return
        out[start:end] = events
        return


def _decode_prefix(texts: list[str], start: int, end: int, out: list) -> bool:
    if start == end:
        return True
    try:
        events = _EVENT_DECODER.decode_lines("\n".join(texts[start:end]))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    if len(events) != end - start:
        return False
    out[start:end] = events
    return True


def _decode_each(texts: list[str], start: int, end: int, out: list) -> None:
    decode = _EVENT_DECODER.decode
    for i in range(start, end):
        try:
            out[i] = decode(texts[i])
        except (msgspec.DecodeError, msgspec.ValidationError):
            out[i] = None


def _failing_line(exc: Exception, part: list[str]) -> int | None:
    """Which line of a batch an error points at (by value index or byte offset), if known."""
    message = str(exc)
    found = _AT_INDEX.search(message)
    if found:
        index = int(found.group(1))
        return index if index < len(part) else None
    found = _AT_BYTE.search(message)
    if not found:
        return None
    offset = int(found.group(1))
    position = 0
    for i, text in enumerate(part):
        position += len(text.encode()) + 1
        if offset < position:
            return i
    return None


def decode(text: str) -> tuple[msgspec.Struct, str] | None:
    """One line's typed event and canonical payload, or None (take the slow path)."""
    events = decode_many([text]) if text[:1] == "{" and text[-1:] == "}" else [None]
    if events[0] is None:
        return None
    return events[0], canonical_payloads([events[0].payload])[0]
