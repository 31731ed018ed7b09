"""JSON Schema → grammar: overlapping ``oneOf`` branches, negations and the keywords whose
grammar is a product or difference of automata. Each test proves a construct by what it does:
the grammar accepts exactly the instances ``jsonschema`` finds valid, byte by byte (``accepts``)
and token by token along random walks of the engine (``test_random_outputs_validate``)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pytest

from onrails import GrammarCompiler, Matcher, SchemaError, schema_to_grammar
from onrails.grammars.schema import validator_class
from tests.constrain.small_vocab import small_vocabulary
from tests.constrain.test_schema import accepts, agrees_with_jsonschema, check
from tests.constrain.test_schema_roundtrip import _CLOSERS, _guided_walk

DRAFT4 = "http://json-schema.org/draft-04/schema#"


def agrees_on_spellings(schema: Any, texts: list[str]) -> None:
    """The grammar accepts a JSON text only if the instance it spells is valid (the list holds
    both kinds, and every text the grammar refuses here is invalid too unless listed as a
    documented narrowing by the caller)."""
    cls = validator_class(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    for text in texts:
        valid = validator.is_valid(json.loads(text))
        assert accepts(schema, text, raw=True) == valid, f"{text} is {'valid' if valid else 'invalid'} under {schema}"


# -- oneOf: branches that exclude each other where the caller's keywords hold ------------------


def test_one_of_branches_overlapping_only_outside_the_sibling_type_are_a_union() -> None:
    # both branches accept every non-object; among objects one key tells them apart
    schema = {
        "type": "object",
        "oneOf": [
            {"additionalProperties": False, "properties": {"path": {"type": "string"}}, "required": ["path"]},
            {"additionalProperties": False, "properties": {"style": {"type": "string"}}, "required": ["style"]},
        ],
    }
    agrees_with_jsonschema(schema, [{"path": "a"}, {"style": "b"}, {"path": "a", "style": "b"}, {}, {"x": 1}, "s", 1])
    assert "oneOf" not in json.dumps(schema_to_grammar(schema, strict=False).unenforced)


def test_one_of_branches_exclusive_among_objects_reject_what_both_allow_elsewhere() -> None:
    # no type beside the oneOf: a string satisfies both branches, so oneOf rejects it
    schema = {
        "oneOf": [
            {"additionalProperties": False, "properties": {"p": {"const": "m"}}, "required": ["p"]},
            {"additionalProperties": False, "properties": {"p": {"const": "v"}, "code": {"type": "integer"}}, "required": ["p", "code"]},
        ]
    }
    agrees_with_jsonschema(schema, [{"p": "m"}, {"p": "v", "code": 1}, {"p": "v"}, {"p": "m", "code": 1}, "x", 1, None, [], {}])


def test_a_property_required_beside_one_of_tells_its_branches_apart() -> None:
    schema = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string"}},
        "oneOf": [
            {"properties": {"type": {"enum": ["Point"]}}, "required": ["coordinates"]},
            {"properties": {"type": {"$ref": "#/$defs/line"}}, "required": ["coordinates"]},
        ],
        "$defs": {"line": {"allOf": [{"const": "Line"}]}},
    }
    agrees_with_jsonschema(schema, [
        {"type": "Point", "coordinates": 1}, {"type": "Line", "coordinates": 1}, {"type": "Other", "coordinates": 1},
        {"type": "Point"}, {"coordinates": 1},
    ])


def test_one_of_branches_told_apart_by_property_counts_or_value_types() -> None:
    repository = {"type": "object", "required": ["type", "url"], "properties": {"type": {"type": "string"}, "url": {"type": "string"}}}
    disabled = {"type": "object", "additionalProperties": {"type": "boolean", "enum": [False]}, "minProperties": 1, "maxProperties": 1}
    schema = {"oneOf": [repository, disabled]}
    agrees_with_jsonschema(schema, [
        {"type": "git", "url": "u"}, {"packagist.org": False}, {"a": True}, {"a": False, "b": False}, {"type": "git"}, {},
    ])
    # a required key whose value is a string on one side and a boolean on the other
    typed = {"oneOf": [{"required": ["k"], "properties": {"k": {"type": "string"}}}, {"required": ["k"], "properties": {"k": {"type": "boolean"}}}]}
    agrees_with_jsonschema({"type": "object", **typed}, [{"k": "a"}, {"k": True}, {"k": 1}, {}])


def test_one_of_branches_overlapping_among_numbers_take_each_without_the_others() -> None:
    # an integer of at least 2 satisfies both: only the other integers and the numbers >= 2
    # that are no integers remain
    schema = {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}]}
    agrees_with_jsonschema(schema, [1, -4, 0, 2, 3, 10, 2.5, 1.5, 100.25, "x"])
    schema = {"type": "object", "oneOf": [
        {"required": ["size"], "properties": {"size": {"type": "integer", "minimum": 0}}},
        {"required": ["size"], "properties": {"size": {"type": "number", "maximum": 10}}},
    ]}
    agrees_with_jsonschema(schema, [{"size": s} for s in (-1, 0, 5, 11, 2.5, -2.5, 12.5)] + [{}])


# -- negations ----------------------------------------------------------------------------------


def test_the_negation_of_an_integer_schema_is_the_other_values_and_the_non_integral_numbers() -> None:
    agrees_with_jsonschema({"not": {"type": "integer"}}, [1, -3, 1.5, -0.25, 1e-5, "1", None, [], {}, True])
    agrees_with_jsonschema({"not": {"type": "integer", "minimum": 3}}, [2, 3, 4, 2.5, 3.5, "a"])
    # "1.0" is an integer from draft 6 on, not in draft 4 (nor is any exponent spelling there)
    agrees_on_spellings({"not": {"type": "integer"}}, ["1", "1.0", "2.50", "1e-05", "1.5e1", "25e-1"])
    agrees_on_spellings({"$schema": DRAFT4, "not": {"type": "integer"}}, ["1", "1.0", "1e2", "1.5", "-7"])


def test_non_integral_numbers_are_written_without_exponent_or_with_a_negative_one() -> None:
    """The documented narrowing: 12.5 as "1.25e1" is outside an integer schema but refused
    (an integral value's spellings compare an exponent with a count of digits)."""
    schema = {"not": {"type": "integer"}}
    assert accepts(schema, "12.5", raw=True) and accepts(schema, "1.25e-1", raw=True)
    assert not accepts(schema, "1.25e1", raw=True)


def test_the_negation_of_a_set_of_numbers_leaves_out_every_spelling_of_them() -> None:
    agrees_on_spellings({"not": {"const": 3}}, ["3", "3.0", "3e0", "3.00E+00", "0.3e1", "4", "2.5", "1e-05", '"3"', "-3"])
    agrees_on_spellings({"type": "number", "not": {"enum": [0, 1.5]}}, ["0", "-0", "0.0", "1.5", "1.50", "1.5e0", "2", "1e-05"])
    agrees_with_jsonschema({"type": "integer", "minimum": 0, "not": {"enum": [0, 2]}}, [0, 1, 2, 3, -1])
    # an if on a numeric discriminator: the else branch takes the numbers other than 3
    schema = {"type": "object", "if": {"properties": {"v": {"const": 3}}}, "then": {"required": ["a"]}, "else": {"required": ["b"]}}
    agrees_with_jsonschema(schema, [{"v": 3, "a": 1}, {"v": 3, "b": 1}, {"v": 2, "b": 1}, {"v": 2, "a": 1}, {"a": 1}])


def test_numbers_outside_a_set_are_written_without_exponent_or_in_scientific_notation() -> None:
    schema = {"not": {"const": 3}}
    assert accepts(schema, "4.5e0", raw=True) and accepts(schema, "45", raw=True)
    assert not accepts(schema, "45e-1", raw=True)  # 4.5, in no spelling of those two kinds


def test_negations_inside_subschemas_are_checked_on_enum_values() -> None:
    # the negation leaves internal keywords inside a property's schema: checked there too
    agrees_with_jsonschema({"enum": [{"a": "x"}, {"a": "y"}], "not": {"properties": {"a": {"enum": ["x"]}}}}, [{"a": "x"}, {"a": "y"}])
    agrees_with_jsonschema({"enum": [{"a": 1}, {"a": 1.5}], "not": {"properties": {"a": {"type": "integer"}}}}, [{"a": 1}, {"a": 1.5}])


def test_required_properties_no_object_satisfies_leave_the_other_types() -> None:
    # the merge of {"k": "a"} and {"k": "b"} for a required k has no object, only other values
    schema = {"allOf": [{"required": ["k"], "properties": {"k": {"const": "a"}}}, {"properties": {"k": {"const": "b"}}}]}
    agrees_with_jsonschema(schema, [{"k": "a"}, {"k": "b"}, {}, "s", 1])
    agrees_with_jsonschema({"maxProperties": 1, "required": ["a", "b"]}, [{"a": 1, "b": 2}, {"a": 1}, 3])


# -- products and differences of automata -------------------------------------------------------


def test_multiples_with_one_sided_bounds_are_exact() -> None:
    for schema, values in [
        ({"type": "integer", "minimum": 0, "multipleOf": 12}, range(-40, 200)),
        ({"type": "integer", "maximum": 50, "multipleOf": 5}, range(-60, 80)),
        ({"type": "integer", "exclusiveMinimum": -20, "maximum": 5000, "multipleOf": 6}, range(-60, 120)),
        ({"type": "number", "minimum": 1.5, "multipleOf": 0.5}, [k / 4 for k in range(-20, 40)]),
        ({"type": "number", "exclusiveMaximum": 48, "multipleOf": 24}, [k / 2 for k in range(-150, 150)]),
    ]:
        agrees_with_jsonschema(schema, list(values))


def test_integral_steps_of_three_times_a_power_of_ten_divisor_are_exact() -> None:
    # 3, 6, 12, 15, ...: the last digits and the digit sum decide
    for step in (3, 6, 12, 15, 75):
        agrees_with_jsonschema({"type": "integer", "multipleOf": step}, list(range(-400, 400, 7)) + [0, step, 10 * step])
    agrees_with_jsonschema({"multipleOf": 12}, [24, 24.0, 25, 12.5, -36])
    with pytest.raises(SchemaError):
        schema_to_grammar({"type": "integer", "multipleOf": 9})  # the digit sum modulo 9: refused


def test_a_leading_negative_lookahead_leaves_out_the_strings_it_names() -> None:
    java_class = "^(?!io\\.papermc\\.)([a-zA-Z_$][a-zA-Z\\d_$]*\\.)*[a-zA-Z_$][a-zA-Z\\d_$]*$"
    agrees_with_jsonschema({"type": "string", "pattern": java_class}, [
        "io.papermc.X", "io.paper.X", "a", "io.papermc", "io.papermcX.y", "1a", "a.b.c", "",
    ])
    agrees_with_jsonschema({"type": "string", "pattern": "^(?!(a|bc)$)[a-z]+", "maxLength": 3}, ["a", "bc", "bcd", "ab", "abcd", "x", ""])
    # a lookahead binding to one alternative only stays refused
    with pytest.raises(SchemaError):
        schema_to_grammar({"type": "string", "pattern": "^(?!a)b|c"})


def test_pattern_properties_naming_single_words_need_no_sets_of_patterns() -> None:
    """Six patterns with different schemas would need 63 key automata if keys could match
    several; patterns of one word each that no other pattern matches need one each."""
    patterns = {f"^{name}$": {"type": kind} for name, kind in [
        ("a_id", "string"), ("b_id", "integer"), ("c", "boolean"), ("d", "null"), ("e", "array"), ("f", "object"),
    ]}
    patterns["^x"] = {"type": "string"}
    schema = {"type": "object", "patternProperties": patterns, "additionalProperties": False}
    agrees_with_jsonschema(schema, [
        {"a_id": "s"}, {"a_id": 1}, {"b_id": 1}, {"c": True, "d": None, "e": [], "f": {}}, {"xy": "s"}, {"xy": 1}, {"g": 1},
    ])
    # a word another pattern matches takes both schemas: still the sets of patterns
    overlapping = {"type": "object", "patternProperties": {"^ab$": {"minLength": 2}, "^a": {"maxLength": 3}}}
    agrees_with_jsonschema(overlapping, [{"ab": "xy"}, {"ab": "x"}, {"ab": "wxyz"}, {"ac": "wxyz"}, {"ac": "x"}])


# -- token by token: random outputs of the grammars validate -----------------------------------

_WALKED = [
    {"type": "object", "oneOf": [
        {"additionalProperties": False, "properties": {"path": {"type": "string"}, "kind": {"enum": ["a", "f"]}}, "required": ["path", "kind"]},
        {"additionalProperties": False, "properties": {"family": {"type": "string"}, "style": {"type": "string"}}, "required": ["style"]},
    ]},
    {"type": "array", "items": {"oneOf": [
        {"type": "object", "required": ["delete"], "properties": {"delete": {"type": "object", "required": ["at"], "properties": {"at": {"type": "integer"}}}}},
        {"type": "object", "required": ["insert"], "properties": {"insert": {"type": "object", "required": ["at"], "properties": {"at": {"type": "integer"}}}}},
    ]}, "maxItems": 3},
    {"type": "array", "items": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}, {"not": {"enum": [1, 2.5, "x"]}}]}},
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "multipleOf": 12}, "m": {"type": "number", "not": {"const": 3}}},
     "required": ["n", "m"], "additionalProperties": False},
]


