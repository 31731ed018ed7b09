"""The shortest bytes that finish a grammar from a matcher's state (for parsable-at-the-limit).

A breadth-first search over the grammar's byte automaton, bounded by a beam: each level keeps at
most ``_BEAM`` new states, taken in an order that tries closing bytes (quotes, brackets) first and
opening ones last, so finishing a JSON document closes what is open instead of nesting deeper.
Results are cached per automaton state; the automaton's rows are memoised by the engine, so a
repeated state costs a dictionary lookup.

It reads the matcher's automaton and state, which the engine keeps private; the search belongs
beside ``Matcher.forced_continuation`` and should move there as a public method.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from onrails.constrain import Matcher

_BEAM = 32
# Children kept per state: the best-ranked few, so one wide state (inside a string, most bytes
# lead somewhere new) cannot fill the beam and starve the paths that close things.
_PER_STATE = 4
_MAX_DEPTH = 1024
# Rows expanded per search: bounds the cost (a row costs microseconds once the automaton knows
# it) when a grammar is far from any end.
_MAX_EXPANDED = 2048


def _byte_rank() -> np.ndarray:
    order = list(b"\"}])'>`")  # close what is open
    order += list(b"0123456789")  # the shortest JSON values and numbers
    order += [b for b in range(0x21, 0x7F) if b not in b"{[(<" and b not in order]
    order += list(b" \t\n\r")
    order += list(b"{[(<")  # opening more structure comes last
    order += [b for b in range(256) if b not in order]
    rank = np.empty(256, dtype=np.int64)
    rank[np.array(order)] = np.arange(256)
    return rank


_RANK = _byte_rank()
_cache: "weakref.WeakKeyDictionary[Any, dict[int, bytes | None]]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def shortest_completion(matcher: Matcher) -> bytes | None:
    """Bytes that take ``matcher`` to an accepting state, shortest found; None if none was found.

    ``b""`` when the matcher already accepts or has terminated. Bounded: at most ``_BEAM``
    states per byte of depth (``_PER_STATE`` from each), ``_MAX_EXPANDED`` states in all.
    """
    if matcher.is_terminated() or matcher.is_accepting():
        return b""
    automaton = matcher._automaton
    state = matcher._state
    with _lock:
        per_state = _cache.setdefault(automaton, {})
        if state in per_state:
            return per_state[state]
    found = _search(automaton, state)
    with _lock:
        per_state[state] = found
    return found


def _search(automaton: Any, start: int) -> bytes | None:
    from onrails.constrain._automaton import DEAD

    frontier: list[tuple[int, bytes]] = [(start, b"")]
    seen = {start}
    expanded = 0
    for _ in range(_MAX_DEPTH):
        level: list[tuple[int, bytes]] = []
        for state, path in frontier:
            expanded += 1
            if expanded > _MAX_EXPANDED:
                return None
            row = automaton.fill_row(state)
            live = np.flatnonzero(row != DEAD)
            kept = 0
            for byte in live[np.argsort(_RANK[live], kind="stable")]:
                nxt = int(row[byte])
                if nxt in seen:
                    continue
                seen.add(nxt)
                extended = path + bytes([int(byte)])
                if automaton.accepting(nxt):
                    return extended
                level.append((nxt, extended))
                kept += 1
                if kept >= _PER_STATE or len(level) >= _BEAM:
                    break
            if len(level) >= _BEAM:
                break
        if not level:
            return None
        frontier = level
    return None
