"""The built-in JSON / function-calling grammar: every root, every whitespace mode."""

from __future__ import annotations

import json
import re
import zlib

import numpy as np
import pytest

from onrails import BUILTIN_ROOTS, GrammarCompiler, Matcher, builtin_grammar_text

from .small_vocab import small_vocabulary
from .walks import random_walk

JSON_WS = re.compile(rb"[ \t\n\r]+")


@pytest.fixture(scope="module")
def compiler() -> GrammarCompiler:
    return GrammarCompiler(small_vocabulary())


def _outside_strings(text: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)


def check_output(root: str, data: bytes) -> None:
    """Assert ``data`` is what ``root`` promises (independently of the engine)."""
    text = data.decode("utf-8")
    if root == "value":
        json.loads(text)
    elif root in ("object", "array", "string", "number"):
        kind = {"object": dict, "array": list, "string": str, "number": (int, float)}[root]
        assert isinstance(json.loads(text), kind)
        assert text == text.strip()
    elif root == "insidevalue":
        assert isinstance(json.loads('"' + text + '"'), str)
    elif root == "ws":
        assert JSON_WS.fullmatch(data) or data == b""
    elif root == "func":
        call = json.loads(text)
        assert list(call) == ["name", "arguments"]
        assert isinstance(call["name"], str) and isinstance(call["arguments"], dict)
    elif root in ("funcarray", "fcall"):
        calls = json.loads(text)
        if root == "funcarray":
            assert text == text.strip()
        assert isinstance(calls, list) and calls
        for call in calls:
            assert list(call) == ["name", "arguments"] and isinstance(call["arguments"], dict)
    elif root == "nofcall":
        body = text.lstrip(" \t\n\r")  # JSON whitespace only: "\x0c" is text
        assert body and body[0] not in "[{"
    elif root == "root":
        if text.lstrip(" \t\n\r")[:1] == "[":
            check_output("fcall", data)
        else:
            check_output("nofcall", data)
    else:  # pragma: no cover
        raise AssertionError(root)


@pytest.mark.parametrize("root", BUILTIN_ROOTS)
def test_random_walks_produce_what_each_root_promises(compiler: GrammarCompiler, root: str) -> None:
    grammar = compiler.compile_builtin("bounded")
    rng = np.random.default_rng(zlib.crc32(root.encode()))
    finished = 0
    for _ in range(1000):
        data, done = random_walk(Matcher(grammar, root), rng, max_steps=120)
        if done:
            finished += 1
            check_output(root, data)
    assert finished >= 100, f"only {finished} of 1000 walks finished"


@pytest.mark.parametrize("mode", ["flexible", "compact"])
@pytest.mark.parametrize("root", ["value", "root", "func"])
def test_random_walks_in_other_whitespace_modes(compiler: GrammarCompiler, mode: str, root: str) -> None:
    grammar = compiler.compile_builtin(mode)
    rng = np.random.default_rng(7)
    finished = 0
    for _ in range(200):
        data, done = random_walk(Matcher(grammar, root), rng, max_steps=120)
        if done:
            finished += 1
            check_output(root, data)
            if mode == "compact" and root != "root":
                assert not JSON_WS.search(_outside_strings(data.decode()).encode())
    assert finished >= 20


def test_bounded_whitespace_allows_one_line_break_and_32_blanks(compiler: GrammarCompiler) -> None:
    grammar = compiler.compile_builtin("bounded")
    assert Matcher(grammar, "array").advance_bytes(b"[\n" + b" " * 32 + b"1]")
    assert Matcher(grammar, "array").advance_bytes(b"[\t\t1 ,\n  2]")
    assert not Matcher(grammar, "array").advance_bytes(b"[\n" + b" " * 33)
    assert not Matcher(grammar, "array").advance_bytes(b"[\n\n")
    assert not Matcher(grammar, "array").advance_bytes(b"[ \n")


def test_flexible_whitespace_accepts_any_rfc8259_whitespace(compiler: GrammarCompiler) -> None:
    grammar = compiler.compile_builtin("flexible")
    matcher = Matcher(grammar, "value")
    assert matcher.advance_bytes(b"{\n\n\r\n" + b" " * 100 + b'"a"\t:\n[ ]\n\n}')
    assert matcher.is_accepting()


