"""Brute-force reference recognizer for onrails grammars: a test oracle.

It shares no code with ``onrails.constrain``: Lark is used only as the grammar front end
(EBNF expansion, imports, templates), and recognition is a plain Earley parser over
terminal symbols on a chart indexed by *character* positions.

Semantics ("scannerless"): a text is a sentence of grammar G with start rule S iff it can be
split into lexemes, each a full match of some terminal's regex (any split counts, there is no
longest-match lexing), such that the terminal sequence derives from S, with lexemes of
``%ignore``d terminals allowed anywhere between the others (and at both ends).

Bytes are UTF-8. A prefix that ends inside a multi-byte character is viable iff it is viable
when completed by *some* character whose encoding starts with those bytes; that is decided by
trying representative characters (see ``_tail_candidates``), which is exact whenever the
grammar's regexes treat the characters between two consecutive "boundaries" alike.

A ``// %items`` line (a tracked list: members in any order, tracked ones at most once, required
ones present, a count between bounds) is read by writing the list out as plain rules, one per
(tracked items written, count) state: exponential, fine for the small lists of tests.

Limitations (fine for tests, documented here once):
- regexes with lookaround, anchors (``^ $ \\b \\A``...), or backreferences are rejected;
- viability inside a lexeme relies on the ``regex`` module's partial matching, which assumes
  every character class in the regex matches at least one character (``[^\\s\\S]`` would fool it);
- representatives for a trailing incomplete character cover class boundaries, case variants,
  and evenly spaced samples: exact for literal ranges, very likely right for ``\\w``-style
  categories.
"""

from __future__ import annotations

import bisect
import codecs
from collections import OrderedDict
from dataclasses import dataclass

import regex
from lark.grammar import NonTerminal, Terminal
from lark.load_grammar import GrammarBuilder

try:  # Python 3.11+
    import re._parser as _sre_parse
except ImportError:  # pragma: no cover - older Pythons
    import sre_parse as _sre_parse  # type: ignore[no-redef]

try:
    from re._casefix import _EXTRA_CASES  # 3.11+: 'i' ~ dotless i and friends
except ImportError:  # pragma: no cover
    _EXTRA_CASES = {}


class UnsupportedGrammar(Exception):
    """The grammar uses a feature the reference cannot decide exactly."""


_START = "$start"  # augmented start symbol; '$' cannot occur in Lark names

Item = tuple[int, int, int]  # (rule index, dot position, origin column)
Lexeme = tuple[int, str]  # (start column, terminal name)
RawRule = tuple[str, tuple[str, ...]]  # (left-hand side, right-hand side symbol names)


class _Column:
    """Closed Earley item set at one character position; never mutated once built."""

    __slots__ = ("items", "by_next", "expected")

    def __init__(self, items: set[Item], by_next: dict[str, list[Item]], expected: tuple[str, ...]):
        self.items = items
        self.by_next = by_next  # symbol -> items whose dot is before it
        self.expected = expected  # terminals to scan from here (including ignored ones)


_EMPTY_COLUMN = _Column(set(), {}, ())


@dataclass(frozen=True)
class _Chart:
    """Earley chart for ``text``; ``frontier`` holds lexemes still open at the end of the text.

    Scans that would end beyond the text are deferred: ``frontier`` lists the (start, terminal)
    pairs whose lexeme text[start:] is a prefix of some match, so that extending the text only
    has to continue those and never touches the existing columns (they are shared).
    """

    text: str
    columns: tuple[_Column, ...]
    frontier: tuple[Lexeme, ...]

    @property
    def viable(self) -> bool:
        # Unproductive rules were removed, so any live item or open lexeme can be completed.
        return bool(self.columns[-1].items) or bool(self.frontier)


