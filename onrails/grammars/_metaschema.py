"""A fast check of a schema against the draft 2020-12 meta-schema.

The published meta-schema is eight documents tied by ``allOf`` and ``$dynamicRef``; resolving
those takes jsonschema most of the 3–14 ms a real schema's check costs. Its vocabularies define
disjoint keywords, and with no extending dialect every ``$dynamicRef: "#meta"`` lands on the
top document, so one document holding all their properties and definitions, with ``$ref: "#"``
in place of the dynamic references, accepts exactly the same schemas, about 5x faster.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
from jsonschema_specifications import REGISTRY

_TOP = jsonschema.Draft202012Validator.META_SCHEMA
_LEFT_OUT = {"$schema", "$id", "$vocabulary", "$dynamicAnchor", "title", "allOf", "type", "$comment", "properties", "$defs"}


def _static(node: Any) -> Any:
    """``node`` with every ``$dynamicRef: "#meta"`` made a ``$ref`` to the merged document, and
    references to another vocabulary's definitions (``meta/validation#/$defs/stringArray``)
    made local: the merged document holds them all."""
    if isinstance(node, list):
        return [_static(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _static(v) for k, v in node.items() if k != "$dynamicRef"}
    if isinstance(node.get("$ref"), str) and "#/$defs/" in node["$ref"]:
        out["$ref"] = "#/$defs/" + node["$ref"].split("#/$defs/", 1)[1]
    elif "$ref" in node:
        raise AssertionError(f"unexpected $ref {node['$ref']!r} in the meta-schema")
    if "$dynamicRef" in node:
        if node["$dynamicRef"] != "#meta":
            raise AssertionError(f"unexpected $dynamicRef {node['$dynamicRef']!r} in the meta-schema")
        out["$ref"] = "#"
    return out


def _refs(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    if not isinstance(node, dict):
        return set()
    own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
    return own.union(*(_refs(v) for v in node.values()))


def _merged() -> dict[str, Any]:
    base = _TOP["$id"].rsplit("/", 1)[0]
    documents = [_TOP] + [REGISTRY[f"{base}/{part['$ref']}"].contents for part in _TOP["allOf"]]
    properties: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    for document in documents:
        # A keyword this merge does not carry over would be lost: fail at import, not silently.
        if set(document) - _LEFT_OUT or document.get("type") != ["object", "boolean"]:
            raise AssertionError(f"the meta-schema {document['$id']} has keywords the merge leaves out")
        for name, sub in document.get("properties", {}).items():
            if name in properties:
                raise AssertionError(f"{name!r} is defined by two vocabularies")
            properties[name] = _static(sub)
        for name, sub in document.get("$defs", {}).items():
            if definitions.setdefault(name, _static(sub)) != _static(sub):
                raise AssertionError(f"two vocabularies define {name!r} differently")
    referenced = {ref.split("/")[-1] for ref in _refs(properties) | _refs(definitions)} - {"#"}
    if not referenced <= set(definitions):
        raise AssertionError(f"the merged meta-schema lacks {sorted(referenced - set(definitions))}")
    return {
        "$schema": _TOP["$schema"],
        "$id": "urn:onrails:draft-2020-12-merged",
        "type": ["object", "boolean"],
        "properties": properties,
        "$defs": definitions,
    }


@functools.cache
def _validator() -> Any:
    # Built at the first check, not at import: importing onrails compiles no schema.
    return jsonschema.Draft202012Validator(_merged(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def meets_2020_12(schema: Any) -> bool:
    """Whether ``schema`` is valid under the draft 2020-12 meta-schema (formats checked as
    ``check_schema`` checks them)."""
    return bool(_validator().is_valid(schema))
