"""JSON Schema → grammar, keyword by keyword: each test proves one keyword's effect."""

from __future__ import annotations

import json
import time
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onrails import CompileBudgetError, GrammarCompiler, GrammarError, Matcher, SchemaError, schema_to_grammar
from onrails.grammars._schema_gen import _canon, _literal_key, _same
from tests.constrain.small_vocab import small_vocabulary

_COMPILER = GrammarCompiler(small_vocabulary(), budget_s=20)


def accepts(schema: Any, value: Any, whitespace: str = "compact", raw: bool = False) -> bool:
    compiled = _COMPILER.compile_json_schema(schema, whitespace=whitespace)
    text = value if raw else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    m = Matcher(compiled)
    return m.advance_bytes(text.encode()) and m.is_accepting()


def check(schema: Any, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert accepts(schema, value), f"{value!r} should be accepted by {schema}"
    for value in bad:
        assert not accepts(schema, value), f"{value!r} should be rejected by {schema}"


def agrees_with_jsonschema(schema: Any, values: list[Any]) -> None:
    """The grammar accepts exactly the values jsonschema finds valid (formats asserted), and the
    list holds both kinds."""
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    verdicts = [validator.is_valid(v) for v in values]
    assert any(verdicts) and not all(verdicts), (schema, verdicts)
    for value, valid in zip(values, verdicts):
        assert accepts(schema, value) == valid, f"{value!r} is {'valid' if valid else 'invalid'} under {schema}"


def test_type_and_lists_of_types() -> None:
    check({"type": "integer"}, [0, -7, 10**30], [1.5, "1", None])
    check({"type": ["string", "null"]}, ["a", None], [1, True, [], {}])
    check({"type": "number"}, [1, -0.5, 1e-5], ["x"])
    check({"type": "boolean"}, [True, False], [0, "true"])
    assert accepts({"type": "integer"}, "1.0", raw=True)  # an integer value per JSON Schema


def test_enum_and_const_including_structured_values() -> None:
    check({"enum": ["a", 1, None, [1, {"x": 2}]]}, ["a", 1, None, [1, {"x": 2}]], ["b", 2, [1]])
    check({"const": {"k": [True]}}, [{"k": [True]}], [{"k": [False]}, {}])
    check({"enum": ["a", "bb", "ccc"], "maxLength": 2}, ["a", "bb"], ["ccc"])  # filtered by siblings


def test_required_properties_must_appear_and_optional_ones_may_be_omitted() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["b"]}
    check(schema, [{"b": "x"}, {"a": 1, "b": "x"}, {"a": 1, "b": "x", "extra": [1]}], [{"a": 1}, {"a": "1", "b": "x"}])


def test_few_properties_come_in_any_order_each_at_most_once() -> None:
    few = {"properties": {"a": {}, "b": {}, "c": {}}, "required": ["a", "c"], "additionalProperties": False}
    check(few, [{"c": 1, "a": 2}, {"b": 0, "c": 1, "a": 2}], [{"a": 1, "a ": 2}, {"c": 1, "b": 2}])
    assert not accepts(few, '{"a":1,"c":2,"a":3}', raw=True)  # no member twice
    five = {"properties": {k: {} for k in "abcde"}, "additionalProperties": False}
    check(five, [{k: 1 for k in "edcba"}, {"e": 1, "a": 2}], [])
    assert not accepts(five, '{"e":1,"a":2,"e":3}', raw=True)


