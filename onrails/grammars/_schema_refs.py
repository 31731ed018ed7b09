"""References across documents and ``$dynamicRef``, resolved statically into one document.

``bundle`` rewrites a root schema, with the other documents it names by URI, into one document
whose references are all JSON pointers from its root ("#/..."), and whose ``$dynamicRef``s are
plain ``$ref``s. The converter then only ever follows pointers.

A ``$dynamicRef`` depends on the *dynamic scope*: the schema resources entered on the way to it.
It is resolved per copy of a resource: each resource is copied once per *context*, the map from
dynamic anchor name to the outermost resource of the scope defining it (the one the reference
lands on). Contexts only hold the names some ``$dynamicRef`` can use, so a schema without dynamic
references has one copy per resource. The root resource's first copy stays at the root (JSON
pointers into the user's schema keep their meaning); the others sit under ``BUNDLE_KEY``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import unquote, urljoin

from onrails.errors import CompileBudgetError

# The root keyword holding the copies of other resources (an unknown keyword: an annotation).
BUNDLE_KEY = "$onrails:resources"
DEFAULT_BASE = "https://onrails.invalid/schema.json"
# Copies of resources, one per (resource, context) pair reached: the contexts multiply them.
_MAX_COPIES = 256
# Values that are data, not schemas: never indexed nor rewritten.
_NOT_SCHEMAS = {"enum", "const", "default", "examples", "example"}
_IDENTIFIERS = ("$id", "id", "$anchor", "$dynamicAnchor")
# Keywords whose values are schemas, arrays of schemas or (the maps) objects of schemas. An $id or
# anchor inside another keyword is no identifier (JSON Schema only reads schemas): one met through
# these keywords alone wins, the others only name what nothing else does (real schemas keep
# $defs-like "components" under unknown keywords and point into them).
SCHEMA_KEYWORDS = frozenset({
    "properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies", "items",
    "prefixItems", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "additionalProperties",
    "unevaluatedProperties", "unevaluatedItems", "contains", "propertyNames", "additionalItems", "contentSchema",
})
MAP_KEYWORDS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"})
Context = tuple[tuple[str, str], ...]  # (anchor name, resource URI), sorted by name


class Names(dict[str, Any]):
    """A table of identifiers where one found at a schema position beats one found elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.real: set[str] = set()

    def register(self, name: str, value: Any, real: bool) -> None:
        if name not in self or (real and name not in self.real):
            self[name] = value
        if real:
            self.real.add(name)


def schema_children(node: dict[str, Any], real: bool) -> list[tuple[str, Any, bool, bool]]:
    """A schema object's values worth indexing: (key, value, at a schema position, a map of them)."""
    out = []
    for key, value in node.items():
        if key not in _NOT_SCHEMAS:
            schema = real and key in SCHEMA_KEYWORDS
            out.append((key, value, schema, schema and key in MAP_KEYWORDS and isinstance(value, dict)))
    return out


def join(base: str, ref: str) -> str:
    """``ref`` resolved against ``base`` (RFC 3986), also for bases urljoin leaves alone (URNs)."""
    if ref.startswith("#"):
        return base.split("#")[0] + ref
    return urljoin(base, ref) if base else ref


def _own_id(node: Any) -> str | None:
    """The base-changing identifier of a schema object (``$id``, draft-04 ``id``), if any."""
    if not isinstance(node, dict):
        return None
    value = node.get("$id", node.get("id"))
    if isinstance(value, str) and not value.startswith("#"):
        return value
    return None


@dataclass
class _Resource:
    """A schema resource: the node with the ``$id`` (or a document's root), where it came from."""

    uri: str  # the name copies are keyed by
    base: str  # what references inside resolve against (a document's $id may differ from its URI)
    node: Any
    dynamic: dict[str, list[str]] = field(default_factory=dict)  # $dynamicAnchor -> path tokens