class PrefixChecker:
    """Viability of ``prefix + extra`` for many ``extra``, reusing the chart of ``prefix``."""

    def __init__(self, grammar: "ReferenceGrammar", prefix: bytes):
        self._grammar = grammar
        split = _split_utf8(prefix)
        self._dead = split is None  # the prefix itself is not valid UTF-8 (so far)
        text, self._tail = split if split is not None else ("", b"")
        self._chart = grammar._chart(text)

    def viable(self, extra: bytes = b"") -> bool:
        """Whether prefix + extra is a prefix of the UTF-8 encoding of some sentence."""
        if self._dead or not self._chart.viable:
            return False
        split = _split_utf8(self._tail + extra)
        if split is None:
            return False
        more, tail = split
        return self._grammar._viable_with_tail(self._grammar._extend(self._chart, more), tail)

    def accepts(self, extra: bytes = b"") -> bool:
        """Whether prefix + extra is a complete sentence."""
        if self._dead:
            return False
        split = _split_utf8(self._tail + extra)
        if split is None or split[1]:
            return False
        return self._grammar._complete(self._grammar._extend(self._chart, split[0]))


def _written_out_lists(text: str) -> str:
    """``text`` with each ``// %items`` list replaced by plain rules for the same language."""
    lines = text.splitlines()
    for line in list(lines):
        words = line.split()
        if words[:2] != ["//", "%items"]:
            continue
        name = words[2]
        fields = dict(word.split("=", 1) for word in words[3:])
        tracked = [w for w in fields.get("tracked", "").split(",") if w]
        required = {w for w in fields.get("required", "").split(",") if w}
        untracked = [w for w in fields.get("untracked", "").split(",") if w]
        lo = int(fields.get("min", "0"))
        hi = int(fields["max"]) if "max" in fields else None
        cap = max(lo, hi or 0)
        definition = next(i for i, other in enumerate(lines) if other.startswith(f"{name}:"))
        alternatives = [a.split() for a in lines[definition].split(":", 1)[1].split("|")]
        separator = next(a[1] for a in alternatives if len(a) == 3 and a[0] == name)
        names: dict[tuple[frozenset[str], int], str] = {}
        rules: dict[str, list[str]] = {}
        todo: list[tuple[frozenset[str], int]] = []

        def reach(state: tuple[frozenset[str], int], body: str) -> None:
            if state not in names:
                names[state] = f"{name}__{len(names)}"
                rules[names[state]] = []
                todo.append(state)
            rules[names[state]].append(body)

        for item in tracked + untracked:
            reach((frozenset([item]) & frozenset(tracked), min(1, cap)), item)
        while todo:
            done, count = todo.pop()
            if hi is not None and count >= hi:
                continue
            for item in tracked + untracked:
                if item not in done:
                    nxt = (done | (frozenset([item]) & frozenset(tracked)), min(count + 1, cap))
                    reach(nxt, f"{names[(done, count)]} {separator} {item}")
        ends = [n for (done, count), n in names.items() if required <= done and count >= min(lo, cap)]
        lines[definition] = f"{name}: " + " | ".join(ends or ["never__"])
        lines += [f"{rule}: " + " | ".join(bodies) for rule, bodies in rules.items()]
        if not ends:
            lines.append('never__: never__ "x"')
    return "\n".join(lines) + "\n"