def test_const_and_enum_objects_take_their_keys_in_any_order_each_once() -> None:
    value = {"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}}
    reordered = {"b": {"c": [1, {"e": 3, "d": 2}]}, "a": 1}
    for schema in ({"const": value}, {"enum": [value, "x"]}):
        check(schema, [value, reordered], [{"a": 1}, {"b": value["b"]}, {**value, "f": 1}])
        assert not accepts(schema, '{"a":1,"a":1,"b":{"c":[1,{"d":2,"e":3}]}}', raw=True)
    many = {f"k{i}": i for i in range(40)}
    check({"const": many}, [many, dict(reversed(many.items()))], [{**many, "k0": 1}])
    assert not accepts({"const": many}, json.dumps(many)[:-1] + ', "k0": 0}', raw=True)


def test_additional_members_come_anywhere_among_the_declared_ones() -> None:
    """Real instances put ``$schema`` or ``$id`` first: undeclared keys may come before the
    required ones, between them and after them, whatever the object's size."""
    for names in ("ab", "abcdefghijkl"):
        schema = {
            "properties": {k: {"type": "integer"} for k in names},
            "required": ["a"],
            "additionalProperties": {"type": "string"},
        }
        good = [{"$schema": "s", "a": 1}, {"x": "1", "a": 2, "b": 3, "y": "z"}, {"b": 1, "$id": "i", "a": 2}]
        check(schema, good, [{"a": 2, "x": 1}, {"x": "1"}, {"$id": "1", "b": "2", "a": 1}])
    declared_first = {"properties": {"$schema": {"type": "string"}, "a": {}}, "required": ["a"]}
    check(declared_first, [{"$schema": "s", "z": 1, "a": 1}], [{"$schema": 1, "a": 1}])


def test_declared_keys_never_repeat_whatever_the_object_size() -> None:
    """``json.loads`` keeps the last copy of a repeated key, so a repeat would drop what the
    model wrote: no declared key comes twice, however many properties the object declares
    (additional keys are not told apart, so they may repeat)."""
    for size in (3, 5, 9, 40):
        names = [f"p{i}" for i in range(size)]
        for required in ([], names[:2], names):
            schema = {"properties": {k: {"type": "integer"} for k in names}, "required": required}
            body = ",".join(f'"{k}":1' for k in names)
            assert accepts(schema, "{" + body + "}", raw=True), (size, required)
            assert accepts(schema, "{" + ",".join(f'"{k}":1' for k in reversed(names)) + "}", raw=True)
            for k in (names[0], names[-1]):
                assert not accepts(schema, "{" + body + f',"{k}":2' + "}", raw=True), (size, required, k)
                assert not accepts(schema, "{" + f'"{k}":2,' + body + "}", raw=True), (size, required, k)
    assert accepts({"properties": {"a": {}}}, '{"x":1,"x":2}', raw=True)


def test_required_properties_come_in_any_order_however_many() -> None:
    schema = {"properties": {k: {} for k in "abcdefghijkl"}, "required": list("abcdefghij")}
    check(
        schema,
        [{k: 1 for k in "jihgfedcba"}, {k: 1 for k in "lajbcdkefghi"}, {k: 1 for k in "abcdefghijz"}],
        [{k: 1 for k in "ihgfedcba"}, {k: 1 for k in "jhgfedcbal"}],
    )


def test_min_and_max_properties_count_distinct_members_in_any_order() -> None:
    schema = {"properties": {k: {} for k in "abcdef"}, "minProperties": 2, "additionalProperties": False}
    check(schema, [{"a": 1, "c": 2}, {"c": 1, "a": 2}, {"f": 1, "e": 2, "b": 3}], [{"a": 1}, {}])
    assert not accepts(schema, '{"a":1,"a":2}', raw=True)
    open_schema = {"properties": {k: {} for k in "abcdef"}, "minProperties": 3, "maxProperties": 4}
    check(
        open_schema,
        [{"x": 1, "a": 1, "y": 2}, {"c": 1, "a": 2, "x": 3, "x2": 4}],
        [{"c": 1, "a": 2}, {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}, {"x": 1, "y": 1, "z": 1, "w": 1, "v": 1}],
    )
    # a required member must still fit under the maximum: an optional one cannot take its place
    tight = {"properties": {k: {} for k in "abc"}, "required": ["a", "b"], "maxProperties": 3}
    check(tight, [{"c": 1, "b": 1, "a": 1}, {"a": 1, "b": 1}, {"a": 1, "x": 1, "b": 1}], [{"c": 1, "x": 1, "a": 1}])


def test_additional_properties_false_true_and_schema() -> None:
    props = {"a": {"type": "integer"}}
    check({"properties": props, "additionalProperties": False}, [{}, {"a": 1}], [{"b": 1}, {"a": 1, "b": 2}])
    check({"properties": props, "additionalProperties": {"type": "string"}}, [{"a": 1, "z": "s"}], [{"a": 1, "z": 2}])
    # an additional key may not repeat a declared name, even when its declared value is omitted
    check({"properties": props, "additionalProperties": {"type": "string"}}, [{"aa": "s"}], [{"a": "s"}])


def test_additional_keys_are_written_in_their_canonical_spelling_escapes_included() -> None:
    schema = {"properties": {'a"b': {"type": "string"}}, "additionalProperties": {"type": "integer"}}
    check(schema, [{"x\\y": 1, "a\nb": 2, 'a"b': "s"}, {"\u0001": 1}], [{'a"b': 1}, {"x\\y": "s"}])
    assert not accepts(schema, '{"\\u0061":1}', raw=True)  # "a", but not as json.dumps writes it


def test_bounded_numbers_take_an_exponent_where_sign_and_exponent_decide_the_bound() -> None:
    def spellings(schema: Any, good: list[str], bad: list[str]) -> None:
        for text in good:
            assert accepts(schema, text, raw=True), f"{text} should be accepted by {schema}"
        for text in bad:
            assert not accepts(schema, text, raw=True), f"{text} should be rejected by {schema}"

    spellings({"type": "number", "minimum": 0}, ["1e-06", "2.5e+20", "0E3", "0.5"], ["-1e-06", "-3e0"])
    spellings({"type": "number", "exclusiveMinimum": 0, "maximum": 1}, ["1e-06", "9.9e-1", "1"], ["0e5", "2e0", "-1e-06"])
    # a double would round 1e-400 to 0, which fails the bound in validators that parse to doubles
    spellings({"type": "number", "exclusiveMinimum": 0}, ["1e-300", "12e+300"], ["1e-400", "0.01e-2"])
    spellings({"type": "number", "minimum": 1}, ["2.5e+20", "1e0", "1.5"], ["1e-06", "9e-1", "-2.5e+20"])
    spellings({"type": "number", "maximum": -1}, ["-2.5e+20", "-1.5"], ["-1e-06", "2.5e+20"])
    spellings({"type": "number", "minimum": -0.5, "maximum": 100}, ["1e-06", "-1e-06", "9.5e1"], ["-6e-1", "1e3"])


def test_pattern_properties_and_property_names() -> None:
    check(
        {"patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": False},
        [{}, {"x_a": 1, "x_b": 2}],
        [{"y": 1}, {"x_a": "1"}],
    )
    check({"propertyNames": {"maxLength": 2}}, [{"ab": 1}], [{"abc": 1}])
    check({"propertyNames": {"enum": ["p", "q"]}}, [{"p": 1, "q": 2}], [{"r": 1}])


def test_min_and_max_properties_count_declared_and_additional_members() -> None:
    check({"properties": {"a": {}}, "minProperties": 2, "maxProperties": 3}, [{"a": 1, "b": 2}, {"x": 1, "y": 2, "z": 3}], [{"a": 1}, {"a": 1, "b": 2, "c": 3, "d": 4}])


def test_items_prefix_items_and_counts() -> None:
    check({"items": {"type": "integer"}, "minItems": 1, "maxItems": 3}, [[1], [1, 2, 3]], [[], [1, 2, 3, 4], ["a"]])
    check({"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False}, [[], ["a"], ["a", 1]], [[1], ["a", 1, 2]])
    check({"prefixItems": [{"type": "string"}], "items": {"type": "null"}}, [["a", None, None]], [["a", 1]])


def test_contains_with_min_and_max_contains() -> None:
    check({"contains": {"type": "string"}}, [["a"], [1, "a", 2]], [[], [1, 2]])
    check({"contains": {"type": "string"}, "minContains": 2, "maxContains": 2}, [["a", 1, "b"]], [["a"], ["a", "b", "c"]])


def test_string_lengths_count_code_points_not_bytes_or_escapes() -> None:
    check({"type": "string", "minLength": 2, "maxLength": 3}, ["ab", "日本語", "a\nb"], ["a", "abcd", "日本語x"])


def test_pattern_is_a_search_unless_anchored() -> None:
    check({"pattern": "b+c"}, ["abbcd", "bc"], ["ac", "b"])
    check({"pattern": "^a[0-9]{2}$"}, ["a12"], ["a123", "xa12", "a1"])
    check({"type": "string", "pattern": "^\\d+$"}, ["123"], ["١٢٣", "12a"])  # \d is ASCII in ECMA-262


def test_a_pattern_of_many_words_searches_for_any_of_them_anchored_or_not() -> None:
    # Options anchored alike share one "anything" before and after them (one per option took
    # 5 s to compile for a MaskBench schema): the search must stay the same.
    words = [f"QTABLE_{kind}_TYPE" for kind in ("INT", "DOUBLE", "INT64", "STRING", "TIME", "DATE", "CACHED_STRING")]
    pattern = "|".join(words) + "|^START|END$"
    check(
        {"type": "string", "pattern": pattern},
        ["QTABLE_INT_TYPE", "x QTABLE_DATE_TYPE y", "STARTx", "xEND"],
        ["QTABLE_INT", "xSTART", "ENDx", "qtable_int_type"],
    )


def test_pattern_with_length_is_exact_when_one_repeat_decides_the_length() -> None:
    check({"type": "string", "pattern": "^[A-Z]{2}[0-9]+$", "maxLength": 4}, ["AB1", "AB12"], ["AB123", "AB"])


def test_patterns_without_a_regular_translation_are_refused_in_strict_mode() -> None:
    with pytest.raises(SchemaError) as info:
        schema_to_grammar({"properties": {"p": {"pattern": "(?=a)b"}}})
    assert info.value.pointer == "/properties/p" and info.value.keyword == "pattern"


def test_formats_are_asserted() -> None:
    check({"format": "date"}, ["2024-02-29", "2023-12-31"], ["2023-02-29", "2023-13-01", "x"])
    check({"format": "date-time"}, ["2024-01-01T10:00:00Z", "2024-01-01T10:00:00.5+02:00"], ["2024-01-01 10:00"])
    check({"format": "ipv4"}, ["192.168.0.1"], ["256.1.1.1", "01.1.1.1"])
    check({"format": "uuid"}, ["123e4567-e89b-12d3-a456-426614174000"], ["123e4567"])
    check({"format": "email"}, ["a.b@example.com"], ["a@@b", "plain"])
    check({"format": "duration"}, ["P1Y2M", "PT5S", "P3W"], ["P", "PT", "P1Y2D"])
    check({"format": "hostname"}, ["example.com"], ["-bad.com", "a..b"])
    check({"format": "ipv6"}, ["::1", "fe80::1"], ["1::2::3"])
    check({"format": "uri"}, ["https://example.com/a?b#c"], ["no scheme", "http://x:port"])
    check({"format": "time"}, ["10:00:00Z"], ["25:00:00Z"])


def test_formats_outside_the_specification_are_annotations_and_listed() -> None:
    converted = schema_to_grammar({"type": "string", "format": "color"})
    assert converted.ignored_formats == (("", "color"),)
    check({"type": "string", "format": "color"}, ["anything"], [])
    for name in ("int32", "int64", "byte", "password"):  # OpenAPI's
        assert schema_to_grammar({"format": name}).ignored_formats == (("", name),)
        check({"type": "string", "format": name}, ["anything"], [])


def test_regex_format_refuses_malformed_patterns_and_accepts_common_ones() -> None:
    common = ["^[a-z]+$", r"\d{3}-\d{4}", "(a|b)*c", r"^[A-Za-z0-9_.-]+@[a-z]+\.[a-z]{2,}$", "", "a|", "()",
              r"^(?=.*[A-Z])(?=.*\d).{8,}$", r"((\w+)(\s|-))+", "[^\"]*", "a{2,5}?", r"\u00e9\x41\/", "é+"]
    malformed = ["*", "\\", "(", ")", "[", "[a", "a{2,1}", "a**", "{", "]", "(?", "x(?=a)*", r"\a", "(?i)a",
                 "(?P<n>x)", "(?#c)", "[z-a]", r"[\d-z]", "^*"]
    check({"format": "regex"}, common, malformed)


def test_regex_format_leaves_out_what_python_re_or_the_nesting_bound_refuses() -> None:
    # valid ECMA-262, narrowed: re rejects these, or groups nest deeper than 3
    check({"format": "regex"}, ["((( a )))"], ["(?<n>a)\\k<n>", "(?<=a+)b", "[]", "[^]", "\\cA", "((((a))))"])


def test_hostname_labels_take_1_to_63_characters_and_names_253() -> None:
    label = "a" * 63
    check({"format": "hostname"}, [label + ".com", "a--b.com", "A0-z.example", "a.b.c.d.e.f.g.h"],
          ["a" * 64 + ".com", "ab--cd.com", "xn--nw2a.com", "a-.com", ".com", "com.", "a_b"])
    four = ".".join([label, label, label, "a" * 61])
    check({"format": "hostname"}, [four], [four + "a"])
    assert len(four) == 253


def test_leap_seconds_are_accepted_at_23_59_60_utc() -> None:
    check({"format": "time"}, ["23:59:60Z", "23:59:60.5+00:00", "23:59:60-00:00"],
          ["22:59:60Z", "23:58:60Z", "23:59:61Z", "23:59:60+01:00"])
    # date-time: only on the dates a leap second has occurred (RFC 3339 section 5.7)
    check({"format": "date-time"}, ["1998-12-31T23:59:60Z", "2016-12-31T23:59:60.25z"],
          ["1998-12-31T23:59:61Z", "1998-12-30T23:59:60Z"])


def test_pointer_template_iri_and_idn_formats_are_asserted() -> None:
    check({"format": "json-pointer"}, ["", "/", "/a~0b/~1/\"q\"/\n/😎"], ["a", "/~", "/~2", "#/a"])
    check({"format": "relative-json-pointer"}, ["0", "1#", "12/a/~1"], ["", "-1", "01", "0##", "/a"])
    check({"format": "uri-template"}, ["", "a'b{+x,y*}/{z:3}", "{%41.b}é"], ["{}", "{a,}", "a b", "{v:0}", "{=a}"])
    check({"format": "iri"}, ["http://ƒøø.ßår/?é=π#ü", "urn:x"], ["/abc", "http://a/\\b", "http://a b"])
    check({"format": "iri-reference"}, ["/âππ", "#ƒrä"], ["#a\\b"])
    check({"format": "idn-hostname"}, ["bücher.example", "ひらがな.jp", "host-name"],
          ["Bücher.de", "ab--cd", "-a", "a" * 64, "a。b"])
    check({"format": "idn-email"}, ["δοκιμή@example.com", "a@bücher.de"], ["plain", "a@-b"])


def test_a_pattern_beside_a_format_accepts_the_strings_matching_both() -> None:
    agrees_with_jsonschema(
        {"type": "string", "format": "date", "pattern": "^2024"},
        ["2024-01-05", "2024-12-31", "2023-01-05", "2024-13-01", "2024", "x2024-01-05"],
    )


def test_two_patterns_merged_by_all_of_both_apply() -> None:
    agrees_with_jsonschema({"allOf": [{"pattern": "^a"}, {"pattern": "b$"}]}, ["ab", "axb", "a", "b", "ba", 7])


def test_lengths_beside_a_pattern_that_does_not_decide_them_are_exact() -> None:
    schema = {"type": "string", "pattern": "[a-z]+", "minLength": 3, "maxLength": 5}
    agrees_with_jsonschema(schema, ["abc", "1a2b3", "ab", "1a2b3c", "12345", "\u00e9a\u00e9", "AB\nc"])
    # a pattern anchored at one end only, a minimum alone
    agrees_with_jsonschema({"type": "string", "pattern": "^[a-z]", "minLength": 2}, ["ab", "a1", "a", "1a"])


def test_a_max_length_above_128_beside_a_pattern_is_enforced_as_128() -> None:
    # a documented narrowing, as for strings without a pattern
    schema = {"type": "string", "pattern": "^/", "maxLength": 500}
    check(schema, ["/" + "a" * 127], ["/" + "a" * 128, "a"])


def test_lengths_on_formats_are_enforced_exactly() -> None:
    check({"type": "string", "format": "ipv4", "maxLength": 15}, ["10.0.0.1"], ["x"])
    agrees_with_jsonschema(
        {"type": "string", "format": "email", "maxLength": 12}, ["a@b.co", "abcd@efgh.io", "abcde@efgh.io", "ab"]
    )
    agrees_with_jsonschema({"type": "string", "format": "uri", "minLength": 12}, ["http://a.bc/", "http://a.b/", "x"])


def test_a_product_too_large_for_the_budget_is_refused_cleanly() -> None:
    # each of 30 words may end at each of 128 lengths: more states than a product may have
    schema = {"type": "string", "pattern": "^(?:\\S+\\s+){0,29}\\S+$", "maxLength": 128}
    started = time.monotonic()
    with pytest.raises(CompileBudgetError):
        _COMPILER.compile_json_schema(schema)
    assert time.monotonic() - started < 5


def test_a_negated_pattern_excludes_exactly_the_matching_strings() -> None:
    agrees_with_jsonschema({"type": "string", "not": {"pattern": "^a"}}, ["b", "ba", "", "a", "ab"])
    agrees_with_jsonschema({"not": {"pattern": "^a", "maxLength": 2}}, ["b", "a", "ab", "abc", 1])


def test_a_negated_format_excludes_exactly_the_strings_in_the_format() -> None:
    agrees_with_jsonschema({"type": "string", "not": {"format": "date"}}, ["x", "2024-02-30", "2024-01-01"])
    # a format outside the specification is an annotation: its negation allows no string
    check({"anyOf": [{"not": {"format": "int64"}}, {"type": "integer"}]}, [1], ["x"])


def test_one_of_overlapping_patterns_takes_the_strings_matching_exactly_one() -> None:
    agrees_with_jsonschema({"type": "string", "oneOf": [{"pattern": "^a"}, {"pattern": "b$"}]}, ["ax", "xb", "ab", "xx"])


def test_a_string_outside_a_set_takes_the_other_string_keywords_too() -> None:
    schema = {"type": "string", "maxLength": 3, "pattern": "^a", "not": {"enum": ["ab", "zz"]}}
    agrees_with_jsonschema(schema, ["a", "abc", "ab", "abcd", "ba"])
    # the words left out of a counted string: its length still holds
    agrees_with_jsonschema({"type": "string", "maxLength": 3, "not": {"enum": ["ab"]}}, ["a", "abc", "ab", "abcd"])


def test_a_negation_without_grammar_is_checked_on_the_values_of_an_enum() -> None:
    # "not an integer" has no grammar, but only the listed values can occur
    negated = {"not": {"allOf": [{"properties": {"bar": {"type": "integer"}}, "required": ["bar"]}, {"required": ["foo"]}]}}
    agrees_with_jsonschema({"allOf": [{"enum": [{"foo": "baz"}, {"foo": 1, "bar": 2}, {"bar": 1.5, "foo": "x"}]}, negated]}, [
        {"foo": "baz"}, {"foo": 1, "bar": 2}, {"bar": 1.5, "foo": "x"}, {"foo": "other"},
    ])
    overlapping = {"oneOf": [{"multipleOf": 5}, {"type": "number", "minimum": 2}]}
    agrees_with_jsonschema({"enum": [1, 2.5, 5, "a"], **overlapping}, [1, 2.5, 5, "a", 4])
    agrees_with_jsonschema({"enum": [1, 2.5, 3], "if": {"type": "integer"}, "then": {"minimum": 2}}, [1, 2.5, 3])
    # without a finite set of values it stays refused, naming the keyword
    with pytest.raises(SchemaError) as info:
        schema_to_grammar(overlapping)
    assert info.value.keyword == "oneOf" and info.value.pointer == "/oneOf"
    assert [u.keyword for u in schema_to_grammar(overlapping, strict=False).unenforced] == ["oneOf"]


def test_an_intersection_matching_nothing_leaves_the_other_branches() -> None:
    schema = {"anyOf": [{"type": "string", "pattern": "^[0-9]+$", "format": "date"}, {"type": "integer"}]}
    check(schema, [1], ["2024-01-01", "1"])
    with pytest.raises(GrammarError):
        _COMPILER.compile_json_schema({"type": "string", "pattern": "^[0-9]+$", "format": "date"})


def test_enum_values_are_checked_against_every_asserted_format() -> None:
    # jsonschema alone skips formats whose optional libraries are missing (uri, date-time, ...)
    check({"enum": ["http://a.b/c", "not a uri"], "format": "uri"}, ["http://a.b/c"], ["not a uri"])
    check({"enum": ["2024-01-01T00:00:00Z", "2024-01-01"], "format": "date-time"}, ["2024-01-01T00:00:00Z"], ["2024-01-01"])


def test_integer_bounds_are_exact() -> None:
    schema = {"type": "integer", "minimum": -13, "exclusiveMaximum": 120}
    for n in range(-30, 140):
        assert accepts(schema, n) == (-13 <= n < 120), n


def test_decimal_bounds_are_exact_for_spellings_without_exponent() -> None:
    schema = {"type": "number", "exclusiveMinimum": 0.25, "maximum": 2.5}
    for k in range(-20, 40):
        x = k / 8
        assert accepts(schema, x) == (0.25 < x <= 2.5), x


def test_multiple_of() -> None:
    check({"type": "integer", "multipleOf": 5}, [0, 5, -10, 1005], [3, 12])
    check({"type": "number", "multipleOf": 0.25}, [0.5, 1.75, 3], [0.3, 1.1])
    check({"type": "integer", "multipleOf": 3, "minimum": 0, "maximum": 10}, [0, 3, 9], [1, 12, -3])
    # multiples of 1 are the integral numbers, so one-sided bounds stay exact
    check({"type": "number", "multipleOf": 1.0, "minimum": 0}, [0, 3, 3.0, 10**20], [2.5, -1, -1.0])
    check({"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "multipleOf": 1, "maximum": 5}, [5.0, -7], [6, 4.5])
    check({"type": "integer", "multipleOf": 1, "exclusiveMinimum": 2}, [3, 40], [2, 1])
    with pytest.raises(SchemaError) as info:
        schema_to_grammar({"type": "integer", "multipleOf": 7})
    assert info.value.keyword == "multipleOf"


def test_any_of_one_of_and_all_of() -> None:
    check({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]}, [1, "a"], ["ab", None])
    check({"oneOf": [{"type": "integer"}, {"type": "string"}]}, [1, "a"], [None])
    check({"oneOf": [{"minimum": 2}, {"maximum": 5}], "type": "integer"}, [1, 6], [3, 5])  # exactly one
    check({"allOf": [{"properties": {"a": {"type": "integer"}}}, {"required": ["a"]}]}, [{"a": 1}], [{}, {"a": "x"}])
    check({"allOf": [{"type": "integer"}, {"minimum": 3}, {"maximum": 4}]}, [3, 4], [2, 5])


def test_recursive_tree_schema() -> None:
    tree = {
        "$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["v"], "additionalProperties": False}},
        "$ref": "#/$defs/node",
    }
    check(tree, [{"v": 1}, {"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}, {"v": 4}]}], [{"v": 1, "kids": [{}]}, {"kids": []}])


def test_ref_cycles_through_values_and_draft7_definitions() -> None:
    cycle = {
        "definitions": {"a": {"type": "array", "items": {"$ref": "#/definitions/b"}}, "b": {"anyOf": [{"type": "null"}, {"$ref": "#/definitions/a"}]}},
        "$ref": "#/definitions/a",
    }
    check(cycle, [[], [None, [None, []]]], [[1], [[1]]])


def test_a_ref_cycle_with_no_value_in_between_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        schema_to_grammar({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})


def test_if_then_else() -> None:
    schema = {
        "type": "object",
        "properties": {"kind": {"enum": ["a", "b"]}, "x": {}, "y": {}},
        "if": {"properties": {"kind": {"const": "a"}}, "required": ["kind"]},
        "then": {"required": ["x"]},
        "else": {"required": ["y"]},
    }
    check(schema, [{"kind": "a", "x": 1}, {"kind": "b", "y": 1}, {"y": 1}], [{"kind": "a", "y": 1}, {"kind": "b", "x": 1}])


def test_not() -> None:
    check({"not": {"type": "string"}}, [1, None, []], ["a"])
    check({"type": "string", "not": {"enum": ["a", "b"]}}, ["c", "ab", ""], ["a", "b"])
    check({"type": "integer", "not": {"minimum": 10}}, [9, -1], [10, 11])


def test_boolean_schemas() -> None:
    check(True, [1, "a", None, {"k": [1]}], [])
    check({"properties": {"a": False}}, [{}, {"b": 1}], [{"a": 1}])
    with pytest.raises(SchemaError):
        schema_to_grammar(False)


def test_draft7_array_items_additional_items_and_dependencies() -> None:
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "integer"}], "additionalItems": {"type": "string"}}
    check(schema, [[1, "a"], [1]], [[1, 2], ["a"]])
    deps = {"$schema": "http://json-schema.org/draft-07/schema#", "properties": {"a": {}, "b": {}}, "dependencies": {"a": ["b"]}}
    check(deps, [{}, {"b": 1}, {"a": 1, "b": 2}], [{"a": 1}])


def test_whitespace_modes() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "array"}}}
    assert accepts(schema, '{ "a" : [ 1 ,\n 2 ] }'.strip(), whitespace="flexible", raw=True)
    assert not accepts(schema, '{ "a": [] }', whitespace="compact", raw=True)
    assert not accepts(schema, ' {"a":[]}', whitespace="flexible", raw=True)  # none around the value


def _token_gaps(text: str) -> list[int]:
    """Offsets between two JSON tokens of a compact text (none inside strings)."""
    gaps, in_string, escaped = [], False, False
    for i, c in enumerate(text):
        if in_string:
            in_string = escaped or c != '"'
            escaped = not escaped and c == "\\"
            if not in_string:
                gaps.append(i + 1)
        elif c == '"':
            in_string = True
            if i:
                gaps.append(i)
        elif c in "{}[],:":
            gaps += [i, i + 1]
    return sorted(g for g in set(gaps) if 0 < g < len(text))


def test_whitespace_fits_every_gap_between_tokens_in_each_mode() -> None:
    # Declared, additional and pattern members, constant objects and arrays, any values nested
    # in objects and arrays, counted arrays: every place the converter writes punctuation.
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
            "c": {"const": {"k": [1, {"z": None}], "e": []}},
            "o": {"type": "object"},
            "p": {"type": "object", "patternProperties": {"^x": {"type": "integer"}}, "additionalProperties": False},
        },
        "required": ["a", "c", "o", "p"],
        "additionalProperties": {"type": "array"},
    }
    value = {"a": [1, 2], "c": {"k": [1, {"z": None}], "e": []}, "o": {"n": [{}, [], {"q": 1}]}, "p": {"x1": 2}, "more": []}
    text = json.dumps(value, separators=(",", ":"))
    gaps = _token_gaps(text)
    assert len(gaps) > 40
    for gap in gaps:
        spaced = text[:gap] + "\n  " + text[gap:]
        assert accepts(schema, spaced, whitespace="flexible", raw=True), spaced
        assert accepts(schema, spaced, whitespace="bounded", raw=True), spaced
        assert not accepts(schema, spaced, whitespace="compact", raw=True), spaced
        # bounded whitespace is one run: a line break with blanks, or blanks
        doubled = text[:gap] + " \n " + text[gap:]
        assert accepts(schema, doubled, whitespace="flexible", raw=True), doubled
        assert not accepts(schema, doubled, whitespace="bounded", raw=True), doubled
    everywhere = "".join(text[a:b] + " " for a, b in zip([0, *gaps], [*gaps, len(text)])).strip()
    assert accepts(schema, everywhere, whitespace="flexible", raw=True)
    assert accepts(schema, text, whitespace="compact", raw=True)


