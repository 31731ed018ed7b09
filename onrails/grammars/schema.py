"""JSON Schema (and pydantic) → Lark grammar, for ``GrammarCompiler.compile_json_schema``.

``schema_to_grammar`` converts a schema (draft 2020-12, with the draft-07 spellings
``definitions``, array-form ``items`` and ``dependencies``) into Lark text whose start rule
derives the JSON texts valid under it. The JSON value is written with no whitespace around it;
between its tokens the ``whitespace`` mode applies (as in the built-in grammar).

The accepted language is exactly the valid instances, narrowed in documented ways that never
admit an invalid one:

* declared object members come in any order, additional (undeclared) members anywhere among
  them, ``enum``/``const`` objects' keys in any order, whatever the object's size (the parser
  tracks the keys written: ``ItemSet``);
* numbers under ``minimum``/``maximum`` take an exponent only where its sign and the exponent
  alone decide the bounds (``1e-06`` under ``minimum: 0``, ``2.5e+20`` under ``minimum: 1``;
  one mantissa digit before the point when the range is bounded above, exponents up to 300 in
  size, and a mantissa of at least 1 where the bound excludes zero, so that a validator
  parsing doubles never sees the value rounded past a bound); numbers under ``multipleOf`` and
  integers (also ``1.0``) are written without exponent, and literal values (``enum``/``const``)
  in their shortest spelling (trailing fraction zeros allowed); the numbers a negation keeps
  are exact as a set and narrowed in spelling: those outside an integer schema (``not``,
  ``if``, overlapping ``oneOf``) take an exponent only when it is negative and the mantissa
  ends in a non-zero digit (``1.5``, ``1e-05``; not ``1.25e1``: whether such a value is
  integral compares an unbounded exponent with a count of digits), and those outside a finite
  set of numbers only in scientific notation with one non-zero digit before the point
  (``4.5e0``; not ``45e-1``: each value has infinitely many spellings with an exponent, and
  these are the ones a difference of automata removes exactly). Python's ``json.dumps`` writes
  every number in these forms;
* strings under ``pattern``, ``format``, ``enum``/``const`` and object keys (declared and
  additional) are written in their canonical JSON spelling (as ``json.dumps(...,
  ensure_ascii=False)`` writes them: so that excluding the declared names' one spelling
  excludes the names from the additional keys);
* a ``maxLength`` above 128 beside a ``pattern`` or ``format`` that does not decide the length
  is enforced as 128, and a ``minLength`` above 128 there raises CompileBudgetError (the two
  automata's product has a state per length; lengths alone are counted exactly at any bound);
* ``format`` is asserted for every format of draft 2020-12's vocabulary, each a sound regex
  (``_schema_formats`` gives every narrowing with its reason): second 60 only at 23:59:60 UTC (in a
  date-time, on the dates a leap second occurred); hostnames of up to 8 labels (with more than 4,
  those from the fourth on of at most 11 characters) with no ``--`` in a label's third and fourth
  places, so no A-labels; U-labels of at most 11 characters from Latin-1, Greek, Cyrillic and kana;
  e-mail addresses without quoted local parts or address literals; URIs and IRIs without IP-literal
  hosts; no private-use characters (iprivate) in IRIs and URI templates; regexes that ECMA-262 and
  Python's ``re`` both compile, with groups nested at most 3 deep and simple class ranges and
  counts. Formats outside the specification (OpenAPI's int32, int64, byte, password, custom names)
  are annotations and listed in ``ignored_formats``.

A text that repeats a key in an object is outside JSON Schema's data model (the specification
leaves its behaviour undefined, and ``json.loads`` keeps the last copy). No declared key comes
twice; an additional key may repeat (additional keys are not told apart: each copy is valid on
its own and counts as a member for ``minProperties``/``maxProperties``).

What cannot be enforced exactly raises ``SchemaError`` (with the JSON pointer and keyword) in
strict mode; in lenient mode it is left out and listed in ``unenforced``:

* ``uniqueItems: true`` over items of an infinite domain (strings, numbers, objects...), or
  beside ``contains`` (items from ``enum``s, booleans, null and integer ranges are exact:
  strings, numbers, booleans and null under one ``items`` schema, up to 4,096 values, as a
  list the parser tracks like object keys; objects, arrays or ``prefixItems``, up to 64
  values, with a state per set of values written, more than 1,024 states raise
  CompileBudgetError); ``$recursiveRef`` (draft 2019-09); a ``$ref`` to a URI that neither the
  schema nor a document of ``schemas`` defines (nothing is fetched);
* a ``pattern`` with lookaround (but a leading ``^(?!X)Y``: the strings matching ``^Y`` less
  those matching ``^X``; as the one ``patternProperties`` pattern beside ``additionalProperties:
  false``, where ``X$`` matches finitely many words: the keys ``^Y`` finds less those words),
  backreferences, ``\\b`` beside what may be empty (between two characters it is exact), a
  ``^`` inside it (a ``$`` inside ends the string there) or ``\\p{...}``;
* ``multipleOf`` other than p/10^k with p dividing a power of ten, or three times such an
  integer (3, 6, 12, 15, ...: the last digits and the digit sum decide; 7, 9 and 0.3 are
  refused); bounds beside it are a product of automata;
* ``not``, ``if`` and overlapping ``oneOf`` branches whose negation has no grammar (multiples,
  sets of objects or arrays, additional properties, deep recursion), unless an ``enum`` or
  ``const`` they are merged with leaves finitely many values: each value is then checked
  against them. ``oneOf`` branches need no negation among the types where no value of the
  sibling keywords satisfies two of them, and a negation is needed only within the sibling
  ``type``;
* ``patternProperties`` with more than 4 patterns of different schemas (a key may match any
  set of them: one key automaton per set; patterns matching one printable ASCII word that no
  other pattern matches, ``^name$``, do not count), or next to ``propertyNames``;
* a ``maxContains`` beside another ``contains`` (several ``contains``, merged by ``allOf`` or
  ``if``/``then``, each count their own matches, up to 3 of them).

``unevaluatedProperties``/``unevaluatedItems`` act on what the keywords that applied did not
evaluate, tracked per alternative: an ``anyOf`` beside them becomes one alternative per set of
branches that hold (more than 6 branches raise CompileBudgetError), a ``oneOf`` branch, a
``then``/``else``, a held ``if`` and a present ``dependentSchemas`` evaluate, ``not`` and a failed
``if`` do not, items matching an applied ``contains`` are evaluated. One narrowing: a member that
a non-evaluating keyword declares (by name or pattern) takes the unevaluated schema even where
an evaluated pattern also matches its key.

``$ref``s to other documents resolve through ``schemas`` (absolute URI -> document; a
document's own ``$id`` and anchors name its parts too), and ``$dynamicRef``s through the
dynamic scope, statically: each schema resource is converted once per set of outermost
``$dynamicAnchor``s in scope on the way to it (``_schema_refs``; more than 256 such copies raise
CompileBudgetError). A JSON pointer inside another document, in an error, starts with
``/$onrails:resources/<its URI>``. A ``$schema`` naming a meta-schema among ``schemas`` (one built
on draft 2020-12) is a custom dialect: the keywords of the vocabularies its ``$vocabulary`` leaves
out are annotations; a vocabulary it requires that onrails does not know, and a subschema with a
``$schema`` of its own inside it, raise SchemaError.

A schema nesting more than ``MAX_SCHEMA_DEPTH`` (128) levels of JSON raises SchemaError with the
pointer of the first value past it, before validation or conversion recurse over it.

Strings under several constraints (a ``pattern`` or ``format`` next to a length, another
pattern or format, a negated pattern or format, or values left out by a negated ``enum``) are
one terminal whose automaton is the product of the constraints' automata (an intersection or a
difference: ``regex_notes``); keys outside the ``patternProperties`` patterns, and keys matching
several of them, are products alike.

A schema whose grammar would be too large (64 alternatives after distributing ``anyOf``/``oneOf``
over siblings, 4096 counting states for ``min/maxItems`` with ``contains``, 400,000 grammar symbols, 8,192 states for a string automaton built as a
product, e.g. a pattern counting 30 words within 128 characters, the time budget) raises
CompileBudgetError.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit
from dataclasses import dataclass
from typing import Any, Mapping

import jsonschema
import jsonschema.validators
from jsonschema.exceptions import SchemaError as JsonSchemaError

from onrails.grammars._metaschema import meets_2020_12
from onrails.grammars._schema_gen import Notes, SchemaConverter, absolute_refs, pointer_token
from onrails.grammars._schema_refs import MAP_KEYWORDS, SCHEMA_KEYWORDS, bundle, needs_bundle
from onrails.grammars.builtin import WHITESPACE_MODES, WHITESPACE_REGEXES
from onrails.grammars.item_sets import ItemSet
from onrails.errors import SchemaError

# The built-in grammar's modes: tools embed schema grammars in it.
SCHEMA_WHITESPACE_MODES = WHITESPACE_MODES
_MAX_SYMBOLS = 400_000
# Deepest JSON nesting a schema may have (64 nested object schemas are 128 levels).
MAX_SCHEMA_DEPTH = 128
_DEFAULT_BUDGET_S = 30.0


@dataclass(frozen=True)
class Unenforced:
    """A keyword left out in lenient mode: where it is (JSON pointer), which, and why."""

    pointer: str
    keyword: str
    reason: str


@dataclass(frozen=True)
class SchemaGrammar:
    """The Lark grammar of a schema: ``lark`` text with start rule ``start``.

    ``unenforced`` lists what lenient mode left out (empty in strict mode); ``ignored_formats``
    lists (pointer, format) pairs of formats kept as annotations. ``rules`` and ``terminals``
    are the grammar ``lark`` prints, as data, so the engine can skip reading the text back:
    each rule a name and its alternatives (symbol names; ``'"true"'`` and the like are literal
    strings), each terminal a name and its Python regex. Both are empty for tool grammars,
    which extend the built-in grammar's text. ``item_sets`` are the objects' member lists,
    whose members the engine tracks (any order, no declared key twice, required ones there,
    ``min/maxProperties`` counted); ``lark`` carries them as ``// %items`` comment lines, which
    onrails reads back and other readers of Lark see as comments.
    """

    lark: str
    start: str
    unenforced: tuple[Unenforced, ...] = ()
    ignored_formats: tuple[tuple[str, str], ...] = ()
    rules: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = ()
    terminals: tuple[tuple[str, str], ...] = ()
    item_sets: tuple[ItemSet, ...] = ()


def load_schema(schema: "dict[str, Any] | bool | str") -> "dict[str, Any] | bool":
    """A schema given as a dict, a boolean or JSON text, parsed; SchemaError otherwise."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"schema is not valid JSON: {exc}", pointer="") from exc
    if not isinstance(schema, (dict, bool)):
        raise SchemaError(f"a schema must be an object or a boolean, not {type(schema).__name__}", pointer="")
    deep = _deeper_than(schema, MAX_SCHEMA_DEPTH)
    if deep is not None:
        raise SchemaError(f"the schema nests more than {MAX_SCHEMA_DEPTH} levels of JSON", pointer=deep)
    return schema


