"""uniqueItems over finite domains (enums, booleans, null, small integer ranges): exact, by a
state per set of values written; infinite domains are refused."""

from __future__ import annotations

import itertools
import json
from typing import Any

import jsonschema
import pytest

from onrails import CompileBudgetError, GrammarCompiler, Matcher, SchemaError, schema_to_grammar
from tests.constrain.small_vocab import small_vocabulary

_COMPILER = GrammarCompiler(small_vocabulary(), budget_s=20)


def _accepts_text(schema: Any, text: str) -> bool:
    matcher = Matcher(_COMPILER.compile_json_schema(schema, whitespace="compact"))
    return matcher.advance_bytes(text.encode()) and matcher.is_accepting()


def agrees_with_jsonschema(schema: Any, values: list[Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    verdicts = [validator.is_valid(v) for v in values]
    assert any(verdicts) and not all(verdicts), verdicts
    wrong = [v for v, ok in zip(values, verdicts) if _accepts_text(schema, json.dumps(v, separators=(",", ":"))) != ok]
    assert not wrong, wrong[:5]


def _arrays(values: list[Any], longest: int) -> list[list[Any]]:
    return [list(t) for n in range(longest + 1) for t in itertools.product(values, repeat=n)]


def test_items_from_an_enum_are_pairwise_distinct_in_any_order_and_number() -> None:
    schema = {"type": "array", "items": {"enum": ["r", "w", "x"]}, "uniqueItems": True}
    agrees_with_jsonschema(schema, _arrays(["r", "w", "x", "y"], 4))
    agrees_with_jsonschema({**schema, "minItems": 2, "maxItems": 2}, _arrays(["r", "w", "x"], 3))


def test_equal_values_follow_json_schema_equality() -> None:
    schema = {"items": {"enum": [1, True, {"a": 1, "b": 2}]}, "uniqueItems": True}
    assert _accepts_text(schema, "[1,true]")
    assert not _accepts_text(schema, "[1,1.0]")  # one number
    assert not _accepts_text(schema, '[{"a":1,"b":2},{"b":2,"a":1}]')  # one object
    assert _accepts_text(schema, '[{"b":2,"a":1},1]')


def test_prefix_positions_and_integer_ranges_are_finite_domains_too() -> None:
    agrees_with_jsonschema({"prefixItems": [{"type": "boolean"}, {"type": ["boolean", "null"]}], "maxItems": 2, "uniqueItems": True},
                           _arrays([True, False, None, 0], 3))
    agrees_with_jsonschema({"items": {"type": "integer", "minimum": 1, "exclusiveMaximum": 4}, "uniqueItems": True, "minItems": 2},
                           _arrays([0, 1, 2, 3, 4], 4))


def test_a_large_domain_of_scalars_is_a_tracked_list_and_of_objects_is_refused_cleanly() -> None:
    words = [f"w{i}" for i in range(30)]
    short = {"items": {"enum": words}, "maxItems": 2, "uniqueItems": True}
    assert _accepts_text(short, '["w1","w29"]') and not _accepts_text(short, '["w1","w1"]')
    # 2^30 sets of words written: the parser tracks them (one list rule), any number of items
    unbounded = {"items": {"enum": words}, "uniqueItems": True}
    assert len(schema_to_grammar(unbounded).item_sets) == 1
    assert _accepts_text(unbounded, json.dumps(words[::-1], separators=(",", ":")))
    assert not _accepts_text(unbounded, json.dumps(words + ["w7"], separators=(",", ":")))
    objects = [{"w": w} for w in words]
    with pytest.raises(CompileBudgetError):
        schema_to_grammar({"items": {"enum": objects}, "uniqueItems": True})


def test_distinct_items_of_an_infinite_domain_are_refused_with_the_pointer() -> None:
    with pytest.raises(SchemaError) as info:
        schema_to_grammar({"properties": {"tags": {"items": {"type": "string"}, "uniqueItems": True}}})
    assert info.value.pointer == "/properties/tags" and info.value.keyword == "uniqueItems"
