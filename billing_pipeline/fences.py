"""Block fences: the first and last key of each block of rows of a file sorted by that key, so
that a probe for a few keys reads only the blocks that can hold one of them.

Used where a night looks up its new keys in history that only grows: the dedup register's
segments (event ids, ``ingest.register``) and the order index of the month report's order
checks (order ids, ``reconciliation.order_leaks``). Each block is a Parquet row group, so a
block is read as a slice of the file. Keys that grow with time (most WMS number events and
orders in sequence) fall after or between the blocks of the history and read little or
nothing; keys in no order (random UUIDs) hit every block, which is what reading the history
whole costs.
"""

from __future__ import annotations

import polars as pl


def fences_of(keys: pl.Series, every: int) -> dict | None:
    """The fences of sorted ``keys`` in blocks of ``every`` rows: ``{"every", "first",
    "last"}``; none when a key is missing (not expected: the file is then read whole)."""
    if keys.null_count():
        return None
    starts = list(range(0, keys.len(), every))
    ends = [min(start + every, keys.len()) - 1 for start in starts]
    first, last = keys.gather(starts).to_list(), keys.gather(ends).to_list()
    return {"every": every, "first": first, "last": last}


def blocks_holding(fences: dict, rows: int, wanted: pl.Series) -> list[tuple[int, int]]:
    """(first row, rows) of each run of blocks that can hold one of ``wanted`` (sorted) in a
    file of ``rows`` rows with these ``fences``."""
    return blocks_holding_in([(fences, rows)], wanted)[0]


def blocks_holding_in(
    files: list[tuple[dict, int]], wanted: pl.Series
) -> list[list[tuple[int, int]]]:
    """``blocks_holding`` for each of several files ((fences, rows) each), from two searches
    over all their fences (a search is a Polars call, ~0.2 ms however small).

    Block k holds rows [k * every, (k + 1) * every), sorted by key, so its keys lie
    between its first and last (both included); one of ``wanted`` in that range may be in it,
    none in it means none is. Tight ranges matter: the keys of a new night mostly sort just
    after each run of older ones (per warehouse, per kind of id), between two blocks."""
    firsts = [key for fences, _ in files for key in fences["first"]]
    lasts = [key for fences, _ in files for key in fences["last"]]
    low = wanted.search_sorted(pl.Series(firsts, dtype=pl.String), side="left")
    high = wanted.search_sorted(pl.Series(lasts, dtype=pl.String), side="right")
    held = iter((high - low).to_list())
    out = []
    for fences, rows in files:
        every = fences["every"]
        runs: list[tuple[int, int]] = []
        for k in range(len(fences["first"])):
            if not next(held):
                continue
            start = k * every
            length = min(every, rows - start)
            if runs and runs[-1][0] + runs[-1][1] == start:
                runs[-1] = (runs[-1][0], runs[-1][1] + length)
            else:
                runs.append((start, length))
        out.append(runs)
    return out