@pytest.mark.parametrize(("root", "value"), [("value", "null"), ("object", "{}"), ("array", "[1]"), ("string", '"a"'), ("number", "-1.5")])
def test_flexible_json_roots_take_whitespace_around_the_value_and_the_others_do_not(
    compiler: GrammarCompiler, root: str, value: str
) -> None:
    """A JSON text (RFC 8259) may have whitespace before and after its value: flexible mode
    accepts every valid document; bounded and compact keep the bare value."""
    text = f" \n\t{value}\r\n ".encode()
    matcher = Matcher(compiler.compile_builtin("flexible"), root)
    assert matcher.advance_bytes(text) and matcher.is_accepting()
    for mode in ("bounded", "compact"):
        bare = Matcher(compiler.compile_builtin(mode), root)
        assert bare.advance_bytes(value.encode()) and bare.is_accepting()
        assert not Matcher(compiler.compile_builtin(mode), root).advance_bytes(b" ")
        assert not bare.advance_bytes(b" ")


def test_compact_whitespace_allows_none(compiler: GrammarCompiler) -> None:
    grammar = compiler.compile_builtin("compact")
    assert Matcher(grammar, "value").advance_bytes(b'{"a":[1,"x y"]}')
    assert not Matcher(grammar, "value").advance_bytes(b"{ ")
    ws = Matcher(grammar, "ws")
    assert ws.is_accepting() and ws.allowed_token_ids().tolist() == sorted(grammar.vocabulary.eos_token_ids)


def test_choosing_a_root_costs_no_compilation(compiler: GrammarCompiler) -> None:
    grammar = compiler.compile_builtin("bounded")
    assert compiler.compile_builtin("bounded") is grammar
    automaton = grammar._generation.automaton
    before = len(automaton.configs)
    for root in BUILTIN_ROOTS:
        Matcher(grammar, root)
    assert len(automaton.configs) == before


@pytest.mark.parametrize(
    ("root", "text", "ok"),
    [
        ("value", '{"a": [1, 2.5e-3, -0, "\\u00e9\\n", true, false, null, {}]}', True),
        ("value", "[1, 2,]", False),
        ("value", "01", False),
        ("value", '"\\x"', False),
        ("value", '"tab\there"', False),
        ("value", '"日本語 😀"', True),
        ("number", "-12.5E+3", True),
        ("number", "1.", False),
        ("string", '"a"', True),
        ("object", "[]", False),
        ("func", '{"name": "f", "arguments": {"x": 1}}', True),
        ("func", '{"arguments": {}, "name": "f"}', False),
        ("funcarray", "[]", False),
        ("fcall", '\n[{"name": "f", "arguments": {}}]\n', True),
        ("nofcall", "  Hello [world]", True),
        ("nofcall", "  {x", False),
        ("nofcall", "   ", False),
        ("root", "The answer is 42.", True),
        ("root", '[{"name": "f", "arguments": {}}]', True),
        ("root", "[not a call]", False),
        ("insidevalue", 'say \\"hi\\" ☃', True),
        ("insidevalue", 'a"b', False),
        ("ws", " \n", True),
        ("ws", "x", False),
    ],
)
def test_documents_are_accepted_or_rejected(compiler: GrammarCompiler, root: str, text: str, ok: bool) -> None:
    grammar = compiler.compile_builtin("flexible")
    matcher = Matcher(grammar, root)
    accepted = matcher.advance_bytes(text.encode()) and matcher.is_accepting()
    assert accepted == ok


def _lark_reading(whitespace: str) -> dict[str, object]:
    from onrails.constrain.lark_frontend import parse_lark

    spec = parse_lark(builtin_grammar_text(whitespace), BUILTIN_ROOTS)
    return {
        "terminals": [[t.name, t.regex] for t in spec.terminals],
        "rules": [[r.lhs, list(r.rhs)] for r in spec.rules],
        "ignore": list(spec.ignore),
    }


def test_the_shipped_builtin_rules_are_lark_s_reading_of_json_lark() -> None:
    """builtin_rules.json lets compiles skip Lark; after an edit of json.lark, regenerate it
    with ``python -m tests.constrain.test_builtin_grammar``."""
    from onrails.grammars.builtin import WHITESPACE_MODES, builtin_rules

    for whitespace in WHITESPACE_MODES:
        reading = _lark_reading(whitespace)
        terminals, rules, ignore = builtin_rules(whitespace)
        assert [list(t) for t in terminals] == reading["terminals"], whitespace
        assert [[lhs, list(rhs)] for lhs, rhs in rules] == reading["rules"], whitespace
        assert list(ignore) == reading["ignore"], whitespace


if __name__ == "__main__":
    from pathlib import Path

    from onrails.grammars.builtin import WHITESPACE_MODES

    target = Path(__file__).resolve().parents[2] / "onrails" / "grammars" / "builtin_rules.json"
    target.write_text(json.dumps({ws: _lark_reading(ws) for ws in WHITESPACE_MODES}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}")
