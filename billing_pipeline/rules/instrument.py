"""Budget instrumentation of rule source: what lets rule code run JIT-compiled and stay stoppable.

LuaJIT's count hook never fires inside compiled traces, so the engine does not use it.
Instead, before rule source is handed to ``load``, a tokenizer finds every place where
execution can repeat and inserts a call of the engine's budget counter there:

- after every ``do`` (the body of ``while``/numeric ``for``/generic ``for``, and plain
  ``do ... end`` blocks, which costs nothing worth measuring) and every ``repeat``;
- at the start of every function body (after the parameter list's ``)``): recursion,
  mutual recursion, metamethods and callbacks from C (``table.sort``, ``string.gsub``);
- before every ``goto`` (a backward ``goto`` is a loop). Not after labels: a label at the end
  of a block must stay there (``goto continue`` may not jump into a local's scope otherwise).

Each call is ``__tick(W);`` where W, a positive integer constant, is half the number of
tokens of the block the site belongs to (rounded up): the rewriter's estimate of the VM
instructions one pass through it costs. A statement compiles to about one instruction per
two tokens, and the whole block is charged even when a branch of it is skipped, so the
estimate errs on the strict side. The counter is per handler call; when it goes below zero
the handler fails with "instruction budget exceeded", and any ``pcall`` of rule code
re-raises from then on.
Straight-line code between sites is bounded by the source's length. What no site can see,
a single C call running for ever (a pattern that backtracks), is stopped by the wall clock.

Everything inserted goes on the line where the site is, so line numbers in error messages
are the source's own. Tokens are Lua's: short strings with escapes, long strings and long
comments of any level, numbers with LuaJIT's suffixes; text inside strings and comments is
never touched. The name ``__tick`` is reserved: rule source that mentions it is refused,
so a rule cannot shadow the counter. (Rule code can still reach the counter as a global
of the sandbox; calling it can only spend its own budget: the counter takes no negative
or NaN weight.)
"""

from __future__ import annotations

import re

TICK = "__tick"
# the chunk's own local copy of the counter: one global lookup at load, upvalue afterwards
PREFIX = f"local {TICK} = {TICK}; "


class InstrumentError(Exception):
    """Source the rewriter refuses (it mentions the reserved name)."""


_NAME = re.compile(rb"[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*")
_SPACE = re.compile(rb"[ \t\r\n\f\v]+")
_LONG_OPEN = re.compile(rb"\[(=*)\[")
_NUMBER_START = re.compile(rb"[0-9]|\.[0-9]")
_PUNCT3 = (b"...",)
_PUNCT2 = (b"..", b"==", b"~=", b"<=", b">=", b"::", b"<<", b">>", b"//")

_OPENERS = {b"do", b"if", b"function", b"repeat"}
_CLOSERS = {b"end", b"until"}


def _long_bracket_end(src: bytes, start: int, level: bytes) -> int:
    """End offset (exclusive) of a long bracket whose body starts at ``start``; EOF if open."""
    close = b"]" + level + b"]"
    found = src.find(close, start)
    return len(src) if found < 0 else found + len(close)


def _short_string_end(src: bytes, start: int, quote: int) -> int:
    """End offset (exclusive) of a short string whose body starts at ``start``."""
    i, n = start, len(src)
    while i < n:
        c = src[i]
        if c == quote:
            return i + 1
        if c == 0x5C:  # backslash: skip the escaped byte (\\\n, \z, \x.. all start so)
            i += 2
            continue
        if c in (0x0A, 0x0D):  # unfinished string: Lua refuses it; stop at the line end
            return i
        i += 1
    return n


def _number_end(src: bytes, start: int) -> int:
    """As LuaJIT's lexer reads a number: alphanumerics, '.', '_' and a sign after e/E/p/P."""
    i, n = start, len(src)
    while i < n:
        c = src[i : i + 1]
        sign = c in (b"+", b"-") and src[i - 1 : i] in (b"e", b"E", b"p", b"P")
        if c.isalnum() or c in (b".", b"_") or sign:
            i += 1
        else:
            break
    return i