class ReferenceGrammar:
    """A Lark grammar with one start rule, recognised by brute force (Earley over lexemes)."""

    _CACHE_SIZE = 1024

    def __init__(self, grammar_text: str, start: str):
        grammar_text = _written_out_lists(grammar_text)
        builder = GrammarBuilder()
        builder.load_grammar(grammar_text, "<grammar>")
        terminal_defs, rule_defs, ignore = builder.build().compile([start], set())

        self._patterns: dict[str, regex.Pattern[str]] = {}
        literals: set[int] = set()  # class boundaries, case-sensitive terminals
        folded: set[int] = set()  # class boundaries of case-insensitive terminals
        for tdef in terminal_defs:
            source = tdef.pattern.to_regexp()  # Lark inlines flags as (?i:...)
            bounds, ignorecase = _regex_boundaries(tdef.name, source)
            (folded if ignorecase else literals).update(bounds)
            try:
                pattern = regex.compile(source)
            except regex.error as exc:
                raise UnsupportedGrammar(f"terminal {tdef.name}: bad regex {source!r}: {exc}") from exc
            if pattern.fullmatch(""):
                raise UnsupportedGrammar(f"terminal {tdef.name} matches the empty string")
            self._patterns[tdef.name] = pattern
        self._literal_bounds, self._folded_bounds = literals, folded
        self._boundaries_cache: list[int] | None = None
        self._ignore = tuple(dict.fromkeys(ignore))
        for name in self._ignore:
            if name not in self._patterns:
                raise UnsupportedGrammar(f"ignored terminal {name} has no definition")

        raw_rules: list[RawRule] = [(_START, (start,))]
        for rule in rule_defs:
            rhs = []
            for sym in rule.expansion:
                if isinstance(sym, Terminal) and sym.name not in self._patterns:
                    raise UnsupportedGrammar(f"terminal {sym.name} is declared but never defined")
                if not isinstance(sym, (Terminal, NonTerminal)):  # pragma: no cover
                    raise UnsupportedGrammar(f"unknown symbol {sym!r}")
                rhs.append(sym.name)
            raw_rules.append((rule.origin.name, tuple(rhs)))
        self._rules = self._productive_rules(raw_rules)
        self._lhs = [lhs for lhs, _ in self._rules]
        self._rhs = [rhs for _, rhs in self._rules]
        self._by_lhs: dict[str, list[int]] = {}
        for index, lhs in enumerate(self._lhs):
            self._by_lhs.setdefault(lhs, []).append(index)
        self._nullable = self._nullable_symbols()
        self._accept_item: Item = (0, 1, 0)

        # Charts by text; the empty text is the root every other chart extends.
        self._charts: OrderedDict[str, _Chart] = OrderedDict()
        self._root = self._initial_chart()

    # ----------------------------------------------------------------------------- public API

    def accepts(self, data: bytes) -> bool:
        """Whether ``data`` (UTF-8) is a complete sentence."""
        try:
            text = data.decode("utf-8", "strict")
        except UnicodeDecodeError:
            return False
        return self._complete(self._chart(text))

    def is_viable_prefix(self, data: bytes) -> bool:
        """Whether ``data`` is a prefix of the UTF-8 encoding of some sentence."""
        split = _split_utf8(data)
        if split is None:
            return False
        text, tail = split
        return self._viable_with_tail(self._chart(text), tail)

    def prefix_checker(self, prefix: bytes) -> PrefixChecker:
        """A checker answering ``viable(extra)`` for many continuations of one prefix quickly."""
        return PrefixChecker(self, prefix)

    @property
    def is_empty(self) -> bool:
        """Whether the language has no sentence at all (the start rule is unproductive)."""
        return not self._root.viable

    # -------------------------------------------------------------------------- grammar prep

    def _productive_rules(self, rules: list[RawRule]) -> list[RawRule]:
        """Drop rules using unproductive symbols, so that every live item can be completed."""
        # A terminal is productive iff some string matches it; a partial match of "" says so
        # (see the module docstring for the caveat on empty character classes).
        productive = {name for name, pat in self._patterns.items() if pat.fullmatch("", partial=True)}
        changed = True
        while changed:
            changed = False
            for lhs, rhs in rules:
                if lhs not in productive and all(sym in productive for sym in rhs):
                    productive.add(lhs)
                    changed = True
        self._ignore = tuple(name for name in self._ignore if name in productive)
        self._empty_language = _START not in productive
        # Rule 0 ($start) is kept so that rule indices stay fixed; for an empty language the
        # root chart is left empty instead (see _initial_chart).
        return [rules[0]] + [(lhs, rhs) for lhs, rhs in rules[1:] if all(sym in productive for sym in rhs)]

    def _nullable_symbols(self) -> frozenset[str]:
        nullable: set[str] = set()
        changed = True
        while changed:
            changed = False
            for lhs, rhs in self._rules:
                if lhs not in nullable and all(sym in nullable for sym in rhs):
                    nullable.add(lhs)
                    changed = True
        return frozenset(nullable)

    # ------------------------------------------------------------------------------ earley

    def _initial_chart(self) -> _Chart:
        if self._empty_language:  # no item at all: nothing is viable, not even b""
            return _Chart("", (_EMPTY_COLUMN,), ())
        column = self._close((), 0, [(0, 0, 0)])
        return _Chart("", (column,), ())

    def _close(self, columns: tuple[_Column, ...] | list[_Column], j: int, seeds: list[Item]) -> _Column:
        """Predict/complete to a fixed point at column j (Aycock-Horspool for nullable rules)."""
        items: set[Item] = set()
        by_next: dict[str, list[Item]] = {}
        agenda: list[Item] = []
        for item in seeds:
            if item not in items:
                items.add(item)
                agenda.append(item)
        rhs_of, lhs_of, by_lhs, nullable = self._rhs, self._lhs, self._by_lhs, self._nullable
        while agenda:
            item = agenda.pop()
            r, d, o = item
            rhs = rhs_of[r]
            if d == len(rhs):
                # Completion; when o == j the waiting list may still grow, but only for nullable
                # symbols, and those were already stepped over at prediction time.
                waiting = (by_next if o == j else columns[o].by_next).get(lhs_of[r])
                if waiting:
                    for r2, d2, o2 in list(waiting):
                        new = (r2, d2 + 1, o2)
                        if new not in items:
                            items.add(new)
                            agenda.append(new)
                continue
            sym = rhs[d]
            waiting = by_next.get(sym)
            if waiting is None:
                by_next[sym] = [item]
                for r2 in by_lhs.get(sym, ()):  # predict once per symbol and column
                    new = (r2, 0, j)
                    if new not in items:
                        items.add(new)
                        agenda.append(new)
            else:
                waiting.append(item)
            if sym in nullable:
                new = (r, d + 1, o)
                if new not in items:
                    items.add(new)
                    agenda.append(new)
        expected = tuple(dict.fromkeys([s for s in by_next if s in self._patterns] + list(self._ignore)))
        return _Column(items, by_next, expected if items else ())

    def _extend(self, chart: _Chart, more: str) -> _Chart:
        """The chart of ``chart.text + more``; shares the columns of ``chart``."""
        if not more:
            return chart
        text = chart.text + more
        n, end = len(chart.text), len(text)
        columns = list(chart.columns)
        pending: dict[int, list[Lexeme]] = {}
        frontier: list[Lexeme] = []
        patterns = self._patterns

        def scan(i: int, name: str, first: int) -> None:
            """Record every end j >= first of a lexeme of ``name`` starting at i."""
            fullmatch = patterns[name].fullmatch
            for j in range(first, end + 1):
                match = fullmatch(text, i, j, partial=True)
                if match is None:
                    return  # text[i:j] is not a prefix of any match: no longer lexeme either
                if not match.partial:
                    pending.setdefault(j, []).append((i, name))
            frontier.append((i, name))  # still open at the end of the text

        for i, name in chart.frontier:
            scan(i, name, n + 1)
        for name in columns[n].expected:
            scan(n, name, n + 1)
        for j in range(n + 1, end + 1):
            lexemes = pending.pop(j, None)
            if not lexemes:
                columns.append(_EMPTY_COLUMN)
                continue
            seeds: list[Item] = []
            for i, name in lexemes:
                source = columns[i]
                seeds.extend((r, d + 1, o) for r, d, o in source.by_next.get(name, ()))
                if name in self._ignore:
                    # An ignored lexeme between i and j: whatever held at i holds at j.
                    seeds.extend(source.items)
            column = self._close(columns, j, seeds)
            columns.append(column)
            if j < end:
                for name in column.expected:
                    scan(j, name, j + 1)
        return _Chart(text, tuple(columns), tuple(frontier))

    def _chart(self, text: str) -> _Chart:
        """Chart for ``text``, extended from the longest cached prefix (LRU cache)."""
        cached = self._charts.get(text)
        if cached is not None:
            self._charts.move_to_end(text)
            return cached
        base = self._root
        for k in range(len(text) - 1, 0, -1):
            found = self._charts.get(text[:k])
            if found is not None:
                base = found
                break
        chart = self._extend(base, text[len(base.text):])
        self._charts[text] = chart
        if len(self._charts) > self._CACHE_SIZE:
            self._charts.popitem(last=False)
        return chart

    def _boundaries(self) -> list[int]:
        """Sorted code points where some terminal's classes may change (lazy: case folding is slow)."""
        if self._boundaries_cache is None:
            bounds = set(self._literal_bounds) | self._folded_bounds
            for cp in self._folded_bounds:
                for variant in _case_variants(cp):
                    bounds.update((variant, variant + 1))
            self._boundaries_cache = sorted(bounds)
        return self._boundaries_cache

    def _complete(self, chart: _Chart) -> bool:
        return self._accept_item in chart.columns[-1].items

    def _viable_with_tail(self, chart: _Chart, tail: bytes) -> bool:
        """Viability of the chart's text followed by the incomplete UTF-8 sequence ``tail``."""
        if not tail:
            return chart.viable
        if not chart.viable:
            return False
        candidates = _tail_candidates(tail, self._boundaries())
        return any(self._extend(chart, c).viable for c in candidates)


