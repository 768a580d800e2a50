"""Which handlers can be handed the same event tables again: an escape check of rule source.

The event loop (driver.lua) makes two tables per event, ``e`` and its payload, and making and
collecting them is about a tenth of the engine's CPU. For a handler that cannot keep either
table past its call, the loop refills one ``e`` and one payload table per event type instead
(driver.lua's ``RUN_TYPE_SRC`` and the shape decoders). SPEC §5 does not forbid a rule to keep
``e`` (in a table, a closure, a cache keyed on it); such a rule would see the next event's
values in a refilled table, so refilling is done only where the source shows that no
reference to the tables can outlive the call. The check is purely syntactic and errs on the
strict side: anything it is not sure of makes the handler get fresh tables, as before.

A function is *confined* when its first parameter ``P`` (not ``self``, not ``...``) is only
ever indexed by a field name, and the payload only indexed or named by one local:

- every occurrence of ``P`` in the body is ``P.NAME``; nothing else (not ``P[...]``, not
  ``P:m()``, not ``f(P)``, ``x = P``, ``return P``, ``local P``: each of those fails it);
- ``P.payload`` is followed by ``.`` or ``[`` (a field of the payload; the nested tables it
  may give are fresh for every event anyway), or is the whole right-hand side of
  ``local A = P.payload``; then every other occurrence of ``A`` is ``A.`` or ``A[``;
- no occurrence of ``P`` or ``A`` lies inside a function nested in the body (a closure could
  outlive the call and read the table later).

One call is allowed besides: ``F(P, ...)``, ``P`` handed on as the first argument of a local
``F`` of the chunk that is declared once (``local F = ...`` or ``local function F``) and only
ever called after (a wrapper of another rules file's handler, as ``heavy_parcel.lua`` wraps the
default ``order.shipped``). Which function ``F`` holds is known only at run time: the driver
looks it up among the handler's upvalues and requires it to be confined in turn.

What a confined handler can still do to the tables is read fields and write them. A write to a
key the table does not have takes its hidden metatable off (driver.lua's ``materialize``),
which the loop sees: that table is not refilled again. A write to a key it has is
overwritten by the next event's value, as the decoder writes every key of the payload's
shape.

The driver finds a handler by ``jit.util.funcinfo``: its chunk and the lines of its ``(`` and
its ``end`` (what LuaJIT reports as ``linedefined`` and ``lastlinedefined``). Rule code has
no ``load``, so every Lua function comes from a module chunk. Two functions that share both
lines are confined only if both are.
"""

from __future__ import annotations

import bisect
import functools

from billing_pipeline.rules.instrument import block_ends, tokens

# What may follow ``local A = P.payload`` so that the expression ends there: a new statement.
_STATEMENT_START = {
    b"<name>",
    b";",
    b"::",
    b"local",
    b"return",
    b"if",
    b"for",
    b"while",
    b"do",
    b"end",
    b"repeat",
    b"until",
    b"function",
    b"goto",
    b"break",
    b"else",
    b"elseif",
    None,  # the end of the source
}


@functools.lru_cache(maxsize=64)
def confined_spans(src: bytes) -> dict[str, tuple[str, ...]]:
    """``"FIRST:LAST"`` line spans (LuaJIT's linedefined:lastlinedefined) of the functions in
    ``src`` that cannot keep their first argument's tables (see the module docstring), each
    with the locals it hands that argument to, which must be confined too."""
    toks = tokens(src)
    kinds = [kind for kind, _, _ in toks]
    text = [src[start:end] for _, start, end in toks]
    newlines = [i for i, byte in enumerate(src) if byte == 0x0A]

    def line(k: int) -> int:
        return bisect.bisect_left(newlines, toks[k][1]) + 1

    closer = block_ends(kinds)
    fixed = _fixed_locals(kinds, text)
    good: dict[str, set[str]] = {}
    bad: set[str] = set()
    for k, kind in enumerate(kinds):
        if kind != b"function" or k not in closer:
            continue
        paren = k + 1
        while paren < len(toks) and kinds[paren] != b"(":
            paren += 1
        end = closer[k]
        if paren >= end:
            continue
        span = f"{line(paren)}:{line(end)}"
        callees = _is_confined(kinds, text, closer, fixed, k, paren, end)
        if callees is None:
            bad.add(span)
        else:
            good.setdefault(span, set()).update(callees)
    return {
        span: tuple(sorted(callees)) for span, callees in sorted(good.items()) if span not in bad
    }