@dataclass
class _Index:
    """Every resource and anchor of the documents, by absolute URI."""

    resources: Names = field(default_factory=Names)  # uri -> _Resource
    anchors: Names = field(default_factory=Names)  # uri#name -> (resource uri, path)
    dynamic_names: set[str] = field(default_factory=set)  # names a $dynamicRef may use

    def add_document(self, uri: str, node: Any) -> None:
        """Index a document retrieved from ``uri`` (its ``$id`` may name it a second time)."""
        own = _own_id(node)
        resource = _Resource(uri, join(uri, own).split("#")[0] if own else uri, node)
        self.resources.register(uri, resource, True)
        self._walk(node, uri, resource, [], True)

    def _walk(self, node: Any, base: str, resource: _Resource, path: list[str], real: bool, in_map: bool = False) -> None:
        if isinstance(node, list):
            for i, v in enumerate(node):
                self._walk(v, base, resource, [*path, str(i)], real)
            return
        if not isinstance(node, dict):
            return
        if in_map:  # names -> schemas: the object itself is no schema
            for k, v in node.items():
                self._walk(v, base, resource, [*path, _escape(k)], real)
            return
        own = _own_id(node)
        if own is not None:
            base = join(base, own).split("#")[0]
            if path:  # an embedded resource: paths restart at it
                resource = _Resource(base, base, node)
                path = []
            self.resources.register(base, resource, real)
        for key in ("$anchor", "$dynamicAnchor"):
            name = node.get(key)
            if isinstance(name, str):
                self.anchors.register(f"{base}#{name}", (resource.uri, path), real)
                if key == "$dynamicAnchor" and real:
                    resource.dynamic.setdefault(name, path)
        location = node.get("id", node.get("$id"))
        if isinstance(location, str) and location.startswith("#") and len(location) > 1:
            self.anchors.register(f"{base}{location}", (resource.uri, path), real)  # draft-04/06 location ids
        dynamic = node.get("$dynamicRef")
        if isinstance(dynamic, str) and "#" in dynamic and not dynamic.split("#", 1)[1].startswith("/"):
            self.dynamic_names.add(dynamic.split("#", 1)[1])
        for key, value, schema, is_map in schema_children(node, real):
            self._walk(value, base, resource, [*path, _escape(key)], schema, is_map)

    def locate(self, uri: str) -> tuple[str, list[str]] | None:
        """The resource and path within it that an absolute URI names, or None."""
        where, _, fragment = uri.partition("#")
        fragment = unquote(fragment)
        if where not in self.resources:
            return None
        if fragment and not fragment.startswith("/"):
            return self.anchors.get(f"{where}#{fragment}")
        tokens = fragment.split("/")[1:] if fragment else []
        return self._innermost(where, tokens)

    def _innermost(self, uri: str, tokens: list[str]) -> tuple[str, list[str]] | None:
        """A JSON pointer path from a resource, restarted at the last embedded resource on it."""
        node = self.resources[uri].node
        base, start = uri, 0
        for i, token in enumerate(tokens):
            key = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return None
            own = _own_id(node)
            if own is not None:
                base, start = join(base, own).split("#")[0], i + 1
        if base not in self.resources:
            return None
        return self.resources[base].uri, tokens[start:]


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _quote(token: str) -> str:
    """A pointer token as a URI fragment: the converter unquotes each (only ``%`` must change)."""
    return token.replace("%", "%25")


def needs_bundle(root: Any, documents: Mapping[str, Any]) -> bool:
    """Whether ``root`` holds a ``$dynamicRef``, or a ``$ref`` leaving it while documents are known."""
    if isinstance(root, dict):
        if "$dynamicRef" in root and isinstance(root["$dynamicRef"], str):
            return True
        ref = root.get("$ref")
        if documents and isinstance(ref, str) and not ref.startswith("#"):
            return True
        return any(needs_bundle(v, documents) for k, v in root.items() if k not in _NOT_SCHEMAS)
    if isinstance(root, list):
        return any(needs_bundle(v, documents) for v in root)
    return False


def bundle(root: Any, documents: Mapping[str, Any]) -> Any:
    """``root`` with every reference a pointer into itself: the resources it reaches, among its
    own and ``documents`` (URI -> schema), copied under ``BUNDLE_KEY`` once per dynamic context.

    References to unknown URIs are left as absolute URIs (the converter reports them). Cost:
    one pass per copy; raises CompileBudgetError past ``_MAX_COPIES`` copies.
    """
    index = _Index()
    root_id = _own_id(root)
    base = join(DEFAULT_BASE, root_id).split("#")[0] if root_id else DEFAULT_BASE
    index.add_document(base, root)
    for uri, document in documents.items():
        if uri.split("#")[0] != base:
            index.add_document(uri.split("#")[0], document)
    return _Bundler(index, base).run(root)


