"""Tests of the brute-force reference recognizer (tests/reference.py) itself.

The reference is the oracle for the engine, so it is checked against independent oracles:
``json.loads`` for the built-in JSON grammar, Lark's own Earley parser with the
``dynamic_complete`` lexer (which also tries every split of the text into terminals), exhaustive
enumeration for finite toy languages, and hand-made example sentences.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark import Lark
from lark.exceptions import LarkError

try:
    from tests.reference import ReferenceGrammar, UnsupportedGrammar
except ImportError:  # run from inside tests/ or without the repo root on sys.path
    from reference import ReferenceGrammar, UnsupportedGrammar  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
GRAMMARS = Path(__file__).resolve().parent / "grammars"
JSON_LARK = (ROOT / "onrails" / "grammars" / "json.lark").read_text(encoding="utf-8")
EXAMPLES: dict[str, dict[str, list[str]]] = json.loads(
    (GRAMMARS / "examples.json").read_text(encoding="utf-8")
)
NAMES = sorted(EXAMPLES)


@functools.lru_cache(maxsize=None)
def example_grammar(name: str) -> ReferenceGrammar:
    return ReferenceGrammar((GRAMMARS / f"{name}.lark").read_text(encoding="utf-8"), "start")


@functools.lru_cache(maxsize=None)
def json_grammar(start: str) -> ReferenceGrammar:
    return ReferenceGrammar(JSON_LARK, start)


@functools.lru_cache(maxsize=None)
def lark_parser(name: str) -> Lark:
    """Lark's Earley parser trying every tokenization: an independent membership oracle."""
    text = (GRAMMARS / f"{name}.lark").read_text(encoding="utf-8")
    return Lark(text, start="start", parser="earley", lexer="dynamic_complete")


def lark_accepts(name: str, text: str) -> bool:
    try:
        lark_parser(name).parse(text)
    except LarkError:
        return False
    return True


def first_dead_prefix(grammar: ReferenceGrammar, data: bytes) -> int | None:
    """Length of the shortest non-viable prefix of ``data`` (None if all are viable)."""
    return next((k for k in range(len(data) + 1) if not grammar.is_viable_prefix(data[:k])), None)


# ---------------------------------------------------------------------------- test grammars


def test_examples_file_shape() -> None:
    assert set(EXAMPLES) == {"arithmetic", "csv", "sql"}
    for name, cases in EXAMPLES.items():
        assert len(cases["valid"]) >= 10 and len(cases["invalid"]) >= 10, name
        assert not set(cases["valid"]) & set(cases["invalid"]), name


@pytest.mark.parametrize("name", NAMES)
def test_valid_examples_are_accepted_and_all_prefixes_viable(name: str) -> None:
    grammar = example_grammar(name)
    for text in EXAMPLES[name]["valid"]:
        data = text.encode("utf-8")
        assert grammar.accepts(data), text
        # Every byte prefix, including cuts inside multi-byte characters.
        assert first_dead_prefix(grammar, data) is None, text


@pytest.mark.parametrize("name", NAMES)
def test_invalid_examples_are_rejected_and_viability_is_monotone(name: str) -> None:
    grammar = example_grammar(name)
    for text in EXAMPLES[name]["invalid"]:
        data = text.encode("utf-8")
        assert not grammar.accepts(data), text
        dead = first_dead_prefix(grammar, data)
        if dead is not None:
            # Once dead, every longer prefix is dead too.
            assert not any(grammar.is_viable_prefix(data[:k]) for k in range(dead, len(data) + 1)), text
            assert not any(grammar.accepts(data[:k]) for k in range(dead, len(data) + 1)), text