def test_explanations_name_punctuation_by_what_it_reads() -> None:
    compiled = _COMPILER.compile_json_schema({"type": "object", "properties": {"a": {"type": "integer"}}})
    matcher = Matcher(compiled)
    assert matcher.advance_bytes(b'{"a": 1')
    x = next(i for i, data in enumerate(compiled.vocabulary.token_bytes) if data == b"x")
    why = matcher.explain(x)
    assert not why.allowed
    assert {"JS_WS_COMMA_WS", "JS_WS_RBRACE"} <= set(why.expected_terminals), why.message


def test_strict_mode_refuses_what_it_cannot_enforce_and_lenient_mode_lists_it() -> None:
    schema = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(SchemaError) as info:
        schema_to_grammar(schema)
    assert (info.value.pointer, info.value.keyword) == ("/properties/tags", "uniqueItems")
    lenient = schema_to_grammar(schema, strict=False)
    assert [(u.pointer, u.keyword) for u in lenient.unenforced] == [("/properties/tags", "uniqueItems")]
    assert _COMPILER.compile_json_schema(schema, strict=False) is not None


def test_unique_items_among_finitely_many_scalars_never_repeat_a_value() -> None:
    tags = {"type": "array", "uniqueItems": True, "items": {"enum": ["a", "b", "c", 1, 1.0, True, None]}, "maxItems": 3}
    values: list[Any] = [[], ["a"], ["c", "a"], ["a", "a"], [1, 1.0], [1.0, "a", True], ["a", "b", "c", 1], [True, 1], [None, None], ["d"]]
    agrees_with_jsonschema(tags, values)
    flags = {"type": "array", "uniqueItems": True, "items": {"type": ["boolean", "null"]}, "minItems": 2}
    agrees_with_jsonschema(flags, [[True, False], [None, True, False], [True, True], [True], [False, None, None]])
    # 60 tags in any number: a tracked list, where a state per set of tags written would be 2^60
    many = {"type": "array", "uniqueItems": True, "items": {"enum": [f"t{i}" for i in range(60)]}}
    assert len(schema_to_grammar(many).item_sets) == 1
    agrees_with_jsonschema(many, [[f"t{i}" for i in range(60)], [f"t{i}" for i in range(59, -1, -1)], ["t3", "t9", "t3"]])


