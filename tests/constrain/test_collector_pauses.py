"""What a grammar keeps leaves Python's cycle collector nearly nothing to scan, and a compile
runs with the collector held off.

A full collection scans every tracked object of the process (200k in a process that loaded a
tokenizer: 100-200 ms), and one comes each time the tracked objects that survive grow by a
quarter. A grammar's automaton interns thousands of states; kept as frozensets and lists, every
few schemas brought a full collection, a pause in whichever mask met it. Kept as tuples of ints,
they are untracked once the collector has seen them.
"""

from __future__ import annotations

import gc
import json
import threading
from typing import Any

import pytest

from onrails import GrammarCompiler, Matcher, SchemaError
from onrails.constrain._collector import collector_held
from onrails.constrain import compiled
from onrails.constrain._lr import build_parse_table
from onrails.grammars.schema import schema_to_grammar


def _schema() -> dict[str, Any]:
    kinds = [{"type": "integer"}, {"type": "boolean"}, {"type": "string", "maxLength": 6}, {"enum": ["a", "b"]}]
    return {
        "type": "object",
        "properties": {f"key_{i}": {"type": "object", "properties": {f"inner_{i}": kinds[i % 4]}} for i in range(40)},
    }


def _document(variant: int) -> str:
    values: list[Any] = [variant, variant % 2 == 0, "x" * (variant % 6), "ab"[variant % 2]]
    keys = range(variant % 2, 40, 2)
    return json.dumps({f"key_{i}": {f"inner_{i}": values[i % 4]} for i in keys}, indent=variant % 3)


def _feed(grammar: Any, tokenizer: Any, text: str) -> None:
    """Every mask along the document's tokens, as decoding computes them."""
    matcher = Matcher(grammar)
    for token in tokenizer.encode(text, add_special_tokens=False):
        assert token in matcher.allowed_token_ids()
        assert matcher.advance(token)


def _tracked_ids() -> set[int]:
    # A tuple of tuples is untracked once its items are: a collection that met it before them
    # leaves it for the next one.
    gc.collect()
    gc.collect()
    return {id(o) for o in gc.get_objects()}


def test_a_grammars_states_and_masks_add_few_objects_for_the_collector_to_scan(
    smollm2_tokenizer: Any, smollm2_vocab: Any
) -> None:
    grammar = GrammarCompiler(smollm2_vocab).compile_json_schema(_schema())
    _feed(grammar, smollm2_tokenizer, _document(0))  # first visits of the shared parts
    automaton = grammar._generation.automaton
    before = _tracked_ids()
    states_before = len(automaton.configs)
    for variant in range(1, 6):
        _feed(grammar, smollm2_tokenizer, _document(variant))
    added = len(_tracked_ids() - before)
    new_states = len(automaton.configs) - states_before
    assert new_states > 500, "the documents should have led to many new states"
    # Each new state used to leave a frozenset (and closures a list) for the collector.
    assert added < new_states / 5, (added, new_states)


def _many_rules_schema(n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            f"p{i}": {"type": "object", "properties": {"a": {"type": "integer"}, f"b{i}": {"type": "string"}}}
            for i in range(n)
        },
    }


def test_no_collection_runs_while_a_grammar_compiles(smollm2_vocab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    collections: list[int] = []  # generations of the collections run while building
    enabled: list[bool] = []  # whether the collector was on when the parse table was built
    building = [False]

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and building[0]:
            collections.append(info["generation"])

    # From the conversion's start to the parse table's end: the compile's temporaries.
    def converted(*args: Any, **kwargs: Any) -> Any:
        building[0] = True
        return schema_to_grammar(*args, **kwargs)

    def tables(*args: Any, **kwargs: Any) -> Any:
        enabled.append(gc.isenabled())
        table = build_parse_table(*args, **kwargs)
        building[0] = False
        return table

    monkeypatch.setattr(compiled, "schema_to_grammar", converted)
    monkeypatch.setattr(compiled, "build_parse_table", tables)
    gc.callbacks.append(note)
    try:
        # Tens of thousands of temporaries: unheld, dozens of young collections would run.
        GrammarCompiler(smollm2_vocab).compile_json_schema(_many_rules_schema(300))
    finally:
        gc.callbacks.remove(note)
    assert collections == []
    assert enabled == [False]
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_user_stays_off_after_a_compile(smollm2_vocab: Any) -> None:
    gc.disable()
    try:
        GrammarCompiler(smollm2_vocab).compile_json_schema(_many_rules_schema(3))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_comes_back_when_the_last_of_overlapping_compiles_ends() -> None:
    first_in, second_in, first_may_end, second_may_end = (threading.Event() for _ in range(4))
    seen: dict[str, bool] = {}

    @collector_held
    def first() -> None:
        first_in.set()
        first_may_end.wait(10)

    @collector_held
    def second() -> None:
        second_in.set()
        second_may_end.wait(10)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_in.wait(10)
    threads[1].start()
    assert second_in.wait(10)
    seen["both running"] = gc.isenabled()
    first_may_end.set()
    threads[0].join(10)
    seen["second running"] = gc.isenabled()
    second_may_end.set()
    threads[1].join(10)
    assert seen == {"both running": False, "second running": False}
    assert gc.isenabled()


def test_a_compile_that_raises_turns_the_collector_back_on(smollm2_vocab: Any) -> None:
    with pytest.raises(SchemaError):
        GrammarCompiler(smollm2_vocab).compile_json_schema({"type": "no such type"})
    assert gc.isenabled()