# ------------------------------------------------------------------------------------- regexes

_UNSUPPORTED_OPS = {
    _sre_parse.AT: "anchors or word boundaries",
    _sre_parse.ASSERT: "lookaround",
    _sre_parse.ASSERT_NOT: "lookaround",
    _sre_parse.GROUPREF: "backreferences",
    _sre_parse.GROUPREF_EXISTS: "conditional groups",
}
_REPEATS = {_sre_parse.MAX_REPEAT, _sre_parse.MIN_REPEAT, getattr(_sre_parse, "POSSESSIVE_REPEAT", None)}


def _regex_boundaries(name: str, source: str) -> tuple[set[int], bool]:
    """Code points where a character class of the regex may change its answer, and whether
    the regex is (partly) case-insensitive, in which case case variants matter too.

    Raises UnsupportedGrammar for zero-width assertions and backreferences.
    """
    try:
        tree = _sre_parse.parse(source)
    except Exception:
        # Syntax only the `regex` module knows (e.g. \\p{L}); screen for lookaround textually.
        if any(tok in source for tok in ("(?=", "(?!", "(?<=", "(?<!")):
            raise UnsupportedGrammar(f"terminal {name}: lookaround is not supported") from None
        return set(), False
    literals: set[int] = set()
    ignorecase = bool(tree.state.flags & _sre_parse.SRE_FLAG_IGNORECASE)

    def walk(seq: list) -> None:
        nonlocal ignorecase
        for op, av in seq:
            if op in _UNSUPPORTED_OPS:
                feature = _UNSUPPORTED_OPS[op]
                raise UnsupportedGrammar(f"terminal {name} uses {feature} (not supported): {source!r}")
            if op in (_sre_parse.LITERAL, _sre_parse.NOT_LITERAL):
                literals.update((av, av + 1))
            elif op is _sre_parse.RANGE:
                literals.update((av[0], av[1] + 1))
            elif op is _sre_parse.IN:
                walk(av)
            elif op is _sre_parse.BRANCH:
                for branch in av[1]:
                    walk(branch)
            elif op is _sre_parse.SUBPATTERN:
                if av[1] & _sre_parse.SRE_FLAG_IGNORECASE:
                    ignorecase = True
                walk(av[3])
            elif op in _REPEATS:
                walk(av[2])
            elif op is getattr(_sre_parse, "ATOMIC_GROUP", object()):
                walk(av)

    walk(list(tree))
    return literals, ignorecase