def test_invalid_schemas_raise_schema_error_with_a_pointer() -> None:
    with pytest.raises(SchemaError) as info:
        schema_to_grammar({"properties": {"a": {"type": "strin"}}})
    assert info.value.pointer == "/properties/a/type"
    with pytest.raises(SchemaError):
        schema_to_grammar("{not json")
    with pytest.raises(SchemaError):
        schema_to_grammar({"$ref": "https://example.com/remote.json"})


def test_explosive_schemas_fail_cleanly_within_the_budget() -> None:
    start = time.monotonic()
    branches = [{"anyOf": [{"required": [f"a{i}"]}, {"required": [f"b{i}"]}]} for i in range(8)]
    with pytest.raises(CompileBudgetError):
        schema_to_grammar({"allOf": branches, "minProperties": 1})
    with pytest.raises(CompileBudgetError):
        schema_to_grammar({"type": "array", "maxItems": 100_000, "contains": {"type": "null"}, "maxContains": 50})
    assert time.monotonic() - start < 10


def test_string_lengths_are_enforced_exactly_whatever_the_bound() -> None:
    """Lengths are a counter beside the string's automaton: 10,000 characters, escapes and
    multi-byte characters included, and bounds past int32 states, compile in the time of short ones."""
    start = time.monotonic()
    text = ("é\n" + "x" * 98) * 100  # 10,000 characters, 10,200 bytes once written
    check({"type": "string", "maxLength": 10_000}, [text, text[:-1]], [text + "x"])
    check({"type": "string", "minLength": 10_000}, [text, text + "x"], [text[:-1]])
    check({"type": "string", "minLength": 3, "maxLength": 2_147_483_647}, ["abc", text], ["ab"])
    assert time.monotonic() - start < 10