def tokens(src: bytes) -> list[tuple[bytes, int, int]]:
    """(kind or text, start, end) of every token; kind is b"<name>", b"<string>",
    b"<number>" for those, the keyword or punctuation text otherwise. Comments and
    whitespace are skipped."""
    out: list[tuple[bytes, int, int]] = []
    i, n = 0, len(src)
    while i < n:
        m = _SPACE.match(src, i)
        if m:
            i = m.end()
            continue
        c = src[i]
        if src.startswith(b"--", i):
            m = _LONG_OPEN.match(src, i + 2)
            if m:
                i = _long_bracket_end(src, m.end(), m.group(1))
            else:
                nl = src.find(b"\n", i)
                i = n if nl < 0 else nl
            continue
        if c == 0x5B:  # '['
            m = _LONG_OPEN.match(src, i)
            if m:
                end = _long_bracket_end(src, m.end(), m.group(1))
                out.append((b"<string>", i, end))
                i = end
                continue
        if c in (0x22, 0x27):
            end = _short_string_end(src, i + 1, c)
            out.append((b"<string>", i, end))
            i = max(end, i + 1)
            continue
        if _NUMBER_START.match(src, i):
            end = _number_end(src, i)
            out.append((b"<number>", i, end))
            i = end
            continue
        m = _NAME.match(src, i)
        if m:
            word = m.group(0)
            out.append((word if word in _KEYWORDS else b"<name>", i, m.end()))
            if word == TICK.encode():
                line = src.count(b"\n", 0, i) + 1
                raise InstrumentError(f"{line}: the name {TICK} is reserved for the engine")
            i = m.end()
            continue
        for p in (*_PUNCT3, *_PUNCT2):
            if src.startswith(p, i):
                out.append((p, i, i + len(p)))
                i += len(p)
                break
        else:
            out.append((src[i : i + 1], i, i + 1))
            i += 1
    return out


_KEYWORDS = {
    b"and",
    b"break",
    b"do",
    b"else",
    b"elseif",
    b"end",
    b"false",
    b"for",
    b"function",
    b"goto",
    b"if",
    b"in",
    b"local",
    b"nil",
    b"not",
    b"or",
    b"repeat",
    b"return",
    b"then",
    b"true",
    b"until",
    b"while",
}


def block_ends(kinds: list[bytes]) -> dict[int, int]:
    """Token index of each block opener (do/if/function/repeat) -> its closer's (end/until).
    ``while``/``for`` open through their ``do``; ``then``/``else``/``elseif`` stay inside
    the ``if`` block. An opener left open has no entry."""
    opened: list[int] = []
    block_of: dict[int, int] = {}
    for k, kind in enumerate(kinds):
        if kind in _OPENERS:
            opened.append(k)
        elif kind in _CLOSERS and opened:
            block_of[opened.pop()] = k
    return block_of


def instrument(src: bytes) -> bytes:
    """The source with budget ticks inserted; same lines, same line numbers.

    Raises InstrumentError for source that mentions the reserved name. Source that is not
    valid Lua comes out not valid either (``load`` then reports Lua's own syntax error).
    """
    toks = tokens(src)
    block_of = block_ends([kind for kind, _, _ in toks])
    sites: list[tuple[int, int]] = []  # (byte offset, weight)
    enclosing: list[int] = []  # openers around the current token, for goto weights
    last = len(toks)
    for k, (kind, start, end) in enumerate(toks):
        if kind in _OPENERS:
            enclosing.append(k)
        elif kind in _CLOSERS and enclosing:
            enclosing.pop()
        if kind in (b"do", b"repeat"):
            sites.append((end, max(1, block_of.get(k, last) - k)))
        elif kind == b"function":
            # the body starts after the parameter list's ')': names, ',' and '...' only
            j = k + 1
            while j < len(toks) and toks[j][0] != b")":
                j += 1
            if j < len(toks):
                sites.append((toks[j][2], max(1, block_of.get(k, last) - j)))
        elif kind == b"goto":
            outer = enclosing[-1] if enclosing else -1
            weight = block_of.get(outer, last) - outer if outer >= 0 else last
            sites.append((start, max(1, weight)))
    out, pos = [PREFIX.encode()], 0
    for offset, weight in sorted(sites):
        out.append(src[pos:offset])
        out.append(b" %s(%d); " % (TICK.encode(), (weight + 1) // 2))
        pos = offset
    out.append(src[pos:])
    return b"".join(out)
