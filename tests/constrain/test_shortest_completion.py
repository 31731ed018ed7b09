"""``Matcher.shortest_completion``: accepted by the matcher, and as short as any completion.

The oracle is a plain breadth-first search over the grammar's byte automaton (every byte, every
state, no bound but a size guard), run from prefixes of random walks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from onrails import GrammarCompiler, Matcher
from onrails.constrain._automaton import DEAD
from tests.constrain.small_vocab import small_vocabulary
from tests.constrain.walks import random_walk
from tests.schemas import REQUIRED_BESIDE_OPTIONAL

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
_COMPILER = GrammarCompiler(small_vocabulary(), budget_s=20)
_BFS_LIMIT = 3000  # automaton states; prefixes whose oracle search grows past it are skipped

SCHEMAS: dict[str, dict[str, Any]] = {
    "person": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 2, "maxLength": 8},
            "age": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]}},
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string", "minLength": 3}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
        "required": ["name", "age", "address"],
        "additionalProperties": False,
    },
    "nested": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "kind": {"enum": ["alpha", "beta", 7, None]},
                "children": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                "note": {"type": "string", "maxLength": 3},
            },
            "required": ["kind", "children"],
            "additionalProperties": False,
        },
    },
    "optional_first": {
        "type": "object",
        "properties": {
            "a": {"type": "boolean"},
            "b": {"type": "string", "minLength": 4},
            "zz_required_last": {"type": "string"},
            "c": {"type": "array", "items": {"type": "integer"}, "maxItems": 2},
        },
        "required": ["zz_required_last", "b"],
        "additionalProperties": False,
    },
}


def oracle(matcher: Matcher) -> int | None:
    """The length of the shortest completion by BFS over bytes (None: search too large)."""
    automaton = matcher._automaton
    state = matcher._state
    if matcher.is_accepting():
        return 0
    frontier = [state]
    seen = {state}
    depth = 0
    while frontier:
        depth += 1
        level = []
        for s in frontier:
            for nxt in set(automaton.fill_row(s).tolist()):
                if nxt == DEAD or nxt in seen:
                    continue
                if automaton.accepting(nxt):
                    return depth
                seen.add(nxt)
                level.append(nxt)
        if len(seen) > _BFS_LIMIT:
            return None
        frontier = level
    raise AssertionError("a live state with no completion")


def check_prefixes(grammar: Any, root: str | None, walks: int, seed: int, max_steps: int = 30) -> int:
    """Compare against the oracle at every byte of random walks; return how many were compared."""
    rng = np.random.default_rng(seed)
    compared = 0
    for _ in range(walks):
        data, _ = random_walk(Matcher(grammar, root), rng, max_steps=int(rng.integers(1, max_steps)))
        matcher = Matcher(grammar, root)
        for i in range(len(data) + 1):
            if i:
                assert matcher.advance_bytes(data[i - 1 : i])
            found = matcher.shortest_completion()
            assert found is not None, f"no completion after {data[:i]!r}"
            assert matcher.advance_bytes(found) or found == b"", f"{found!r} rejected after {data[:i]!r}"
            assert matcher.is_accepting(), f"{data[:i]!r} + {found!r} does not accept"
            if found:
                matcher.rollback()
            best = oracle(matcher)
            if best is not None:
                assert len(found) == best, f"after {data[:i]!r}: {found!r} but {best} bytes suffice"
                compared += 1
    return compared


@pytest.mark.parametrize("root", ["value", "object", "array", "func", "fcall", "root", "number", "insidevalue"])
def test_builtin_json_is_exact(root: str) -> None:
    grammar = _COMPILER.compile_builtin()
    assert check_prefixes(grammar, root, walks=6, seed=len(root)) > 40


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schemas_are_exact(name: str) -> None:
    grammar = _COMPILER.compile_json_schema(SCHEMAS[name], whitespace="compact")
    assert check_prefixes(grammar, None, walks=6, seed=len(name), max_steps=40) > 80


@pytest.mark.parametrize("name", ["arithmetic", "csv", "sql"])
def test_user_grammars_are_exact(name: str) -> None:
    grammar = _COMPILER.compile_lark((GRAMMARS / f"{name}.lark").read_text())
    assert check_prefixes(grammar, None, walks=8, seed=3) > 40


def test_required_keys_beside_optional_ones_are_spelled_out() -> None:
    """The case the old bounded beam search missed (it found nothing from the start or '{')."""
    schema = REQUIRED_BESIDE_OPTIONAL
    grammar = _COMPILER.compile_json_schema(schema, whitespace="bounded")
    # The two required keys with their shortest values, nothing optional, no whitespace.
    rest = b'"version":"","user":{"roles":[""],"id":0}}'
    for prefix, length in ((b"", 1 + len(rest)), (b"{", len(rest)), (b'{"meta": {"x": [1, {"y": ', 5 + len(rest))):
        matcher = Matcher(grammar)
        assert matcher.advance_bytes(prefix) or not prefix
        found = matcher.shortest_completion()
        assert found is not None and len(found) == length, found
        jsonschema.validate(json.loads(prefix + found), schema)


def test_accepting_terminated_and_deep_nesting() -> None:
    grammar = _COMPILER.compile_builtin()
    matcher = Matcher(grammar, "value")
    assert matcher.advance_bytes(b"12")
    assert matcher.shortest_completion() == b""
    eos = min(grammar.vocabulary.eos_token_ids)
    assert matcher.advance(eos) and matcher.shortest_completion() == b""
    deep = Matcher(grammar, "value")
    opening = b'[{"k":' * 2000 + b'"x'
    assert deep.advance_bytes(opening)
    assert deep.shortest_completion() == b'"' + b"}]" * 2000


def test_a_search_over_its_budget_gives_up_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    from onrails.constrain import _shortest

    monkeypatch.setattr(_shortest, "_MAX_EXPANDED", 1)
    grammar = GrammarCompiler(small_vocabulary()).compile_builtin()  # fresh: nothing memoised
    matcher = Matcher(grammar, "func")
    assert matcher.shortest_completion() is None
    assert matcher.num_steps == 0 and not matcher.is_accepting()
