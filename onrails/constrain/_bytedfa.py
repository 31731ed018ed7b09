"""Terminal regexes become deterministic automata over UTF-8 bytes.

interegular builds finite automata over *characters*, with an alphabet of character classes plus
"anything else". Tokens end in the middle of characters, so the engine needs bytes: every
character class is expanded into its UTF-8 byte-range sequences (surrogates excluded), the result
is determinised by subset construction, states that cannot reach acceptance are dropped, and
equivalent states are merged (``_minimal``).
"""

from __future__ import annotations

import _sre
import functools
import hashlib
import itertools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Callable

import interegular
import interegular.fsm
import numpy as np
from interegular.fsm import FSM, OblivionError, anything_else

try:  # Python 3.11+
    from re import _casefix  # type: ignore[attr-defined]
    from re import _constants as _sre_constants  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]

    _EXTRA_CASES: dict[int, tuple[int, ...]] = _casefix._EXTRA_CASES
except ImportError:  # Python 3.10: the same modules under their old names, no extra case table
    import sre_constants as _sre_constants
    import sre_parse as _sre_parse

    _EXTRA_CASES = {}

from onrails.constrain._byte_nfa import byte_automaton, utf8_sequences
from onrails.constrain._native import kernel as _kernel
from onrails.errors import CompileBudgetError, GrammarError
from onrails.grammars.regex_notes import split_except, split_operation
from onrails.grammars.unicode_classes import complement


_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)
_LENGTH_LIMITS = (0x7F, 0x7FF, 0xFFFF, _MAX_CODE_POINT)

DEAD = -1
# Deeper automata key their states by identity (ByteDFA.signature); keys never repeat in a process.
_SIGNATURE_LEVELS = 32
_SERIALS = itertools.count()
_LOOKAROUND = re.compile(r"(?<!\\)\(\?<?[=!]")
# Lark's common.ESCAPED_STRING (through _STRING_ESC_INNER) says "the closing quote is not
# escaped" with a lookbehind: the content must not end in an odd run of backslashes. The same
# language without lookaround: empty, or ending in a character other than a backslash or a line
# break, then pairs of backslashes. Matched only where ``.`` is not itself escaped.
_LARK_ESCAPED_INNER = re.compile(r"(?<!\\)\.\*\?\(\?<!\\\\\)\(\\\\\\\\\)\*\?")
_ESCAPED_INNER_PLAIN = r"(?:.*[^\\\n])?(?:\\\\)*"


class EmptyLanguage(GrammarError):
    """A terminal regex matches nothing (for an intersection or a difference, only its
    automaton tells)."""


@dataclass(frozen=True)
class Shadow:
    """How a DFA minus some words relates to the DFA it was cut from."""

    base: "ByteDFA"
    base_state: np.ndarray  # int32 [n_states]: the base state each state shadows
    in_words: np.ndarray  # bool [n_states]: some word can still be completed from here