def _deeper_than(value: Any, limit: int) -> str | None:
    """The JSON pointer of the first value nested more than ``limit`` levels down, or None.

    Iterative: validating and converting recurse over the schema, and a schema deep enough to
    exhaust Python's recursion must be refused before either runs. Each value carries a link to
    its parent's path; the pointer is spelled only for the value found.
    """
    Path = tuple[Any, Any] | None  # (parent's path, key), None at the root
    todo: list[tuple[Any, int, Path]] = [(value, 0, None)]
    while todo:
        node, depth, path = todo.pop()
        if depth > limit:
            keys = []
            while path is not None:
                path, key = path
                keys.append(pointer_token(str(key)))
            return "".join(f"/{k}" for k in reversed(keys))
        if isinstance(node, dict):
            todo.extend((v, depth + 1, (path, k)) for k, v in node.items())
        elif isinstance(node, list):
            todo.extend((v, depth + 1, (path, i)) for i, v in enumerate(node))
    return None


# Draft 2020-12's vocabularies and their keywords, for dialects (custom meta-schemas) that
# leave some out: those keywords are then unknown, so annotations.
_VOCABULARY = "https://json-schema.org/draft/2020-12/vocab/"
_VOCABULARIES = {
    "core": {"$id", "$schema", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary", "$comment", "$defs", "definitions"},
    "applicator": {
        "prefixItems", "items", "contains", "additionalProperties", "properties", "patternProperties",
        "dependentSchemas", "propertyNames", "if", "then", "else", "allOf", "anyOf", "oneOf", "not", "dependencies",
        "additionalItems",
    },
    "unevaluated": {"unevaluatedItems", "unevaluatedProperties"},
    "validation": {
        "type", "const", "enum", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
        "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
        "maxProperties", "minProperties", "required", "dependentRequired",
    },
    "meta-data": {"title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples"},
    "format-annotation": {"format"},  # asserted all the same (see the module's notes)
    "format-assertion": {"format"},
    "content": {"contentEncoding", "contentMediaType", "contentSchema"},
}


def dialect(
    schema: "dict[str, Any] | bool", documents: "Mapping[str, Any] | None" = None
) -> "tuple[Any, frozenset[str]]":
    """The validator class of the schema's dialect and the keywords its vocabularies leave out
    (a ``$schema`` naming a meta-schema among ``documents`` with a ``$vocabulary``).

    Raises SchemaError for an unknown dialect or a required vocabulary onrails does not know."""
    uri = schema.get("$schema") if isinstance(schema, dict) else None
    meta = (documents or {}).get(uri.split("#")[0]) if isinstance(uri, str) else None
    known = jsonschema.validators.validator_for(schema, default=None) is not None
    if not isinstance(schema, dict) or not isinstance(meta, dict) or known:
        return validator_class(schema), frozenset()
    base = jsonschema.validators.validator_for(meta, default=None)
    if base is not jsonschema.Draft202012Validator:
        raise SchemaError(f"the dialect {uri!r} builds on no draft 2020-12 meta-schema", pointer="", keyword="$schema")
    vocabularies = meta.get("$vocabulary")
    active = set(_VOCABULARIES) if not isinstance(vocabularies, dict) else set()
    for name, required in (vocabularies or {}).items():
        short = name[len(_VOCABULARY):] if name.startswith(_VOCABULARY) else None
        if short in _VOCABULARIES:
            active.add(short)
        elif required:
            raise SchemaError(f"the dialect {uri!r} requires the unknown vocabulary {name!r}", pointer="", keyword="$schema")
    validator_class({**schema, "$schema": "https://json-schema.org/draft/2020-12/schema"})  # checks it
    nested = _nested_dialect(schema)
    if nested is not None:  # its keywords would be left out too: refused rather than widened
        raise SchemaError("a schema with its own $schema inside a custom dialect", pointer=nested, keyword="$schema")
    kept = set().union(*(_VOCABULARIES[v] for v in active | {"core"}))
    return base, frozenset(set().union(*_VOCABULARIES.values()) - kept)


def _subschemas(schema: dict[str, Any], pointer: str) -> list[tuple[str, Any]]:
    """The subschemas a schema object holds, with their pointers."""
    out: list[tuple[str, Any]] = []
    for key, value in schema.items():
        here = f"{pointer}/{pointer_token(key)}"
        if key in MAP_KEYWORDS and isinstance(value, dict):
            out += [(f"{here}/{pointer_token(name)}", sub) for name, sub in value.items()]
        elif key in SCHEMA_KEYWORDS and isinstance(value, list):
            out += [(f"{here}/{i}", sub) for i, sub in enumerate(value)]
        elif key in SCHEMA_KEYWORDS:
            out.append((here, value))
    return out


def _nested_dialect(schema: dict[str, Any], pointer: str = "") -> str | None:
    """The pointer of a subschema with a ``$schema`` of its own, if any."""
    for here, sub in _subschemas(schema, pointer):
        if isinstance(sub, dict):
            found = here if "$schema" in sub else _nested_dialect(sub, here)
            if found is not None:
                return found
    return None


def without_keywords(node: Any, dropped: frozenset[str]) -> Any:
    """``node`` without the ``dropped`` keywords in it and in every subschema it holds."""
    if isinstance(node, list):
        return [without_keywords(v, dropped) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in dropped:
            continue
        if key in MAP_KEYWORDS and isinstance(value, dict):
            out[key] = {name: without_keywords(sub, dropped) for name, sub in value.items()}
        elif key in SCHEMA_KEYWORDS:
            out[key] = without_keywords(value, dropped)
        else:
            out[key] = value
    return out


def validator_class(schema: "dict[str, Any] | bool") -> Any:
    """The jsonschema validator class for the schema's dialect, after checking the schema.

    Without ``$schema``, draft 2020-12 is tried first and draft 7 second (real schemas often use
    its array-form ``items``). Raises SchemaError with the failing keyword's pointer.
    """
    default = jsonschema.Draft202012Validator
    cls = jsonschema.validators.validator_for(schema, default=None)
    if cls is None:
        if isinstance(schema, dict) and "$schema" in schema:
            raise SchemaError(f"unknown dialect $schema {schema['$schema']!r}", pointer="", keyword="$schema")
        cls = default
    if cls is default and meets_2020_12(schema):
        return cls
    try:
        cls.check_schema(schema)
        return cls
    except JsonSchemaError as exc:
        if isinstance(schema, dict) and "$schema" not in schema:
            try:
                jsonschema.Draft7Validator.check_schema(schema)
                return jsonschema.Draft7Validator
            except JsonSchemaError:
                pass
        pointer = "".join(f"/{pointer_token(str(p))}" for p in exc.path)
        keyword = str(exc.validator) if exc.validator else None
        raise SchemaError(f"invalid schema: {exc.message}", pointer=pointer, keyword=keyword) from exc


def schema_to_grammar(
    schema: "dict[str, Any] | bool | str",
    *,
    whitespace: str = "flexible",
    strict: bool = True,
    prefix: str = "js_",
    budget_s: float = _DEFAULT_BUDGET_S,
    schemas: "Mapping[str, dict[str, Any] | bool] | None" = None,
) -> SchemaGrammar:
    """Convert a JSON Schema to Lark grammar text.

    ``whitespace`` is "flexible" (RFC 8259), "bounded" or "compact" (none). Rule names start
    with ``prefix`` and terminal names with its upper case (tools embed several schemas in one
    grammar). ``schemas`` maps absolute URIs to the documents a ``$ref`` (or a custom dialect's
    ``$schema``) may name outside the schema (nothing is fetched); each is checked like the
    schema. Cost: one pass over the schema and the documents it reaches.
    Raises SchemaError (invalid schema, a keyword not enforceable in strict mode, a ``$ref`` to a
    URI not in ``schemas``, a schema accepting nothing) or CompileBudgetError.
    """
    if whitespace not in SCHEMA_WHITESPACE_MODES:
        raise SchemaError(f"whitespace must be one of {SCHEMA_WHITESPACE_MODES}, not {whitespace!r}")
    loaded = load_schema(schema)
    documents = load_documents(schemas)
    cls, dropped = dialect(loaded, documents)
    if dropped:
        loaded = without_keywords(loaded, dropped)
    notes = Notes(strict=strict)
    converter = SchemaConverter(
        bundle(loaded, documents) if needs_bundle(loaded, documents) else absolute_refs(loaded),
        notes=notes,
        ws_regex=WHITESPACE_REGEXES.get(whitespace),
        prefix=prefix,
        deadline=time.monotonic() + budget_s,
        max_symbols=_MAX_SYMBOLS,
        draft7=cls in (jsonschema.Draft7Validator, jsonschema.Draft6Validator, jsonschema.Draft4Validator, jsonschema.Draft3Validator),
        integer_fraction=cls not in (jsonschema.Draft4Validator, jsonschema.Draft3Validator),
    )
    try:
        top = converter.symbol(converter.root, "")
    except RecursionError as exc:  # deep $ref chains: the nesting check sees one level each
        raise SchemaError("the schema's references nest too deeply to convert", pointer="") from exc
    if top is None:
        raise SchemaError("the schema accepts no JSON value", pointer="")
    start = f"{prefix}start"
    converter.rules[start] = [[top]]
    rules, terminals, item_sets = converter.grammar(start)
    return SchemaGrammar(
        lark=converter.text(rules, terminals, item_sets),
        start=start,
        unenforced=tuple(Unenforced(p, k, r) for p, k, r in notes.unenforced),
        ignored_formats=tuple(notes.ignored_formats),
        rules=tuple((name, tuple(tuple(a) for a in alts)) for name, alts in rules),
        terminals=tuple(terminals),
        item_sets=tuple(item_sets),
    )


def load_documents(schemas: "Mapping[str, Any] | None") -> dict[str, "dict[str, Any] | bool"]:
    """The documents of ``schemas`` by absolute URI, each loaded and checked like a schema;
    SchemaError names the URI of one that is not."""
    documents: dict[str, "dict[str, Any] | bool"] = {}
    for uri, document in (schemas or {}).items():
        if not isinstance(uri, str) or not urlsplit(uri).scheme:
            raise SchemaError(f"schemas: {uri!r} is not an absolute URI", pointer="")
        try:
            loaded = load_schema(document)
            dialect(loaded, schemas)
        except SchemaError as exc:
            raise SchemaError(f"the document for {uri!r} in schemas is not a schema: {exc}") from exc
        documents[uri.split("#")[0]] = loaded
    return documents


def pydantic_schema(model_or_type: Any) -> dict[str, Any]:
    """The JSON Schema pydantic generates for a BaseModel class or any type TypeAdapter takes."""
    import pydantic

    try:
        if isinstance(model_or_type, type) and issubclass(model_or_type, pydantic.BaseModel):
            return model_or_type.model_json_schema()
        return pydantic.TypeAdapter(model_or_type).json_schema()
    except pydantic.PydanticUserError as exc:
        raise SchemaError(f"pydantic cannot give a JSON Schema for {model_or_type!r}: {exc}") from exc
    except pydantic.errors.PydanticSchemaGenerationError as exc:
        raise SchemaError(f"pydantic cannot give a JSON Schema for {model_or_type!r}: {exc}") from exc