class _Bundler:
    """Copies resources per dynamic context, rewriting references as it goes."""

    def __init__(self, index: _Index, root_uri: str) -> None:
        self.index = index
        self.root_uri = root_uri
        self.copies: dict[tuple[str, Context], str] = {}  # -> pointer of the copy
        self.todo: list[tuple[str, Context, str]] = []

    def run(self, root: Any) -> Any:
        top = self.copy_pointer(self.root_uri, ())
        assert top == ""
        done: dict[str, Any] = {}
        while self.todo:
            uri, context, name = self.todo.pop()
            done[name] = self.rewrite(self.index.resources[uri].node, uri, context, top=True)
        result = done.pop("")
        if done and isinstance(result, dict):
            result = {**result, BUNDLE_KEY: done}
        return result

    def enter(self, uri: str, context: Context) -> Context:
        """The context once inside resource ``uri``: its dynamic anchors join, outer ones win."""
        names = dict(context)
        for name in self.index.resources[uri].dynamic:
            if name in self.index.dynamic_names:
                names.setdefault(name, uri)
        return tuple(sorted(names.items()))

    def copy_pointer(self, uri: str, outer: Context) -> str:
        """The JSON pointer of the copy of resource ``uri`` entered from context ``outer``."""
        context = self.enter(uri, outer)
        key = (uri, context)
        if key not in self.copies:
            if len(self.copies) >= _MAX_COPIES:
                raise CompileBudgetError(f"the schema's references need more than {_MAX_COPIES} resource copies")
            first = uri == self.root_uri and not self.copies
            name = "" if first else uri + "".join(f" {n}={r}" for n, r in context)
            self.copies[key] = "" if first else f"/{_quote(BUNDLE_KEY)}/{_quote(_escape(name))}"
            self.todo.append((uri, context, name))
        return self.copies[key]

    def target(self, location: tuple[str, list[str]], context: Context) -> str:
        uri, path = location
        return "#" + self.copy_pointer(uri, context) + "".join(f"/{_quote(t)}" for t in path)

    def rewrite(self, node: Any, base: str, context: Context, top: bool = False) -> Any:
        if isinstance(node, list):
            return [self.rewrite(v, base, context) for v in node]
        if not isinstance(node, dict):
            return node
        own = _own_id(node)
        if top:
            base = self.index.resources[base].base
        elif own is not None:
            base = join(base, own).split("#")[0]
            entered = self.index.resources.get(base)  # None for an $id in a map's names
            context = self.enter(entered.uri, context) if entered is not None else context
        out: dict[str, Any] = {}
        refs: list[str] = []
        for key, value in node.items():
            if key in _IDENTIFIERS and isinstance(value, str):
                continue  # resolved here; left in, jsonschema would move the base of "#/..." pointers
            if key == "$schema" and not (top and base == self.index.resources[self.root_uri].base):
                continue  # one dialect for the whole bundle, the root's (as the converter reads it)
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                refs.append(self.reference(key, value, base, context))
            elif key in _NOT_SCHEMAS:
                out[key] = value
            else:
                out[key] = self.rewrite(value, base, context)
        if refs:
            out["$ref"] = refs[0]
            if len(refs) > 1:  # both keywords: both apply
                out["allOf"] = [*out.get("allOf", []), {"$ref": refs[1]}]
        return out

    def reference(self, keyword: str, value: str, base: str, context: Context) -> str:
        """The pointer a ``$ref`` or ``$dynamicRef`` lands on from here, or the absolute URI of
        a document nobody gave."""
        uri = join(base, value)
        location = self.index.locate(uri)
        if location is None:
            return uri
        name = uri.partition("#")[2]
        if keyword == "$dynamicRef" and self._bookended(location, name):
            outer = dict(context).get(name)
            if outer is not None:
                location = (outer, self.index.resources[outer].dynamic[name])
        return self.target(location, context)

    def _bookended(self, location: tuple[str, list[str]], name: str) -> bool:
        """Whether the initial target carries ``$dynamicAnchor: name`` (then the reference is
        dynamic; otherwise it behaves as a ``$ref``)."""
        uri, path = location
        return self.index.resources[uri].dynamic.get(name) == path