@pytest.mark.parametrize("index", range(len(_WALKED)))
def test_random_outputs_validate(index: int) -> None:
    schema = _WALKED[index]
    vocab = small_vocabulary()
    converted = schema_to_grammar(schema, whitespace="compact", strict=True)
    compiled = GrammarCompiler(vocab, budget_s=20).compile_lark(converted.lark, converted.start)
    weights = np.ones(vocab.size)
    for tid, data in enumerate(vocab.token_bytes):
        if data and any(b in _CLOSERS for b in data):
            weights[tid] = 40.0
    rng = np.random.default_rng(index)
    validator = jsonschema.Draft202012Validator(schema)
    finished = 0
    for _ in range(40):
        out = _guided_walk(Matcher(compiled), rng, weights)
        if out is None:
            continue
        finished += 1
        instance = json.loads(out)
        assert validator.is_valid(instance), f"{out!r} is invalid under {schema}"
    assert finished >= 20


def test_a_lone_key_pattern_with_a_leading_lookahead_of_words_leaves_those_keys_out() -> None:
    keywords = "^(?!(if|for|in|name)$)[a-zA-Z_][\\w]*$"
    schema = {"type": "object", "patternProperties": {keywords: {"type": "integer"}}, "additionalProperties": False}
    agrees_with_jsonschema(schema, [{"x": 1}, {"if": 1}, {"iff": 1}, {"in": 2, "x": 1}, {"names": 3}, {"1a": 1}, {"x": "s"}, {}])
    # beside additional keys the words would be additional keys: still refused
    with pytest.raises(SchemaError):
        schema_to_grammar({"type": "object", "patternProperties": {keywords: {"type": "integer"}}})