# Where viability breaks: (grammar, text, length of the shortest dead prefix or None).
BREAKS = [
    ("arithmetic", "1.", None),  # incomplete decimal
    ("arithmetic", ".5", 1),
    ("arithmetic", "1 2", 3),
    ("arithmetic", "f(x,)", 5),
    ("arithmetic", "a)", 2),
    ("arithmetic", "x\n+1", 2),  # newline is not ignored
    ("arithmetic", "é", 1),  # dead on the first byte already
    ("csv", "a,b", None),  # no row yet
    ("csv", 'a\n"x"y', 6),
    ("csv", 'a\nx"y', 4),
    ("csv", "a\n1\r2", 5),
    ("csv", 'a\n"x""', None),  # "" is an escaped quote: still inside the field
    ("sql", "SELECT * FROM t LIMIT 1.5", 24),
    ("sql", "SELECT * FROM t;;", 17),
    ("sql", "SELEC * FROM t", 6),
    ("sql", "SELECT * FROM t WHERE a = 'unterminated", None),
]


@pytest.mark.parametrize(("name", "text", "dead"), BREAKS)
def test_where_viability_breaks(name: str, text: str, dead: int | None) -> None:
    assert first_dead_prefix(example_grammar(name), text.encode("utf-8")) == dead


@pytest.mark.parametrize("name", NAMES)
def test_examples_agree_with_lark_dynamic_complete(name: str) -> None:
    grammar = example_grammar(name)
    for text in EXAMPLES[name]["valid"] + EXAMPLES[name]["invalid"]:
        assert grammar.accepts(text.encode("utf-8")) == lark_accepts(name, text), text


ALPHABETS = {
    "arithmetic": ["1", "2", ".", "x", "f", "(", ")", ",", "+", "-", "*", "^", " ", "a1"],
    "csv": ["a", ",", '"', "\n", "\r\n", "\r", " ", "é", '""'],
    "sql": [
        "select ", "SELECT", " from ", "FROM", " t", "*", "a", ",",
        " where ", "=", "1", "'x'", "'", ";", " ", ".",
    ],
}


@pytest.mark.parametrize("name", NAMES)
def test_random_strings_agree_with_lark_dynamic_complete(name: str) -> None:
    """Random short strings (seeded): membership agrees; accepted ones have viable prefixes."""
    grammar = example_grammar(name)
    rnd = random.Random(1234)
    pieces = ALPHABETS[name]
    for _ in range(300):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 7)))
        accepted = grammar.accepts(text.encode("utf-8"))
        assert accepted == lark_accepts(name, text), text
        if accepted:
            assert grammar.is_viable_prefix(text.encode("utf-8"))


def test_scannerless_lexing_is_not_longest_match() -> None:
    """Any split into lexemes counts, e.g. "aab" = A("a") B("ab") although A could take "aa"."""
    grammar = ReferenceGrammar('start: A B\nA: /a+/\nB: /a+b/\n', "start")
    assert grammar.accepts(b"aab")
    assert grammar.accepts(b"aaab")
    assert not grammar.accepts(b"ab")
    assert grammar.is_viable_prefix(b"a")
    assert not grammar.is_viable_prefix(b"b")
    # Keywords need no separator when whitespace is only %ignore'd.
    assert example_grammar("sql").accepts(b"selectxfromt")


def test_case_insensitive_keywords() -> None:
    sql = example_grammar("sql")
    assert sql.accepts(b"sElEcT * fRoM t oRdEr By a AsC lImIt 3")
    # Python-style simple case folding: U+017F LATIN SMALL LETTER LONG S matches (?i:s) ...
    assert sql.accepts("ſelect * from t".encode("utf-8"))
    # ... so a prefix cut inside it is viable, found through the case-variant boundaries.
    assert sql.is_viable_prefix(b"\xc5")
    # U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE matches (?i:i) (the i of LIMIT).
    assert sql.is_viable_prefix(b"select * from t l\xc4")
    assert not sql.is_viable_prefix(b"select * from t l\xc5")


# ------------------------------------------------------------------------------ toy grammars

