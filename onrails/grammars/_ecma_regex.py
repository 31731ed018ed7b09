"""ECMA-262 regexes (JSON Schema ``pattern``) → engine regexes over JSON string bodies.

A JSON Schema ``pattern`` constrains the *decoded* string, while a grammar terminal sees its JSON
encoding. The translation parses the ECMA-262 pattern into a small AST of code-point sets and
emits a Python regex (in the subset interegular accepts) whose words are the *canonical*
encodings of the matching strings: the encoding ``json.dumps(s, ensure_ascii=False)`` gives, so
every string has exactly one spelling. That keeps key exclusion exact (see ``_schema_gen``).

Where ECMA-262 and Python's ``re`` (which ``jsonschema`` validates with) differ (``\\d``, ``\\w``,
``\\s``, ``.``), character classes take the intersection of both meanings, so whatever the grammar
accepts is valid under either. A ``$`` inside the pattern ends the string where a match
crosses it (``_emit_ended``); a word boundary restricts the characters on either side of it
(``_without_boundaries``). What cannot be expressed as a regular language of this kind
(lookaround, backreferences, a word boundary beside what may be empty, a ``^`` inside the
pattern, ``\\p{...}``) raises ``RegexUnsupported``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union, cast

from onrails.grammars.unicode_classes import complement as code_point_complement
from onrails.grammars.unicode_classes import python_class

MAX_CP = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)
Ranges = tuple[tuple[int, int], ...]


class RegexUnsupported(Exception):
    """The pattern uses a feature with no exact regular translation."""


# -- code-point sets ----------------------------------------------------------------------------


def normalize(ranges: "list[tuple[int, int]] | Ranges") -> Ranges:
    """Sorted, merged ranges with surrogates removed (they never occur in decoded JSON text)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        pieces = [(lo, hi)]
        if lo <= _SURROGATES[1] and hi >= _SURROGATES[0]:
            pieces = [(lo, _SURROGATES[0] - 1), (_SURROGATES[1] + 1, hi)]
        for a, b in pieces:
            if a > b:
                continue
            if out and a <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
    return tuple(out)


def complement(ranges: Ranges) -> Ranges:
    return normalize(code_point_complement(ranges))


def union(*sets: Ranges) -> Ranges:
    return normalize([r for s in sets for r in s])


def intersect(a: Ranges, b: Ranges) -> Ranges:
    return complement(union(complement(a), complement(b)))


