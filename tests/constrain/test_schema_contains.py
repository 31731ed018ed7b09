"""Several ``contains`` on one array (merged by allOf, if/then, $ref): each counted on its own."""

from __future__ import annotations

import itertools
import json
from typing import Any

import jsonschema
import pytest

from onrails import GrammarCompiler, Matcher, SchemaError, schema_to_grammar
from tests.constrain.small_vocab import small_vocabulary

_COMPILER = GrammarCompiler(small_vocabulary(), budget_s=20)
_ITEMS: list[Any] = ["foo", "bar", None, True, 1]


def agrees_with_jsonschema(schema: Any, longest: int = 4) -> None:
    """On every array of up to ``longest`` items from ``_ITEMS``."""
    compiled = _COMPILER.compile_json_schema(schema, whitespace="compact")
    validator = jsonschema.Draft202012Validator(schema)
    arrays = [list(t) for n in range(longest + 1) for t in itertools.product(_ITEMS, repeat=n)]
    wrong = []
    for value in arrays:
        matcher = Matcher(compiled)
        accepted = matcher.advance_bytes(json.dumps(value, separators=(",", ":")).encode()) and matcher.is_accepting()
        if accepted != validator.is_valid(value):
            wrong.append(value)
    assert not wrong, wrong[:5]


def test_two_contains_each_need_their_own_match() -> None:
    agrees_with_jsonschema({"allOf": [{"contains": {"const": "foo"}}, {"contains": {"const": "bar"}}]})


def test_each_contains_keeps_its_own_min_contains() -> None:
    agrees_with_jsonschema({"allOf": [{"contains": {"type": "string"}, "minContains": 2}, {"contains": {"const": "foo"}}]})
    agrees_with_jsonschema({"allOf": [{"contains": {"const": "foo"}}, {"contains": {"type": "null"}, "minContains": 0}], "maxItems": 3})


def test_unevaluated_items_spare_what_any_applied_contains_matched() -> None:
    schema = {"if": {"contains": {"const": "foo"}}, "then": {"contains": {"const": "bar"}},
              "else": {"contains": {"type": "null"}}, "unevaluatedItems": {"type": "boolean"}}
    agrees_with_jsonschema(schema)


def test_a_max_contains_beside_another_contains_is_refused() -> None:
    with pytest.raises(SchemaError) as info:
        schema_to_grammar({"allOf": [{"contains": {"const": "foo"}, "maxContains": 1}, {"contains": {"const": "bar"}}]})
    assert info.value.keyword == "maxContains"