_INVERSE_CASE: dict[int, list[int]] | None = None


def _case_variants(cp: int) -> set[int]:
    """Code points a case-insensitive regex may equate with ``cp`` (simple case mappings)."""
    global _INVERSE_CASE
    if _INVERSE_CASE is None:  # built once per process, only for case-insensitive grammars
        inverse: dict[int, list[int]] = {}
        for c in range(0x80, 0x110000):
            ch = chr(c)
            for mapped in (ch.lower(), ch.upper()):
                if len(mapped) == 1 and mapped != ch:
                    inverse.setdefault(ord(mapped), []).append(c)
        _INVERSE_CASE = inverse
    if not 0 <= cp < 0x110000:
        return set()
    ch = chr(cp)
    out = {ord(m) for m in (ch.lower(), ch.upper()) if len(m) == 1}
    for base in list(out | {cp}):
        out.update(_INVERSE_CASE.get(base, ()))
        out.update(_EXTRA_CASES.get(base, ()))
    return out


# --------------------------------------------------------------------------------------- UTF-8

_UTF8_LENGTH_RANGES = {2: (0x80, 0x7FF), 3: (0x800, 0xFFFF), 4: (0x10000, 0x10FFFF)}


def _split_utf8(data: bytes) -> tuple[str, bytes] | None:
    """Split into (decoded complete part, trailing incomplete sequence); None if invalid."""
    tail = b""
    for k in range(1, min(3, len(data)) + 1):
        byte = data[-k]
        if byte < 0x80:
            break
        if byte >= 0xC0:  # a lead byte: is its sequence still incomplete?
            if _utf8_length(byte) > k:
                tail = data[-k:]
            break
    head = data[: len(data) - len(tail)]
    try:
        text = codecs.decode(head, "utf-8", "strict")
    except UnicodeDecodeError:
        return None
    if tail and not _tail_ranges(tail):
        return None  # overlong, surrogate, beyond U+10FFFF, or a bad lead byte
    return text, tail