def test_an_end_anchor_inside_a_pattern_ends_the_string_there() -> None:
    path = "^(\\/?((\\.{2})|([a-z0-9\\-]*))($|\\/))*$"  # segments, each ending in "/" or the end
    agrees_with_jsonschema({"type": "string", "pattern": path}, ["a/b", "a/b/", "/..", "../x", "a.b", "A", "a//b", ""])
    agrees_with_jsonschema({"type": "string", "pattern": "a($|b)"}, ["a", "xa", "ab", "xabc", "ac", "b"])
    agrees_with_jsonschema({"type": "string", "pattern": "^(a$|b)c?", "maxLength": 2}, ["a", "ac", "b", "bc", "bcc", "c"])
    # a start anchor inside stays refused
    with pytest.raises(SchemaError):
        schema_to_grammar({"type": "string", "pattern": "a(^|b)"})


def test_a_word_boundary_between_two_sides_that_read_a_character_is_exact() -> None:
    url = "^https?:\\/\\/[a-z.]{1,20}\\.[a-z()]{1,6}\\b([-a-z()/=?]*)$"  # a domain's end, then a path
    agrees_with_jsonschema({"type": "string", "pattern": url}, [
        "http://a.b/c", "https://ab.cd", "http://a.b(/c", "http://a.bc(", "http://a.b)x", "http://a.b", "http://a.", "ftp://a.b",
    ])
    agrees_with_jsonschema({"type": "string", "pattern": "x\\B."}, ["xy", "x-", "ax1", "x", "-x-"])
    # characters ECMA-262 and Python read differently beside a boundary are left out: "aé"
    # has a boundary for one of them only
    check({"type": "string", "pattern": "^a\\b.$"}, ["a-"], ["aé", "ab"])
    # a side that may be empty: the boundary depends on what is outside the pattern
    with pytest.raises(SchemaError):
        schema_to_grammar({"type": "string", "pattern": "a*\\bb"})
