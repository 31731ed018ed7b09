"""Code point ranges: the ones Python's ``re`` matches with ``\\d``, ``\\w`` and ``\\s`` in
str patterns, and the complement of a range set.

Terminal regexes are Python regexes (Lark's syntax), and JSON-Schema patterns are translated to
them, so both sides of onrails read these classes as ``re`` does, on the running Python's Unicode
tables. Computed once per process (about 40 ms for all three).
"""

from __future__ import annotations

import array
import functools
import re
import sys

MAX_CODE_POINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)


@functools.cache
def _every_code_point() -> str:
    # Decoded from UTF-32 in C: a tenth of the time of joining a million chr() results.
    units = array.array("I", range(MAX_CODE_POINT + 1))
    assert units.itemsize == 4
    return units.tobytes().decode(f"utf-32-{sys.byteorder[0]}e", "surrogatepass")


@functools.cache
def python_class(escape: str) -> tuple[tuple[int, int], ...]:
    """Sorted disjoint inclusive code point ranges of ``escape`` (``"\\\\d"``, ``"\\\\w"`` or
    ``"\\\\s"``), surrogates counted inside a range that spans them."""
    if escape not in ("\\d", "\\w", "\\s"):
        raise ValueError(f"not a class escape: {escape!r}")
    found: list[tuple[int, int]] = []
    # One scan of every code point in C (a match per code point took 0.2-0.7 s per class).
    for run in re.compile(escape + "+").finditer(_every_code_point()):
        start, end = run.start(), run.end() - 1
        # Surrogates are no characters: a run on either side of them is one range.
        if found and found[-1][1] == SURROGATES[0] - 1 and start == SURROGATES[1] + 1:
            start = found.pop()[0]
        found.append((start, end))
    return tuple(found)


def complement(ranges: "list[tuple[int, int]] | tuple[tuple[int, int], ...]") -> list[tuple[int, int]]:
    """The code points outside sorted, disjoint inclusive ``ranges`` (surrogates included)."""
    out = []
    nxt = 0
    for a, b in ranges:
        if a > nxt:
            out.append((nxt, a - 1))
        nxt = max(nxt, b + 1)
    if nxt <= MAX_CODE_POINT:
        out.append((nxt, MAX_CODE_POINT))
    return out