TOY_GRAMMARS = {
    # Nullable chains and a nullable rule completing at its own origin (Aycock-Horspool case).
    "nullable": ('start: a b a\na: | "x"\nb: a a | "y"\n', "xy"),
    # Ambiguous lexing, overlapping terminals and an %ignore'd terminal.
    "overlap": ('start: X Y | XY\nX: /ab?/\nY: /b+c?/\nXY: "abbc"\n%ignore "_"\n', "abc_"),
    # Highly ambiguous recursion with an empty alternative.
    "recursive": ('start: s\ns: "(" s ")" | s s | \n', "()"),
}


@pytest.mark.parametrize("name", sorted(TOY_GRAMMARS))
def test_toy_grammars_by_enumeration(name: str) -> None:
    """Exhaustive check against Lark's Earley parser on all strings up to length 5.

    A string is a viable prefix iff some accepted string extends it; accepted strings are only
    known up to length 5, which decides prefixes of length <= 2 exactly here (each of these
    languages completes any viable prefix within 3 more characters).
    """
    source, alphabet = TOY_GRAMMARS[name]
    grammar = ReferenceGrammar(source, "start")
    parser = Lark(source, start="start", parser="earley", lexer="dynamic_complete")
    strings = ["".join(p) for n in range(6) for p in itertools.product(alphabet, repeat=n)]
    accepted = set()
    for text in strings:
        try:
            parser.parse(text)
            expected = True
        except LarkError:
            expected = False
        assert grammar.accepts(text.encode()) == expected, (name, text)
        if expected:
            accepted.add(text)
    for text in strings:
        viable = grammar.is_viable_prefix(text.encode())
        if any(a.startswith(text) for a in accepted):
            assert viable, (name, text)
        elif len(text) <= 2:
            assert not viable, (name, text)


def test_empty_language() -> None:
    grammar = ReferenceGrammar('start: a\na: a "x"\n', "start")
    assert grammar.is_empty
    assert not grammar.is_viable_prefix(b"")
    assert not grammar.is_viable_prefix(b"x")
    assert not grammar.accepts(b"")


def test_unproductive_alternatives_do_not_make_prefixes_viable() -> None:
    grammar = ReferenceGrammar('start: "a" | "b" loop\nloop: "c" loop\n', "start")
    assert grammar.accepts(b"a")
    assert not grammar.is_viable_prefix(b"b")


@pytest.mark.parametrize(
    "terminal",
    [r"/(?=a)a/", r"/a(?!b)/", r"/(?<=a)b/", r"/^a/", r"/a$/", r"/a\b/", r"/(a)\1/", r"/a*/"],
)
def test_unsupported_regexes_raise(terminal: str) -> None:
    with pytest.raises((UnsupportedGrammar, LarkError)):
        ReferenceGrammar(f"start: A\nA: {terminal}\n", "start")


def test_unsupported_error_is_clear() -> None:
    with pytest.raises(UnsupportedGrammar, match="lookaround"):
        ReferenceGrammar("start: A\nA: /a(?=b)/\n", "start")


# --------------------------------------------------------------------------------------- UTF-8


def test_incomplete_characters_use_representatives() -> None:
    one = ReferenceGrammar("start: A\nA: /[\U0001F600]/\n", "start")  # a single code point
    assert one.is_viable_prefix(b"\xf0")
    assert one.is_viable_prefix(b"\xf0\x9f")
    assert one.is_viable_prefix(b"\xf0\x9f\x98")
    assert not one.is_viable_prefix(b"\xf0\x9f\x99")
    assert not one.is_viable_prefix(b"\xf0\x9e")
    assert one.accepts("\U0001F600".encode("utf-8"))
    assert not one.accepts(b"\xf0\x9f\x98")  # incomplete is never a sentence
    latin = ReferenceGrammar("start: A\nA: /[à-å]/\n", "start")
    assert latin.is_viable_prefix(b"\xc3")
    assert not latin.is_viable_prefix(b"\xc2")
    assert not latin.is_viable_prefix(b"\xe0")
    anything = ReferenceGrammar("start: A\nA: /[^a]+/\n", "start")
    assert anything.is_viable_prefix(b"\xe2\x82")
    assert anything.is_viable_prefix(b"\xf4\x8f\xbf")  # U+10FFFF's prefix