def test_compile_json_schema_caches_by_canonical_json_and_accepts_text() -> None:
    a = _COMPILER.compile_json_schema({"type": "integer", "minimum": 1})
    b = _COMPILER.compile_json_schema('{"minimum": 1, "type": "integer"}')
    assert a is b


def test_bounded_whitespace_allows_one_line_break_and_few_blanks() -> None:
    schema = {"type": "array"}
    assert accepts(schema, "[\n  1,\n  2\n]", whitespace="bounded", raw=True)
    assert not accepts(schema, "[\n\n1]", whitespace="bounded", raw=True)


def test_a_pattern_matching_every_key_applies_to_declared_and_additional_members() -> None:
    schema = {"properties": {"a": {"type": "integer"}}, "patternProperties": {".*": {"minimum": 0}}, "additionalProperties": False}
    check(schema, [{"a": 1, "b": 2}, {}], [{"a": -1}, {"b": -2}, {"a": "x"}])


def test_keys_outside_the_patterns_take_additional_properties() -> None:
    schema = {"patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": {"type": "string"}}
    values = [{"x-a": 1}, {"x-a": "s"}, {"b": "s"}, {"b": 1}, {"x-a": 1, "b": "s"}, {"b": "s", "x-": True}]
    agrees_with_jsonschema(schema, values)
    # additionalProperties left out: keys outside the patterns take any value, the others do not
    agrees_with_jsonschema({"patternProperties": {"^x-": {"type": "integer"}}}, [{"x-a": 1}, {"x-a": "s"}, {"b": [None]}])