def contains(ranges: Ranges, cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


ALL: Ranges = normalize([(0, MAX_CP)])
_ASCII_DIGITS: Ranges = ((0x30, 0x39),)
_ASCII_WORD: Ranges = normalize([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
_ECMA_SPACE: Ranges = normalize(
    [(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
     (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)]
)
_LINE_TERMINATORS: Ranges = normalize([(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)])


def _class_escape(letter: str) -> tuple[Ranges, Ranges]:
    """(narrow, wide) sets of a class escape: matched under both semantics / under either."""
    lower = letter.lower()
    ecma = {"d": _ASCII_DIGITS, "w": _ASCII_WORD, "s": _ECMA_SPACE}[lower]
    python = normalize(list(python_class("\\" + lower)))
    narrow, wide = intersect(ecma, python), union(ecma, python)
    if letter.isupper():
        return complement(wide), complement(narrow)
    return narrow, wide


# -- canonical JSON encodings -------------------------------------------------------------------

_SHORT_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
_NEEDS_ESCAPE: Ranges = normalize([(0, 0x1F), (0x22, 0x22), (0x5C, 0x5C)])
_REGEX_SPECIAL = set(".^$*+?()[]{}|\\/-\"")


def canonical(text: str) -> str:
    """The canonical JSON encoding of a string's body (what ``json.dumps`` writes, unquoted)."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[cp])
        elif cp < 0x20:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _char(cp: int, in_class: bool) -> str:
    """One code point written for a Lark regex literal (Lark decodes \\x/\\u escapes itself)."""
    ch = chr(cp)
    if ch in _REGEX_SPECIAL or (in_class and ch in "^-]["):
        return "\\" + ch
    if 0x20 < cp < 0x7F:
        return ch
    if cp <= 0xFF:
        return f"\\x{cp:02x}"
    if cp <= 0xFFFF:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _class(ranges: Ranges) -> str:
    """A bracket class for a non-empty set; negated when that is shorter."""
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _char(ranges[0][0], False)

    def body(rs: Ranges) -> str:
        parts = []
        for lo, hi in rs:
            if lo == hi:
                parts.append(_char(lo, True))
            elif hi == lo + 1:
                parts.append(_char(lo, True) + _char(hi, True))
            else:
                parts.append(_char(lo, True) + "-" + _char(hi, True))
        return "".join(parts)

    comp = complement(ranges)
    if comp and len(comp) < len(ranges):
        return "[^" + body(comp) + "]"
    return "[" + body(ranges) + "]"


def literal(text: str) -> str:
    """Regex matching exactly ``text`` (already encoded)."""
    return "".join(_char(ord(c), False) for c in text)


def char_regex(ranges: Ranges) -> str | None:
    """Regex of the canonical encodings of one code point of ``ranges``; None when empty."""
    ranges = normalize(ranges)
    if not ranges:
        return None
    plain = intersect(ranges, complement(_NEEDS_ESCAPE))
    alts = []
    if plain:
        alts.append(_class(plain))
    controls = []
    for lo, hi in intersect(ranges, _NEEDS_ESCAPE):
        for cp in range(lo, hi + 1):
            if cp in _SHORT_ESCAPES:
                alts.append(literal(_SHORT_ESCAPES[cp]))
            else:
                controls.append(cp)
    if controls:
        # \u00XX in lowercase hex, as json.dumps writes it
        groups: dict[str, list[str]] = {}
        for cp in controls:
            hx = f"{cp:02x}"
            groups.setdefault(hx[0], []).append(hx[1])
        parts = [d + _class(normalize([(ord(c), ord(c)) for c in lows])) for d, lows in groups.items()]
        alts.append("\\\\u00" + (parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"))
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


ANY_CHAR = char_regex(ALL) or ""
# Any escape a JSON string may hold that denotes exactly one code point (no surrogate halves), so
# that length counts stay exact in strings that allow every spelling.
GENERIC_CHAR = (
    '(?:[^"\\\\\\x00-\\x1f]|\\\\["\\\\\\/bfnrt]'
    "|\\\\u(?:[0-9a-cA-CeEfF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}))"
)


# -- the ECMA-262 pattern parser ----------------------------------------------------------------


@dataclass(frozen=True)
class Chars:
    ranges: Ranges


@dataclass(frozen=True)
class Seq:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Alt:
    options: tuple["Node", ...]


@dataclass(frozen=True)
class Repeat:
    node: "Node"
    lo: int
    hi: int | None


@dataclass(frozen=True)
class Anchor:
    start: bool  # True for ^, False for $


Node = Union[Chars, Seq, Alt, Repeat, Anchor]


@dataclass(frozen=True)
class Boundary:
    """``\\b`` (``word``) or ``\\B``: only between parsing and ``_without_boundaries``, which
    leaves none in the AST (so no ``Node`` is one)."""

    word: bool

_MAX_REPEAT = 1000


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.p[j] if j < len(self.p) else ""

    def parse(self) -> "Node":
        node = self.disjunction()
        if self.i != len(self.p):
            raise RegexUnsupported(f"unbalanced parenthesis at offset {self.i}")
        return node

    def disjunction(self) -> "Node":
        options = [self.alternative()]
        while self.peek() == "|":
            self.i += 1
            options.append(self.alternative())
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def alternative(self) -> "Node":
        items: list[Node] = []
        while self.peek() not in ("", "|", ")"):
            items.append(self.term())
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def term(self) -> "Node":
        c = self.peek()
        if c == "^" or c == "$":
            self.i += 1
            return Anchor(c == "^")
        if c == "\\" and self.peek(1) in ("b", "B"):
            self.i += 2
            if self.peek() in ("*", "+", "?", "{"):
                raise RegexUnsupported("quantified word boundary")
            return cast("Node", Boundary(self.p[self.i - 1] == "b"))
        atom = self.atom()
        return self.quantifier(atom)

    def quantifier(self, atom: "Node") -> "Node":
        c = self.peek()
        lo: int
        hi: int | None
        if c == "*":
            lo, hi = 0, None
            self.i += 1
        elif c == "+":
            lo, hi = 1, None
            self.i += 1
        elif c == "?":
            lo, hi = 0, 1
            self.i += 1
        elif c == "{":
            m = re.match(r"\{(\d+)(,(\d*))?\}", self.p[self.i:])
            if not m:
                return atom  # a literal "{" (Annex B), already consumed as an atom otherwise
            lo = int(m.group(1))
            hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
            if hi is not None and hi < lo:
                raise RegexUnsupported("quantifier range out of order")
            if lo > _MAX_REPEAT or (hi or 0) > _MAX_REPEAT:
                raise RegexUnsupported(f"repetition counts above {_MAX_REPEAT}")
            self.i += m.end()
        else:
            return atom
        if self.peek() == "?":
            self.i += 1  # lazy: the same language
        if isinstance(atom, Anchor):
            raise RegexUnsupported("quantified anchor")
        return Repeat(atom, lo, hi)

    def atom(self) -> "Node":
        c = self.peek()
        if c == "(":
            self.i += 1
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.p.startswith("?<", self.i) and self.peek(2) not in ("=", "!"):
                end = self.p.find(">", self.i)
                if end < 0:
                    raise RegexUnsupported("unterminated group name")
                self.i = end + 1
            elif self.peek() == "?":
                raise RegexUnsupported("lookaround is not regular")
            node = self.disjunction()
            if self.peek() != ")":
                raise RegexUnsupported("missing )")
            self.i += 1
            return node
        if c == ")":
            raise RegexUnsupported("unbalanced )")
        if c == "[":
            return self.char_class()
        if c == ".":
            self.i += 1
            return Chars(complement(_LINE_TERMINATORS))
        if c == "\\":
            narrow, _ = self.escape(in_class=False)
            return Chars(_affordable(narrow))
        if c in "*+?":
            raise RegexUnsupported(f"nothing to repeat at offset {self.i}")
        self.i += 1
        return Chars(normalize([(ord(c), ord(c))]))

    def escape(self, in_class: bool) -> tuple[Ranges, Ranges]:
        """Parse an escape after the backslash; returns (narrow, wide) sets."""
        self.i += 1
        c = self.peek()
        if not c:
            raise RegexUnsupported("trailing backslash")
        self.i += 1
        if c in "dDwWsS":
            return _class_escape(c)
        simple = {"f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B}
        if c in simple:
            return _single(simple[c])
        if c == "b" and in_class:
            return _single(0x08)
        if c == "0" and not self.peek().isdigit():
            return _single(0)
        if c.isdigit() or c == "k":
            raise RegexUnsupported("backreferences are not regular")
        if c in "pP":
            raise RegexUnsupported("Unicode property escapes are not supported")
        if c == "c" and self.peek().isalpha():
            cp = ord(self.peek()) % 32
            self.i += 1
            return _single(cp)
        if c == "x":
            m = re.match(r"[0-9a-fA-F]{2}", self.p[self.i:])
            if m:
                self.i += 2
                return _single(int(m.group(), 16))
            return _single(ord("x"))
        if c == "u":
            m = re.match(r"\{([0-9a-fA-F]{1,6})\}|([0-9a-fA-F]{4})", self.p[self.i:])
            if m:
                self.i += m.end()
                cp = int(m.group(1) or m.group(2), 16)
                if cp > MAX_CP or _SURROGATES[0] <= cp <= _SURROGATES[1]:
                    raise RegexUnsupported("surrogate or out-of-range code point escape")
                return _single(cp)
            return _single(ord("u"))
        return _single(ord(c))  # identity escape

    def char_class(self) -> Chars:
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        narrow_parts: list[tuple[int, int]] = []
        wide_parts: list[tuple[int, int]] = []
        first = True
        while True:
            c = self.peek()
            if not c:
                raise RegexUnsupported("unterminated character class")
            if c == "]" and not first:
                self.i += 1
                break
            if c == "]" and first:
                # ECMA: "[]" matches nothing and "[^]" matches anything
                self.i += 1
                return Chars(ALL if negate else ())
            first = False
            lo_set = self.class_atom()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                hi_set = self.class_atom()
                if not (_is_single(lo_set) and _is_single(hi_set)):
                    raise RegexUnsupported("class escape used as a range bound")
                a, b = lo_set[0][0][0], hi_set[0][0][0]
                if a > b:
                    raise RegexUnsupported("class range out of order")
                narrow_parts.append((a, b))
                wide_parts.append((a, b))
            else:
                narrow_parts.extend(lo_set[0])
                wide_parts.extend(lo_set[1])
        if negate:
            return Chars(_affordable(complement(normalize(wide_parts))))
        return Chars(_affordable(normalize(narrow_parts)))

    def class_atom(self) -> tuple[Ranges, Ranges]:
        if self.peek() == "\\":
            return self.escape(in_class=True)
        cp = ord(self.peek())
        self.i += 1
        return _single(cp)


_MAX_CLASS_RANGES = 64
_LATIN1: Ranges = ((0, 0xFF),)


def _affordable(ranges: Ranges) -> Ranges:
    """A class with very many ranges (such as \\W: all but Unicode letters and digits) keeps only
    its Latin-1 part: a smaller set is still sound where it is used (classes only ever occur
    positively in the emitted regex), and the automaton stays small."""
    if len(ranges) <= _MAX_CLASS_RANGES:
        return ranges
    return intersect(ranges, _LATIN1)


def _single(cp: int) -> tuple[Ranges, Ranges]:
    r = normalize([(cp, cp)])
    return r, r


def _is_single(sets: tuple[Ranges, Ranges]) -> bool:
    return len(sets[0]) == 1 and sets[0][0][0] == sets[0][0][1] and sets[0] == sets[1]


# -- emission -----------------------------------------------------------------------------------


def _emit(node: "Node", plain: bool = False) -> str | None:
    """Regex over canonical encodings; None when the node matches nothing. ``plain``: along
    the paths that cross no ``$`` inside the node (one crossed ends the string: ``_emit_ended``)."""
    if isinstance(node, Chars):
        return char_regex(node.ranges)
    if isinstance(node, Anchor):
        if plain and not node.start:
            return None
        raise RegexUnsupported("anchor inside the pattern")
    if isinstance(node, Seq):
        parts = []
        for item in node.items:
            part = _emit(item, plain)
            if part is None:
                return None
            parts.append(part)
        return "".join(parts)
    if isinstance(node, Alt):
        return _union([_emit(x, plain) for x in node.options])
    inner = _emit(node.node, plain)
    if inner is None:
        return None if node.lo > 0 else ""
    if not inner or node.hi == 0:
        return ""
    group = inner if _is_atomic(inner) else "(?:" + inner + ")"
    if (node.lo, node.hi) == (0, None):
        return group + "*"
    if (node.lo, node.hi) == (1, None):
        return group + "+"
    if (node.lo, node.hi) == (0, 1):
        return group + "?"
    if node.hi is None:
        return group + "{%d,}" % node.lo
    if node.lo == node.hi:
        return group + ("{%d}" % node.lo if node.lo != 1 else "")
    return group + "{%d,%d}" % (node.lo, node.hi)


def _emit_ended(node: "Node") -> str | None:
    """Regex of the strings the node matches along a path crossing a ``$`` inside it: what it
    read before the ``$``, where the string must end, everything after matching the empty
    string there. None when there is none. ``^`` inside raises."""
    if isinstance(node, Chars):
        return None
    if isinstance(node, Anchor):
        if node.start:
            raise RegexUnsupported("anchor inside the pattern")
        return ""
    if isinstance(node, Alt):
        return _union([_emit_ended(o) for o in node.options])
    if isinstance(node, Seq):
        parts: list[str | None] = []
        for i, item in enumerate(node.items):
            if not all(_empty_at_end(rest) for rest in node.items[i + 1 :]):
                continue
            ended = _emit_ended(item)
            before = _emit(Seq(node.items[:i]), plain=True) if ended is not None else None
            if ended is not None and before is not None:
                parts.append(_grouped(before) + _grouped(ended))
        return _union(parts)
    ended = _emit_ended(node.node)
    if ended is None or node.hi == 0:
        return None
    # the iteration crossing the $ comes after some that did not; those it still owes (below
    # the minimum) must match the empty string at the end
    lo = 0 if node.lo <= 1 or _empty_at_end(node.node) else node.lo - 1
    hi = None if node.hi is None else node.hi - 1
    before = _emit(Repeat(node.node, lo, hi), plain=True)
    return None if before is None else _grouped(before) + _grouped(ended)


def _empty_at_end(node: "Node") -> bool:
    """Whether the node matches the empty string at the end of the string (``$`` does; ``^``
    is taken not to, which only leaves strings out)."""
    if isinstance(node, Chars):
        return False
    if isinstance(node, Anchor):
        return not node.start
    if isinstance(node, Seq):
        return all(_empty_at_end(i) for i in node.items)
    if isinstance(node, Alt):
        return any(_empty_at_end(o) for o in node.options)
    return node.lo == 0 or _empty_at_end(node.node)


def _union(parts: "list[str | None]") -> str | None:
    """The alternation of the regexes among ``parts`` (None: matches nothing), repeats once,
    optional when one is empty; None when all are."""
    real = list(dict.fromkeys(p for p in parts if p is not None))
    if not real:
        return None
    nonempty = [p for p in real if p]
    if not nonempty:
        return ""
    body = "(?:" + "|".join(nonempty) + ")"
    return body + "?" if len(nonempty) < len(real) else body


def _grouped(regex: str) -> str:
    return regex if not regex or _is_atomic(regex) or "|" not in regex else "(?:" + regex + ")"


def _is_atomic(rx: str) -> bool:
    if len(rx) == 1 or (len(rx) == 2 and rx[0] == "\\"):
        return True
    if rx.startswith("[") and rx.endswith("]") and rx.count("]") == 1 + rx.count("\\]"):
        return "[" not in rx[1:].replace("\\[", "")
    if rx.startswith("\\x") and len(rx) == 4 or rx.startswith("\\u") and len(rx) == 6:
        return True
    return rx.startswith("\\U") and len(rx) == 10


def parse(pattern: str) -> "Node":
    """Parse an ECMA-262 pattern; raises RegexUnsupported."""
    return _without_boundaries(_Parser(pattern).parse())


# -- word boundaries ------------------------------------------------------------------------------
# ``L\bR`` is ``L`` ending in a word character and ``R`` starting with a non-word one (or ending
# the string at a ``$``), or the reverse; ``L\BR`` pairs alike characters. Each side is restricted
# on its edge character; a side that may be empty (its context then decides) is refused.
# Word characters as both ECMA-262 and Python's ``re`` read them (ASCII ``\w``), non-word ones
# as both read them; characters the two disagree on are left out beside a boundary.

_WORD = _class_escape("w")[0]
_NON_WORD = _class_escape("W")[0]


def _without_boundaries(node: "Node") -> "Node":
    """The AST with its ``\\b``/``\\B`` rewritten into restricted edges; raises
    RegexUnsupported where a side's context is outside the pattern."""
    if isinstance(node, Boundary):
        raise RegexUnsupported("word boundary at the edge of a group")
    if isinstance(node, Alt):
        return Alt(tuple(_without_boundaries(o) for o in node.options))
    if isinstance(node, Repeat):
        return Repeat(_without_boundaries(node.node), node.lo, node.hi)
    if not isinstance(node, Seq):
        return node
    at = next((i for i, item in enumerate(node.items) if isinstance(item, Boundary)), None)
    if at is None:
        return Seq(tuple(_without_boundaries(i) for i in node.items))
    boundary = node.items[at]
    assert isinstance(boundary, Boundary)
    # a leading ^ stays outside, where it anchors the whole (a $ on the right ends the string)
    lead = 0
    while lead < at and node.items[lead] == Anchor(True):
        lead += 1
    if lead:
        return Seq((*node.items[:lead], _without_boundaries(Seq(node.items[lead:]))))
    left = Seq(tuple(_without_boundaries(i) for i in node.items[:at]))
    right = _without_boundaries(Seq(node.items[at + 1 :]))
    if _nullable(left) or _nullable(right):
        raise RegexUnsupported("word boundary beside what may be empty")
    pairs = [(_WORD, _NON_WORD), (_NON_WORD, _WORD)] if boundary.word else [(_WORD, _WORD), (_NON_WORD, _NON_WORD)]
    options = []
    for before, after in pairs:
        last, first = _restrict_last(left, before), _restrict_first(right, after, after is _NON_WORD)
        if last is not None and first is not None:
            options.append(Seq((last, first)))
    return Alt(tuple(options)) if options else Chars(())


def _nullable(node: "Node") -> bool:
    """Whether the node matches the empty string without crossing an anchor."""
    if isinstance(node, Chars) or isinstance(node, Anchor):
        return False
    if isinstance(node, Seq):
        return all(_nullable(i) for i in node.items)
    if isinstance(node, Alt):
        return any(_nullable(o) for o in node.options)
    if isinstance(node, Repeat):
        return node.lo == 0 or _nullable(node.node)
    raise RegexUnsupported("nested word boundary")


def _restrict_first(node: "Node", chars: Ranges, end_ok: bool) -> "Node | None":
    """The matches of ``node`` whose first character is in ``chars``, and (``end_ok``) those
    that end the string (a ``$``) before reading any. None when there are none."""
    if isinstance(node, Chars):
        kept = intersect(node.ranges, chars)
        return Chars(kept) if kept else None
    if isinstance(node, Anchor):
        if node.start:
            raise RegexUnsupported("anchor inside the pattern")
        return node if end_ok else None
    if isinstance(node, Alt):
        found = [r for o in node.options if (r := _restrict_first(o, chars, end_ok)) is not None]
        return Alt(tuple(found)) if found else None
    if isinstance(node, Repeat):
        first = _restrict_first(node.node, chars, end_ok) if node.hi != 0 else None
        if first is None:
            return None
        return Seq((first, Repeat(node.node, max(node.lo - 1, 0), None if node.hi is None else node.hi - 1)))
    if isinstance(node, Seq):
        found = []
        for i, item in enumerate(node.items):
            head = _restrict_first(item, chars, end_ok)
            if head is not None:
                found.append(Seq((head, *node.items[i + 1 :])))
            if not _nullable(item):
                break  # the items before the first character matched the empty string
        return Alt(tuple(found)) if found else None
    raise RegexUnsupported("nested word boundary")


def _restrict_last(node: "Node", chars: Ranges) -> "Node | None":
    """The matches of ``node`` whose last character is in ``chars``; None when there are none."""
    if isinstance(node, Chars):
        kept = intersect(node.ranges, chars)
        return Chars(kept) if kept else None
    if isinstance(node, Anchor):
        raise RegexUnsupported("anchor before a word boundary")
    if isinstance(node, Alt):
        found = [r for o in node.options if (r := _restrict_last(o, chars)) is not None]
        return Alt(tuple(found)) if found else None
    if isinstance(node, Repeat):
        last = _restrict_last(node.node, chars) if node.hi != 0 else None
        if last is None:
            return None
        return Seq((Repeat(node.node, max(node.lo - 1, 0), None if node.hi is None else node.hi - 1), last))
    if isinstance(node, Seq):
        found = []
        for i in range(len(node.items) - 1, -1, -1):
            item = node.items[i]
            tail = _restrict_last(item, chars)
            if tail is not None:
                found.append(Seq((*node.items[:i], tail)))
            if not _nullable(item):
                break
        return Alt(tuple(found)) if found else None
    raise RegexUnsupported("nested word boundary")


def _strip_anchors(node: "Node") -> tuple["Node", bool, bool]:
    """(node without edge anchors, anchored at start, anchored at end) for one alternative."""
    items = list(node.items) if isinstance(node, Seq) else [node]
    start = bool(items) and isinstance(items[0], Anchor) and items[0].start
    if start:
        items = items[1:]
    end = bool(items) and isinstance(items[-1], Anchor) and not items[-1].start
    if end:
        items = items[:-1]
    # a leading or trailing .* is what an unanchored search adds anyway
    return (items[0] if len(items) == 1 else Seq(tuple(items))), start, end


def search_body(pattern: str) -> str | None:
    """Regex of canonical JSON string bodies whose decoded text contains a match of ``pattern``.

    None when no string matches. Raises RegexUnsupported.
    """
    node = parse(pattern)
    options = node.options if isinstance(node, Alt) else (node,)
    # Options anchored alike share one "anything" before and after them: ``X*(?:A|B)X*``, not
    # ``X*AX*|X*BX*``, whose automaton construction grows with every option (seconds for the
    # dozens of words of a "contains one of" pattern).
    bodies: dict[tuple[bool, bool], list[str]] = {}
    any_star = "(?:" + ANY_CHAR + ")*"
    for option in options:
        inner, start, end = _strip_anchors(option)
        if node_length(inner)[0] == 0 and not (start and end) and not _has_anchor(inner):
            return any_star  # an empty match is found in every string
        if _has_anchor(inner):
            # a $ inside: the matches crossing it end the string
            ended = _emit_ended(inner)
            if ended is not None:
                bodies.setdefault((start, True), []).append(ended)
        body = _emit(inner, plain=_has_anchor(inner))
        if body is not None:
            bodies.setdefault((start, end), []).append(body)
    out = []
    for (start, end), group in bodies.items():
        body = group[0] if len(group) == 1 else "(?:" + "|".join(group) + ")"
        out.append(("" if start else any_star) + body + ("" if end else any_star))
    if not out:
        return None
    return out[0] if len(out) == 1 else "(?:" + "|".join(out) + ")"


def _has_anchor(node: "Node") -> bool:
    if isinstance(node, Anchor):
        return True
    if isinstance(node, Seq):
        return any(_has_anchor(i) for i in node.items)
    if isinstance(node, Alt):
        return any(_has_anchor(o) for o in node.options)
    if isinstance(node, Repeat):
        return _has_anchor(node.node)
    return False


def anchored_node(pattern: str) -> "Node | None":
    """The AST when the pattern is one alternative anchored at both ends, else None."""
    node = parse(pattern)
    if isinstance(node, Alt):
        return None
    inner, start, end = _strip_anchors(node)
    return inner if start and end else None


def emit(node: "Node") -> str | None:
    """Regex over canonical encodings of the strings ``node`` matches entirely."""
    if not _has_anchor(node):
        return _emit(node)
    return _union([_emit(node, plain=True), _emit_ended(node)])


def node_length(node: "Node") -> tuple[int, int | None]:
    """(min, max) number of code points the node matches; max None when unbounded."""
    if isinstance(node, Chars):
        return (1, 1)
    if isinstance(node, Anchor):
        return (0, 0)
    if isinstance(node, Seq):
        lo, hi = 0, 0  # type: tuple[int, int | None]  # noqa
        for item in node.items:
            a, b = node_length(item)
            lo += a
            hi = None if hi is None or b is None else hi + b
        return lo, hi
    if isinstance(node, Alt):
        lens = [node_length(o) for o in node.options]
        return min(a for a, _ in lens), (None if any(b is None for _, b in lens) else max(b for _, b in lens if b is not None))
    a, b = node_length(node.node)
    return a * node.lo, (None if node.hi is None or b is None else b * node.hi)