@dataclass(frozen=True)
class Counted:
    """A counted string ``"(?:X){lo,hi}"`` as the uncounted ``"(?:X)*"`` with a unit counter beside
    its state, instead of a state per length: state ``k * base.n_states + b`` is the uncounted
    state ``b`` with ``k`` units started (at most ``hi``; for an unbounded string at most ``lo``,
    past which counts read alike), so ``maxLength`` 10,000 costs what 10 does.

    A unit starts on leaving ``inside`` (the state after the opening quote) by any byte but the
    closing quote, which needs ``lo`` units. Exact when the units are a prefix code none of whose
    words starts with a quote (``_counted`` checks it): the minimal uncounted automaton is then
    at ``inside`` exactly where a unit ends, so units started are units written."""

    base: "ByteDFA"
    lo: int
    hi: int | None
    inside: int
    # Per base (state, byte): 1 where a unit starts.
    starts: np.ndarray  # int8 [base n_states, 256]
    final: np.ndarray  # bool [base n_states]: past the closing quote, where counts no longer matter

    @property
    def levels(self) -> int:
        return (self.hi if self.hi is not None else self.lo) + 1

    def split(self, state: int) -> tuple[int, int]:
        """(uncounted state, units started) of a state."""
        units, base_state = divmod(state, self.base.n_states)
        return base_state, units

    def remaining(self, state: int) -> int:
        """Units that may still start (-1: no limit)."""
        return -1 if self.hi is None else self.hi - self.split(state)[1]

    def needed(self, state: int) -> int:
        """Units that must still start before the closing quote."""
        return max(self.lo - self.split(state)[1], 0)

    def row(self, state: int) -> np.ndarray:
        """The next state per byte (int32, ``DEAD`` where the string cannot go on)."""
        base_state, units = self.split(state)
        return self._rows(np.array([base_state]), np.array([units]), self.hi, self.lo, self.levels)[0]

    def step(self, state: int, byte: int) -> int:
        """``row(state)[byte]`` without the row (advancing takes one byte at a time)."""
        base_state, units = self.split(state)
        nxt = int(self.base.table[base_state, byte])
        if nxt < 0:
            return DEAD
        units += int(self.starts[base_state, byte])
        if self.hi is not None and units > self.hi:
            return DEAD
        if base_state == self.inside and byte == ord('"') and units < self.lo:
            return DEAD
        if self.final[nxt]:
            return nxt
        return min(units, self.levels - 1) * self.base.n_states + nxt

    def _rows(self, base_states: np.ndarray, units: np.ndarray, top: int | None, need: int, levels: int) -> np.ndarray:
        """Rows of (base state, units) pairs where a unit may not start past ``top`` units and
        the closing quote needs ``need``; counts at or past ``levels - 1`` stay there."""
        base = self.base
        n = base.n_states
        nxt = base.table[base_states]
        counts = units[:, None] + self.starts[base_states]
        alive = nxt >= 0
        if top is not None:
            alive &= counts <= top
        closing = (base_states == self.inside)[:, None] & (np.arange(256) == ord('"'))[None, :]
        alive &= ~(closing & (counts < need))
        counts = np.minimum(counts, levels - 1)
        counts[self.final[np.maximum(nxt, 0)]] = 0
        # Bounds past 2^31 / n states (``maxLength: 2147483647`` is common) need int64 states.
        dtype = np.int32 if self.levels * n < 1 << 31 else np.int64
        return np.where(alive, counts * n + nxt, DEAD).astype(dtype)

    def window_of(self, state: int, reach: int) -> tuple[tuple[str, int, int, int], int]:
        """Where ``state`` reads for up to ``reach`` bytes (a token): the key of a plain automaton
        reading as this one there (``window``), and the state it starts at in it.

        A window has a level per unit a token can start and counts from where it starts: a state
        with ``top`` units left starts ``top`` levels below the last, so "no unit past the bound"
        is "none past the last level" for every bound. What the closing quote needs is then a
        level to reach, which is all that tells windows apart (none when nothing is needed). So
        strings of any bounds with the same units share a window or two, where a window per
        bound, built afresh at each of a string's last ``reach`` units, cost masks 20-50 ms."""
        base_state, units = self.split(state)
        top = reach if self.hi is None else min(self.hi - units, reach)
        need = min(max(self.lo - units, 0), top + 1)
        levels = reach + 1
        start = levels - 1 - top
        key = ("window", self.base._serial, levels, start + need if need else 0)
        return key, start * self.base.n_states + base_state

    def window(self, key: tuple[str, int, int, int]) -> "ByteDFA":
        """The window of a ``window_of`` key: ``levels`` unit counts of the uncounted automaton,
        a unit never started past the last, the closing quote read from level ``close_from``.
        Its flat table is written here, without the temporaries ``flat_table`` makes (each
        megabyte a window allocates costs a few milliseconds of page faults)."""
        _, serial, levels, close_from = key
        assert serial == self.base._serial, "a window key of another string"
        base = self.base
        n = base.n_states
        nxt = base.table
        states = levels * n
        by_level = np.empty((levels, n, 256), dtype=np.int32)
        np.add(np.arange(levels, dtype=np.int32)[:, None, None] * n, self.starts.astype(np.int32) * n + nxt, out=by_level)
        closed = (nxt >= 0) & self.final[np.maximum(nxt, 0)]
        by_level[:, closed] = nxt[closed]  # past the closing quote counts no longer matter
        by_level[:, nxt < 0] = DEAD
        by_level[:close_from, self.inside, ord('"')] = DEAD
        by_level[levels - 1, self.starts > 0] = DEAD
        table = by_level.reshape(states, 256)
        window = ByteDFA(table, np.tile(base.accepting, levels))
        flat = np.empty((states + 1) * 256, dtype=np.int32)
        rows = flat[: states * 256].reshape(states, 256)
        np.multiply(table, 256, out=rows)
        rows[table < 0] = states * 256
        flat[states * 256 :] = states * 256
        window._flat.append(flat)
        return window


