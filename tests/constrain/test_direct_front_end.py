"""The compile path that skips interegular and Lark's grammar parser gives the same grammars.

Terminal regexes go straight from sre's parse tree to byte automata (``_byte_nfa``), and schema
grammars reach the engine as rules instead of Lark text (``spec_from_rules``); the slower routes
stay as the references: equal languages for every terminal, equal rules for every grammar.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from onrails import BUILTIN_ROOTS, OnRailsError, builtin_grammar_text, schema_to_grammar
from onrails.constrain import _bytedfa
from onrails.constrain._bytedfa import ByteDFA, regex_to_byte_dfa
from onrails.constrain.lark_frontend import parse_lark, spec_from_rules

GRAMMARS = Path(__file__).parent.parent / "grammars"

# Constructs terminal regexes use, each where the two routes could part: Unicode classes inside
# and outside brackets, negations, "." with and without (?s), lazy and counted repeats, nested
# optionals, empty alternatives, multi-byte ranges, escapes Lark writes as text.
TRICKY = [
    r"[^\d\s]+", r"\w+(?:-\w+)*", r"[\W_]{2,5}", r"\S", r"(?s:.)+x", r".+?;", r"a{3,}b{0,2}",
    r"(?:ab|a)(?:c|)d", r"(?:x?y?z?)+q", r"[à-ÿ]+", r"[\u0100-\u017f\U0001F600-\U0001F64F]+",
    r"[^\x00-\x7f]", r'"(?:[^"\\]|\\.)*"', r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?",
    r"[a-c\d]{1,3}?", r"(?:(?:a|b){2}){2,3}", r"[-+*/]", r"\t|\n\r?", r"(?:[ \t]{0,3}\n){1,2}",
]


def _same_language(a: ByteDFA, b: ByteDFA) -> bool:
    # Trimmed automata: a byte one of them rejects and the other takes already tells them apart.
    seen = {(0, 0)}
    todo = [(0, 0)]
    while todo:
        x, y = todo.pop()
        if a.accepting[x] != b.accepting[y]:
            return False
        ra, rb = a.table[x], b.table[y]
        if ((ra < 0) != (rb < 0)).any():
            return False
        for pair in set(zip(ra.tolist(), rb.tolist())):
            if pair[0] >= 0 and pair not in seen:
                seen.add(pair)
                todo.append(pair)
    return True


def _schemas(shared: Path | None, every: int) -> list[Any]:
    if shared is None or not (shared / "maskbench" / "dev").is_dir():
        return []
    paths = sorted((shared / "maskbench" / "dev").glob("*.json"))[::every]
    return [json.loads(p.read_text())["schema"] for p in paths]


@pytest.fixture(scope="module")
def maskbench_schemas() -> list[Any]:
    # Without ../shared the built-in, test and tricky grammars still run.
    shared = Path(__file__).resolve().parents[3] / "shared"
    return _schemas(shared if shared.is_dir() else None, 20)


def _terminal_regexes(maskbench_schemas: list[Any]) -> dict[str, str]:
    regexes: dict[str, str] = {f"TRICKY_{i}": r for i, r in enumerate(TRICKY)}
    texts = [(builtin_grammar_text(ws), list(BUILTIN_ROOTS)) for ws in ("flexible", "bounded", "compact")]
    texts += [(p.read_text(), ["start"]) for p in sorted(GRAMMARS.glob("*.lark"))]
    texts += [(g["grammar"], [g["start"]]) for g in json.loads((GRAMMARS / "stress.json").read_text()).values() if "grammar" in g]
    for schema in maskbench_schemas:
        try:
            converted = schema_to_grammar(schema, whitespace="bounded")
        except OnRailsError:
            continue
        texts.append((converted.lark, [converted.start]))
    for text, starts in texts:
        for t in parse_lark(text, starts).terminals:
            regexes.setdefault(t.regex, t.name)
    return regexes


def test_terminal_automata_from_sre_accept_what_interegular_s_accept(
    maskbench_schemas: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    regexes = _terminal_regexes(maskbench_schemas)
    direct = {}
    for regex, name in regexes.items():
        try:
            direct[regex] = regex_to_byte_dfa(regex, name=name)
        except OnRailsError as exc:
            direct[regex] = type(exc)
    monkeypatch.setattr(_bytedfa, "byte_automaton", lambda pattern, check: None)
    differ = []
    for regex, name in regexes.items():
        try:
            reference: Any = regex_to_byte_dfa(regex, name=name)
        except OnRailsError as exc:
            reference = type(exc)
        ours = direct[regex]
        if isinstance(ours, ByteDFA) and isinstance(reference, ByteDFA):
            if not _same_language(ours, reference):
                differ.append(regex)
        elif ours != reference:
            differ.append(regex)
    assert not differ, differ[:5]
    assert len(regexes) > (200 if maskbench_schemas else 40)


@pytest.mark.parametrize("whitespace", ["flexible", "bounded", "compact"])
def test_schema_rules_give_the_grammar_lark_reads_from_their_text(maskbench_schemas: list[Any], whitespace: str) -> None:
    from tests.schemas import REQUIRED_BESIDE_OPTIONAL

    checked = 0
    for schema in [REQUIRED_BESIDE_OPTIONAL, {"enum": [True, None, "x"]}, *maskbench_schemas]:
        try:
            converted = schema_to_grammar(schema, whitespace=whitespace)
        except OnRailsError:
            continue
        read = parse_lark(converted.lark, [converted.start])
        given = spec_from_rules(converted.rules, converted.terminals, (converted.start,))
        assert given.rules == read.rules and given.starts == read.starts and given.ignore == read.ignore
        assert [t.name for t in given.terminals] == [t.name for t in read.terminals]
        for ours, theirs in zip(given.terminals, read.terminals):
            # Lark evaluates escapes such as \n and \u00e9 in the text: the same regex, spelt otherwise.
            assert ours.regex == theirs.regex or _same_language(regex_to_byte_dfa(ours.regex), regex_to_byte_dfa(theirs.regex))
        checked += 1
    assert checked >= 2