def _fixed_locals(kinds: list[bytes], text: list[bytes]) -> set[bytes]:
    """Names declared once in the chunk (``local F =`` or ``local function F``) and only called
    after: what they hold never changes once set."""
    declared: dict[bytes, int] = {}
    other: set[bytes] = set()
    for j, kind in enumerate(kinds):
        if kind != b"<name>" or (j and kinds[j - 1] in (b".", b":")):
            continue
        name = text[j]
        after = kinds[j + 1] if j + 1 < len(kinds) else None
        local_value = j > 0 and kinds[j - 1] == b"local" and after == b"="
        local_function = j > 1 and kinds[j - 1] == b"function" and kinds[j - 2] == b"local"
        if local_value or local_function:
            declared[name] = declared.get(name, 0) + 1
        elif after != b"(" or kinds[j - 1] == b"function":  # `function F()` assigns F
            other.add(name)
    return {name for name, count in declared.items() if count == 1 and name not in other}


def _is_confined(
    kinds: list[bytes],
    text: list[bytes],
    closer: dict[int, int],
    fixed: set[bytes],
    k: int,
    paren: int,
    end: int,
) -> set[str] | None:
    """None when the function is not confined; else the fixed locals it hands its first
    argument to."""
    if b":" in kinds[k + 1 : paren]:  # function a:m(...): the first argument is self
        return None
    if kinds[paren + 1] != b"<name>":  # no parameter, or only ...
        return None
    param = text[paren + 1]
    body = paren + 1
    while body < end and kinds[body] != b")":
        body += 1
    nested: list[tuple[int, int]] = [
        (j, closer.get(j, end)) for j in range(body, end) if kinds[j] == b"function"
    ]

    def inside_nested(j: int) -> bool:
        return any(start <= j <= stop for start, stop in nested)

    def kind_at(j: int) -> bytes | None:
        return kinds[j] if j < len(kinds) else None

    def uses(name: bytes, skip: int = -1):
        for j in range(body + 1, end):
            if j != skip and kinds[j] == b"<name>" and text[j] == name:
                if kinds[j - 1] in (b".", b":"):  # a field or method called NAME
                    continue
                yield j

    callees: set[str] = set()
    aliases: list[tuple[bytes, int]] = []
    for j in uses(param):
        if inside_nested(j):
            return None
        handed_on = (
            kinds[j - 1] == b"("
            and kinds[j - 2] == b"<name>"
            and kinds[j - 3] not in (b".", b":", b"function")
            and text[j - 2] in fixed
            and kind_at(j + 1) in (b",", b")")
        )
        if handed_on:
            callees.add(text[j - 2].decode())
            continue
        if kind_at(j + 1) != b"." or kind_at(j + 2) != b"<name>":
            return None
        if text[j + 2] != b"payload" or kind_at(j + 3) in (b".", b"["):
            continue
        declared = (
            j >= 3
            and kinds[j - 1] == b"="
            and kinds[j - 2] == b"<name>"
            and kinds[j - 3] == b"local"
            and kind_at(j + 3) in _STATEMENT_START
        )
        if not declared:
            return None
        aliases.append((text[j - 2], j - 2))
    for name, declared_at in aliases:
        if name == param:
            return None
        for j in uses(name, skip=declared_at):
            if inside_nested(j) or kind_at(j + 1) not in (b".", b"["):
                return None
    return callees
