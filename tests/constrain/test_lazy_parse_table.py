"""LR states are built when a parser stack first enters them: a compile builds few, and what
decoding sees is what a table built in full gives (masks, shortest completions, reduce classes)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from onrails.constrain.compiled import GrammarCompiler
from onrails.constrain.matcher import Matcher

WIDE = {
    "type": "object",
    "properties": {
        f"key{i}": {"type": "object", "properties": {"n": {"type": "integer"}, f"s{i}": {"type": "string"}}}
        for i in range(150)
    },
    "required": ["key3", "key7"],
}
DOCUMENT = json.dumps({"key3": {"n": 12, "s3": "ab"}, "key7": {"s7": "c d"}, "key42": {}}, indent=1)


def _build_every_state(grammar: Any) -> int:
    table = grammar._table
    state = 0
    while state < len(table.items):
        table.build(state)
        state += 1
    return state


def _steps(grammar: Any, tokenizer: Any) -> list[tuple[np.ndarray, "bytes | None"]]:
    matcher = Matcher(grammar)
    out = []
    for token in tokenizer.encode(DOCUMENT, add_special_tokens=False):
        out.append((np.array(matcher.allowed_token_ids()), matcher.shortest_completion()))
        assert matcher.advance(token)
    out.append((np.array(matcher.allowed_token_ids()), matcher.shortest_completion()))
    return out


def test_a_compile_and_a_decode_build_a_small_part_of_the_parse_states(smollm2_vocab: Any, smollm2_tokenizer: Any) -> None:
    grammar = GrammarCompiler(smollm2_vocab).compile_json_schema(WIDE)
    table = grammar._table
    after_compile = len(table.accept)
    _steps(grammar, smollm2_tokenizer)
    after_decode = len(table.accept)
    total = _build_every_state(grammar)
    assert after_compile < after_decode < total / 4, (after_compile, after_decode, total)


def test_decoding_on_a_lazy_table_matches_a_table_built_in_full(smollm2_vocab: Any, smollm2_tokenizer: Any) -> None:
    lazy = GrammarCompiler(smollm2_vocab).compile_json_schema(WIDE)
    full = GrammarCompiler(smollm2_vocab).compile_json_schema(WIDE)
    _build_every_state(full)
    lazy_steps, full_steps = _steps(lazy, smollm2_tokenizer), _steps(full, smollm2_tokenizer)
    assert len(lazy_steps) == len(full_steps) > 20
    for (lazy_mask, lazy_rest), (full_mask, full_rest) in zip(lazy_steps, full_steps):
        assert np.array_equal(lazy_mask, full_mask)
        assert lazy_rest == full_rest
    assert lazy_steps[0][1] is not None and lazy_steps[-1][1] == b""


def test_terminals_of_one_reduce_class_reduce_alike_in_every_parse_state(smollm2_vocab: Any) -> None:
    compiler = GrammarCompiler(smollm2_vocab)
    grammars = [
        compiler.compile_json_schema(WIDE),
        compiler.compile_builtin(),
        compiler.compile_lark('start: x+\nx: A B? | "(" x ")"\nA: /a+/\nB: "b"\n%ignore " "'),
    ]
    for grammar in grammars:
        table = grammar._table
        n_states = _build_every_state(grammar)
        by_class: dict[int, list[int]] = {}
        for terminal, reduce_class in enumerate(table.reduce_class):
            by_class.setdefault(reduce_class, []).append(terminal)
        if grammar is grammars[0]:  # one terminal per key, nearly all reducing alike
            assert len(by_class) < len(table.reduce_class) / 10
        for terminals in by_class.values():
            for state in range(n_states):
                actions = {table.reduce[state].get(t, ()) for t in terminals}
                assert len(actions) == 1, (state, terminals)
