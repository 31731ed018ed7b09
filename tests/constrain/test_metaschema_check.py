"""The merged draft 2020-12 meta-schema accepts exactly what jsonschema's ``check_schema`` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from onrails.errors import SchemaError
from onrails.grammars._metaschema import meets_2020_12
from onrails.grammars.schema import validator_class


def _checked(schema: Any) -> bool:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError:
        return False
    return True


INVALID = [
    {"type": "strin"},
    {"type": ["string", "string"]},
    {"minLength": -1},
    {"minLength": 1.5},
    {"required": "a"},
    {"properties": {"a": 3}},
    {"items": {"$defs": {"x": {"enum": 3}}}},
    {"allOf": []},
    {"pattern": "(", "type": "string"},
    {"patternProperties": {"[": {}}},
    {"$anchor": "1bad"},
    {"$vocabulary": {"https://example.com/v": "yes"}},
    {"dependencies": {"a": ["b", 3]}},
    {"definitions": {"a": {"maxItems": "2"}}},
    {"not": {"then": {"uniqueItems": "no"}}},
]
VALID = [
    True,
    {},
    {"type": ["string", "null"], "minLength": 0, "pattern": "^a+$"},
    {"$defs": {"a": {"$ref": "#/$defs/a"}}, "dependentRequired": {"a": ["b"]}},
    {"dependencies": {"a": ["b"], "c": {"type": "object"}}},
    {"prefixItems": [{"const": 1}], "unevaluatedItems": False, "contentMediaType": "text/plain"},
]


@pytest.mark.parametrize("schema", INVALID + VALID, ids=lambda s: json.dumps(s)[:40])
def test_merged_meta_schema_agrees_with_check_schema(schema: Any) -> None:
    assert meets_2020_12(schema) == _checked(schema)


def test_merged_meta_schema_agrees_on_the_suite_and_maskbench(shared_dir: Path) -> None:
    documents: list[Any] = []
    for path in sorted((shared_dir / "jsonschema-test-suite" / "tests" / "draft2020-12").glob("*.json")):
        for group in json.loads(path.read_text()):
            documents.append(group["schema"])
            # Instances are mostly not schemas: a sample of what the meta-schema must refuse.
            documents += [test["data"] for test in group["tests"]]
    documents += [json.loads(p.read_text())["schema"] for p in sorted((shared_dir / "maskbench" / "dev").glob("*.json"))[::7]]
    refused = 0
    for document in documents:
        expected = _checked(document)
        refused += not expected
        assert meets_2020_12(document) == expected, json.dumps(document)[:300]
    assert refused > 300  # the comparison covers refusals, not only schemas both accept


def test_an_invalid_schema_still_names_its_keyword_and_pointer() -> None:
    with pytest.raises(SchemaError) as caught:
        validator_class({"properties": {"a": {"minLength": -1}}})
    assert caught.value.pointer == "/properties/a/minLength"
    assert caught.value.keyword == "minimum"
