"""unevaluatedProperties / unevaluatedItems beside applicators whose branches decide what is
evaluated (anyOf, oneOf, not, if/then/else, dependentSchemas, contains): each test checks the
grammar against jsonschema on every value of a small universe, valid and invalid alike."""

from __future__ import annotations

import itertools
import json
from typing import Any

import jsonschema
import pytest

from onrails import GrammarCompiler, Matcher, SchemaError, schema_to_grammar
from onrails.errors import CompileBudgetError
from tests.constrain.small_vocab import small_vocabulary

_COMPILER = GrammarCompiler(small_vocabulary(), budget_s=20)
_VALUES: list[Any] = ["x", "y", True, None, 3]


def _accepts(schema: Any, value: Any) -> bool:
    compiled = _COMPILER.compile_json_schema(schema, whitespace="compact")
    for order in itertools.permutations(value.items()) if isinstance(value, dict) else [None]:
        text = json.dumps(dict(order) if order is not None else value, separators=(",", ":"))
        matcher = Matcher(compiled)
        if matcher.advance_bytes(text.encode()) and matcher.is_accepting():
            return True
    return False


def _objects(names: str) -> list[dict[str, Any]]:
    """Every object over the given one-letter keys with values from ``_VALUES``, up to 3 keys."""
    out: list[dict[str, Any]] = []
    for size in range(4):
        for keys in itertools.combinations(names, size):
            out += [dict(zip(keys, vs)) for vs in itertools.product(_VALUES, repeat=size)]
    return out


def _arrays(length: int) -> list[list[Any]]:
    return [list(vs) for n in range(length + 1) for vs in itertools.product(_VALUES, repeat=n)]


def agrees_with_jsonschema(schema: Any, values: list[Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    verdicts = [validator.is_valid(v) for v in values]
    assert any(verdicts) and not all(verdicts), verdicts
    wrong = [(v, ok) for v, ok in zip(values, verdicts) if _accepts(schema, v) != ok]
    assert not wrong, f"{len(wrong)} disagreements, e.g. {wrong[:3]} (value, valid)"


def test_any_of_evaluates_the_properties_of_every_branch_that_holds() -> None:
    schema = {"properties": {"a": True},
              "anyOf": [{"properties": {"b": {"const": "x"}}, "required": ["b"]},
                        {"properties": {"c": {"const": "y"}}, "required": ["c"]}],
              "unevaluatedProperties": False}
    agrees_with_jsonschema(schema, _objects("abcd"))  # {"b": "x", "c": "y"} holds both, evaluates both


def test_one_of_evaluates_only_the_branch_that_holds() -> None:
    schema = {"oneOf": [{"properties": {"b": {"const": "x"}}, "required": ["b"]},
                        {"properties": {"c": {"const": "y"}}, "required": ["c"]}],
              "unevaluatedProperties": {"type": "boolean"}}
    agrees_with_jsonschema(schema, _objects("bcd"))


def test_a_negation_evaluates_nothing_even_where_it_declares_a_property() -> None:
    # not: b is absent or differs from "x"; a present b is left unevaluated, so false applies
    schema = {"properties": {"a": True}, "not": {"properties": {"b": {"const": "x"}}, "required": ["b"]},
              "unevaluatedProperties": False}
    agrees_with_jsonschema(schema, _objects("abc"))
    twice = {"not": {"not": {"properties": {"b": True}}}, "unevaluatedProperties": False}
    agrees_with_jsonschema(twice, _objects("b"))


def test_if_evaluates_when_it_holds_then_and_else_by_branch() -> None:
    schema = {"if": {"properties": {"a": {"const": "x"}}, "required": ["a"]},
              "then": {"properties": {"b": {"type": "string"}}},
              "else": {"properties": {"c": {"type": "boolean"}}},
              "unevaluatedProperties": {"const": 3}}
    agrees_with_jsonschema(schema, _objects("abcd"))


def test_dependent_schemas_evaluate_only_when_their_property_is_present() -> None:
    schema = {"properties": {"a": True}, "dependentSchemas": {"a": {"properties": {"b": {"type": "string"}}}},
              "unevaluatedProperties": False}
    agrees_with_jsonschema(schema, _objects("abc"))


def test_items_matching_contains_are_evaluated_and_the_rest_take_unevaluated_items() -> None:
    schema = {"prefixItems": [True], "contains": {"type": "string"}, "minContains": 0, "unevaluatedItems": {"type": "boolean"}}
    agrees_with_jsonschema(schema, _arrays(3))
    by_branch = {"anyOf": [{"prefixItems": [{"type": "string"}]}, {"items": {"type": "boolean"}}], "unevaluatedItems": {"const": 3}}
    agrees_with_jsonschema(by_branch, _arrays(3))


def test_an_any_of_with_too_many_branches_beside_unevaluated_is_refused_cleanly() -> None:
    branches = [{"properties": {k: True}} for k in "abcdefg"]
    with pytest.raises(CompileBudgetError):
        schema_to_grammar({"anyOf": branches, "unevaluatedProperties": False})
    # six branches: one alternative per set that holds
    schema_to_grammar({"anyOf": branches[:6], "unevaluatedProperties": False})


def test_a_negation_that_has_no_grammar_is_still_refused() -> None:
    with pytest.raises(SchemaError) as info:
        schema_to_grammar({"not": {"prefixItems": [{"const": "x"}]}, "unevaluatedItems": False})
    assert info.value.pointer == "/not"