def _utf8_length(lead: int) -> int:
    if lead < 0xE0:
        return 2
    if lead < 0xF0:
        return 3
    if lead < 0xF8:
        return 4
    return 0  # never a lead byte; callers treat 0 as "complete", so decoding rejects it


def _tail_ranges(tail: bytes) -> list[tuple[int, int]]:
    """Code point ranges (surrogates excluded) whose UTF-8 encoding starts with ``tail``."""
    length = _utf8_length(tail[0])
    if length not in _UTF8_LENGTH_RANGES or length <= len(tail):
        return []
    value = tail[0] & (0x7F >> length)
    for byte in tail[1:]:
        value = (value << 6) | (byte & 0x3F)
    free_bits = 6 * (length - len(tail))
    lo, hi = value << free_bits, (value << free_bits) | ((1 << free_bits) - 1)
    valid_lo, valid_hi = _UTF8_LENGTH_RANGES[length]
    lo, hi = max(lo, valid_lo), min(hi, valid_hi)
    ranges = []
    for a, b in ((lo, min(hi, 0xD7FF)), (max(lo, 0xE000), hi)):  # split around surrogates
        if a <= b:
            ranges.append((a, b))
    return ranges


def _tail_candidates(tail: bytes, boundaries: list[int]) -> list[str]:
    """Representative characters completing ``tail``: range ends, regex boundaries, samples."""
    points: set[int] = set()
    for lo, hi in _tail_ranges(tail):
        points.update((lo, hi))
        points.update(lo + (hi - lo) * k // 8 for k in range(1, 8))
        start = bisect.bisect_left(boundaries, lo)
        stop = bisect.bisect_right(boundaries, hi + 1)
        for b in boundaries[start:stop]:
            # A boundary b starts a new segment; b - 1 ends the previous one.
            points.update(p for p in (b - 1, b) if lo <= p <= hi)
    return [chr(p) for p in sorted(points)]