INVALID_UTF8 = [
    b"\x80",  # continuation byte without lead
    b"\xc0",  # always overlong
    b"\xc1\xbf",
    b"\xe0\x80",  # overlong 3-byte
    b"\xe0\x9f",
    b"\xf0\x8f",  # overlong 4-byte
    b"\xed\xa0",  # surrogates
    b"\xed\xbf\xbf",
    b"\xf4\x90",  # beyond U+10FFFF
    b"\xf5",
    b"\xf8",
    b"\xff",
    b"\xc3\xa9\xa9",  # one continuation too many
    b"\xe2\x82a",  # truncated sequence followed by ASCII
]


@pytest.mark.parametrize("bad", INVALID_UTF8)
def test_invalid_utf8_is_never_viable(bad: bytes) -> None:
    for start in ("value", "string", "insidevalue", "root"):
        grammar = json_grammar(start)
        prefix = b"" if start in ("insidevalue", "root") else b'"'
        assert not grammar.is_viable_prefix(prefix + bad), (start, bad)
        assert not grammar.accepts(prefix + bad + b'"'), (start, bad)
        assert not grammar.prefix_checker(prefix).viable(bad), (start, bad)
        assert not grammar.prefix_checker(prefix + bad).viable(b""), (start, bad)


def test_multibyte_prefixes_inside_strings() -> None:
    text = '"aé日😀\u0085\u2028z"'.encode("utf-8")
    for start in ("value", "string"):
        grammar = json_grammar(start)
        assert grammar.accepts(text)
        assert all(grammar.is_viable_prefix(text[:k]) for k in range(len(text) + 1)), start
    value = json_grammar("value")
    assert not value.is_viable_prefix(b"\xc3")  # a value cannot start with a letter
    assert not value.is_viable_prefix(b"1\xc3")  # nor a number continue with one
    assert json_grammar("insidevalue").is_viable_prefix(b"\xc3")
    assert json_grammar("root").is_viable_prefix(b"\xf0\x9f")  # free text
    assert not json_grammar("number").is_viable_prefix(b"\xe2")


# ---------------------------------------------------------------------------------------- JSON

