"""References leaving the schema (documents known by URI, ``schemas=``) and ``$dynamicRef``."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema

from onrails import GrammarCompiler, Matcher, SchemaError, schema_to_grammar
from onrails.errors import CompileBudgetError
from tests.constrain.small_vocab import small_vocabulary

_COMPILER = GrammarCompiler(small_vocabulary(), budget_s=20)

PET_URI = "https://example.com/schemas/pet.json"
PET = {
    "$id": PET_URI,
    "type": "object",
    "properties": {"name": {"type": "string"}, "tag": {"$ref": "tag.json"}},
    "required": ["name"],
    "additionalProperties": False,
}
TAG = {"type": "string", "maxLength": 3}
DOCUMENTS = {PET_URI: PET, "https://example.com/schemas/tag.json": TAG}


def accepts(schema: Any, value: Any, documents: "dict[str, Any] | None" = None) -> bool:
    compiled = _COMPILER.compile_json_schema(schema, whitespace="compact", schemas=documents)
    matcher = Matcher(compiled)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return matcher.advance_bytes(text.encode()) and matcher.is_accepting()


def agrees_with_jsonschema(schema: Any, documents: dict[str, Any], values: list[Any]) -> None:
    """The grammar accepts exactly what jsonschema finds valid with the same documents."""
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (uri, referencing.jsonschema.DRAFT202012.create_resource(doc)) for uri, doc in documents.items()
    )
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    verdicts = [validator.is_valid(v) for v in values]
    assert any(verdicts) and not all(verdicts), verdicts
    for value, valid in zip(values, verdicts):
        assert accepts(schema, value, documents) == valid, f"{value!r} is {'valid' if valid else 'invalid'}"


def test_a_remote_reference_is_resolved_through_the_documents_given_by_uri() -> None:
    schema = {"type": "array", "items": {"$ref": PET_URI}}
    values = [[], [{"name": "Rex"}], [{"name": "Rex", "tag": "dog"}], [{"tag": "dog"}], [{"name": "Rex", "tag": "long"}],
              [{"name": "Rex", "age": 3}], [{"name": 7}]]
    agrees_with_jsonschema(schema, DOCUMENTS, values)


def test_references_inside_a_document_resolve_against_its_own_id_and_fragments() -> None:
    # "tag.json" inside pet.json resolves against pet.json's URI; a fragment points into a document
    agrees_with_jsonschema({"$ref": PET_URI + "#/properties/tag"}, DOCUMENTS, ["abc", "abcd", 3])
    # a relative reference from the root resolves against the root's $id
    agrees_with_jsonschema({"$id": "https://example.com/schemas/root.json", "$ref": "tag.json"}, DOCUMENTS, ["ab", "abcd"])


def test_a_reference_to_a_uri_no_document_defines_is_a_schema_error_naming_it() -> None:
    schema = {"properties": {"owner": {"$ref": "https://example.com/schemas/person.json"}}}
    with pytest.raises(SchemaError) as info:
        schema_to_grammar(schema, schemas=DOCUMENTS)
    assert "https://example.com/schemas/person.json" in str(info.value)
    assert info.value.pointer == "/properties/owner"
    # and without any documents at all
    with pytest.raises(SchemaError, match="person.json"):
        schema_to_grammar(schema)


def test_lenient_mode_lists_a_missing_document_and_accepts_any_value_there() -> None:
    converted = schema_to_grammar({"$ref": "https://example.com/x.json"}, strict=False)
    assert [(u.pointer, u.keyword) for u in converted.unenforced] == [("", "$ref")]
    assert "https://example.com/x.json" in converted.unenforced[0].reason


def test_documents_must_be_schemas_keyed_by_absolute_uris() -> None:
    with pytest.raises(SchemaError, match="absolute URI"):
        schema_to_grammar({"$ref": "pet.json"}, schemas={"pet.json": PET})
    with pytest.raises(SchemaError, match="https://example.com/bad.json"):
        schema_to_grammar({"$ref": "https://example.com/bad.json"}, schemas={"https://example.com/bad.json": {"type": 3}})


def test_compile_json_schema_caches_by_the_documents_too() -> None:
    schema: dict[str, object] = {"$ref": "https://example.com/n.json"}
    small = _COMPILER.compile_json_schema(schema, schemas={"https://example.com/n.json": {"maximum": 1}})
    large = _COMPILER.compile_json_schema(schema, schemas={"https://example.com/n.json": {"maximum": 10}})
    assert small is not large
    assert small is _COMPILER.compile_json_schema(schema, schemas={"https://example.com/n.json": {"maximum": 1}})
    assert accepts(schema, 5, {"https://example.com/n.json": {"maximum": 10}})
    assert not accepts(schema, 5, {"https://example.com/n.json": {"maximum": 1}})


TREE_URI = "https://example.com/tree.json"
TREE = {
    "$id": TREE_URI,
    "$dynamicAnchor": "node",
    "type": "object",
    "properties": {"data": True, "children": {"type": "array", "items": {"$dynamicRef": "#node"}}},
}


def test_a_dynamic_reference_lands_on_the_outermost_dynamic_anchor_in_scope() -> None:
    # tree.json alone: children are trees, any extra key allowed
    values = [{"children": [{"daat": 1}]}, {"children": [{"children": 1}]}, {"data": 1, "children": []}]
    agrees_with_jsonschema({"$ref": TREE_URI}, {TREE_URI: TREE}, values)
    # extended from outside: the children's $dynamicRef reaches the strict root at every depth
    strict = {"$id": "https://example.com/strict-tree.json", "$dynamicAnchor": "node", "$ref": "tree.json",
              "unevaluatedProperties": False}
    deep = [{"children": [{"children": [{"data": 1}]}]}, {"children": [{"children": [{"daat": 1}]}]},
            {"children": [{"daat": 1}]}, {"daat": 1}]
    agrees_with_jsonschema(strict, {TREE_URI: TREE}, deep)


def test_a_dynamic_reference_without_a_dynamic_anchor_at_its_target_is_a_plain_reference() -> None:
    schema = {"$id": "https://example.com/root", "$dynamicAnchor": "n", "type": ["object", "integer"],
              "$defs": {"list": {"$id": "list", "type": "array", "items": {"$dynamicRef": "#n"},
                                 "$defs": {"n": {"$anchor": "n", "type": "string"}}}},
              "properties": {"xs": {"$ref": "list"}}}
    agrees_with_jsonschema(schema, {}, [{"xs": ["a"]}, {"xs": [1]}, {"xs": [{}]}])


def test_dynamic_contexts_that_multiply_past_the_budget_are_refused_cleanly() -> None:
    # every resource below defines the anchor and reaches each other one: copies stay one per
    # context, but 300 resources each entered first from the root are 300 contexts
    defs = {f"r{i}": {"$id": f"r{i}", "$dynamicAnchor": "a", "items": {"$dynamicRef": "#a"}} for i in range(300)}
    schema = {"$id": "https://example.com/many", "anyOf": [{"$ref": f"r{i}"} for i in range(300)], "$defs": defs}
    with pytest.raises(CompileBudgetError):
        schema_to_grammar(schema)


def test_an_error_inside_a_document_points_into_that_document() -> None:
    documents = {"https://example.com/p.json": {"properties": {"a": {"type": "array", "uniqueItems": True}}}}
    with pytest.raises(SchemaError) as info:
        schema_to_grammar({"$ref": "https://example.com/p.json"}, schemas=documents)
    assert info.value.pointer == "/$onrails:resources/https:~1~1example.com~1p.json/properties/a"


@pytest.mark.parametrize("documents", [{}, DOCUMENTS], ids=["one document", "with documents"])
def test_an_id_inside_an_unknown_keyword_does_not_shadow_the_schema_that_has_it(documents: dict[str, Any]) -> None:
    uri = "https://example.com/x.json"
    schema = {"$defs": {"fake": {"not": {"unknown": [{"$id": uri, "type": "null"}]}}, "real": {"$id": uri, "type": "string"}},
              "$ref": uri}
    assert accepts(schema, "s", documents) and not accepts(schema, None, documents)
    # with nothing else naming it, a pointer into an unknown keyword still resolves
    assert accepts({"components": {"a": {"type": "integer"}}, "$ref": "#/components/a"}, 1, documents)


VOCAB = "https://json-schema.org/draft/2020-12/vocab/"


def _meta(uri: str, vocabularies: dict[str, bool]) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": uri, "$vocabulary": vocabularies}


def test_a_dialect_without_the_validation_vocabulary_leaves_its_keywords_out() -> None:
    meta = "https://example.com/meta/no-validation"
    documents = {meta: _meta(meta, {VOCAB + "core": True, VOCAB + "applicator": True})}
    schema = {"$schema": meta, "properties": {"gone": False, "n": {"minimum": 10, "enum": [20]}}}
    assert accepts(schema, {"n": 1}, documents) and accepts(schema, {"n": "x"}, documents)
    assert not accepts(schema, {"gone": 1}, documents)  # applicator keywords still apply


def test_a_dialect_may_name_optional_vocabularies_onrails_does_not_know_but_not_required_ones() -> None:
    meta = "https://example.com/meta/optional"
    vocabularies = {VOCAB + "core": True, VOCAB + "validation": True, "https://example.com/vocab/custom": False}
    documents = {meta: _meta(meta, vocabularies)}
    schema = {"$schema": meta, "enum": ["a", "bb"], "maxLength": 1}
    assert accepts(schema, "a", documents) and not accepts(schema, "bb", documents)
    required = {meta: _meta(meta, {**vocabularies, "https://example.com/vocab/custom": True})}
    with pytest.raises(SchemaError, match="https://example.com/vocab/custom"):
        schema_to_grammar(schema, schemas=required)


def test_a_schema_with_its_own_dialect_inside_a_custom_dialect_is_refused() -> None:
    meta = "https://example.com/meta/no-validation"
    documents = {meta: _meta(meta, {VOCAB + "core": True, VOCAB + "applicator": True})}
    inner = {"$schema": "https://json-schema.org/draft/2020-12/schema", "minimum": 3}
    with pytest.raises(SchemaError) as info:
        schema_to_grammar({"$schema": meta, "properties": {"a": inner}}, schemas=documents)
    assert info.value.pointer == "/properties/a"
