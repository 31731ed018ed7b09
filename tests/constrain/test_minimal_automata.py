"""Terminal automata are minimal: no two states read the same language, the language is the one
the regex reads, and text that reaches equivalent positions meets one grammar state, not two."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from onrails import builtin_grammar_text
from onrails.constrain import _bytedfa
from onrails.constrain._bytedfa import ByteDFA, regex_to_byte_dfa
from onrails.constrain.compiled import GrammarCompiler
from onrails.constrain.lark_frontend import parse_lark
from onrails.constrain.matcher import Matcher
from tests.constrain.automata import accepts, read_alike

REGEXES = [
    r"[ \t\n\r]*:[ \t\n\r]*", r"[ \t\n\r]*,[ \t\n\r]*", r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"',
    r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", r"(?:ab|a)*b", r"(?:x?y?z?)+q", r"a{2,5}|a{3,7}",
    r"[a-c\d]{1,3}?", r"(?:(?:a|b){2}){2,3}", r"\t|\n\r?", r"[à-ÿ]+|[à-ä]+x", r"(?:[ \t]{0,3}\n){1,2}",
]


def _regexes() -> list[str]:
    terminals = parse_lark(builtin_grammar_text("flexible"), ["value"]).terminals
    return REGEXES + [t.regex for t in terminals]


@pytest.mark.parametrize("regex", _regexes())
def test_no_two_states_of_a_terminal_automaton_read_the_same_words(regex: str) -> None:
    dfa = regex_to_byte_dfa(regex)
    if dfa.counter is not None:
        pytest.skip("a counted string's states are its base automaton's")
    n = dfa.n_states
    same = [(x, y) for x in range(n) for y in range(x + 1, n) if read_alike(dfa, x, dfa, y)]
    assert not same, same[:5]


@pytest.mark.parametrize("regex", REGEXES)
def test_the_minimal_automaton_reads_what_the_regex_reads(regex: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    minimal = regex_to_byte_dfa(regex)
    with monkeypatch.context() as patch:
        patch.setattr(_bytedfa, "_minimal", lambda dfa: dfa)
        plain = regex_to_byte_dfa(regex)
    assert minimal.n_states <= plain.n_states
    if regex == REGEXES[0]:
        # Subset construction leaves the states after the colon apart, with and without blanks.
        assert (plain.n_states, minimal.n_states) == (4, 2)
    pattern = re.compile(regex)
    rng = np.random.default_rng(0)
    alphabet = list(' \t\n\r:,"\\abcxyzq0129.eE+-u\x1f') + ["à", "ä", "ÿ"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 9))).tolist())
        data = text.encode()
        expected = pattern.fullmatch(text) is not None
        assert accepts(minimal, data) == expected == accepts(plain, data), text


def _random_automaton(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n, k = int(rng.integers(1, 60)), int(rng.integers(1, 5))
    table = rng.integers(-1, n, size=(n, k)).astype(np.int32)
    return table, rng.random(n) < 0.3


def _spread(table: np.ndarray) -> np.ndarray:
    """A table of a few symbols as a byte DFA's: one column per symbol, the other bytes dead."""
    full = np.full((table.shape[0], 256), -1, dtype=np.int32)
    full[:, : table.shape[1]] = table
    return full


def test_compiled_and_python_refinements_find_the_same_classes() -> None:
    kernel = _bytedfa._kernel
    if kernel is None:
        pytest.skip("built without the compiled module")
    rng = np.random.default_rng(1)
    for _ in range(2000):
        table, accepting = _random_automaton(rng)
        compiled = np.frombuffer(kernel.equivalent_states(_spread(table), accepting.view(np.uint8)), np.int32)
        moore = _bytedfa._moore_classes(table, accepting)
        assert moore is not None and np.array_equal(compiled, moore), (table, accepting)


def test_equivalent_states_are_exactly_those_that_read_the_same_words() -> None:
    rng = np.random.default_rng(2)
    for _ in range(300):
        table, accepting = _random_automaton(rng)
        classes = _bytedfa._moore_classes(table, accepting)
        assert classes is not None
        assert classes[0] == 0
        dfa = ByteDFA(table=_spread(table), accepting=accepting)
        for x in range(table.shape[0]):
            for y in range(x + 1, table.shape[0]):
                assert (classes[x] == classes[y]) == read_alike(dfa, x, dfa, y), (table, accepting, x, y)


def test_moore_refinement_past_its_work_leaves_the_automaton_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_bytedfa, "_kernel", None)
    monkeypatch.setattr(_bytedfa, "_MOORE_WORK", 8)
    # A chain of 20 states tells its states apart only by words of up to 20 bytes.
    table = np.full((21, 256), -1, dtype=np.int32)
    table[np.arange(20), ord("a")] = np.arange(1, 21)
    accepting = np.zeros(21, dtype=bool)
    accepting[20] = True
    dfa = ByteDFA(table=table, accepting=accepting)
    assert _bytedfa._minimal(dfa) is dfa
    monkeypatch.setattr(_bytedfa, "_MOORE_WORK", 1 << 16)
    assert _bytedfa._minimal(dfa).n_states == 21


def test_blanks_after_a_colon_or_none_reach_one_grammar_state(llama_vocab: Any) -> None:
    schema: dict[str, object] = {"type": "object", "properties": {"a": {"type": "integer"}}}
    grammar = GrammarCompiler(llama_vocab).compile_json_schema(schema, strict=False)
    states = []
    for text in ('{"a":', '{"a": ', '{"a":\n  '):
        matcher = Matcher(grammar)
        assert matcher.advance_bytes(text.encode())
        states.append(matcher._state)
    assert states[0] == states[1] == states[2]