@dataclass(frozen=True)
class ByteDFA:
    """A trimmed byte automaton: ``table[state, byte]`` is the next state or ``DEAD``.

    State 0 is initial. Every state can reach an accepting state.
    """

    table: np.ndarray  # int32 [n_states, 256]
    accepting: np.ndarray  # bool [n_states]
    literal: bytes | None = None  # set when the terminal is one fixed string (state i = i bytes read)
    # Set for a DFA minus a few words (``except_words``): the DFA it was cut from and, per state,
    # the state it shadows there and whether a word can still be completed (where it cannot,
    # both read alike from there on).
    shadow: "Shadow | None" = field(default=None, compare=False, repr=False)
    # Set for ``"(?:X){lo,hi}"`` (see ``Counted``): then ``table`` and ``accepting`` are the
    # uncounted string's, and states are read through ``step``, ``row`` and ``accepts``.
    counter: "Counted | None" = field(default=None, compare=False, repr=False)
    _signatures: dict[int, Hashable] = field(default_factory=dict, compare=False, repr=False)
    _successors: dict[int, tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)
    _serial: int = field(default_factory=lambda: next(_SERIALS), compare=False, repr=False)
    _flat: list[np.ndarray] = field(default_factory=list, compare=False, repr=False)
    _classes: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, compare=False, repr=False)
    # A state whose pure part took a pass over most of the trie: others are read beside it
    # (``CompiledGrammar._near_pass``).
    dense_state: list[int] = field(default_factory=list, compare=False, repr=False)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # A copy from another process (a compile worker) must not keep that process's serial,
        # which keys shared work here, nor caches derived there.
        return (_restored, (self.table, self.accepting, self.literal, self.shadow, self.counter))

    def flat_table(self) -> np.ndarray:
        """``table`` flattened for ``TokenTrie.level_pass``: entry ``state * 256 + byte`` is the
        next state times 256 (int32), with one extra all-dead state ``n_states`` that DEAD maps
        to, so whole trie levels step without masking or multiplying."""
        assert self.counter is None, "a counted string has no table of its own (Counted.window)"
        if not self._flat:
            # Into one array, without temporaries: every new key of a schema is a new literal
            # DFA, and the walks of its first mask ask for its table.
            n = self.n_states
            flat = np.empty((n + 1) * 256, dtype=np.int32)
            rows = flat[: n * 256].reshape(n, 256)
            np.left_shift(self.table, 8, out=rows, casting="unsafe")
            rows[self.table < 0] = n * 256
            flat[n * 256 :] = n * 256
            self._flat.append(flat)
        return self._flat[0]

    def signature(self, state: int) -> Hashable:
        """A key for what the automaton reads from ``state`` on: equal keys mean equal languages.

        Literals are keyed by the bytes left to read and shallow automata by a digest of their
        breadth-first renumbering (``digest``), so work keyed by it is shared between terminals;
        a key string minus some names is, once no name can be completed, keyed as any key
        string (and by identity before: what it reads then depends on the names). States of deep
        automata (repetitions counted in hundreds of levels) get a key of their own instead:
        digesting them would cost more than the work it could share. (Counted strings are keyed
        apart, see ``CompiledGrammar._counted_pure``.)
        """
        assert self.counter is None, "counted strings are keyed by the uncounted automaton's signatures"
        cached = self._signatures.get(state)
        if cached is None:
            if self.literal is not None:
                cached = ("literal", self.literal[state:])
            elif self.shadow is not None:
                # No word can be completed any more: it reads like the state it shadows. Until
                # then, what it reads depends on the words: no other automaton reads alike.
                if self.shadow.in_words[state]:
                    cached = ("own", self._serial, state)
                else:
                    cached = self.shadow.base.signature(int(self.shadow.base_state[state]))
            elif self.forced(state)[0]:
                # An enum's number before its optional fraction, a pattern's fixed start: such
                # automata differ in those bytes, so a digest would share nothing and cost more
                # than the state's pure part (``CompiledGrammar._forced_pure``).
                cached = ("forced", self._serial, state)
            else:
                digest = self.digest(state, _SIGNATURE_LEVELS)
                cached = ("digest", digest) if digest is not None else ("own", self._serial, state)
            self._signatures[state] = cached
        return cached

    def forced(self, state: int) -> tuple[bytes, int]:
        """The bytes every lexeme goes on with from ``state`` (while states are not accepting and
        have one byte out), and the state after them."""
        out = bytearray()
        # A trimmed automaton has no cycle of such states; the bound is for safety only.
        while len(out) < _SIGNATURE_LEVELS and not self.accepting[state]:
            live = np.flatnonzero(self.table[state] >= 0)
            if live.size != 1:
                break
            out.append(int(live[0]))
            state = int(self.table[state, live[0]])
        return bytes(out), state

    def digest(self, state: int, max_levels: int | None = None) -> bytes | None:
        """A digest of the automaton as seen from ``state``, equal for states of any DFAs that
        read the same way from there up to renumbering; None past ``max_levels`` levels."""
        # States numbered breadth-first, each state's successors in the order of the first
        # byte leading to them. Successor lists are kept: the states of one automaton are
        # digested one after another as a walk meets them, and their searches overlap.
        successors = self._successors
        order = [state]
        depth = {state: 0}
        for current in order:
            nxt = successors.get(current)
            if nxt is None:
                nxt = successors[current] = tuple(t for t in dict.fromkeys(self.table[current].tolist()) if t >= 0)
            level = depth[current] + 1
            for target in nxt:
                if target not in depth:
                    if max_levels is not None and level >= max_levels:
                        return None
                    depth[target] = level
                    order.append(target)
        # Rows are hashed one column per class of bytes the visited states all treat alike (a
        # string's automaton has a few dozen): a tenth of the full rows to gather and hash. The
        # classes are those of the visited states only, numbered by first byte, and hashed too,
        # so equal digests mean equal full rows, whatever the rest of either automaton reads.
        byte_class, representatives = self.byte_classes()
        queue = np.array(order, dtype=np.int64)
        rows = self.table[queue[:, None], representatives]
        first, merged = equal_columns(rows)
        remap = np.full(self.n_states + 1, -1, dtype=np.int32)  # index -1 (DEAD) stays -1
        remap[queue] = np.arange(len(queue), dtype=np.int32)
        digest = hashlib.blake2b(merged[byte_class].astype(np.int16).tobytes(), digest_size=16)
        digest.update(remap[rows[:, first]].tobytes())
        digest.update(self.accepting[queue].tobytes())
        return digest.digest()

    def byte_classes(self) -> tuple[np.ndarray, np.ndarray]:
        """Bytes every state treats alike, as ``(class of each byte, first byte of each class)``;
        classes are numbered in the order of their first byte."""
        if not self._classes:
            first, inverse = equal_columns(self.table)
            self._classes.append((inverse.astype(np.int16), first))
        return self._classes[0]

    @property
    def n_states(self) -> int:
        if self.counter is not None:
            return self.counter.levels * int(self.table.shape[0])
        return int(self.table.shape[0])

    def step(self, state: int, byte: int) -> int:
        """The state after ``byte`` (``DEAD`` if none)."""
        if self.counter is not None:
            return self.counter.step(state, byte)
        return int(self.table[state, byte])

    def row(self, state: int) -> np.ndarray:
        """The next state per byte (int32)."""
        if self.counter is not None:
            return self.counter.row(state)
        return self.table[state]

    def accepts(self, state: int) -> bool:
        if self.counter is not None:
            state = self.counter.split(state)[0]
        return bool(self.accepting[state])

    def matches(self, data: bytes) -> bool:
        """Whether ``data`` is a complete lexeme (for tests and explanations)."""
        state = 0
        for byte in data:
            state = self.step(state, byte)
            if state == DEAD:
                return False
        return self.accepts(state)