def test_a_key_matching_several_patterns_takes_all_their_schemas() -> None:
    schema = {"patternProperties": {"^a": {"type": "integer"}, "b$": {"minimum": 3}}, "additionalProperties": False}
    values = [{"ab": 3}, {"ab": 2}, {"ab": "x"}, {"a": 1}, {"a": "x"}, {"b": 1}, {"b": "x"}, {"c": None}]
    agrees_with_jsonschema(schema, values)
    five = {"patternProperties": {p: {"maxLength": i} for i, p in enumerate("abcde")}}
    with pytest.raises(SchemaError) as info:
        schema_to_grammar(five)
    assert info.value.keyword == "patternProperties"


def test_a_pattern_matching_a_declared_name_applies_to_it_as_well() -> None:
    schema = {"properties": {"ab": {"type": "integer"}}, "patternProperties": {"^a": {"minimum": 3}}, "additionalProperties": False}
    agrees_with_jsonschema(schema, [{"ab": 3}, {"ab": 2}, {"ab": 3.5}, {"ac": 5}, {"ac": 1}, {"b": 1}])
    assert not accepts(schema, '{"ab":3,"ab":4}', raw=True)  # the declared name is no pattern key


def test_merged_pattern_keys_obey_the_other_branch_additional_properties() -> None:
    schema = {"allOf": [{"patternProperties": {"^x": {"type": "integer"}}}, {"properties": {"a": {}}, "additionalProperties": False}]}
    check(schema, [{"a": 1}, {}], [{"x1": 1}, {"b": 1}])


