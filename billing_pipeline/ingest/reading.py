"""Reading landing files into numbered lines, with damage reported per line, never raised.

A landing file can be damaged in ways that must not stop the others (issue: bad input): a
truncated gzip, bytes that are not UTF-8, a line of megabytes. Each such problem becomes a
*file-level* reason on the affected line(s), so the lines that are fine still get in and
conservation (lines read = valid + duplicates + quarantined) still holds.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

LANDING_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
MAX_LINE_BYTES = 1024 * 1024  # longer lines are quarantined whole, not parsed
_CHUNK = 8 * 1024 * 1024
_GZ_INPUT = 256 * 1024  # compressed bytes per step: what a corrupt spot can cost at most


class Line(NamedTuple):
    number: int  # 1-based physical line number
    text: str  # decoded text (invalid UTF-8 bytes shown as \\xNN escapes, so nothing is lost)
    problem: str | None = None  # a file-level reason code, or None when the line is readable
    detail: str = ""


def list_landing_files(landing_dir: Path) -> list[Path]:
    """Landing files at any depth, in path order (the order duplicates are resolved in).

    Symlinks are not followed out of the landing directory: a link pointing elsewhere is
    ignored, because a landing path must name data that was delivered here; a linked
    directory is not entered.
    """
    return [path for _, path in landing_entries(landing_dir)]


def landing_entries(landing_dir: Path) -> list[tuple[str, Path]]:
    """``list_landing_files`` with each file's path relative to ``landing_dir`` (the
    ``source_file`` of its lines). One ``scandir`` per folder, and a symlink resolved only
    where there is one: the folder keeps every file ever delivered, and it is listed on
    every landing run and sensor tick (``Path.rglob``, resolving every path, took ~90 µs
    a file)."""
    if not landing_dir.is_dir():
        return []
    root = landing_dir.resolve()
    found: list[tuple[str, Path]] = []
    folders = [(os.fspath(landing_dir), "")]
    while folders:
        folder, prefix = folders.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append((entry.path, f"{prefix}{entry.name}/"))
                elif entry.name.endswith(LANDING_SUFFIXES) and entry.is_file():
                    path = Path(entry.path)
                    if entry.is_symlink() and not path.resolve().is_relative_to(root):
                        continue
                    found.append((f"{prefix}{entry.name}", path))
    found.sort(key=lambda item: item[0])
    return found


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _gunzip(path: Path) -> Iterator[bytes]:
    """Decompress incrementally so that everything before a damaged spot is still yielded
    (``gzip.open().read`` would drop its whole buffer on the error). Handles multi-member
    files; a stream cut short raises EOFError, a corrupt one zlib.error."""
    inflater = zlib.decompressobj(wbits=31)
    fed = False  # has the current member received any bytes?
    with path.open("rb") as handle:
        while block := handle.read(_GZ_INPUT):
            while block:
                fed = True
                yield inflater.decompress(block)
                block = b""
                if inflater.eof:
                    block = inflater.unused_data
                    inflater, fed = zlib.decompressobj(wbits=31), False
    if fed and not inflater.eof:
        yield inflater.flush()
        raise EOFError("compressed file ended before the end-of-stream marker")


def _raw_chunks(path: Path) -> Iterator[bytes]:
    """The file's bytes, decompressed if gzipped; a damaged gzip raises EOFError/zlib.error."""
    if path.name.endswith(".gz"):
        yield from _gunzip(path)
    else:
        with path.open("rb") as handle:
            while block := handle.read(_CHUNK):
                yield block


def _decode(raw: bytes) -> tuple[str, str | None, str]:
    try:
        return raw.decode("utf-8"), None, ""
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", errors="backslashreplace")
        return text, "invalid_encoding", f"not UTF-8 at byte {exc.start} of the line"


def _line(number: int, raw: bytes) -> Line:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if len(raw) > MAX_LINE_BYTES:
        text, _, _ = _decode(raw)
        detail = f"line of {len(raw)} bytes exceeds the {MAX_LINE_BYTES}-byte limit"
        return Line(number, text, "line_too_long", detail)
    text, problem, detail = _decode(raw)
    return Line(number, text, problem, detail)


class Block(NamedTuple):
    """Consecutive readable lines: ``texts[i]`` is physical line ``first + i``."""

    first: int
    texts: list[str]


def read_lines(path: Path) -> Iterator[Block | Line]:
    """Every physical line of a landing file, blank ones included, as blocks and problem lines.

    Blocks keep per-line Python work to the lines that need it: a chunk that decodes as UTF-8
    whole is split in one call. A gzip stream that ends early or is corrupt yields the
    complete lines before the damage, then one ``Line`` with reason ``unreadable_file``
    holding whatever partial text was left.
    """
    number = 0
    pending = b""
    try:
        for chunk in _raw_chunks(path):
            pending += chunk
            cut = pending.rfind(b"\n")
            if cut < 0:
                continue
            complete, pending = pending[:cut], pending[cut + 1 :]
            count = complete.count(b"\n") + 1
            yield from _split(complete, number + 1)
            number += count
    except (EOFError, OSError, zlib.error) as exc:
        text, _, _ = _decode(pending)
        detail = f"file damaged after line {number}: {exc}"
        yield Line(number + 1, text, "unreadable_file", detail)
        return
    if pending:
        yield _line(number + 1, pending)


def _split(chunk: bytes, first: int) -> Iterator[Block | Line]:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        texts = text.split("\n")
        # A character is at most 4 bytes: below a quarter of the limit no line can exceed it.
        if max(map(len, texts)) <= MAX_LINE_BYTES // 4:
            if "\r" in text:
                texts = [t[:-1] if t.endswith("\r") else t for t in texts]
            yield Block(first, texts)
            return
    # Rare: bad bytes or an over-long line somewhere in the chunk; go line by line.
    texts: list[str] = []
    start = first
    for i, raw in enumerate(chunk.split(b"\n")):
        line = _line(first + i, raw)
        if line.problem is None:
            texts.append(line.text)
            continue
        if texts:
            yield Block(start, texts)
        yield line
        texts, start = [], first + i + 1
    if texts:
        yield Block(start, texts)