def _restored(
    table: np.ndarray,
    accepting: np.ndarray,
    literal: bytes | None,
    shadow: Shadow | None,
    counter: "Counted | None",
) -> ByteDFA:
    return ByteDFA(table=table, accepting=accepting, literal=literal, shadow=shadow, counter=counter)


# A string of counted units, as the schema converter writes lengths: ``"(?:X){lo,hi}"``.
_COUNTED = re.compile(r'^"\(\?:(.+)\)\{(\d+)(,?)(\d*)\}"$')


@functools.lru_cache(maxsize=64)
def _uncounted(pattern: str) -> ByteDFA:
    """The uncounted automaton, minimal: every unit boundary is then one state."""
    return _minimal(regex_to_byte_dfa(pattern))


def _minimal(dfa: ByteDFA) -> ByteDFA:
    """The minimal automaton of ``dfa``: equivalent states merged, state 0 still the start.

    Subset construction leaves states that read the same language apart (``[ \\t\\n\\r]*:[ \\t\\n\\r]*``
    has four, two of them after the colon), and each is a state of every grammar automaton the
    terminal enters, with a mask of its own: every 10th dev schema met 12,810 new states whose
    mask equalled one already made, 2,500 fewer with minimal terminals. (The mask mean moved 0-5%:
    the visits saved were the cheap ones, met right after their twins had filled the caches.)"""
    n = dfa.n_states
    if n <= 2:
        return dfa
    if _kernel is not None:
        table = np.ascontiguousarray(dfa.table, dtype=np.int32)
        classes = np.frombuffer(_kernel.equivalent_states(table, dfa.accepting.view(np.uint8)), dtype=np.int32)
    else:
        first, _ = equal_columns(dfa.table)
        found = _moore_classes(dfa.table[:, first], dfa.accepting)
        if found is None:
            return dfa
        classes = found
    count = int(classes.max()) + 1
    if count == n:
        return dfa
    # Classes are numbered by their first state: each one's first state stands for it.
    representative = np.unique(classes, return_index=True)[1]
    return ByteDFA(table=_renumbered(dfa.table[representative], classes), accepting=dfa.accepting[representative].copy())