def test_additional_keys_differ_from_declared_names_exactly_however_many() -> None:
    # Keys one character away from a declared name are additional keys; the declared names
    # themselves are not, so a declared name cannot come back with the additional schema.
    names = [f"name{i}" for i in range(40)] + ["name"]
    schema = {"properties": {n: {"type": "string"} for n in names}, "additionalProperties": {"type": "integer"}}
    check(schema, [{"name": "x"}, {"name ": 1}, {"nam": 1}, {"name40": 1}, {"names": 2}, {"n": 3}], [{"name": 1}, {"name7": 5}])


def test_long_lists_keep_the_parser_stack_as_deep_as_a_short_one() -> None:
    """Lists are left-recursive: item 300 sits in the same parser context as item 3, so masks
    computed for one serve the other instead of every item being a new nesting level."""
    schema = {
        "type": "object",
        "properties": {
            "xs": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
            "any": {},
            **{k: {"type": "integer"} for k in "abcdefg"},
        },
        "required": ["xs"],
    }
    compiled = _COMPILER.compile_json_schema(schema, whitespace="compact")

    def depth_after(text: str) -> int:
        m = Matcher(compiled)
        assert m.advance_bytes(text.encode())
        automaton = m._generation.automaton
        return max(automaton.stack_depth[stack] for stack, _, _ in automaton.configs[m._state])

    items = lambda n: ",".join(["1"] * n)  # noqa: E731
    assert depth_after('{"xs":[' + items(3)) == depth_after('{"xs":[' + items(300))
    members = lambda n: ",".join(f'"x{i}":1' for i in range(n))  # noqa: E731  (additional members)
    assert depth_after('{"xs":[1],' + members(3)) == depth_after('{"xs":[1],' + members(300))
    assert depth_after('{"xs":[1],"any":[' + items(3)) == depth_after('{"xs":[1],"any":[' + items(300))


