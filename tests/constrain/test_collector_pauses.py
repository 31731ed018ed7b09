"""What a grammar keeps leaves Python's cycle collector nearly nothing to scan.

A full collection scans every tracked object of the process (200k in a process that loaded a
tokenizer: 100-200 ms), and one comes each time the tracked objects that survive grow by a
quarter. A grammar's automaton interns thousands of states; kept as frozensets and lists, every
few schemas brought a full collection, a pause in whichever mask met it. Kept as tuples of ints,
they are untracked once the collector has seen them.
"""

from __future__ import annotations

import gc
import json
from typing import Any

from onrails import GrammarCompiler, Matcher


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
