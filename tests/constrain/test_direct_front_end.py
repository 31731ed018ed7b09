"""The compile path that skips interegular and Lark's grammar parser gives the same grammars.

Terminal regexes go straight from sre's parse tree to byte automata (``_byte_nfa``), and schema
grammars reach the engine as rules instead of Lark text (``spec_from_rules``); the slower routes
stay as the references: equal languages for every terminal, equal rules for every grammar. The
subset construction and the search for live states run in compiled code where the package has
it, and in Python otherwise: both build the same automata and keep the same budgets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onrails import BUILTIN_ROOTS, CompileBudgetError, OnRailsError, builtin_grammar_text, schema_to_grammar
from onrails.constrain import _byte_nfa, _bytedfa
from onrails.constrain._bytedfa import ByteDFA, regex_to_byte_dfa
from onrails.constrain.lark_frontend import parse_lark, spec_from_rules
from tests.constrain.automata import same_language

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
            if not same_language(ours, reference):
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
            assert ours.regex == theirs.regex or same_language(regex_to_byte_dfa(ours.regex), regex_to_byte_dfa(theirs.regex))
        checked += 1
    assert checked >= 2


def _without_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_byte_nfa, "_kernel", None)
    monkeypatch.setattr(_bytedfa, "_kernel", None)


def test_compiled_and_python_subset_constructions_build_the_same_automata(
    maskbench_schemas: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    if _byte_nfa._kernel is None:
        pytest.skip("built without the compiled module")
    regexes = _terminal_regexes(maskbench_schemas)
    compiled = {regex: _byte_nfa.byte_automaton(regex, lambda n: None) for regex in regexes}
    _without_kernel(monkeypatch)
    compared = 0
    for regex, name in regexes.items():
        ours = compiled[regex]
        reference = _byte_nfa.byte_automaton(regex, lambda n: None)
        assert (ours is None) == (reference is None), regex
        if ours is None or reference is None:
            continue
        # The same subsets, numbered in another order: as many states, the same language.
        assert ours[0].shape == reference[0].shape and ours[1].sum() == reference[1].sum(), regex
        try:
            same = same_language(_bytedfa._trim(*ours, regex, name), _bytedfa._trim(*reference, regex, name))
        except OnRailsError:
            continue  # an empty or nullable regex: the caller reports it alike either way
        assert same, regex
        compared += 1
    assert compared > (150 if maskbench_schemas else 30)


@pytest.mark.parametrize("compiled", [True, False])
def test_a_terminal_past_its_state_budget_fails_in_either_subset_construction(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not compiled:
        _without_kernel(monkeypatch)
    elif _byte_nfa._kernel is None:
        pytest.skip("built without the compiled module")
    assert regex_to_byte_dfa("[a-w]{1,800}x", max_states=2000).n_states == 802
    with pytest.raises(CompileBudgetError, match="more than 500 automaton states"):
        regex_to_byte_dfa("[a-w]{1,800}x", max_states=500)


def test_states_that_can_accept_are_found_alike_in_compiled_code_and_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    if _bytedfa._kernel is None:
        pytest.skip("built without the compiled module")
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(500):
        n = int(rng.integers(1, 40))
        table = np.where(rng.random((n, 256)) < 0.02, rng.integers(0, n, (n, 256)), -1).astype(np.int32)
        accepting = rng.random(n) < 0.2
        accepting[0] = False
        cases.append((table, accepting))

    def outcome(table: np.ndarray, accepting: np.ndarray) -> Any:
        try:
            return _bytedfa._live(table, accepting, "x", "X").tolist()
        except OnRailsError as exc:
            return type(exc)

    compiled = [outcome(*case) for case in cases]
    _without_kernel(monkeypatch)
    assert compiled == [outcome(*case) for case in cases]
    assert any(isinstance(o, list) and len(o) > 1 for o in compiled)


def test_subsets_holding_thousands_of_nodes_count_against_the_state_budget() -> None:
    if _byte_nfa._kernel is None:
        pytest.skip("built without the compiled module")
    # Each state's subset holds the optional parts still ahead: a quadratic number of nodes.
    counted: list[int] = []
    table, _ = _byte_nfa.byte_automaton("(?:a?){1500}(?:b?){1500}c", counted.append)
    assert counted[-1] > 4 * table.shape[0]
    with pytest.raises(CompileBudgetError, match="automaton states"):
        regex_to_byte_dfa("(?:a?){1500}(?:b?){1500}c", max_states=20000)
    counted.clear()
    table, _ = _byte_nfa.byte_automaton("(?:a?){300}b", counted.append)
    assert counted[-1] == table.shape[0] == 302


def test_the_compiled_subset_construction_refuses_arrays_that_do_not_fit() -> None:
    kernel = _byte_nfa._kernel
    if kernel is None:
        pytest.skip("built without the compiled module")

    def ints(*values: int) -> np.ndarray:
        return np.array(values, dtype=np.int32)

    # One node reading class 0 into itself: a well-formed NFA first, then each array broken.
    good = [ints(0, 1), ints(0), ints(1), ints(0), ints(0, 0), ints(), ints(0, 256)]
    table, accepting = kernel.determinise(*good, 0, 0, lambda n: None)
    assert np.frombuffer(table, np.int32).reshape(-1, 256)[0, 0] == 0 and accepting == b"\x01"
    broken = {
        0: ints(-1, 1),  # offsets that start below the arrays (and end right)
        3: ints(5),  # a move to a node that is not there
        6: ints(0, 300),  # classes past the last byte
    }
    for position, array in broken.items():
        arrays = list(good)
        arrays[position] = array
        with pytest.raises(ValueError, match="determinise"):
            kernel.determinise(*arrays, 0, 0, lambda n: None)