INVALID = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_oracle(text: str) -> Any:
    """json.loads, restricted to RFC 8259 JSON texts (whitespace may surround the value, as
    json.lark's roots take it in flexible mode, which is json.lark's own)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return INVALID


VALID_JSON = [
    "0", "-0", "1", "-12", "3.25", "1e5", "1E+5", "-2.5e-10", "0.0", "123456789012345678901234567890",
    "true", "false", "null",
    '""', '"a"', '"\\"\\\\\\/\\b\\f\\n\\r\\t"', '"\\u0041\\u00e9\\uD83D\\uDE00"', '"\\ud800"',
    '"é 日本 😀"', '"\x7f"', '"\u2028"',
    "{}", "[]", "{ }", "[ ]", "[\n]", '{"a":1}', '{"a": [1, 2, {"b": null}], "c": {"d": "e"}}',
    '[1,2,3]', '[[[[[]]]]]', '[{"a":[{"b":[{}]}]}]', '{"": ""}', '{"a":1,"a":2}',
    '[ 1 ,\t2 ,\r\n3 ]', '{\n  "key": "value",\n  "n": -0.5E3\n}', '["a" , "b"]',
    " 1", "1 ", "\n[]", "[]\n", '\t{"a": 1}\r\n',
]

INVALID_JSON = [
    "", " ", "01", "-", "+1", "1.", ".5", "1e", "1e+", "0x1F", "-01", "1.5.2", "Infinity", "NaN",
    "-Infinity", "True", "nul", "nulll", "tru", '"', '"abc', "'a'", '"\\x"', '"\\u12"', '"\\u12g4"',
    '"\\U0041"', '"a\tb"', '"a\nb"', '"\x00"', '"\x1f"', "[1,]", "[,1]", "[1 2]", '{"a":1,}',
    '{"a"}', '{"a":}', "{a:1}", '{1:2}', "[", "]", "{", '{"a":1', "[1]]", "1 2", "\x0c1", "1\x0c",
    "\ufeff1", '["a"]x', "{}{}", "[1,,2]", '{"a" "b"}', '{"a"::1}',
]


@pytest.mark.parametrize("text", VALID_JSON + INVALID_JSON)
def test_json_value_agrees_with_json_loads(text: str) -> None:
    expected = json_oracle(text) is not INVALID
    assert json_grammar("value").accepts(text.encode("utf-8")) == expected


def test_json_lists_are_classified_correctly() -> None:
    assert all(json_oracle(t) is not INVALID for t in VALID_JSON)
    assert all(json_oracle(t) is INVALID for t in INVALID_JSON)


@pytest.mark.parametrize(
    ("start", "kind"),
    [("object", dict), ("array", list), ("string", str), ("number", (int, float))],
)
def test_json_typed_roots_agree_with_json_loads(start: str, kind: Any) -> None:
    grammar = json_grammar(start)
    for text in VALID_JSON + INVALID_JSON:
        value = json_oracle(text)
        expected = value is not INVALID and isinstance(value, kind) and not isinstance(value, bool)
        assert grammar.accepts(text.encode("utf-8")) == expected, (start, text)


def test_json_insidevalue() -> None:
    grammar = json_grammar("insidevalue")
    bodies = ["", "a", "é😀", '\\"', "\\\\", "\\u00e9", "\\n", '"', "\\", "\\x", "a\tb", "\\u00", "a b"]
    for body in bodies:
        expected = json_oracle(f'"{body}"') is not INVALID
        assert grammar.accepts(body.encode("utf-8")) == expected, body
    assert grammar.is_viable_prefix(b"abc\\")
    assert grammar.is_viable_prefix(b"\\u00")
    assert not grammar.is_viable_prefix(b'a"')


def test_json_func() -> None:
    grammar = json_grammar("func")
    good = [
        '{"name": "get_weather", "arguments": {"city": "Zürich", "days": [1, 2]}}',
        '{"name":"f","arguments":{}}',
        '{ "name" : "f" ,\n "arguments" : { "a" : { "b" : null } } }',
    ]
    bad = [
        '{"arguments": {}, "name": "f"}',  # keys in the wrong order
        '{"name": "f"}',
        '{"name": 1, "arguments": {}}',
        '{"name": "f", "arguments": []}',
        '{"name": "f", "arguments": {}, "x": 1}',
        '{"\\u006eame": "f", "arguments": {}}',  # the key is a literal, not any string equal to it
        ' {"name": "f", "arguments": {}}',
    ]
    for text in good:
        assert grammar.accepts(text.encode("utf-8")), text
    for text in bad:
        assert not grammar.accepts(text.encode("utf-8")), text
    assert grammar.is_viable_prefix(b'{"na')
    assert not grammar.is_viable_prefix(b'{"ar')


def test_json_root() -> None:
    grammar = json_grammar("root")
    call = '[{"name": "f", "arguments": {"a": 1}}]'
    two_calls = '[{"name":"f","arguments":{}}, {"name":"g","arguments":{}}]'
    accepted = [call, f"  {call}\n", two_calls, "Hello", " hi [", "x{"]
    rejected = ["", "   ", "[]", "[1]", '{"a": 1}', " {", f"{call} x", "[" + call]
    for text in accepted:
        assert grammar.accepts(text.encode("utf-8")), text
    for text in rejected:
        assert not grammar.accepts(text.encode("utf-8")), text
    for prefix in [b"", b" ", b"[", b'\n[{"name"', b"Hel"]:
        assert grammar.is_viable_prefix(prefix), prefix
    for prefix in [b"[1", b"{", b'[{"nam"x', b"[]"]:
        assert not grammar.is_viable_prefix(prefix), prefix


JSON_BREAKS = [
    ("01", 2), ("[1,]", 4), ('"\\x"', 3), ("1.", None), ("tru", None), ("trux", 4), ('{"a":1,}', 8),
    ('"a\nb"', 3), ("[1 2]", 4), (" 1 x", 4), (" \x0c", 2),
]


@pytest.mark.parametrize(("text", "dead"), JSON_BREAKS)
def test_json_where_viability_breaks(text: str, dead: int | None) -> None:
    assert first_dead_prefix(json_grammar("value"), text.encode("utf-8")) == dead


@pytest.mark.parametrize("text", VALID_JSON)
def test_json_valid_texts_have_all_prefixes_viable(text: str) -> None:
    data = text.encode("utf-8")
    assert first_dead_prefix(json_grammar("value"), data) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=json_values, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 0, 2, "\t"]))
def test_json_dumps_output_is_accepted(value: Any, ensure_ascii: bool, indent: Any) -> None:
    data = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent).encode("utf-8")
    grammar = json_grammar("value")
    assert grammar.accepts(data)
    assert all(grammar.is_viable_prefix(data[:k]) for k in range(0, len(data) + 1, 3))


@settings(max_examples=200, deadline=None)
@given(value=json_values, data=st.data())
def test_json_mutations_agree_with_json_loads(value: Any, data: st.DataObject) -> None:
    text = json.dumps(value, ensure_ascii=False)
    pos = data.draw(st.integers(0, len(text)))
    op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
    char = data.draw(st.sampled_from(list('{}[],:"\\ 0123456789.eE+-tfnaul\t\n\x01é')))
    if op == "insert":
        text = text[:pos] + char + text[pos:]
    elif op == "delete":
        text = text[:pos] + text[pos + 1 :]
    else:
        text = text[:pos] + char + text[pos + 1 :]
    expected = json_oracle(text) is not INVALID
    assert json_grammar("value").accepts(text.encode("utf-8")) == expected, text


# ---------------------------------------------------------------------------- prefix checker


def _candidates(rnd: random.Random, count: int) -> list[bytes]:
    pieces = [b'"', b",", b" ", b"1", b"}", b"]", b"a", b"\xc3", b"\xa9", b"\xf0\x9f", b"\x98\x80", b"e",
              b"-", b"\\", b"u", b":", b"{", b"[", b"true", b"null", b"\n", b"\x80", b"0", b"."]
    return [b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 5))) for _ in range(count)]


PREFIXES = [
    b"",
    b'{"name": "search", "arguments": {"query": "caf\xc3',
    b'{"name": "search", "arguments": {"query": "caf\xc3\xa9", "n": 1',
    b"[1, 2.5e",
    b'["\xf0\x9f',
    b'{"a": [true, nu',
]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_prefix_checker_agrees_with_direct_checks(prefix: bytes) -> None:
    grammar = json_grammar("value")
    checker = grammar.prefix_checker(prefix)
    for extra in _candidates(random.Random(len(prefix)), 300):
        assert checker.viable(extra) == grammar.is_viable_prefix(prefix + extra), extra
        assert checker.accepts(extra) == grammar.accepts(prefix + extra), extra


def test_prefix_checker_on_ignored_whitespace() -> None:
    grammar = example_grammar("arithmetic")
    checker = grammar.prefix_checker(b"f( x ,")
    for extra in [b"", b" ", b"y)", b" y )", b")", b" ,", b"1.5", b"1.", b"\t-(z"]:
        assert checker.viable(extra) == grammar.is_viable_prefix(b"f( x ," + extra), extra
    assert checker.accepts(b" y )")
    assert not checker.viable(b")")
