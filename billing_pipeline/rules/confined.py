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

from billing_pipeline.rules.instrument import tokens

_OPENERS = {b"do", b"if", b"function", b"repeat"}
_CLOSERS = {b"end", b"until"}
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
def confined_spans(src: bytes) -> frozenset[str]:
    """``"FIRST:LAST"`` line spans (LuaJIT's linedefined:lastlinedefined) of the functions in
    ``src`` that cannot keep their first argument's tables (see the module docstring)."""
    toks = tokens(src)
    kinds = [kind for kind, _, _ in toks]
    text = [src[start:end] for _, start, end in toks]
    newlines = [i for i, byte in enumerate(src) if byte == 0x0A]

    def line(k: int) -> int:
        return bisect.bisect_left(newlines, toks[k][1]) + 1

    closer: dict[int, int] = {}
    opened: list[int] = []
    for k, kind in enumerate(kinds):
        if kind in _OPENERS:
            opened.append(k)
        elif kind in _CLOSERS and opened:
            closer[opened.pop()] = k

    good: set[str] = set()
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
        ok = _is_confined(kinds, text, closer, k, paren, end)
        (good if ok else bad).add(span)
    return frozenset(good - bad)


def _is_confined(
    kinds: list[bytes], text: list[bytes], closer: dict[int, int], k: int, paren: int, end: int
) -> bool:
    if b":" in kinds[k + 1 : paren]:  # function a:m(...): the first argument is self
        return False
    if kinds[paren + 1] != b"<name>":  # no parameter, or only ...
        return False
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

    aliases: list[tuple[bytes, int]] = []
    for j in uses(param):
        if inside_nested(j) or kind_at(j + 1) != b"." or kind_at(j + 2) != b"<name>":
            return False
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
            return False
        aliases.append((text[j - 2], j - 2))
    for name, declared_at in aliases:
        if name == param:
            return False
        for j in uses(name, skip=declared_at):
            if inside_nested(j) or kind_at(j + 1) not in (b".", b"["):
                return False
    return True