def _renumbered(rows: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """``rows`` (int32) with each state replaced by its number; DEAD stays DEAD."""
    # DEAD is -1: it reads the DEAD appended last (one gather, not a mask, a gather and a where).
    return np.append(numbers.astype(np.int32), np.int32(DEAD))[rows]


def _moore_classes(table: np.ndarray, accepting: np.ndarray) -> "np.ndarray | None":
    """``_walk.equivalent_states`` without the compiled module: Moore's refinement, a round per
    length of the words that tell states apart; None past ``_MOORE_WORK`` (the automaton then
    stays as it is)."""
    n = table.shape[0]
    classes = accepting.astype(np.int64)
    count = int(classes.max()) + 1
    for _ in range(max(1, _MOORE_WORK // n)):
        signature = np.concatenate([classes[:, None], np.where(table >= 0, classes[np.maximum(table, 0)], -1)], axis=1)
        first, refined = _equal_rows(signature)
        if first.size == count:
            return refined.astype(np.int32)
        classes, count = refined, first.size
    return None


_MOORE_WORK = 1 << 16


def _counted(pattern: str, name: str, deadline: float | None, max_states: int) -> ByteDFA | None:
    """The automaton of ``"(?:X){lo,hi}"`` as a counter beside the uncounted string (``Counted``),
    or None where that would not be exact: the pattern is not one counted group between quotes,
    or the units are not a prefix code of non-empty words that never start with a quote."""
    match = _COUNTED.match(pattern)
    if match is None and pattern.startswith('"(?:') and pattern.endswith(')"'):
        # A pattern's class within a length comes as ``"(?:(?:X){lo,hi})"``: the same counted
        # string, when the outer group is one the parse drops (689 ms and 5,891 states for
        # vercel's 256 characters).
        peeled = '"' + pattern[4:-2] + '"'
        try:
            same = str(_sre_parse.parse(peeled).data) == str(_sre_parse.parse(pattern).data)
        except re.error:
            same = False
        return _counted(peeled, name, deadline, max_states) if same else None
    if match is None:
        return None
    unit, lo_text, comma, hi_text = match.groups()
    lo, hi = int(lo_text), int(hi_text) if hi_text else None if comma else int(lo_text)
    try:
        # One group repeated between quotes: ``(.+)`` may also have spanned several groups.
        parsed = list(_sre_parse.parse(pattern))
        if len(parsed) != 3 or parsed[1][0] is not _sre_constants.MAX_REPEAT:
            return None
        unit_dfa = _regex_to_byte_dfa(f"(?:{unit})", name, deadline, max_states)
        base = _uncounted(f'"(?:{unit})*"')
    except (re.error, GrammarError):
        return None
    live = unit_dfa.table >= 0
    if (live & unit_dfa.accepting[:, None]).any() or live[0, ord('"')]:
        return None  # a unit is a prefix of another, or starts with a quote
    inside = int(base.table[0, ord('"')])
    starts = np.zeros(base.table.shape, dtype=np.int8)
    starts[inside] = base.table[inside] >= 0
    starts[inside, ord('"')] = 0
    counter = Counted(base=base, lo=lo, hi=hi, inside=inside, starts=starts, final=np.all(base.table < 0, axis=1))
    return ByteDFA(base.table, base.accepting, counter=counter)


_column_weights = np.zeros(0, dtype=np.int64)


def equal_columns(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of equal columns of an int32 table: the first column of each group, ascending, and
    the group of each column (groups numbered in that order)."""
    return _equal_rows(table.T)


def _equal_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of equal rows of an int table: the first row of each group, ascending, and the
    group of each row (groups numbered in that order). Found by a random linear hash of the rows
    (50x faster than sorting them) and checked exactly: a collision falls back to the sort."""
    global _column_weights
    width = rows.shape[1]
    if _column_weights.size < width:
        # Fixed odd weights scrambled by a multiply-xorshift (no np.random: importing it cost a
        # first compile 10 ms); any weights are exact, since collisions are checked.
        mixed = np.arange(1, 2 * width + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        mixed ^= mixed >> np.uint64(31)
        mixed *= np.uint64(0xBF58476D1CE4E5B9)
        _column_weights = ((mixed >> np.uint64(2)) | np.uint64(1)).astype(np.int64)
    _, first, inverse = np.unique(rows.astype(np.int64) @ _column_weights[:width], return_index=True, return_inverse=True)
    if not (rows[first[inverse]] == rows).all():
        _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    return _numbered_by_first(first, inverse)


def _numbered_by_first(first: np.ndarray, inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique``'s (index of each group's first member, group of each member) renumbered so
    groups come in the order of their first member, not of np.unique's sort."""
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order], rank[inverse.ravel()]


def _without(dfa: ByteDFA, words: list[bytes], pattern: str, name: str) -> ByteDFA:
    """``dfa`` minus a finite set of lexemes: the product with the words' trie.

    States ``0 .. k-1`` are the pairs (DFA state, trie node) still on the trie, in breadth-first
    order; past them, a copy of ``dfa`` reads what is left once no word can be completed. The
    pairs form a tree, so one pass from the deepest up finds which can still accept (a copy
    state always can: ``dfa`` is trimmed): a key set costs a loop over its trie, not a
    numpy row per pair and a fixpoint as deep as the longest key (5 ms a key set before)."""
    children: list[dict[int, int]] = [{}]
    ends = [False]
    for word in words:
        node = 0
        for byte in word:
            nxt = children[node].get(byte)
            if nxt is None:
                nxt = len(children)
                children[node][byte] = nxt
                children.append({})
                ends.append(False)
            node = nxt
        ends[node] = True
    rows = dfa.table.tolist()
    pairs = [(0, 0)]
    ids = {(0, 0): 0}
    edges: list[list[tuple[int, int]]] = []  # per pair: (byte, pair) along the trie
    i = 0
    while i < len(pairs):
        d, node = pairs[i]
        i += 1
        out = []
        row = rows[d]
        for byte, child in children[node].items():
            target = row[byte]
            if target == DEAD:
                continue
            pair = (target, child)
            sid = ids.get(pair)
            if sid is None:
                sid = ids[pair] = len(pairs)
                pairs.append(pair)
            out.append((byte, sid))
        edges.append(out)
    k = len(pairs)
    on_trie = np.array([d for d, _ in pairs], dtype=np.int64)
    copy = np.where(dfa.table >= 0, dfa.table + k, DEAD).astype(np.int32)
    table = np.concatenate([copy[on_trie], copy])
    accepting = np.concatenate([dfa.accepting[on_trie] & ~np.array([ends[n] for _, n in pairs]), dfa.accepting])
    # A word's byte leads along the trie, not into the copy (unless the DFA is dead there).
    source = [sid for sid, out in enumerate(edges) for _ in out]
    if source:
        byte_of = [byte for out in edges for byte, _ in out]
        table[source, byte_of] = [target for out in edges for _, target in out]
    live = (accepting[:k] | (table[:k] >= k).any(axis=1)).tolist()
    for sid in range(k - 1, -1, -1):
        if not live[sid]:
            live[sid] = any(live[target] for _, target in edges[sid])
    if not live[0]:
        raise EmptyLanguage(f"regex {pattern!r} matches nothing", rule=name or None)
    keep = np.concatenate([np.flatnonzero(live), np.arange(k, k + dfa.n_states)])
    base_state = np.concatenate([on_trie, np.arange(dfa.n_states)])[keep].astype(np.int32)
    shadow = Shadow(base=dfa, base_state=base_state, in_words=keep < k)
    return _kept(table, accepting, keep, shadow)


# Products (a pattern within a length, beside a format...) grow as the product of their sides:
# a smaller cap than other terminals', so that one too large fails fast.
_MAX_PRODUCT_STATES = 8192
# Time to free a construction that ran out of time, as a fraction of the time it ran: a tenth
# when the machine is idle; with a second process busy beside it, 4 s of crawl ended 0.46 s past
# a 4 s budget under 0.15.
_TEARDOWN = 0.25


def _operation_dfa(
    operation: tuple[str, str, str], pattern: str, name: str, deadline: float | None, max_states: int
) -> ByteDFA:
    kind, other, rest = operation
    left = _tabled(rest, name, deadline, max_states)
    right = _tabled(other, name, deadline, max_states)
    budget = _Budget(deadline, min(max_states, _MAX_PRODUCT_STATES), name)
    return _product(left, right, kind == "and", pattern, name, budget)


# The sides of word lists and products, by (pattern, max_states): a schema's extra-key terminal
# is the JSON string minus its keys, and every object of every schema starts from that string.
_PARTS: "OrderedDict[tuple[str, int], ByteDFA]" = OrderedDict()
_PARTS_BYTES = 32 << 20
_parts_lock = threading.Lock()


def _tabled(pattern: str, name: str, deadline: float | None, max_states: int) -> ByteDFA:
    """``regex_to_byte_dfa``, with a counted string as a plain table (a state per length):
    products and word lists read the table. Kept for later terminals, up to ``_PARTS_BYTES``."""
    key = (pattern, max_states)
    with _parts_lock:
        dfa = _PARTS.get(key)
        if dfa is not None:
            _PARTS.move_to_end(key)
            return dfa
    dfa = regex_to_byte_dfa(pattern, name=name, deadline=deadline, max_states=max_states)
    if dfa.counter is not None:
        dfa = _regex_to_byte_dfa(pattern, name, deadline, max_states)
    with _parts_lock:
        _PARTS[key] = dfa
        while sum(d.table.nbytes for d in _PARTS.values()) > _PARTS_BYTES and len(_PARTS) > 1:
            _PARTS.popitem(last=False)
    return dfa


def _product(a: ByteDFA, b: ByteDFA, both: bool, pattern: str, name: str, budget: "_Budget") -> ByteDFA:
    """The words ``a`` and ``b`` both read (``both``), or those ``a`` reads and ``b`` does not:
    the reachable pairs of states, found a breadth-first level at a time, one column per class
    of bytes both automata treat alike."""
    first, byte_class = equal_columns(np.concatenate([a.table, b.table]))
    left = a.table[:, first].astype(np.int64)
    off_b = b.n_states  # ``b`` read past its language: it can no longer accept
    right = np.vstack([np.where(b.table[:, first] >= 0, b.table[:, first], off_b), np.full((1, first.size), off_b)])
    width = off_b + 1
    ids: dict[int, int] = {0: 0}  # pair key x * width + y -> state
    keys = [0]
    rows: list[np.ndarray] = []
    frontier = np.zeros(1, dtype=np.int64)
    while frontier.size:
        x, y = frontier // width, frontier % width
        nx, ny = left[x], right[y]
        valid = nx >= 0
        if both:
            valid &= ny != off_b
        pair = nx * width + ny
        found, inverse = np.unique(pair[valid], return_inverse=True)
        fresh = []
        numbers = np.empty(found.size, dtype=np.int32)
        for i, key in enumerate(found.tolist()):
            sid = ids.get(key)
            if sid is None:
                sid = ids[key] = len(keys)
                keys.append(key)
                fresh.append(key)
            numbers[i] = sid
        budget.check(len(keys))
        level = np.full(pair.shape, DEAD, dtype=np.int32)
        level[valid] = numbers[inverse.ravel()]
        rows.append(level)
        frontier = np.array(fresh, dtype=np.int64)
    table = np.concatenate(rows)[:, byte_class]
    pairs = np.array(keys, dtype=np.int64)
    b_accepting = np.append(b.accepting, False)
    accepting = a.accepting[pairs // width] & (b_accepting[pairs % width] == both)
    return _trim(np.ascontiguousarray(table), accepting, pattern, name)


def _literal(pattern: str) -> bytes | None:
    """The UTF-8 bytes ``pattern`` matches when it is a plain literal (keys, keywords), else None.

    Grammars from JSON Schemas have one such terminal per property name; they skip the automaton
    construction entirely.
    """
    if "(?" in pattern:
        return None
    try:
        parsed = _sre_parse.parse(pattern)
    except re.error:
        return None
    chars = []
    for op, value in parsed:
        if op is not _sre_constants.LITERAL:
            return None
        chars.append(chr(value))
    text = "".join(chars)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return None
    return text.encode("utf-8")


def _literal_dfa(data: bytes) -> ByteDFA:
    table = np.full((len(data) + 1, 256), DEAD, dtype=np.int32)
    table[np.arange(len(data)), np.frombuffer(data, dtype=np.uint8)] = np.arange(1, len(data) + 1)
    accepting = np.zeros(len(data) + 1, dtype=bool)
    accepting[-1] = True
    return ByteDFA(table, accepting, literal=data)


def _ranges(code_points: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for cp in sorted(code_points):
        if out and out[-1][1] == cp - 1:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


_budget = threading.local()


def _crawl(alphabet: Any, initial: Any, final: Callable[[Any], bool], follow: Callable[[Any, Any], Any]) -> FSM:
    """interegular's FSM exploration, with a dict index (its list search is quadratic) and a budget.

    interegular builds every regex operation through this function, so bounding it bounds the
    whole regex compilation: explosive patterns raise CompileBudgetError instead of hanging.
    """
    budget: _Budget | None = getattr(_budget, "current", None)
    states = [initial]
    index = {_hashable(initial): 0}
    finals = set()
    transitions: dict[int, dict[Any, int]] = {}
    i = 0
    while i < len(states):
        state = states[i]
        if final(state):
            finals.add(i)
        row: dict[Any, int] = {}
        for symbol in alphabet.by_transition:
            try:
                nxt = follow(state, symbol)
            except OblivionError:
                continue
            key = _hashable(nxt)
            j = index.get(key)
            if j is None:
                j = len(states)
                states.append(nxt)
                index[key] = j
            row[symbol] = j
        transitions[i] = row
        i += 1
        # Every state: one step of a crawl over a repeated regex (``(a{1,1000}){1,1000}``)
        # can take milliseconds, so checking every 64 states overran budgets by seconds.
        if budget is not None:
            budget.check(len(states))
    if budget is not None:
        budget.check(len(states))
    return FSM(
        alphabet=alphabet,
        states=range(len(states)),
        initial=0,
        finals=finals,
        map=transitions,
        __no_validation__=True,
    )


def _hashable(state: Any) -> Any:
    # interegular's crawl states are ints, tuples, sets or lists of those
    if isinstance(state, (set, frozenset)):
        return frozenset(_hashable(s) for s in state)
    if isinstance(state, (list, tuple)):
        return tuple(_hashable(s) for s in state)
    if isinstance(state, dict):
        return frozenset((k, _hashable(v)) for k, v in state.items())
    return state


interegular.fsm.crawl = _crawl


@functools.cache
def _lowercase_sources() -> dict[int, tuple[int, ...]]:
    """Code points grouped by their simple lowercase, where that differs from themselves."""
    groups: dict[int, list[int]] = {}
    for cp in range(_MAX_CODE_POINT + 1):
        low = _sre.unicode_tolower(cp)
        if low != cp:
            groups.setdefault(low, []).append(cp)
    return {low: tuple(cps) for low, cps in groups.items()}


def _add_case_variants(explicit: dict[int, list[int]], named: list[int]) -> None:
    """Give each named character of a case-insensitive regex the characters Python's ``re`` matches.

    interegular only adds ``str.lower``/``str.upper``; ``re`` (and so Lark) also matches e.g.
    U+017F for ``s`` and the Kelvin sign for ``k``. Exact when the whole regex is case-insensitive,
    as Lark's ``"..."i`` literals are.
    """
    sources = _lowercase_sources()
    taken = set(named)
    for symbol, cps in explicit.items():
        extra = []
        for cp in list(cps):
            low = _sre.unicode_tolower(cp)
            lows = {low, *_EXTRA_CASES.get(low, ())}
            for variant_low in lows:
                for variant in (variant_low, *sources.get(variant_low, ())):
                    if variant not in taken:
                        taken.add(variant)
                        extra.append(variant)
        cps.extend(extra)
        named.extend(extra)


class _Budget:
    def __init__(self, deadline: float | None, max_states: int, what: str) -> None:
        self.deadline = deadline
        self.max_states = max_states
        self.what = what
        self.started = time.monotonic()

    def check(self, n_states: int) -> None:
        if n_states > self.max_states:
            raise CompileBudgetError(
                f"terminal needs more than {self.max_states} automaton states", rule=self.what
            )
        if self.deadline is not None:
            now = time.monotonic()
            # Raising frees what the construction built, which takes about a tenth of the time
            # building it took (0.4 s after 4 s of interegular's crawl): stop while that still
            # fits in the budget.
            if now + _TEARDOWN * (now - self.started) > self.deadline:
                raise CompileBudgetError("grammar compilation exceeded its time budget", rule=self.what)


def regex_to_byte_dfa(
    pattern: str,
    *,
    name: str = "",
    deadline: float | None = None,
    max_states: int = 20000,
) -> ByteDFA:
    """Compile a Python-syntax regex (as Lark emits it) into a trimmed byte DFA.

    Raises GrammarError when interegular cannot parse the pattern (lookaround, backreferences),
    when it matches the empty string, or when it matches nothing.
    """
    pattern = _LARK_ESCAPED_INNER.sub(lambda _: _ESCAPED_INNER_PLAIN, pattern)
    if _LOOKAROUND.search(pattern):
        raise GrammarError(f"lookaround is not supported in terminal regex {pattern!r}", rule=name or None)
    try:
        excepted = split_except(pattern)
    except ValueError as exc:
        raise GrammarError(f"bad (?#except:...) list in terminal regex: {exc}", rule=name or None) from exc
    if excepted:
        words, rest = excepted
        return _without(_tabled(rest, name, deadline, max_states), words, pattern, name)
    try:
        operation = split_operation(pattern)
    except ValueError as exc:
        raise GrammarError(f"bad (?#and:...) or (?#minus:...) in terminal regex: {exc}", rule=name or None) from exc
    if operation:
        return _operation_dfa(operation, pattern, name, deadline, max_states)
    literal = _literal(pattern)
    if literal:
        return _literal_dfa(literal)
    counted = _counted(pattern, name, deadline, max_states)
    if counted is not None:
        return counted
    return _regex_to_byte_dfa(pattern, name, deadline, max_states)


def _regex_to_byte_dfa(pattern: str, name: str, deadline: float | None, max_states: int) -> ByteDFA:
    budget = _Budget(deadline, max_states, name)
    direct = byte_automaton(pattern, budget.check)
    if direct is not None:
        return _trim(*direct, pattern, name)
    _budget.current = budget
    try:
        fsm = interegular.parse_pattern(pattern).to_fsm()
    except CompileBudgetError:
        raise
    except Exception as exc:  # interegular raises assorted internal types for unsupported syntax
        raise GrammarError(f"unsupported regex {pattern!r}: {exc}", rule=name or None) from exc
    finally:
        _budget.current = None

    alphabet = fsm.alphabet
    explicit: dict[int, list[int]] = {}
    named_chars: list[int] = []
    else_symbol = None
    for char, symbol in alphabet.items():
        if char is anything_else:
            else_symbol = symbol
            continue
        cp = ord(char)
        named_chars.append(cp)
        explicit.setdefault(symbol, []).append(cp)
    if "(?i" in pattern:
        _add_case_variants(explicit, named_chars)
    symbol_ranges: dict[int, list[tuple[int, int]]] = {s: _ranges(cps) for s, cps in explicit.items()}
    if else_symbol is not None:
        symbol_ranges.setdefault(else_symbol, [])
        symbol_ranges[else_symbol] = sorted(
            symbol_ranges[else_symbol] + complement(_ranges(named_chars))
        )
    symbol_sequences = {
        s: [seq for a, b in rs for seq in utf8_sequences(a, b)] for s, rs in symbol_ranges.items()
    }

    # NFA: FSM states keep their identity; multi-byte characters pass through intermediate nodes
    # interned by (remaining byte ranges, target) so shared suffixes share nodes.
    fsm_states = sorted(fsm.states, key=repr)
    node_of = {s: i for i, s in enumerate(fsm_states)}
    edges: list[dict[int, set[int]]] = [dict() for _ in fsm_states]
    finals = {node_of[s] for s in fsm.finals}
    chain_nodes: dict[tuple[tuple[tuple[int, int], ...], int], int] = {}

    def chain(rest: tuple[tuple[int, int], ...], target: int) -> int:
        key = (rest, target)
        node = chain_nodes.get(key)
        if node is None:
            nxt = target if len(rest) == 1 else chain(rest[1:], target)
            node = len(edges)
            edges.append({})
            chain_nodes[key] = node
            lo, hi = rest[0]
            for byte in range(lo, hi + 1):
                edges[node].setdefault(byte, set()).add(nxt)
        return node

    for state in fsm_states:
        src = node_of[state]
        for symbol, target_state in fsm.map.get(state, {}).items():
            target = node_of[target_state]
            for seq in symbol_sequences.get(symbol, ()):
                nxt = target if len(seq) == 1 else chain(seq[1:], target)
                lo, hi = seq[0]
                for byte in range(lo, hi + 1):
                    edges[src].setdefault(byte, set()).add(nxt)
        budget.check(len(edges))

    start = frozenset([node_of[fsm.initial]])
    subsets: dict[frozenset[int], int] = {start: 0}
    order = [start]
    rows: list[list[int]] = []
    i = 0
    while i < len(order):
        current = order[i]
        i += 1
        moves: dict[int, set[int]] = {}
        for node in current:
            for byte, targets in edges[node].items():
                moves.setdefault(byte, set()).update(targets)
        row = [DEAD] * 256
        for byte, targets in moves.items():
            key = frozenset(targets)
            idx = subsets.get(key)
            if idx is None:
                idx = len(order)
                subsets[key] = idx
                order.append(key)
                budget.check(len(order))
            row[byte] = idx
        rows.append(row)

    return _trim(
        np.array(rows, dtype=np.int32).reshape(len(rows), 256),
        np.array([bool(s & finals) for s in order], dtype=bool),
        pattern,
        name,
    )


def _trim(table: np.ndarray, accepting: np.ndarray, pattern: str, name: str) -> ByteDFA:
    return _minimal(_kept(table, accepting, _live(table, accepting, pattern, name)))


def _live(table: np.ndarray, accepting: np.ndarray, pattern: str, name: str) -> np.ndarray:
    """The states that can reach acceptance; raises for an empty or nullable language."""
    if _kernel is not None:
        # Backwards over the edges, each once: a pass over the whole table per level of words
        # cost a 10k-state URL pattern 0.27 s.
        table = np.ascontiguousarray(table, dtype=np.int32)
        live = np.frombuffer(_kernel.live_states(table, accepting.view(np.uint8)), dtype=bool)
    else:
        live = accepting.copy()
        valid = table >= 0
        changed = True
        while changed:
            targets_live = np.zeros_like(valid)
            targets_live[valid] = live[table[valid]]
            reach = targets_live.any(axis=1) | accepting
            changed = bool((reach & ~live).any())
            live = reach
    if not live[0]:
        raise EmptyLanguage(f"regex {pattern!r} matches nothing", rule=name or None)
    if accepting[0]:
        raise GrammarError(
            f"terminal matches the empty string ({pattern!r}); make it non-empty and use ? in rules",
            rule=name or None,
        )
    return np.flatnonzero(live)


def _kept(table: np.ndarray, accepting: np.ndarray, keep: np.ndarray, shadow: Shadow | None = None) -> ByteDFA:
    """The DFA restricted to the states ``keep``, renumbered in order."""
    if keep.size == table.shape[0]:
        return ByteDFA(table=np.array(table, dtype=np.int32), accepting=accepting.copy(), shadow=shadow)
    remap = np.full(table.shape[0], DEAD, dtype=np.int32)
    remap[keep] = np.arange(keep.size, dtype=np.int32)
    return ByteDFA(table=_renumbered(table[keep], remap), accepting=accepting[keep].copy(), shadow=shadow)