def _nested_objects(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def _nested_document(levels: int) -> Any:
    document: Any = "x"
    for _ in range(levels):
        document = {"a": document}
    return document


def test_schema_nested_past_the_depth_limit_is_refused_with_its_pointer_at_once() -> None:
    """100 nested objects used to exhaust Python's recursion inside validation (a
    RecursionError, which the server answered with a 500); the limit is checked before
    anything recurses, and 60 levels still compile exactly."""
    assert accepts(_nested_objects(60), _nested_document(60))
    assert not accepts(_nested_objects(60), _nested_document(59))
    start = time.monotonic()
    with pytest.raises(SchemaError, match="more than 128 levels") as info:
        schema_to_grammar(_nested_objects(100))
    assert time.monotonic() - start < 1
    assert info.value.pointer.startswith("/properties/a" * 60)
    with pytest.raises(SchemaError, match="more than 128 levels"):
        _COMPILER.compile_tools([{"type": "function", "function": {"name": "f", "parameters": _nested_objects(100)}}])


_JSON_VALUES = st.recursive(
    st.sampled_from([0, 1, 1.0, -0.0, 0.0, 1e16, True, False, None, "1", "a", "", "\0a", float("nan")]),
    lambda inner: st.lists(inner, max_size=3)
    | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
    max_leaves=6,
)


@settings(max_examples=2000, deadline=None)
@given(_JSON_VALUES, _JSON_VALUES)
def test_merged_values_compare_as_their_json_text(a: Any, b: Any) -> None:
    """The converter's quick comparisons (subschemas side by side, enum members by key) say
    equal exactly when the canonical JSON texts are equal: 1 is neither true nor 1.0."""
    same_text = _canon(a) == _canon(b)
    assert _same(a, b) == same_text
    assert (_literal_key(a) == _literal_key(b)) == same_text
