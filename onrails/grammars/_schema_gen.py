"""JSON Schema → Lark grammar text.

Every schema location becomes a rule (or a terminal) deriving exactly the JSON texts valid under
it, or a documented subset of them (``schema.py`` lists the narrowings): objects take their
members in any order, but more than 8 required properties keep ``properties`` order among
themselves; numbers with bounds take an exponent only where sign and exponent decide the bound;
strings with a ``pattern``, ``format`` or fixed value, and keys, are written in their canonical
JSON spelling.

How the keywords are enforced:

* ``allOf``, ``$ref`` with siblings, ``if``/``then``/``else``, ``dependentRequired``,
  ``dependentSchemas`` and ``not`` are rewritten into a disjunction of *flat* schemas (no
  applicators at the top) by merging keywords; ``not`` and ``if`` need the negation of their
  schema, which exists for a useful subset of keywords (``_negate``).
* ``enum``/``const`` are finite: each candidate value is checked against the whole schema with
  ``jsonschema`` (formats asserted) and the survivors are written literally.
* ``anyOf`` is a choice of rules; ``oneOf`` is too when its branches are provably exclusive
  (disjoint types or values, under the sibling keywords), else it becomes ``A ∧ ¬B ∨ B ∧ ¬A``
  where negation is possible, per type: only the types where branches may overlap need it.
* A pure ``$ref`` is a reference to the target's rule, so recursive schemas are recursive rules.

What cannot be enforced exactly is reported through ``Notes`` (strict mode raises instead).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Callable, TypeVar
from urllib.parse import unquote

import jsonschema

from onrails.grammars import _ecma_regex as rx
from onrails.grammars.regex_notes import except_words, intersected, subtracted
from onrails.grammars._schema_formats import FORMATS
from onrails.grammars._schema_refs import BUNDLE_KEY, Names, join, schema_children
from onrails.grammars.item_sets import ItemSet
from onrails.grammars._schema_numbers import (
    INTEGER,
    NUMBER,
    ZERO_FRACTION,
    decimal_regex,
    exponent_regex,
    int_regex,
    multiple_regex,
    split_decimal,
)
from onrails.errors import CompileBudgetError, SchemaError

_T = TypeVar("_T")
_TYPES = ("null", "boolean", "object", "array", "string", "number", "integer")
_ALL_TYPES = frozenset(_TYPES)
# Types no JSON value shares: a oneOf's branches may overlap in some and not in others.
_TYPE_GROUPS = tuple(
    frozenset(g) for g in (("null",), ("boolean",), ("object",), ("array",), ("string",), ("number", "integer"))
)
_NOT_IN = "\x00notIn"  # internal keyword: a string outside a finite set (from negated enums)
# Internal keywords for strings: further patterns a string matches (two patterns merged), and
# patterns and formats it does not match (negated). Their terminals are automata products.
_PATTERNS = "\x00patterns"
_NOT_PATTERNS = "\x00notPatterns"
_NOT_FORMATS = "\x00notFormats"
_INTERNAL = (_NOT_IN, _PATTERNS, _NOT_PATTERNS, _NOT_FORMATS)
# Internal keywords for numbers: not an integer (from a negated integer schema), and numbers
# outside a finite set (from a negated enum).
_FRACTIONAL = "\x00fractional"
_NOT_NUMBERS = "\x00notNumbers"
# Internal keyword of any type: [pointer, keyword, reason, schema] of applicators whose negation
# has no grammar (not, overlapping oneOf, if), checked on the values of an enum or const.
_DEFERRED = "\x00deferred"
# Internal array keyword: further [contains, minContains, maxContains] triples (allOf of two
# contains), each counted on its own.
_MORE_CONTAINS = "\x00moreContains"
_MAX_CONTAINS_SCHEMAS = 3
# Internal keyword of flats built under an unevaluatedProperties/unevaluatedItems: what the
# keywords that applied evaluated (``_evaluated``), so that the unevaluated ones act on the rest.
# Negations carry none: a schema under ``not`` (or a failed ``if``) leaves no annotations.
_EVALUATED = "\x00evaluated"
# uniqueItems over finite domains: candidate values per position, and states (one per set of
# values written: 8 values in any number are 256)
_MAX_DOMAIN = 64
# ... and values of one domain of scalars, each an item of a list the parser tracks
_MAX_TRACKED_DOMAIN = 4096
_MAX_DISTINCT_STATES = 1024
# anyOf beside unevaluated*: one alternative per set of branches that hold (2^n - 1)
_MAX_TRACKED_BRANCHES = 6
_MAX_ALTERNATIVES = 64
_MAX_COUNT_STATES = 4096
# A pattern or format within a length is the product of two automata, a state per length:
# a maxLength above this beside them is enforced as this, a minLength above it refused.
_MAX_PRODUCT_LENGTH = 128
_MAX_REF_DEPTH = 64
_MAX_NEGATION_DEPTH = 12
# Keys matching several patterns of different schemas take all of them: one key automaton per
# set of patterns (2^n - 1 products).
_MAX_OVERLAPPING_PATTERNS = 4

# Keywords that only annotate: ignoring them changes nothing.
_ANNOTATIONS = {
    "$schema", "$id", "id", "$comment", "$anchor", "$dynamicAnchor", "$vocabulary", "$defs",
    "definitions", "title", "description", "default", "examples", "example", "deprecated",
    "readOnly", "writeOnly", "contentMediaType", "contentEncoding", "contentSchema",
    BUNDLE_KEY,  # other documents' resources, like $defs
}
# Assertion keywords, by the instance type they constrain.
_BY_TYPE = {
    "string": {"minLength", "maxLength", "pattern", "format", *_INTERNAL},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", _FRACTIONAL, _NOT_NUMBERS},
    "object": {
        "properties", "required", "additionalProperties", "patternProperties", "propertyNames",
        "minProperties", "maxProperties", "unevaluatedProperties",
    },
    "array": {
        "items", "prefixItems", "minItems", "maxItems", "contains", "minContains",
        "maxContains", "uniqueItems", "unevaluatedItems", _MORE_CONTAINS,
    },
}
_UNSUPPORTED = {"$dynamicRef", "$recursiveRef"}

_ASSERTIONS = set().union(*_BY_TYPE.values()) | {"type", "enum", "const", "additionalItems"}

Flat = dict[str, Any]


class _Unexpressible(Exception):
    """A negation or merge the grammar cannot express; carries the pointer and keyword."""

    def __init__(self, pointer: str, keyword: str, why: str) -> None:
        super().__init__(why)
        self.pointer = pointer
        self.keyword = keyword
        self.why = why


@dataclass
class Notes:
    """What a conversion could not enforce: (JSON pointer, keyword, reason)."""

    strict: bool
    unenforced: list[tuple[str, str, str]] = field(default_factory=list)
    ignored_formats: list[tuple[str, str]] = field(default_factory=list)

    def add(self, pointer: str, keyword: str, why: str) -> None:
        if self.strict:
            raise SchemaError(f"cannot enforce {keyword!r} exactly: {why}", pointer=pointer, keyword=keyword)
        if (pointer, keyword, why) not in self.unenforced:
            self.unenforced.append((pointer, keyword, why))


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _literal_key(value: Any) -> str:
    """A key equal for values with the same ``_canon`` text, and only for them."""
    # Enums are mostly strings: marked, not dumped (no JSON text begins with NUL).
    return "\0" + value if type(value) is str else _canon(value)


_JSON_KINDS = frozenset({dict, list, str, int, float, bool, type(None)})


def _same(a: Any, b: Any) -> bool:
    """``_canon(a) == _canon(b)``: the same JSON text (``1`` is not ``true`` nor ``1.0``)."""
    # Read side by side, not dumped: merging a schema's allOf branches compares thousands of
    # subschemas, most of them told apart at their first keys (half of minecraft-predicate's
    # compile was spent in json.dumps).
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        if kind in _JSON_KINDS and type(b) in _JSON_KINDS:
            return False  # two kinds of value (1 and true, 1 and 1.0 read as JSON text)
        return _canon(a) == _canon(b)
    if kind is dict:
        return a.keys() == b.keys() and all(_same(value, b[key]) for key, value in a.items())
    if kind is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if kind is float:
        return repr(a) == repr(b)
    if kind in _JSON_KINDS:
        return bool(a == b)
    return _canon(a) == _canon(b)


def pointer_token(token: str) -> str:
    """``token`` escaped for a JSON pointer (RFC 6901: ``~`` as ``~0``, ``/`` as ``~1``)."""
    return token.replace("~", "~0").replace("/", "~1")


def _types_of(schema: Flat) -> frozenset[str]:
    t = schema.get("type")
    if t is None:
        return _ALL_TYPES
    names = {t} if isinstance(t, str) else set(t)
    if "number" in names:
        names.add("integer")
    return frozenset(names)


def _type_value(types: frozenset[str]) -> list[str]:
    return sorted(types)


def _is_true(schema: Any) -> bool:
    if schema is True:
        return True
    return isinstance(schema, dict) and all(k in _ANNOTATIONS for k in schema)


def _fraction(value: Any) -> Fraction:
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


class SchemaConverter:
    """Builds the grammar of one root schema. ``convert`` returns (rules text, start rule)."""

    def __init__(
        self,
        root: Any,
        *,
        notes: Notes,
        ws_regex: str | None,
        prefix: str,
        deadline: float,
        max_symbols: int,
        draft7: bool,
        integer_fraction: bool = True,
    ) -> None:
        self.root = root
        self.notes = notes
        # Punctuation takes the whitespace beside it into one terminal (`\s*,\s*`, `{\s*`): a
        # mask walk past the end of a value or key then reads `", "` inside one small automaton
        # shared by every schema, instead of building parser states for each whitespace run.
        self._gap = f"(?:{ws_regex})?" if ws_regex else ""
        self.prefix = prefix
        self.deadline = deadline
        self.max_symbols = max_symbols
        self.draft7 = draft7
        # "1.0" is an integer from draft 6 on, not in draft 4
        self.integer_tail = ZERO_FRACTION if integer_fraction else ""
        # flat schemas use 2020-12 spellings whatever the root's dialect
        checker_cls = jsonschema.Draft202012Validator
        self._validator = checker_cls(root, format_checker=_FORMAT_CHECKER)
        self.rules: dict[str, list[list[str]]] = {}
        self.terminals: dict[str, str] = {}  # regex -> terminal name
        self.item_sets: list[ItemSet] = []
        self._memo: dict[str, str | None] = {}
        self._n = 0
        self._symbols = 0
        self._any: str | None = None
        self._tracking = 0  # > 0 while flattening under an unevaluated* keyword

    # -- names and output -----------------------------------------------------------------------

    def _rule(self, alternatives: list[list[str]] | None = None) -> str:
        self._n += 1
        name = f"{self.prefix}{self._n}"
        self.rules[name] = alternatives if alternatives is not None else []
        return name

    def _define(self, name: str, alternatives: list[list[str]]) -> None:
        self._symbols += sum(len(a) + 1 for a in alternatives)
        if self._symbols > self.max_symbols:
            raise CompileBudgetError(f"schema grammar exceeds {self.max_symbols} symbols")
        if time.monotonic() > self.deadline:
            raise CompileBudgetError("schema conversion exceeded its time budget")
        self.rules[name] = alternatives

    def _terminal(self, regex: str, label: str | None = None) -> str:
        name = self.terminals.get(regex)
        if name is None:
            name = f"{self.prefix.upper()}{label or len(self.terminals) + 1}"
            self.terminals[regex] = name
        return name

    def _punctuation(self, label: str, char: str, before: bool, after: bool) -> str:
        """The terminal of a punctuation character with the whitespace before and/or after it,
        named for what it reads (``JS_WS_COMMA_WS``), so errors name it legibly."""
        gap = self._gap
        regex = (gap if before else "") + re.escape(char) + (gap if after else "")
        return self._terminal(regex, ("WS_" if before and gap else "") + label + ("_WS" if after and gap else ""))

    def _sep(self, needed: bool) -> list[str]:
        """The separator before a member or element that is not the first."""
        if not needed:
            return []
        return [self._punctuation("COMMA", ",", True, True)]

    def _member(self, key: str, value: str) -> list[str]:
        """A member's symbols: the key, the colon with the whitespace around it, the value."""
        return [key, self._punctuation("COLON", ":", True, True), value]

    def _brackets(self, opening: str, inner: list[str], closing: str) -> list[str]:
        """``inner`` between two bracket characters, each bracket taking the whitespace on its
        inner side (only the opening one when ``inner`` is empty: no split is ambiguous)."""
        names = {"{": "LBRACE", "}": "RBRACE", "[": "LSQB", "]": "RSQB"}
        first = self._punctuation(names[opening], opening, False, True)
        return [first, *inner, self._punctuation(names[closing], closing, bool(inner), False)]

    def grammar(
        self, start: str
    ) -> tuple[list[tuple[str, list[list[str]]]], list[tuple[str, str]], list[ItemSet]]:
        """The rules reachable and productive from ``start`` (each a name and its alternatives,
        in the order printed), the terminals they use (name and regex) and the tracked lists
        among the rules.

        Rules that are a single symbol are replaced by that symbol (fewer parser states).
        """
        productive = self._productive()
        if start not in productive:
            raise SchemaError("the schema accepts no JSON value", pointer="")
        kept = {
            name: [a for a in alts if all(s in productive or not self._is_rule(s) for s in a)]
            for name, alts in self.rules.items()
            if name in productive
        }

        # a tracked list's items stay rules of their own (the engine tells them apart by rule)
        items = {s for item_set in self.item_sets for s in (*item_set.tracked, *item_set.untracked)}

        def target(symbol: str) -> str:
            seen = set()
            while (
                symbol in kept
                and symbol != start
                and symbol not in items
                and len(kept[symbol]) == 1
                and len(kept[symbol][0]) == 1
            ):
                if symbol in seen:
                    break
                seen.add(symbol)
                symbol = kept[symbol][0][0]
            return symbol

        rules = []
        done = set()
        stack = [start]
        while stack:
            name = stack.pop()
            if name in done or name not in kept:
                continue
            done.add(name)
            alts = [[target(s) for s in a] for a in kept[name]]
            rules.append((name, alts))
            for a in alts:
                stack.extend(s for s in a if self._is_rule(s))
        used = {s for _, alts in rules for a in alts for s in a}
        terminals = [(name, regex) for regex, name in self.terminals.items() if name in used]
        item_sets = []
        for item_set in self.item_sets:
            if item_set.rule in done:
                # unproductive items are gone from the rules (required ones are all productive)
                kept_items = replace(
                    item_set,
                    tracked=tuple(s for s in item_set.tracked if s in kept),
                    untracked=tuple(s for s in item_set.untracked if s in kept),
                )
                symbols = (*kept_items.tracked, *kept_items.untracked)
                item_sets.append(kept_items.renamed({s: target(s) for s in symbols}))
        return rules, terminals, item_sets

    @staticmethod
    def text(
        rules: list[tuple[str, list[list[str]]]], terminals: list[tuple[str, str]], item_sets: list[ItemSet]
    ) -> str:
        """The Lark text of ``grammar``'s rules, terminals and tracked lists (``%items`` lines)."""
        lines = [f"{name}: " + " | ".join(" ".join(a) for a in alts) for name, alts in rules]
        lines += [f"{name}: /{regex}/" for name, regex in terminals]
        lines += [item_set.pragma() for item_set in item_sets]
        return "\n".join(lines) + "\n"

    def _is_rule(self, symbol: str) -> bool:
        return symbol in self.rules

    def _productive(self) -> set[str]:
        productive: set[str] = set()
        lists = {item_set.rule: item_set for item_set in self.item_sets}
        changed = True
        while changed:
            changed = False
            for name, alts in self.rules.items():
                if name in productive or name in lists and not lists[name].feasible(productive):
                    continue
                if any(all(s in productive or not self._is_rule(s) for s in a) for a in alts):
                    productive.add(name)
                    changed = True
        return productive

    # -- references -----------------------------------------------------------------------------

    def resolve(self, ref: str, pointer: str) -> tuple[Any, str]:
        """The schema a ``$ref`` names (refs were made root-relative by ``absolute_refs``)."""
        if not ref.startswith("#") or (len(ref) > 1 and ref[1] != "/"):
            # what absolute_refs and bundle leave is a URI no document known here defines
            why = f"no schema known by the URI {ref!r} (pass its document in `schemas`, keyed by that URI)"
            raise _Unexpressible(pointer, "$ref", why)
        target: Any = self.root
        for token in ref[2:].split("/") if len(ref) > 1 else []:
            token = unquote(token).replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and token in target:
                target = target[token]
            elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                target = target[int(token)]
            else:
                raise _Unexpressible(pointer, "$ref", f"{ref!r} points nowhere")
        return target, ref[1:]

    # -- entry ----------------------------------------------------------------------------------

    def symbol(self, schema: Any, pointer: str) -> str | None:
        """A rule or terminal for the values valid under ``schema``; None when there are none."""
        if schema is False:
            return None
        if _is_true(schema):
            return self.any_value()
        if not isinstance(schema, dict):
            raise SchemaError("a schema must be an object or a boolean", pointer=pointer)
        key = _canon(schema)
        if key in self._memo:
            return self._memo[key]
        name = self._rule()
        self._memo[key] = name  # before building: recursive references land here
        tracking, self._tracking = self._tracking, 0  # a value of its own: evaluated apart
        try:
            alternatives = self._build(schema, pointer)
        finally:
            self._tracking = tracking
        self._define(name, alternatives)
        return name

    def _build(self, schema: dict[str, Any], pointer: str) -> list[list[str]]:
        keys = {k for k in schema if k not in _ANNOTATIONS}
        if "$ref" in keys and (keys == {"$ref"} or self.draft7):
            try:
                target, where = self.resolve(schema["$ref"], pointer)
            except _Unexpressible as exc:
                self.notes.add(exc.pointer, exc.keyword, exc.why)
                return [[self.any_value()]]
            sym = self.symbol(target, where)
            return [[sym]] if sym else []
        if keys == {"anyOf"} or (keys == {"oneOf"} and self._exclusive(schema["oneOf"], pointer)):
            kw = "anyOf" if "anyOf" in keys else "oneOf"
            out = []
            for i, branch in enumerate(schema[kw]):
                sym = self.symbol(branch, f"{pointer}/{kw}/{i}")
                if sym:
                    out.append([sym])
            return out
        if keys == {"allOf"} and len(schema["allOf"]) == 1:
            sym = self.symbol(schema["allOf"][0], f"{pointer}/allOf/0")
            return [[sym]] if sym else []
        out = []
        for flat in self.flatten(schema, pointer, 0):
            sym = self.flat_symbol(_untracked(flat), pointer)
            if sym:
                out.append([sym])
        return out

    # -- flattening -----------------------------------------------------------------------------

    def flatten(self, schema: Any, pointer: str, depth: int) -> list[Flat]:
        """The schema as a disjunction of flat schemas (no applicators at the top)."""
        tracked = isinstance(schema, dict) and ("unevaluatedProperties" in schema or "unevaluatedItems" in schema)
        self._tracking += tracked
        try:
            return self._flatten(schema, pointer, depth)
        finally:
            self._tracking -= tracked

    def _flatten(self, schema: Any, pointer: str, depth: int) -> list[Flat]:
        if depth > _MAX_REF_DEPTH:
            raise SchemaError("$ref cycle without any value in between", pointer=pointer, keyword="$ref")
        if schema is True:
            return [{}]
        if schema is False:
            return []
        if not isinstance(schema, dict):
            raise SchemaError("a schema must be an object or a boolean", pointer=pointer)
        if "$ref" in schema and self.draft7:
            schema = {"$ref": schema["$ref"]}
        own: Flat = {}
        conjuncts: list[list[Flat]] = []
        # What is found here is conjoined with the sibling assertions: oneOf branches need only
        # exclude each other under them, and negations need only hold within the sibling
        # ``type`` (the negation of an object schema is exact among strings whatever its object
        # keywords are).
        context = self._normalize({k: v for k, v in schema.items() if k in _ASSERTIONS}, pointer)
        within = _types_of(context)
        for key, value in schema.items():
            if key in _ANNOTATIONS or key in ("then", "else", "dependencies", "dependentRequired", "dependentSchemas"):
                continue
            here = f"{pointer}/{pointer_token(key)}"
            if key == "$ref":
                try:
                    target, where = self.resolve(value, pointer)
                except _Unexpressible as exc:
                    self.notes.add(exc.pointer, exc.keyword, exc.why)
                    continue
                conjuncts.append(self.flatten(target, where, depth + 1))
            elif key == "allOf":
                for i, sub in enumerate(value):
                    conjuncts.append(self.flatten(sub, f"{here}/{i}", depth + 1))
            elif key == "anyOf":
                branches = [self.flatten(sub, f"{here}/{i}", depth + 1) for i, sub in enumerate(value)]
                conjuncts.append(self._any_of_sets(branches, here) if self._tracking else [f for fs in branches for f in fs])
            elif key == "oneOf":
                conjuncts.append(self._one_of(value, here, depth, context))
            elif key == "not":
                try:
                    conjuncts.append(self.negate(value, here, depth + 1, within))
                except _Unexpressible as exc:
                    conjuncts.append([_deferred({}, here, "not", exc.why, {"not": value})])
            elif key == "if":
                conjuncts.append(self._if_then_else(schema, pointer, depth, within))
            elif key in _UNSUPPORTED:
                self.notes.add(pointer, key, "dynamic references are not supported")
            elif key in _ASSERTIONS:
                own[key] = value
            # any other keyword is an annotation (unknown keywords are ignored by JSON Schema)
        for key in ("dependentRequired", "dependentSchemas", "dependencies"):
            for name, dep in (schema.get(key) or {}).items():
                absent: Flat = {"properties": {name: False}}
                if isinstance(dep, list):
                    present: Flat = {"required": [name, *dep]}
                    conjuncts.append([absent, present])
                else:
                    subs = self.flatten(dep, f"{pointer}/{key}/{pointer_token(name)}", depth + 1)
                    present_with = [self.merge({"required": [name]}, s, pointer) for s in subs]
                    conjuncts.append([absent] + [m for m in present_with if m is not None])
        own = self._normalize(own, pointer)
        if self._tracking:
            own[_EVALUATED] = _evaluated_by(own)
        result = [own]
        for options in conjuncts:
            merged: list[Flat] = []
            for a, b in itertools.product(result, options):
                m = self.merge(a, b, pointer)
                if m is not None:
                    merged.append(m)
            if len(merged) > _MAX_ALTERNATIVES:
                raise CompileBudgetError(f"schema at #{pointer} expands to more than {_MAX_ALTERNATIVES} alternatives")
            result = merged
        return [self._apply_unevaluated(f, pointer) for f in result]

    def _any_of_sets(self, branches: list[list[Flat]], pointer: str) -> list[Flat]:
        """anyOf under unevaluated*: every branch that holds evaluates, so one alternative per
        nonempty set of branches, all of them merged (a value takes the set it satisfies)."""
        if len(branches) > _MAX_TRACKED_BRANCHES:
            raise CompileBudgetError(f"anyOf at #{pointer} beside unevaluated* has more than {_MAX_TRACKED_BRANCHES} branches")
        out: list[Flat] = []
        for size in range(1, len(branches) + 1):
            for chosen in itertools.combinations(branches, size):
                merged: list[Flat] = [{}]
                for options in chosen:
                    merged = [m for a, b in itertools.product(merged, options) if (m := self.merge(a, b, pointer)) is not None]
                out.extend(merged)
                if len(out) > _MAX_ALTERNATIVES:
                    raise CompileBudgetError(f"anyOf at #{pointer} beside unevaluated* expands to too many alternatives")
        return out

    def _apply_unevaluated(self, flat: Flat, pointer: str) -> Flat:
        """unevaluated* after merging: they act on what no keyword that applied evaluated (the
        flat's ``_EVALUATED``); what they apply to is then evaluated too."""
        if "unevaluatedProperties" not in flat and "unevaluatedItems" not in flat:
            return flat
        flat = dict(flat)
        evaluated = dict(flat.get(_EVALUATED) or _evaluated_by({}))
        if "unevaluatedProperties" in flat:
            extra = flat.pop("unevaluatedProperties")
            if not evaluated["properties_all"]:
                self._unevaluated_properties(flat, evaluated, extra)
            evaluated["properties_all"] = True
        if "unevaluatedItems" in flat:
            extra = flat.pop("unevaluatedItems")
            if not evaluated["items_all"]:
                self._unevaluated_items(flat, evaluated, extra)
            evaluated["items_all"] = True
        flat[_EVALUATED] = evaluated
        return flat

    def _unevaluated_properties(self, flat: Flat, evaluated: dict[str, Any], extra: Any) -> None:
        """Members no applied keyword evaluated take ``extra`` too: declared names outside the
        evaluated ones (declared by a negation, or absent-only), patterns likewise (a key also
        matching an evaluated pattern takes it too: narrower, never wider), and the rest."""
        names = set(evaluated["names"])
        patterns = set(evaluated["patterns"])
        if "properties" in flat:
            flat["properties"] = {
                n: sub if n in names else self._combine(sub, extra) for n, sub in flat["properties"].items()
            }
        if "patternProperties" in flat:
            flat["patternProperties"] = {
                p: sub if p in patterns else self._combine(sub, extra) for p, sub in flat["patternProperties"].items()
            }
        flat["additionalProperties"] = self._combine(flat.get("additionalProperties", True), extra)

    def _unevaluated_items(self, flat: Flat, evaluated: dict[str, Any], extra: Any) -> None:
        """Items past the evaluated prefix that no evaluated ``contains`` matched take ``extra``."""
        if evaluated["contains"]:
            extra = {"anyOf": [*evaluated["contains"], extra]}
        prefix = list(flat.get("prefixItems", []))
        for i in range(evaluated["prefix"], len(prefix)):
            prefix[i] = self._combine(prefix[i], extra)
        if prefix:
            flat["prefixItems"] = prefix
        flat["items"] = self._combine(flat.get("items", True), extra)

    def _normalize(self, own: Flat, pointer: str) -> Flat:
        """Draft-07 and draft-04 spellings to their 2020-12 meaning."""
        own = dict(own)
        items = own.get("items")
        if isinstance(items, list):
            own["prefixItems"] = items
            if "additionalItems" in own:
                own["items"] = own.pop("additionalItems")
            else:
                own.pop("items")
        else:
            own.pop("additionalItems", None)
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(own.get(flag), bool):
                if own.pop(flag) and bound in own:
                    own[flag] = own.pop(bound)
        if "const" in own:
            own["enum"] = [own.pop("const")] if "enum" not in own else [
                v for v in own["enum"] if _canon(v) == _canon(own["const"])
            ]
            own.pop("const", None)
        if "type" in own:
            own["type"] = _type_value(_types_of(own))
        return own

    def _one_of(self, branches: list[Any], pointer: str, depth: int, context: Flat) -> list[Flat]:
        """``oneOf`` as flat schemas, for values satisfying ``context`` (the sibling assertions,
        conjoined with the result by the caller).

        Per group of types (null, boolean, object, array, string, numbers): where no value of
        the group satisfies two branches, their union; elsewhere each branch with the negation
        of every other, taken within those types only (so an object branch's keywords that have
        no negation do not matter among strings, nor a string branch's among objects)."""
        flats = [self.flatten(b, f"{pointer}/{i}", depth + 1) for i, b in enumerate(branches)]
        within = _types_of(context)
        # the branches as the caller will keep them: with the sibling keywords (a property
        # required beside the oneOf discriminates branches that only declare it)
        sigs = [self._with_context(context, fs, pointer) for fs in flats]
        if self._exclusive_flats(sigs, within):
            return [f for fs in flats for f in fs]
        apart: set[str] = set()
        overlapping: set[str] = set()
        for group in _TYPE_GROUPS:
            types = group & within
            if types:
                (apart if self._exclusive_flats(sigs, types) else overlapping).update(types)
        out = self._within(frozenset(apart), [f for fs in flats for f in fs], pointer)
        both = frozenset(overlapping)
        # exactly one: each branch with the negation of every other
        try:
            negations = [self.negate(b, f"{pointer}/{i}", depth + 1, both) for i, b in enumerate(branches)]
        except _Unexpressible as exc:
            why = f"branches may overlap and cannot be negated ({exc.why})"
            return out + [
                _deferred(f, pointer, "oneOf", why, {"oneOf": branches})
                for f in self._within(both, [f for fs in flats for f in fs], pointer)
            ]
        for i, fs in enumerate(flats):
            current = self._within(both, fs, pointer)
            for j, neg in enumerate(negations):
                if i == j:
                    continue
                current = [m for a, b in itertools.product(current, neg) if (m := self.merge(a, b, pointer)) is not None]
                if len(current) > _MAX_ALTERNATIVES:
                    raise CompileBudgetError(f"oneOf at #{pointer} expands to too many alternatives")
            out.extend(current)
        return out

    def _with_context(self, context: Flat, flats: list[Flat], pointer: str) -> list[Flat]:
        """``flats`` each conjoined with ``context``, for deciding whether branches overlap
        (``flats`` themselves where a merge cannot be enforced: they overlap no less)."""
        if not context:
            return flats
        notes, self.notes = self.notes, Notes(strict=True)  # a trial: nothing to report
        try:
            return [m for f in flats if (m := self.merge(context, f, pointer)) is not None]
        except SchemaError:
            return flats
        finally:
            self.notes = notes

    def _within(self, types: frozenset[str], flats: list[Flat], pointer: str) -> list[Flat]:
        """``flats`` restricted to values of ``types`` (none when ``types`` is empty)."""
        if not types:
            return []
        if types == _ALL_TYPES:
            return flats
        restrict: Flat = {"type": _type_value(types)}
        return [m for f in flats if (m := self.merge(f, restrict, "")) is not None]

    def _if_then_else(self, schema: dict[str, Any], pointer: str, depth: int, within: frozenset[str]) -> list[Flat]:
        cond = schema["if"]
        then = schema.get("then", True)
        other = schema.get("else", True)
        yes = [
            m
            for a, b in itertools.product(
                self.flatten(cond, f"{pointer}/if", depth + 1), self.flatten(then, f"{pointer}/then", depth + 1)
            )
            if (m := self.merge(a, b, pointer)) is not None
        ]
        try:
            negated = self.negate(cond, f"{pointer}/if", depth + 1, within)
        except _Unexpressible as exc:
            why = f"the condition cannot be negated ({exc.why})"
            whole = {"if": cond, "then": then, "else": other}
            return [_deferred(f, pointer, "if", why, whole) for f in yes + self.flatten(other, f"{pointer}/else", depth + 1)]
        no = [
            m
            for a, b in itertools.product(negated, self.flatten(other, f"{pointer}/else", depth + 1))
            if (m := self.merge(a, b, pointer)) is not None
        ]
        return yes + no

    def _exclusive(self, branches: list[Any], pointer: str) -> bool:
        """Whether no value can satisfy two branches (checked on types and literal values)."""
        sigs = []
        for i, b in enumerate(branches):
            try:
                flats = self.flatten(b, f"{pointer}/{i}", 1)
            except (SchemaError, _Unexpressible):
                return False
            sigs.append(flats)
        return self._exclusive_flats(sigs, _ALL_TYPES)

    def _exclusive_flats(self, sigs: list[list[Flat]], within: frozenset[str]) -> bool:
        """Whether no value of the types ``within`` satisfies two of the branches (each a
        disjunction of flat schemas)."""
        for a, b in itertools.combinations(sigs, 2):
            for fa in a:
                for fb in b:
                    if not self._disjoint(fa, fb, within):
                        return False
        return True

    def _disjoint(self, a: Flat, b: Flat, within: frozenset[str] = _ALL_TYPES) -> bool:
        common = _types_of(a) & _types_of(b) & within
        if not common:
            return True
        if "enum" in a and "enum" in b:
            return not ({_canon(v) for v in a["enum"]} & {_canon(v) for v in b["enum"]})
        if "enum" in a or "enum" in b:
            return False
        if common <= {"object"}:
            required = set(a.get("required", [])) | set(b.get("required", []))
            # more keys required than either side allows
            most = min((int(x["maxProperties"]) for x in (a, b) if "maxProperties" in x), default=None)
            if most is not None and max(len(required), *(int(x.get("minProperties", 0)) for x in (a, b))) > most:
                return True
            # a discriminating property: required by either, with values no value satisfies on
            # both sides (one forbids it, disjoint literal values, disjoint types)
            for name in required:
                sa, sb = self._property_schema(a, name), self._property_schema(b, name)
                if sa is False or sb is False:
                    return True
                va, vb = self._literal_values(sa), self._literal_values(sb)
                if va is not None and vb is not None and not (va & vb):
                    return True
                ta, tb = self._value_types(sa), self._value_types(sb)
                if ta is not None and tb is not None and not (ta & tb):
                    return True
        return False

    def _no_object(self, flat: Flat) -> bool:
        """Whether no object satisfies ``flat`` for want of its required properties: one is
        forbidden or takes no value (literal sets with nothing in common), or there are more
        than ``maxProperties``."""
        required = set(flat.get("required", ()))
        if "maxProperties" in flat and len(required) > int(flat["maxProperties"]):
            return True
        for name in required:
            schema = self._property_schema(flat, name)
            if schema is False or self._literal_values(schema) == set():
                return True
        return False

    def _value_types(self, schema: Any) -> frozenset[str] | None:
        """The types a schema allows when it names some (a superset, through ``allOf`` and
        references), else None."""
        found = self._conjuncts(schema, lambda s: [_types_of(s)] if isinstance(s.get("type"), (str, list)) else [])
        return frozenset.intersection(*found) if found else None

    def _literal_values(self, schema: Any) -> set[str] | None:
        """The canonical values a schema allows when finitely many (a superset, through
        ``allOf`` and references), else None."""

        def own(s: dict[str, Any]) -> list[set[str]]:
            found = []
            if "const" in s:
                found.append({_literal_key(s["const"])})
            if "enum" in s:
                found.append({_literal_key(v) for v in s["enum"]})
            return found

        found = self._conjuncts(schema, own)
        return set.intersection(*found) if found else None

    def _conjuncts(self, schema: Any, own: "Callable[[dict[str, Any]], list[_T]]", depth: int = 0) -> "list[_T]":
        """What ``own`` finds in ``schema`` and in the schemas it is a conjunction with: its
        ``allOf`` branches and its reference's target, recursively (up to ``_MAX_REF_DEPTH``)."""
        if not isinstance(schema, dict) or depth > _MAX_REF_DEPTH:
            return []
        if "$ref" in schema and self.draft7:
            schema = {"$ref": schema["$ref"]}  # siblings of a draft-07 reference are ignored
        found = own(schema)
        for sub in schema.get("allOf", ()):
            found += self._conjuncts(sub, own, depth + 1)
        if isinstance(schema.get("$ref"), str):
            try:
                target, _ = self.resolve(schema["$ref"], "")
            except _Unexpressible:
                target = None
            found += self._conjuncts(target, own, depth + 1)
        return found

    # -- merging --------------------------------------------------------------------------------

    def merge(self, a: Flat, b: Flat, pointer: str) -> Flat | None:
        """The conjunction of two flat schemas; None when provably unsatisfiable."""
        if "contains" in a and "contains" in b and not _same(a["contains"], b["contains"]):
            b = _contains_aside(b)  # counted apart: its min/maxContains are not a's
        out = dict(a)
        for key, value in b.items():
            if key not in out:
                out[key] = value
                continue
            mine = out[key]
            if _same(mine, value):
                continue
            if key == "type":
                out[key] = _type_value(_types_of(out) & _types_of(b))
            elif key == "enum":
                keep = {_literal_key(v) for v in value}
                out[key] = [v for v in mine if _literal_key(v) in keep]
            elif key in ("minimum", "minLength", "minItems", "minProperties", "minContains"):
                out[key] = max(mine, value)
            elif key in ("maximum", "maxLength", "maxItems", "maxProperties", "maxContains"):
                out[key] = min(mine, value)
            elif key == "exclusiveMinimum":
                out[key] = max(mine, value)
            elif key == "exclusiveMaximum":
                out[key] = min(mine, value)
            elif key == "multipleOf":
                fa, fb = _fraction(mine), _fraction(value)
                lcm = Fraction(
                    math.lcm(fa.numerator, fb.numerator), math.gcd(fa.denominator, fb.denominator)
                )
                out[key] = float(lcm) if lcm.denominator != 1 else int(lcm)
            elif key == "required":
                out[key] = list(dict.fromkeys([*mine, *value]))
            elif key in _INTERNAL:
                out[key] = list(dict.fromkeys([*mine, *value]))
            elif key == _NOT_NUMBERS:
                out[key] = [*mine, *(v for v in value if v not in mine)]
            elif key == _DEFERRED:
                out[key] = [*mine, *(v for v in value if v not in mine)]
            elif key == _EVALUATED:
                out[key] = _evaluated_union(mine, value)
            elif key == _MORE_CONTAINS:
                out[key] = [*mine, *(v for v in value if v not in mine)]
            elif key == "pattern":
                # both apply: the string terminal intersects the two
                out[_PATTERNS] = list(dict.fromkeys([*out.get(_PATTERNS, ()), value]))
            elif key in ("propertyNames", "contains", "items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems"):
                if key in ("contains",):
                    self.notes.add(pointer, key, "two different contains schemas")
                    continue
                out[key] = {"allOf": [mine, value]}
            elif key == "uniqueItems":
                out[key] = bool(mine) or bool(value)
            elif key in ("properties", "patternProperties", "prefixItems"):
                continue  # merged below, with the other side's fallbacks
            else:
                self.notes.add(pointer, key, "two different values cannot both be enforced")
        if "properties" in a or "properties" in b or "patternProperties" in a or "patternProperties" in b:
            self._merge_properties(out, a, b, pointer)
        if "prefixItems" in a or "prefixItems" in b:
            self._merge_prefix(out, a, b)
        if "object" in _types_of(out) and "required" in out and self._no_object(out):
            # no object satisfies both: keep the other types (fewer alternatives to negate)
            out["type"] = _type_value(_types_of(out) - {"object"})
        if "type" in out and not out["type"]:
            return None
        if "enum" in out and not out["enum"]:
            return None
        return out

    def _merge_properties(self, out: Flat, a: Flat, b: Flat, pointer: str) -> None:
        pa, pb = a.get("properties", {}), b.get("properties", {})
        pat_a, pat_b = a.get("patternProperties", {}), b.get("patternProperties", {})
        if pat_a and pat_b and not _same(pat_a, pat_b):
            self.notes.add(pointer, "patternProperties", "merging two sets of patterns")
        patterns = dict(pat_a or pat_b)
        if bool(pat_a) != bool(pat_b):
            # keys matching one side's patterns are additional keys for the other side
            other = b if pat_a else a
            for pat, sub in patterns.items():
                patterns[pat] = self._combine(sub, other.get("additionalProperties", True))
        if patterns:
            out["patternProperties"] = patterns
        else:
            out.pop("patternProperties", None)
        merged = {}
        for name in list(pa) + [n for n in pb if n not in pa]:
            if name not in pb:
                merged[name] = self._combine(pa[name], self._property_schema(b, name))
            elif name not in pa:
                merged[name] = self._combine(self._property_schema(a, name), pb[name])
            else:
                merged[name] = self._combine(pa[name], pb[name])
        out["properties"] = merged

    @staticmethod
    def _combine(x: Any, y: Any) -> Any:
        if _is_true(y) or _same(x, y):
            return x
        if _is_true(x):
            return y
        if x is False or y is False:
            return False
        return {"allOf": [x, y]}

    def _property_schema(self, flat: Flat, name: str) -> Any:
        """The schema a flat object schema applies to property ``name``."""
        if name in flat.get("properties", {}):
            return flat["properties"][name]
        matched = [s for p, s in flat.get("patternProperties", {}).items() if self._search(p, name)]
        if matched:
            return matched[0] if len(matched) == 1 else {"allOf": matched}
        return flat.get("additionalProperties", True)

    @staticmethod
    def _search(pattern: str, text: str) -> bool:
        try:
            return re.search(pattern, text) is not None
        except re.error:
            return False

    def _merge_prefix(self, out: Flat, a: Flat, b: Flat) -> None:
        la, lb = a.get("prefixItems", []), b.get("prefixItems", [])
        prefix = []
        for i in range(max(len(la), len(lb))):
            x = la[i] if i < len(la) else a.get("items", True)
            y = lb[i] if i < len(lb) else b.get("items", True)
            prefix.append(self._combine(x, y))
        out["prefixItems"] = prefix

    # -- negation -------------------------------------------------------------------------------

    def negate(self, schema: Any, pointer: str, depth: int, within: frozenset[str] = _ALL_TYPES) -> list[Flat]:
        """Flat schemas whose union is the complement of ``schema`` among the values of the
        types ``within`` (the caller conjoins it with them); raises _Unexpressible."""
        if depth > _MAX_NEGATION_DEPTH:
            raise _Unexpressible(pointer, "not", "negation nests too deeply (recursive schema)")
        if schema is True:
            return []
        everything: Flat = {} if within == _ALL_TYPES else {"type": _type_value(within)}
        if schema is False:
            return [everything]
        result: list[Flat] = [everything]
        for flat in self.flatten(schema, pointer, depth):
            options = self._negate_flat(_untracked(flat), pointer, depth, within)
            result = [m for x, y in itertools.product(result, options) if (m := self.merge(x, y, pointer)) is not None]
            if len(result) > _MAX_ALTERNATIVES:
                raise _Unexpressible(pointer, "not", "negation expands to too many alternatives")
        return result

    def _negate_flat(self, flat: Flat, pointer: str, depth: int, within: frozenset[str]) -> list[Flat]:
        """The complement of one flat schema among the values of the types ``within``: the
        other types, and per keyword the values of its type that fail it."""
        types = _types_of(flat) & within
        if not types:
            return [{"type": _type_value(within)}]
        out: list[Flat] = []
        integral = "integer" in types and "number" not in types
        others = within - types - ({"number"} if integral else set())
        if others:
            out.append({"type": _type_value(others)})
        if integral and "number" in within:
            out.append({"type": ["number"], _FRACTIONAL: True})  # the numbers that are no integers

        def of_kind(kind: str) -> list[str]:
            return _type_value(types & ({kind, "integer"} if kind == "number" else {kind}))

        for key, value in flat.items():
            if key == "type":
                continue
            if key == _DEFERRED:
                raise _Unexpressible(pointer, "not", value[0][2])
            if key == "enum":
                out.extend(self._negate_enum(value, types, pointer))
                continue
            kind = next((t for t, kws in _BY_TYPE.items() if key in kws), None)
            if kind is None or not of_kind(kind):
                continue
            base: Flat = {"type": of_kind(kind)}
            negs = {
                "minLength": ("maxLength", lambda v: v - 1),
                "maxLength": ("minLength", lambda v: v + 1),
                "minItems": ("maxItems", lambda v: v - 1),
                "maxItems": ("minItems", lambda v: v + 1),
                "minProperties": ("maxProperties", lambda v: v - 1),
                "maxProperties": ("minProperties", lambda v: v + 1),
                "minimum": ("exclusiveMaximum", lambda v: v),
                "maximum": ("exclusiveMinimum", lambda v: v),
                "exclusiveMinimum": ("maximum", lambda v: v),
                "exclusiveMaximum": ("minimum", lambda v: v),
            }
            if key in negs:
                new_key, f = negs[key]
                nv = f(value)
                if isinstance(nv, int) and new_key.startswith("max") and new_key != "maximum" and nv < 0:
                    continue
                out.append({**base, new_key: nv})
            elif key == "required":
                out.extend({**base, "properties": {name: False}} for name in value)
            elif key == "properties":
                for name, sub in value.items():
                    if _is_true(sub):
                        continue
                    negs_sub = self.negate(sub, f"{pointer}/properties/{pointer_token(name)}", depth + 1)
                    if negs_sub:
                        out.append({**base, "required": [name], "properties": {name: {"anyOf": negs_sub}}})
            elif key == "items" and "prefixItems" not in flat:
                negs_sub = self.negate(value, f"{pointer}/items", depth + 1)
                if negs_sub:
                    out.append({**base, "contains": {"anyOf": negs_sub}})
            elif key == "contains":
                negs_sub = self.negate(value, f"{pointer}/contains", depth + 1)
                out.append({**base, "items": {"anyOf": negs_sub} if negs_sub else False})
            elif key == "additionalProperties" and _is_true(value):
                continue
            elif key in ("pattern", _PATTERNS):
                out.extend({**base, _NOT_PATTERNS: [p]} for p in ([value] if key == "pattern" else value))
            elif key == _NOT_PATTERNS:
                out.extend({**base, "pattern": p} for p in value)
            elif key == "format":
                if value in FORMATS:
                    out.append({**base, _NOT_FORMATS: [value]})
                # other formats are annotations: every string has them
            elif key == _NOT_FORMATS:
                out.extend({**base, "format": f} for f in value)
            elif key == _NOT_IN:
                out.append({**base, "enum": list(value)})
            elif key == _FRACTIONAL:
                if "integer" in base["type"]:
                    out.append({"type": ["integer"]})
            elif key == _NOT_NUMBERS:
                out.append({**base, "enum": list(value)})
            else:
                raise _Unexpressible(pointer, "not", f"the negation of {key!r} has no grammar")
        return self._within(within, out, pointer)

    def _negate_enum(self, values: list[Any], types: frozenset[str], pointer: str) -> list[Flat]:
        out: list[Flat] = []
        strings = [v for v in values if isinstance(v, str)]
        if "string" in types:
            out.append({"type": ["string"], _NOT_IN: strings})
        if "boolean" in types:
            rest = [b for b in (True, False) if not any(v is b for v in values)]
            if rest:
                out.append({"type": ["boolean"], "enum": rest})
        if "null" in types and None not in values:
            out.append({"type": ["null"]})
        for kind in ("number", "object", "array"):
            present = [v for v in values if _json_type(v) == kind]
            if kind in types or (kind == "number" and "integer" in types):
                numeric = _type_value(types & {"integer", "number"})
                if present and kind == "number":
                    out.append({"type": numeric, _NOT_NUMBERS: present})
                    continue
                if present:
                    raise _Unexpressible(pointer, "not", f"the complement of a finite set of {kind}s")
                out.append({"type": [kind] if kind != "number" else numeric})
        return out

    # -- flat schemas by type -------------------------------------------------------------------

    def flat_symbol(self, flat: Flat, pointer: str) -> str | None:
        key = "flat:" + _canon(flat)
        if key in self._memo:
            return self._memo[key]
        name = self._rule()
        self._memo[key] = name
        self._define(name, self._flat_alternatives(flat, pointer))
        return name

    def _flat_alternatives(self, flat: Flat, pointer: str) -> list[list[str]]:
        types = _types_of(flat)
        if "enum" in flat:
            return self._enum_alternatives(flat, pointer)
        for where, keyword, why, _ in flat.get(_DEFERRED, ()):
            self.notes.add(where, keyword, why)  # no finite set of values to check it on
        out: list[list[str]] = []
        if "null" in types:
            out.append(['"null"'])
        if "boolean" in types:
            out.append(['"true"'])
            out.append(['"false"'])
        if "string" in types:
            sym = self._string(flat, pointer)
            if sym:
                out.append([sym])
        if "number" in types or "integer" in types:
            sym = self._number(flat, pointer, integer="number" not in types)
            if sym:
                out.append([sym])
        if "object" in types:
            sym = self._object(flat, pointer)
            if sym:
                out.append([sym])
        if "array" in types:
            sym = self._array(flat, pointer)
            if sym:
                out.append([sym])
        return out

    def _enum_alternatives(self, flat: Flat, pointer: str) -> list[list[str]]:
        checker = self._validator.evolve(schema=_checkable(flat))
        out = []
        seen = {_canon(v) for v in flat.get(_NOT_IN, ())}
        for value in flat["enum"]:
            c = _canon(value)
            if c in seen:
                continue
            seen.add(c)
            try:
                ok = checker.is_valid(value)
            except Exception as exc:  # jsonschema raises for unresolvable refs and bad regexes
                raise SchemaError(f"cannot check enum value {c}: {exc}", pointer=pointer, keyword="enum") from exc
            if ok:
                out.append([self.literal(value)])
        return out

    def literal(self, value: Any) -> str:
        """A symbol for exactly one JSON value (object keys in any order)."""
        if value is None:
            return '"null"'
        if value is True:
            return '"true"'
        if value is False:
            return '"false"'
        if isinstance(value, str):
            return self._terminal('"' + rx.literal(rx.canonical(value)) + '"')
        if isinstance(value, (int, float)):
            return self._terminal(_number_literal(value))
        key = "lit:" + json.dumps(value, ensure_ascii=False)
        if key in self._memo:
            return self._memo[key] or ""
        name = self._rule()
        self._memo[key] = name
        inner: list[str] = []
        if isinstance(value, list):
            for i, item in enumerate(value):
                inner += self._sep(i > 0) + [self.literal(item)]
            self._define(name, [self._brackets("[", inner, "]")])
        elif value:
            # Every key once, in any order: required members of a tracked list.
            members = []
            for k, v in value.items():
                member = self._rule()
                self._define(member, [self._member(self._key(k), self.literal(v))])
                members.append((member, True))
            self._define(name, [self._brackets("{", [self._member_list(members, None, 0, None)], "}")])
        else:
            self._define(name, [self._brackets("{", [], "}")])
        return name

    def _key(self, name: str) -> str:
        return self._terminal('"' + rx.literal(rx.canonical(name)) + '"')

    # strings

    def _string(self, flat: Flat, pointer: str) -> str | None:
        lo = int(flat.get("minLength", 0))
        hi = flat.get("maxLength")
        hi = None if hi is None else int(hi)
        if hi is not None and hi < lo:
            return None
        fmt = flat.get("format")
        patterns = ([flat["pattern"]] if "pattern" in flat else []) + list(flat.get(_PATTERNS, ()))
        if fmt is not None and fmt not in FORMATS:
            self.notes.ignored_formats.append((pointer, str(fmt)))
            fmt = None
        # bodies the string matches all of, and whether one of them already keeps the length
        # within [lo, hi]
        bodies: list[str] = []
        decided = not lo and hi is None
        if fmt is not None:
            regex, shortest, longest = FORMATS[fmt]
            if hi is not None and hi < shortest or longest is not None and lo > longest:
                return None
            bodies.append(regex)
            decided = decided or lo <= shortest and (hi is None or longest is not None and longest <= hi)
        excluded: list[str] = []  # bodies of strings left out
        for pattern in patterns:
            try:
                split = _leading_lookahead(pattern)
                if split is not None:
                    # ^(?!X)Y: the strings matching ^Y, less those matching ^X
                    refused = rx.search_body(split[1])
                    excluded += [refused] if refused is not None else []
                found = self._pattern_body(split[0] if split else pattern, lo, hi)
            except rx.RegexUnsupported as exc:
                self.notes.add(pointer, "pattern", f"{pattern!r}: {exc}")
                continue
            if found is None:
                return None
            body, keeps_length = found
            bodies.append(body)
            decided = decided or keeps_length
        if not bodies:
            # The engine counts the characters beside the string's automaton (``Counted``): any
            # bound costs the same.
            length = _length_body(lo, hi)
            if length is None:
                return None
            bodies.append(length)
            decided = True
        regex = '"' + bodies[0] + '"'
        for body in bodies[1:]:
            regex = intersected(regex, '"' + body + '"')
        excluded += [b for b in self._negated_bodies(flat, pointer) if b is not None]
        if excluded:
            regex = subtracted(regex, '"(?:' + "|".join(excluded) + ')"')
        if flat.get(_NOT_IN):
            regex = except_words(['"' + rx.canonical(w) + '"' for w in flat[_NOT_IN]]) + regex
        if not decided:
            # a product has a state per length (the counter beside a string's automaton counts
            # units of any string, not a pattern's): longer bounds are narrowed
            if lo > _MAX_PRODUCT_LENGTH:
                raise CompileBudgetError(
                    f"minLength {lo} beside a pattern or format at #{pointer} is above {_MAX_PRODUCT_LENGTH}"
                )
            if hi is not None and hi > _MAX_PRODUCT_LENGTH:
                hi = _MAX_PRODUCT_LENGTH
            regex = intersected(regex, '"' + (_length_body(lo, hi) or "") + '"')
        # a product may match nothing, which only its automaton tells: the engine then drops the
        # alternatives that use it
        return self._terminal(regex)

    def _negated_bodies(self, flat: Flat, pointer: str) -> list[str | None]:
        """The bodies of the negated patterns and formats of a string schema (None for a
        pattern no string matches)."""
        out: list[str | None] = []
        for pattern in flat.get(_NOT_PATTERNS, ()):
            try:
                out.append(rx.search_body(pattern))
            except rx.RegexUnsupported as exc:
                self.notes.add(pointer, "not", f"{pattern!r}: {exc}")
        out += [FORMATS[f][0] for f in flat.get(_NOT_FORMATS, ())]
        return out

    def _pattern_body(self, pattern: str, lo: int, hi: int | None) -> tuple[str, bool] | None:
        """The body regex of the strings ``pattern`` matches, and whether it keeps their length
        within [lo, hi] (an anchored pattern whose length one repeat decides is cut to it); None
        when no string matches. Raises RegexUnsupported."""
        if lo or hi is not None:
            node = rx.anchored_node(pattern)
            if node is not None:
                nlo, nhi = rx.node_length(node)
                if nlo >= lo and (hi is None or (nhi is not None and nhi <= hi)):
                    body = rx.emit(node)
                    return None if body is None else (body, True)
                adjusted = _fit_length(node, lo, hi)
                if adjusted is not None:
                    body = rx.emit(adjusted)
                    return None if body is None else (body, True)
        body = rx.search_body(pattern)
        return None if body is None else (body, not lo and hi is None)

    # numbers

    def _number(self, flat: Flat, pointer: str, integer: bool) -> str | None:
        if flat.get(_FRACTIONAL) and integer:
            return None
        regex = self._number_regex(flat, pointer, integer)
        if regex is None:
            return None
        if flat.get(_FRACTIONAL):
            # The numbers that are no integers, as a set exact; spelled without exponent, or
            # with a negative one after a mantissa ending in a non-zero digit (Python's
            # spellings): an integral value's spellings compare an unbounded exponent with a
            # count of digits.
            fractional = _FRACTIONAL_DRAFT4 if not self.integer_tail else _FRACTIONAL_NUMBER
            regex = fractional if regex == NUMBER else intersected(regex, fractional)
        if flat.get(_NOT_NUMBERS):
            # Numbers outside a set: each value has infinitely many spellings (10e-1 is 1), but
            # only those of _SPELLED_NUMBER here, which a difference of automata removes exactly.
            regex = _SPELLED_NUMBER if regex == NUMBER else intersected(regex, _SPELLED_NUMBER)
            regex = subtracted(regex, "(?:" + "|".join(_number_spellings(v) for v in flat[_NOT_NUMBERS]) + ")")
        return self._terminal(regex)

    def _number_regex(self, flat: Flat, pointer: str, integer: bool) -> str | None:
        lo, lo_incl, hi, hi_incl = None, True, None, True
        for key in ("minimum", "exclusiveMinimum"):
            if key in flat:
                v = _fraction(flat[key])
                if lo is None or v > lo or (v == lo and key == "exclusiveMinimum"):
                    lo, lo_incl = v, key == "minimum"
        for key in ("maximum", "exclusiveMaximum"):
            if key in flat:
                v = _fraction(flat[key])
                if hi is None or v < hi or (v == hi and key == "exclusiveMaximum"):
                    hi, hi_incl = v, key == "maximum"
        step = _fraction(flat["multipleOf"]) if "multipleOf" in flat else None
        tail = self.integer_tail
        if step == 1 and not integer:
            # the multiples of 1 are the integral numbers, "1.0" included in every dialect
            integer, tail = True, ZERO_FRACTION
        if integer:
            ilo = None if lo is None else (math.ceil(lo) if lo_incl or lo.denominator != 1 else int(lo) + 1)
            ihi = None if hi is None else (math.floor(hi) if hi_incl or hi.denominator != 1 else int(hi) - 1)
            if step is not None and (1 / step).denominator == 1:
                step = None  # every integer is a multiple of 1/n
            if step is not None:
                if ilo is not None and ihi is not None and ihi - ilo <= 256 * step:
                    values = [v for v in range(ilo, ihi + 1) if (v / step).denominator == 1]
                    return _alternatives_regex([("-?0" if v == 0 else rx.literal(str(v))) + tail for v in values])
                bounds = None
                if ilo is not None or ihi is not None:
                    bounds = int_regex(ilo, ihi)
                    if bounds is None:
                        return None
                    bounds += tail
                stepped = _integer_multiples(step, tail)
                if stepped is None:
                    self.notes.add(pointer, "multipleOf", f"multiples of {flat['multipleOf']}")
                    return bounds or INTEGER + tail
                # the bounds and the last digits deciding the multiples: a product of automata
                return stepped if bounds is None else intersected(stepped, bounds)
            body = int_regex(ilo, ihi)
            return None if body is None else body + tail
        if step is not None:
            if lo is not None and hi is not None and (hi - lo) / step <= 256:
                first = math.ceil(lo / step)
                multiples = [k * step for k in range(first, math.floor(hi / step) + 1)]
                multiples = [v for v in multiples if (v > lo or lo_incl) and (v < hi or hi_incl)]
                return _alternatives_regex([_fraction_literal(v) for v in multiples])
            body = multiple_regex(step, False)
            if body is None and step.denominator == 1:
                body = _integer_multiples(step, ZERO_FRACTION)
            if body is None:
                self.notes.add(pointer, "multipleOf", f"multiples of {flat['multipleOf']}")
            elif lo is None and hi is None:
                return body
            else:
                unstepped = {k: v for k, v in flat.items() if k != "multipleOf"}
                bounds = self._number_regex(unstepped, pointer, False)
                return None if bounds is None else intersected(body, bounds)
        if lo is None and hi is None:
            return NUMBER
        try:
            body = decimal_regex(lo, lo_incl, hi, hi_incl)
        except ValueError:
            self.notes.add(pointer, "minimum" if lo is not None else "maximum", "bound is not a short decimal")
            return NUMBER
        exponent = exponent_regex(lo, lo_incl, hi, hi_incl)
        return _alternatives_regex([b for b in (body, exponent) if b is not None])

    def _alternatives_terminal(self, bodies: list[str]) -> str | None:
        if not bodies:
            return None
        return self._terminal(bodies[0] if len(bodies) == 1 else "(?:" + "|".join(bodies) + ")")

    # objects

    def _object(self, flat: Flat, pointer: str) -> str | None:
        props: dict[str, Any] = dict(flat.get("properties", {}))
        required = list(dict.fromkeys(flat.get("required", [])))
        patterns: dict[str, Any] = flat.get("patternProperties", {})
        names_schema = flat.get("propertyNames", True)
        min_p = int(flat.get("minProperties", 0))
        max_p = flat.get("maxProperties")
        max_p = None if max_p is None else int(max_p)
        for name in required:
            if name not in props:
                props[name] = self._property_schema(flat, name)
        names_check = None if _is_true(names_schema) else self._validator.evolve(schema=names_schema)
        members: list[tuple[str, bool]] = []  # (rule for "key": value, required)
        for name, sub in props.items():
            here = f"{pointer}/properties/{pointer_token(name)}"
            matched = [s for p, s in patterns.items() if self._search(p, name)]
            schema = sub
            for m in matched:
                schema = self._combine(schema, m)
            if names_check is not None and not names_check.is_valid(name):
                schema = False
            sym = self.symbol(schema, here)
            if sym is None:
                if name in required:
                    return None
                continue
            member = self._rule()
            self._define(member, [self._member(self._key(name), sym)])
            members.append((member, name in required))
        n_required = sum(1 for m in members if m[1])
        if max_p is not None and n_required > max_p:
            return None
        extras = self._extras(flat, list(props), pointer)
        if max_p is not None and max_p == n_required:
            # nothing but the required members fits: the list need not weigh the others
            members = [m for m in members if m[1]]
            extras = None
        alts = []
        if (extras or len(members) >= max(min_p, 1)) and (max_p is None or max_p >= max(min_p, 1)):
            alts.append(self._brackets("{", [self._member_list(members, extras, min_p, max_p)], "}"))
        if n_required == 0 and min_p == 0:
            alts.append(self._brackets("{", [], "}"))
        if not alts:
            return None
        obj = self._rule()
        self._define(obj, alts)
        return obj

    def _member_list(self, members: list[tuple[str, bool]], extras: str | None, min_p: int, max_p: int | None) -> str:
        """A rule for a non-empty member list (declared ``members``, each a rule and whether it
        is required, and ``extras`` for one additional member) that the parser tracks: declared
        members in any order, each at most once, the required ones all there, additional
        members anywhere (repeats allowed: their keys are not told apart), ``min_p`` to
        ``max_p`` members in all (``ItemSet``). Distinct array items are such a list too.

        A grammar alone would need a state per subset of the members written, and every edge
        between them becomes parser states; the list is one left-recursive rule instead, so the
        parser stack stays one entry deep however many members there are."""
        items = [m for m, _ in members] + ([extras] if extras else [])
        name = self._rule()
        self._define(name, [[item] for item in items] + [[name, *self._sep(True), item] for item in items])
        if not members and min_p == 0 and max_p is None:
            return name  # additional members only, uncounted: nothing to track
        self.item_sets.append(
            ItemSet(
                rule=name,
                tracked=tuple(m for m, _ in members),
                required=tuple(m for m, required in members if required),
                untracked=(extras,) if extras else (),
                min_items=min_p,
                max_items=max_p,
            )
        )
        return name

    def _left_linear(
        self,
        start: Any,
        edges: Callable[[Any], list[tuple[list[str], Any]]],
        accepting: Callable[[Any], bool],
    ) -> str:
        """A rule for the non-empty symbol strings a finite machine reads from ``start`` to an
        accepting state. ``edges(state)`` gives (symbols, next state); edges without symbols
        form no cycle, and an edge with symbols never leads back to a state reached by reading
        nothing (the machines here count what they read).

        Written left-recursively, one rule per state for "read up to here": the parser stack
        then stays one entry deep however long the list is. Right-recursive lists grow it by an
        entry per item, and every item would be a new nesting context for the mask caches. States
        reached by reading nothing get no rule (an empty rule first would make every symbol that
        can start the list a look-ahead of its own reduction, splitting the reduce classes)."""
        empty = {start}
        names: dict[Any, str] = {}
        incoming: dict[Any, list[list[str]]] = {}
        pending = [start]
        while pending:
            state = pending.pop()
            for symbols, nxt in edges(state):
                if state in empty and not symbols:
                    if nxt not in empty:
                        empty.add(nxt)
                        pending.append(nxt)
                    continue
                assert nxt not in empty, "a list machine returned to a state reached by reading nothing"
                if nxt not in names:
                    names[nxt] = self._rule()
                    incoming[nxt] = []
                    pending.append(nxt)
                incoming[nxt].append(symbols if state in empty else [names[state], *symbols])
        for state, name in names.items():
            self._define(name, incoming[state])
        whole = self._rule()
        self._define(whole, [[name] for state, name in names.items() if accepting(state)])
        return whole

    def _extras(self, flat: Flat, declared: list[str], pointer: str) -> str | None:
        """A rule for one additional member ("key": value), or None when none may appear."""
        patterns: dict[str, Any] = flat.get("patternProperties", {})
        additional = flat.get("additionalProperties", True)
        names_schema = flat.get("propertyNames", True)
        alts: list[list[str]] = []
        if len(patterns) == 1 and _matches_everything(next(iter(patterns))):
            # every key matches: declared ones took the pattern's schema in _object
            pat, sub = next(iter(patterns.items()))
            value = self.symbol(sub, f"{pointer}/patternProperties/{pointer_token(pat)}")
            key = self._key_terminal(names_schema, declared, pointer) if value else None
            return self._extras_rule([self._member(key, value)] if key and value else [])
        bodies: dict[str, str] = {}  # pattern -> body of the keys it matches
        if patterns:
            if not _is_true(names_schema):
                self.notes.add(pointer, "propertyNames", "together with patternProperties")
            refused: list[str] = []  # words a lone ^(?!(w1|w2...)$)Y pattern leaves out
            for pat in patterns:
                try:
                    body = rx.search_body(pat)
                except rx.RegexUnsupported as exc:
                    # the keys of one pattern and no others are one terminal: words can leave it
                    found = _lookahead_words(pat) if len(patterns) == 1 and additional is False else None
                    if found is None:
                        self.notes.add(f"{pointer}/patternProperties/{pointer_token(pat)}", "patternProperties", f"{pat!r}: {exc}")
                        continue
                    body, refused = found
                if body is not None:
                    bodies[pat] = body
            for key_regex, chosen, schema, here in self._pattern_keys(patterns, bodies, pointer):
                value = self.symbol(schema, here)
                # declared names took the patterns' schemas in _object: they are no additional keys
                taken = [n for n in declared if any(self._search(p, n) for p in chosen)] + refused
                if taken:
                    key_regex = except_words(['"' + rx.canonical(n) + '"' for n in taken]) + key_regex
                if value:
                    alts.append(self._member(self._terminal(key_regex), value))
        if additional is False:
            return self._extras_rule(alts)
        value = self.symbol(additional, f"{pointer}/additionalProperties")
        if value is None:
            return self._extras_rule(alts)
        if bodies:
            # keys outside every pattern
            outside = subtracted(_other_string(declared), '"(?:' + "|".join(bodies.values()) + ')"')
            alts.append(self._member(self._terminal(outside), value))
            return self._extras_rule(alts)
        key = self._key_terminal(names_schema, declared, pointer)
        if key is not None:
            alts.append(self._member(key, value))
        return self._extras_rule(alts)

    def _pattern_keys(
        self, patterns: dict[str, Any], bodies: dict[str, str], pointer: str
    ) -> list[tuple[str, tuple[str, ...], Any, str]]:
        """(key regex, the patterns it matches, value schema, pointer) for the keys the patterns
        match: one entry when
        the patterns share their schema, else one per set of patterns a key may match (the
        schemas of all of them apply), each key matching exactly one entry."""
        where = {pat: f"{pointer}/patternProperties/{pointer_token(pat)}" for pat in bodies}
        if len({_canon(patterns[p]) for p in bodies}) <= 1:
            return [('"(?:' + "|".join(bodies.values()) + ')"', tuple(bodies), patterns[p], where[p]) for p in list(bodies)[:1]]
        alone = self._lone_words(list(bodies))
        if alone:
            # keys matching only their own pattern, one word each: no set of patterns to form
            rest = {p: b for p, b in bodies.items() if p not in alone}
            words: list[tuple[str, tuple[str, ...], Any, str]] = [
                ('"' + bodies[p] + '"', (p,), patterns[p], where[p]) for p in alone
            ]
            return words + (self._pattern_keys(patterns, rest, pointer) if rest else [])
        if len(bodies) > _MAX_OVERLAPPING_PATTERNS:
            self.notes.add(pointer, "patternProperties", "more than 4 patterns with different schemas may overlap")
            return [('"' + bodies[p] + '"', (p,), patterns[p], where[p]) for p in bodies]
        out = []
        names = list(bodies)
        for size in range(1, len(names) + 1):
            for chosen in itertools.combinations(names, size):
                regex = '"' + bodies[chosen[0]] + '"'
                for p in chosen[1:]:
                    regex = intersected(regex, '"' + bodies[p] + '"')
                others = [bodies[p] for p in names if p not in chosen]
                if others:
                    regex = subtracted(regex, '"(?:' + "|".join(others) + ')"')
                schema: Any = True
                for p in chosen:
                    schema = self._combine(schema, patterns[p])
                out.append((regex, chosen, schema, where[chosen[0]]))
        return out

    def _lone_words(self, patterns: list[str]) -> list[str]:
        """The patterns that match one word (``^name$``) which no other pattern matches (as
        Python's ``re`` sees it: on printable ASCII as ECMA-262 does)."""
        words: dict[str, str] = {}
        for pat in patterns:
            try:
                node = rx.anchored_node(pat)
            except rx.RegexUnsupported:
                continue
            word = _single_word(node) if node is not None else None
            if word is not None:
                words[pat] = word
        lone = []
        for pat, word in words.items():
            others = [q for q in patterns if q != pat]
            if all(_python_regex(q) and not self._search(q, word) for q in others):
                lone.append(pat)
        return lone

    def _extras_rule(self, alts: list[list[str]]) -> str | None:
        if not alts:
            return None
        name = self._rule()
        self._define(name, alts)
        return name

    def _key_terminal(self, names_schema: Any, declared: list[str], pointer: str) -> str | None:
        if _is_true(names_schema):
            return self._terminal(_other_string(declared))
        if names_schema is False:
            return None
        flat_names = self.flatten(names_schema, f"{pointer}/propertyNames", 1)
        check = self._validator.evolve(schema=names_schema)
        clash = [n for n in declared if check.is_valid(n)]
        if len(flat_names) != 1 or clash:
            if clash:
                self.notes.add(pointer, "propertyNames", "additional keys could repeat a declared name")
            else:
                self.notes.add(pointer, "propertyNames", "alternatives in propertyNames")
            return self._terminal(_other_string(declared))
        names_flat = dict(flat_names[0])
        names_flat["type"] = ["string"]
        if "enum" in names_flat:
            keys = [v for v in names_flat["enum"] if isinstance(v, str) and check.is_valid(v)]
            return self._alternatives_terminal(['"' + rx.literal(rx.canonical(k)) + '"' for k in keys])
        return self._string(names_flat, f"{pointer}/propertyNames")

    # arrays

    def _array(self, flat: Flat, pointer: str) -> str | None:
        prefix = list(flat.get("prefixItems", []))
        items = flat.get("items", True)
        min_i = int(flat.get("minItems", 0))
        max_i = flat.get("maxItems")
        max_i = None if max_i is None else int(max_i)
        contains = flat.get("contains")
        min_c = int(flat.get("minContains", 1)) if contains is not None else 0
        max_c = flat.get("maxContains") if contains is not None else None
        if contains is not None and "minContains" not in flat and max_c is not None and int(max_c) < 1:
            min_c = 1
        if items is False or _is_true(items) is False and self.symbol(items, f"{pointer}/items") is None:
            max_i = len(prefix) if max_i is None else min(max_i, len(prefix))
        if max_i is not None and max_i < min_i:
            return None
        if _MORE_CONTAINS in flat:
            if flat.get("uniqueItems"):
                self.notes.add(pointer, "uniqueItems", "distinct items beside several contains")
            triples = [*([[contains, min_c, max_c]] if contains is not None else []), *flat[_MORE_CONTAINS]]
            return self._contains_array(prefix, items, triples, min_i, max_i, pointer)
        if flat.get("uniqueItems"):
            beyond = items if max_i is None or max_i > len(prefix) else False  # items unused past maxItems
            domains = self._finite_domains(prefix, beyond, pointer) if contains is None else None
            if domains is not None:
                return self._distinct_array(domains, min_i, max_i, pointer)
            self.notes.add(pointer, "uniqueItems", "distinct items of an infinite domain cannot be expressed by a grammar")
        # positions beyond the prefix and the counts behave alike: cap them
        pos_cap = max(len(prefix), min_i, max_i if max_i is not None else 0, 1)
        c_cap = max(min_c, (int(max_c) + 1) if max_c is not None else 0)
        if (pos_cap + 2) * (c_cap + 1) > _MAX_COUNT_STATES:
            raise CompileBudgetError(f"array at #{pointer} needs too many counting states")
        use_negation = False
        negated: Any = False
        if contains is not None and max_c is not None:
            try:
                negs = self.negate(contains, f"{pointer}/contains", 1)
            except _Unexpressible as exc:
                self.notes.add(pointer, "maxContains", exc.why)
                max_c = None
                c_cap = min_c
            else:
                use_negation = True
                negated = {"anyOf": negs} if negs else False

        # An item's symbols depend on its position only within the prefix: built once per
        # position, not once per (position, count) state (vercel: 6,541 conversions of the same
        # combined schemas, a third of its compile).
        item_symbols: dict[int, tuple[str | None, str | None]] = {}

        def symbols_at(p: int) -> tuple[str | None, str | None]:
            slot = p if p < len(prefix) else -1
            found = item_symbols.get(slot)
            if found is None:
                here = f"{pointer}/prefixItems/{p}" if p < len(prefix) else f"{pointer}/items"
                base = prefix[p] if p < len(prefix) else items
                if contains is None:
                    found = (None, self.symbol(base, here))
                else:
                    miss_schema = self._combine(base, negated) if use_negation else base
                    found = (self.symbol(self._combine(base, contains), here), self.symbol(miss_schema, here))
                item_symbols[slot] = found
            return found

        def edges(state: tuple[int, int]) -> list[tuple[list[str], tuple[int, int]]]:
            p, c = state
            if max_i is not None and p >= max_i:
                return []
            out: list[tuple[list[str], tuple[int, int]]] = []
            sep = self._sep(p > 0)
            after = min(p + 1, pos_cap)
            hit, miss = symbols_at(p)
            if hit and (max_c is None or c < int(max_c)):
                out.append((sep + [hit], (after, min(c + 1, c_cap))))
            if miss:
                out.append((sep + [miss], (after, c)))
            return out

        start = self._left_linear((0, 0), edges, lambda state: 0 < state[0] >= min_i and state[1] >= min_c)
        arr = self._rule()
        alts = [self._brackets("[", [start], "]")]
        if min_i == 0 and min_c == 0:
            alts.append(self._brackets("[", [], "]"))
        self._define(arr, alts)
        return arr

    def _contains_array(
        self, prefix: list[Any], items: Any, triples: list[list[Any]], min_i: int, max_i: int | None, pointer: str
    ) -> str | None:
        """Arrays under several ``contains`` (merged by ``allOf``), each with at least its
        ``minContains`` matches: an item takes any set of them (every set that holds is one
        edge), a counter per ``contains`` up to its minimum. A ``maxContains`` among them would
        need each one's negation beside the others: refused."""
        if any(mx is not None for _, _, mx in triples):
            self.notes.add(pointer, "maxContains", "a maxContains beside another contains")
        if len(triples) > _MAX_CONTAINS_SCHEMAS:
            raise CompileBudgetError(f"array at #{pointer} has more than {_MAX_CONTAINS_SCHEMAS} contains schemas")
        mins = tuple(int(mn) for _, mn, _ in triples)
        pos_cap = max(len(prefix), min_i, max_i if max_i is not None else 0, 1)
        if (pos_cap + 2) * math.prod(m + 1 for m in mins) > _MAX_COUNT_STATES:
            raise CompileBudgetError(f"array at #{pointer} needs too many counting states")

        def edges(state: tuple[int, tuple[int, ...]]) -> list[tuple[list[str], tuple[int, tuple[int, ...]]]]:
            p, counts = state
            if max_i is not None and p >= max_i:
                return []
            here = f"{pointer}/prefixItems/{p}" if p < len(prefix) else f"{pointer}/items"
            base = prefix[p] if p < len(prefix) else items
            out = []
            for size in range(len(triples) + 1):
                for chosen in itertools.combinations(range(len(triples)), size):
                    schema = base
                    for k in chosen:
                        schema = self._combine(schema, triples[k][0])
                    sym = self.symbol(schema, here)
                    if sym:
                        after = tuple(min(c + (k in chosen), mins[k]) for k, c in enumerate(counts))
                        out.append((self._sep(p > 0) + [sym], (min(p + 1, pos_cap), after)))
            return out

        def accepting(state: tuple[int, tuple[int, ...]]) -> bool:
            return 0 < state[0] >= min_i and state[1] == mins

        start = self._left_linear((0, tuple(0 for _ in mins)), edges, accepting)
        arr = self._rule()
        alts = [self._brackets("[", [start], "]")]
        if min_i == 0 and not any(mins):
            alts.append(self._brackets("[", [], "]"))
        self._define(arr, alts)
        return arr

    def _finite_domains(self, prefix: list[Any], items: Any, pointer: str) -> list[list[Any]] | None:
        """The values each prefix position and then ``items`` admit (the last list), each list
        without two equal values; None when one of them is infinite."""
        out = []
        for i, schema in enumerate([*prefix, items]):
            here = f"{pointer}/prefixItems/{i}" if i < len(prefix) else f"{pointer}/items"
            # one domain of scalars is a tracked list (``_tracked_array``), which takes many
            values = self._finite_domain(schema, here, _MAX_TRACKED_DOMAIN if not prefix else _MAX_DOMAIN)
            if values is None:
                return None
            if len(values) > _MAX_DOMAIN and any(isinstance(v, (dict, list)) for v in values):
                return None
            out.append(values)
        return out

    def _finite_domain(self, schema: Any, pointer: str, limit: int) -> list[Any] | None:
        """Every value ``schema`` admits, when its flat schemas are ``enum``s, booleans, null or
        bounded integer ranges (at most ``limit`` candidates); None otherwise."""
        if schema is False:
            return []
        flats = [_untracked(f) for f in self.flatten(schema, pointer, 1)]
        candidates: list[Any] = []
        checks = []
        for flat in flats:
            more = _flat_candidates(flat)
            checkable = _checkable(flat)
            # jsonschema skips the converter's own keywords: one left inside would widen the check
            if more is None or len(candidates) + len(more) > limit or "\\u0000" in json.dumps(checkable):
                return None
            candidates += more
            excluded = {_equality_key(v) for v in flat.get(_NOT_IN, ())}
            checks.append((self._validator.evolve(schema=checkable), excluded))
        seen: set[Any] = set()
        values = []
        for value in candidates:
            key = _equality_key(value)
            if key not in seen and any(key not in out and c.is_valid(value) for c, out in checks):
                seen.add(key)
                values.append(value)
        return values

    def _distinct_array(self, domains: list[list[Any]], min_i: int, max_i: int | None, pointer: str) -> str | None:
        """Arrays of pairwise distinct items (``uniqueItems``) over finite domains: one domain of
        strings, numbers, booleans and null is a list the parser tracks (``_tracked_array``);
        otherwise a state per set of values written (its size is the position), an edge per
        value not written yet."""
        if len(domains) == 1 and not any(isinstance(v, (dict, list)) for v in domains[0]):
            return self._tracked_array(domains[0], min_i, max_i)
        everything = {_equality_key(v) for values in domains for v in values}
        longest = len(everything) if max_i is None else min(max_i, len(everything))
        states = sum(math.comb(len(everything), k) for k in range(longest + 1))
        if states > _MAX_DISTINCT_STATES:
            raise CompileBudgetError(
                f"array at #{pointer}: distinct items of {len(everything)} values need {states} states"
            )
        if longest < min_i:
            return None

        def edges(written: frozenset[Any]) -> list[tuple[list[str], frozenset[Any]]]:
            p = len(written)
            if p >= longest:
                return []
            values = domains[min(p, len(domains) - 1)]
            out = []
            for value in values:
                key = _equality_key(value)
                if key not in written:
                    out.append((self._sep(p > 0) + [self.literal(value)], written | {key}))
            return out

        start = self._left_linear(frozenset(), edges, lambda written: len(written) >= max(min_i, 1))
        arr = self._rule()
        alts = [self._brackets("[", [start], "]")]
        if min_i == 0:
            alts.append(self._brackets("[", [], "]"))
        self._define(arr, alts)
        return arr

    def _tracked_array(self, values: list[Any], min_i: int, max_i: int | None) -> str | None:
        """Arrays of distinct scalar ``values``: each value an item of a tracked list (``ItemSet``),
        so none comes twice, however many values (their first terminals differ, as a tracked
        list needs; objects and arrays all start with a bracket)."""
        if min_i > len(values):
            return None
        alts = []
        if values and (max_i is None or max_i > 0):
            items = []
            for value in values:
                item = self._rule()
                self._define(item, [[self.literal(value)]])
                items.append((item, False))
            alts.append(self._brackets("[", [self._member_list(items, None, min_i, max_i)], "]"))
        if min_i == 0:
            alts.append(self._brackets("[", [], "]"))
        if not alts:
            return None
        arr = self._rule()
        self._define(arr, alts)
        return arr

    # any value

    def any_value(self) -> str:
        if self._any is None:
            p = self.prefix
            value, obj, arr, member = f"{p}value", f"{p}object", f"{p}array", f"{p}member"
            self._any = value
            string = self._terminal(_STRING)
            number = self._terminal(NUMBER)
            self.rules[value] = [[obj], [arr], [string], [number], ['"true"'], ['"false"'], ['"null"']]
            self.rules[member] = [self._member(string, value)]
            more_o, more_a = f"{p}members", f"{p}elements"
            # each further member brings its own leading separator: no whitespace is ambiguous;
            # left-recursive lists keep the parser stack flat however long they are
            self.rules[more_o] = [[], [more_o, *self._sep(True), member]]
            self.rules[obj] = [self._brackets("{", [], "}"), self._brackets("{", [member, more_o], "}")]
            self.rules[more_a] = [[], [more_a, *self._sep(True), value]]
            self.rules[arr] = [self._brackets("[", [], "]"), self._brackets("[", [value, more_a], "]")]
        return self._any


_STRING = '"(?:[^"\\\\\\x00-\\x1f]|\\\\["\\\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4})*"'


_NOT_SCHEMAS = {"enum", "const", "default", "examples", "example"}


def absolute_refs(root: Any) -> Any:
    """A copy of ``root`` whose ``$ref``s are JSON pointers from the root ("#/..."), resolving
    ``$id`` base URIs and ``$anchor``s; references leaving the document are kept as they are."""
    resources = Names()  # absolute URI without fragment -> pointer
    anchors = Names()  # absolute URI with anchor fragment -> pointer

    def index(node: Any, base: str, pointer: str, real: bool, in_map: bool = False) -> None:
        if isinstance(node, dict) and in_map:  # names -> schemas
            for k, v in node.items():
                index(v, base, f"{pointer}/{pointer_token(k)}", real)
        elif isinstance(node, dict):
            for key in ("$id", "id"):
                value = node.get(key)
                if isinstance(value, str) and not value.startswith("#"):
                    base = join(base, value).split("#")[0]
                    resources.register(base, pointer, real)
            for key in ("$anchor", "$dynamicAnchor"):
                value = node.get(key)
                if isinstance(value, str):
                    anchors.register(f"{base}#{value}", pointer, real)
            value = node.get("id", node.get("$id"))
            if isinstance(value, str) and value.startswith("#") and len(value) > 1:
                anchors.register(f"{base}{value}", pointer, real)  # draft-04/06 location ids
            for k, v, schema, is_map in schema_children(node, real):
                index(v, base, f"{pointer}/{pointer_token(k)}", schema, is_map)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                index(v, base, f"{pointer}/{i}", real)

    def rewrite(node: Any, base: str) -> Any:
        if isinstance(node, dict):
            for key in ("$id", "id"):
                value = node.get(key)
                if isinstance(value, str) and not value.startswith("#"):
                    base = join(base, value).split("#")[0]
            out = {}
            for k, v in node.items():
                if k == "$ref" and isinstance(v, str):
                    out[k] = _rewrite_ref(join(base, v), base)  # join: URN bases too
                elif k in _NOT_SCHEMAS:
                    out[k] = v
                else:
                    out[k] = rewrite(v, base)
            return out
        if isinstance(node, list):
            return [rewrite(v, base) for v in node]
        return node

    def _rewrite_ref(target: str, base: str) -> str:
        uri, _, fragment = target.partition("#")
        if uri not in resources:
            return target
        if not fragment or fragment.startswith("/"):
            return "#" + resources[uri] + fragment
        hit = anchors.get(f"{uri}#{fragment}")
        return "#" + hit if hit is not None else target

    root_base = ""
    if isinstance(root, dict):
        value = root.get("$id", root.get("id"))
        root_base = value.split("#")[0] if isinstance(value, str) else ""
    root_base = root_base or "https://onrails.invalid/schema.json"
    resources.register(root_base, "", True)
    index(root, root_base, "", True)
    return rewrite(root, root_base)


@functools.cache
def _format_regex(name: str) -> "re.Pattern[str]":
    return re.compile('"' + FORMATS[name][0] + '"')


def _has_format(name: str, value: Any) -> bool:
    return not isinstance(value, str) or _format_regex(name).fullmatch('"' + rx.canonical(value) + '"') is not None


# Literal values (enum, const, property names) are checked against the formats the grammar
# asserts, in the grammar's own terms: jsonschema's checker skips the formats whose optional
# libraries are not installed, and asserts some the grammar keeps as annotations.
_FORMAT_CHECKER = jsonschema.FormatChecker(formats=())
for _name in FORMATS:
    _FORMAT_CHECKER.checks(_name)(functools.partial(_has_format, _name))


def _deferred(flat: Flat, pointer: str, keyword: str, why: str, schema: Any) -> Flat:
    """``flat`` and ``schema``, which has no grammar: only a finite set of values (an ``enum``
    or ``const`` merged in later) can be checked against it, else it is refused then."""
    return {**flat, _DEFERRED: [*flat.get(_DEFERRED, ()), [pointer, keyword, why, schema]]}


def _evaluated_by(own: Flat) -> dict[str, Any]:
    """What a flat's own keywords evaluate (JSON: flats are compared by their canonical text)."""
    return {
        "names": sorted(own.get("properties", {})),
        "patterns": sorted(own.get("patternProperties", {})),
        "properties_all": "additionalProperties" in own,  # own unevaluated*: once applied
        "prefix": len(own.get("prefixItems", [])),
        "items_all": "items" in own,
        "contains": [own["contains"]] if "contains" in own else [],
    }


def _evaluated_union(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {
        "names": sorted({*a["names"], *b["names"]}),
        "patterns": sorted({*a["patterns"], *b["patterns"]}),
        "properties_all": a["properties_all"] or b["properties_all"],
        "prefix": max(a["prefix"], b["prefix"]),
        "items_all": a["items_all"] or b["items_all"],
        "contains": [*a["contains"], *(c for c in b["contains"] if c not in a["contains"])],
    }


def _flat_candidates(flat: Flat) -> list[Any] | None:
    """A superset of the values a flat schema admits when it is finite and small, else None."""
    if "enum" in flat:
        return list(flat["enum"])
    types = _types_of(flat)
    out: list[Any] = []
    if "boolean" in types:
        out += [True, False]
    if "null" in types:
        out.append(None)
    rest = types - {"boolean", "null"}
    if rest == {"integer"}:
        low = max((math.ceil(_fraction(flat[k])) for k in ("minimum", "exclusiveMinimum") if k in flat), default=None)
        high = min((math.floor(_fraction(flat[k])) for k in ("maximum", "exclusiveMaximum") if k in flat), default=None)
        if low is None or high is None or high - low >= _MAX_DOMAIN:
            return None
        out += list(range(low, high + 1))
    elif rest:
        return None
    return out


def _equality_key(value: Any) -> Any:
    """A hashable key equal for JSON values JSON Schema calls equal (1 and 1.0; objects in any
    key order; true is not 1)."""
    if value is None or isinstance(value, (bool, str)):
        return (type(value).__name__, value)
    if isinstance(value, (int, float)):
        return ("number", _fraction(value))
    if isinstance(value, list):
        return ("array", tuple(_equality_key(v) for v in value))
    return ("object", frozenset((k, _equality_key(v)) for k, v in value.items()))


def _contains_aside(flat: Flat) -> Flat:
    """``flat`` with its contains, minContains and maxContains moved to ``_MORE_CONTAINS``."""
    triple = [flat["contains"], flat.get("minContains", 1), flat.get("maxContains")]
    out = {k: v for k, v in flat.items() if k not in ("contains", "minContains", "maxContains")}
    out[_MORE_CONTAINS] = [triple, *(t for t in flat.get(_MORE_CONTAINS, ()) if t != triple)]
    return out


def _untracked(flat: Flat) -> Flat:
    """A flat without its evaluation record (for the grammar, and before a negation)."""
    if _EVALUATED not in flat:
        return flat
    return {k: v for k, v in flat.items() if k != _EVALUATED}


def _checkable(flat: Flat) -> Flat:
    """A flat schema with its internal keywords spelled as JSON Schema, for jsonschema: at the
    top (where callers leave out the strings outside a set themselves) and inside subschemas
    (negations put them there, e.g. a property whose value is outside a set)."""
    out = {k: _spelled(v) if k not in _LITERAL_KEYWORDS else v for k, v in flat.items() if k not in _HIDDEN}
    extra = [{"pattern": p} for p in flat.get(_PATTERNS, ())]
    extra += [{"not": {"type": "string", "pattern": p}} for p in flat.get(_NOT_PATTERNS, ())]
    extra += [{"not": {"type": "string", "format": f}} for f in flat.get(_NOT_FORMATS, ())]
    extra += [{"not": {"type": "integer"}}] if flat.get(_FRACTIONAL) else []
    extra += [{"not": {"enum": list(flat[_NOT_NUMBERS])}}] if flat.get(_NOT_NUMBERS) else []
    extra += [_spelled(schema) for _, _, _, schema in flat.get(_DEFERRED, ())]
    extra += [
        {"contains": _spelled(c), "minContains": mn, **({"maxContains": mx} if mx is not None else {})}
        for c, mn, mx in flat.get(_MORE_CONTAINS, ())
    ]
    if extra:
        out["allOf"] = [*(out.get("allOf") or ()), *extra]
    return out


_HIDDEN = (*_INTERNAL, _DEFERRED, _FRACTIONAL, _NOT_NUMBERS, _MORE_CONTAINS)
_LITERAL_KEYWORDS = ("enum", "const")


def _spelled(node: Any) -> Any:
    """Subschemas with every internal keyword spelled as JSON Schema (``_checkable``)."""
    if isinstance(node, list):
        return [_spelled(v) for v in node]
    if not isinstance(node, dict):
        return node
    if any(k in node for k in _HIDDEN):
        inner = _checkable(node)
        if node.get(_NOT_IN):
            inner.setdefault("allOf", []).append({"not": {"type": "string", "enum": list(node[_NOT_IN])}})
        return inner
    return {k: v if k in _LITERAL_KEYWORDS else _spelled(v) for k, v in node.items()}


def _matches_everything(pattern: str) -> bool:
    """Whether a search for ``pattern`` succeeds in every string (e.g. "", ".*", "^")."""
    try:
        return rx.search_body(pattern) == "(?:" + rx.ANY_CHAR + ")*"
    except rx.RegexUnsupported:
        return False


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _number_literal(value: "int | float") -> str:
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaError(f"{value} is not a JSON number")
    return _fraction_literal(_fraction(value))


def _fraction_literal(value: Fraction) -> str:
    """The spellings without exponent of one number (trailing zeros and -0 allowed)."""
    if value.denominator == 1:
        n = int(value)
        body = rx.literal(str(n)) + ZERO_FRACTION
        return "-?0" + ZERO_FRACTION if n == 0 else body
    sign = "-" if value < 0 else ""
    try:
        whole, digits = split_decimal(abs(value), max_digits=60)
    except ValueError as exc:
        raise SchemaError(str(exc)) from exc
    return rx.literal(f"{sign}{whole}.{digits}") + "0*"


def _leading_lookahead(pattern: str) -> tuple[str, str] | None:
    """``(^Y, ^X)`` for a pattern ``^(?!X)Y`` (one alternative): it matches the strings
    matching the first and not the second, a difference of automata. None for other patterns."""
    if not pattern.startswith("^(?!"):
        return None
    depth, i, escaped, in_class = 1, 4, False, False
    while i < len(pattern) and depth:
        c = pattern[i]
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c in "()":
            depth += 1 if c == "(" else -1
        i += 1
    if depth:
        return None
    rest, ahead = pattern[i:], pattern[4 : i - 1]
    try:
        if isinstance(rx.parse(rest), rx.Alt):
            return None  # ^(?!X)A|B: the lookahead binds to A only
        # a group only around alternatives: anchors at the edges of X stay edge anchors
        return "^" + rest, "^" + (ahead if not isinstance(rx.parse(ahead), rx.Alt) else f"(?:{ahead})")
    except rx.RegexUnsupported:
        return None


def _lookahead_words(pattern: str) -> tuple[str, list[str]] | None:
    """For ``^(?!X$)Y`` where X matches finitely many words: the body of the strings ``^Y``
    finds and those words, which the pattern leaves out; else None."""
    split = _leading_lookahead(pattern)
    if split is None:
        return None
    try:
        node = rx.anchored_node(split[1])
        words = _finite_words(node) if node is not None else None
        body = rx.search_body(split[0]) if words is not None else None
    except rx.RegexUnsupported:
        return None
    return None if body is None or words is None else (body, words)


_MAX_WORDS = 4096


def _finite_words(node: Any) -> list[str] | None:
    """Every string the AST matches, when there are at most ``_MAX_WORDS`` (over sets of at
    most 64 characters); else None."""
    if isinstance(node, rx.Chars):
        size = sum(hi - lo + 1 for lo, hi in node.ranges)
        return [chr(c) for lo, hi in node.ranges for c in range(lo, hi + 1)] if size <= 64 else None
    if isinstance(node, rx.Alt):
        out: list[str] = []
        for option in node.options:
            words = _finite_words(option)
            if words is None or len(out) + len(words) > _MAX_WORDS:
                return None
            out += words
        return list(dict.fromkeys(out))
    if isinstance(node, rx.Seq):
        parts: list[str] = [""]
        for item in node.items:
            words = _finite_words(item)
            if words is None or len(parts) * len(words) > _MAX_WORDS:
                return None
            parts = [a + b for a in parts for b in words]
        return list(dict.fromkeys(parts))
    if isinstance(node, rx.Repeat) and node.hi is not None:
        return _finite_words(rx.Alt(tuple(rx.Seq((node.node,) * k) for k in range(node.lo, node.hi + 1))))
    return None  # an anchor inside, or unbounded


def _single_word(node: Any) -> str | None:
    """The one string an anchored pattern's AST matches, when it is a sequence of single
    printable ASCII characters (where ECMA-262 and Python regexes agree on what else matches
    it); else None."""
    items = node.items if isinstance(node, rx.Seq) else (node,)
    chars = []
    for item in items:
        if not (isinstance(item, rx.Chars) and len(item.ranges) == 1 and item.ranges[0][0] == item.ranges[0][1]):
            return None
        if not 0x20 <= item.ranges[0][0] <= 0x7E:
            return None
        chars.append(chr(item.ranges[0][0]))
    return "".join(chars)


def _python_regex(pattern: str) -> bool:
    """Whether Python's ``re`` compiles ``pattern`` (so that ``_search`` answers for it)."""
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _integer_multiples(step: Fraction, tail: str) -> str | None:
    """Spellings without exponent of the multiples of ``step`` among the integers, when
    expressible: ``multiple_regex``'s, or for an integral step 3 * p with p dividing a power of
    ten (3, 6, 12, 15, 24, ...) those of p whose digit sum is a multiple of 3 (a product)."""
    body = multiple_regex(step, True, tail)
    if body is not None or step.denominator != 1 or step.numerator % 3 or step.numerator % 9 == 0:
        return body
    rest = multiple_regex(step / 3, True, tail)
    return None if rest is None else intersected(rest, "-?" + _DIGIT_SUM_THIRDS + tail)


# Non-empty digit strings whose digit sum is a multiple of 3: the three-state machine of the sum
# modulo 3 (a digit of [0369] keeps it, [147] adds 1, [258] adds 2), loops through state 0
# spelled out.
_DIGIT_SUM_THIRDS = (
    "(?:[0369]|[147](?:[0369]|[147][0369]*[258])*(?:[258]|[147][0369]*[147])"
    "|[258](?:[0369]|[258][0369]*[147])*(?:[147]|[258][0369]*[258]))+"
)


# Numbers without exponent, or in scientific notation (one non-zero digit before the point):
# every value has a finite, regular set of these spellings.
_SPELLED_NUMBER = r"-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]+)?|[1-9](?:\.[0-9]+)?[eE][+\-]?[0-9]+)"


def _number_spellings(value: "int | float") -> str:
    """A regex of the spellings in ``_SPELLED_NUMBER`` of one number: without exponent
    (trailing fraction zeros, and -0), and in scientific notation (leading exponent zeros)."""
    plain = _number_literal(value)
    x = _fraction(value)
    if x == 0:
        return plain
    whole, fraction = split_decimal(abs(x), max_digits=60)
    digits = (str(whole) if whole else "") + fraction
    exponent = len(str(whole)) - 1 if whole else -(len(fraction) - len(fraction.lstrip("0")) + 1)
    significant = digits.lstrip("0").rstrip("0")
    mantissa = significant[0] + ("(?:\\.0+)?" if len(significant) == 1 else "\\." + significant[1:] + "0*")
    if exponent > 0:
        power = "\\+?0*" + str(exponent)
    elif exponent < 0:
        power = "-0*" + str(-exponent)
    else:
        power = "[+\\-]?0+"
    return "(?:" + plain + "|" + ("-" if x < 0 else "") + mantissa + "[eE]" + power + ")"


def _alternatives_regex(bodies: list[str]) -> str | None:
    if not bodies:
        return None
    return bodies[0] if len(bodies) == 1 else "(?:" + "|".join(bodies) + ")"


# Numbers that are not integers (``_FRACTIONAL``): a non-zero fraction digit, or a negative
# exponent after a mantissa ending in a non-zero digit (``1.5``, ``1e-05``, ``25e-1``). In
# draft 4 every number spelled with a fraction or an exponent (``1.0`` is no integer there).
_FRACTIONAL_NUMBER = (
    r"-?(?:(?:0|[1-9][0-9]*)\.[0-9]*[1-9][0-9]*"
    r"|(?:[1-9](?:[0-9]*[1-9])?|(?:0|[1-9][0-9]*)\.[0-9]*[1-9])[eE]-0*[1-9][0-9]*)"
)
_FRACTIONAL_DRAFT4 = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][+\-]?[0-9]+)?|[eE][+\-]?[0-9]+)"


def _length_body(lo: int, hi: int | None) -> str | None:
    if hi is not None and hi < lo:
        return None
    char = rx.GENERIC_CHAR
    if lo == 0 and hi is None:
        return char + "*"
    if hi is None:
        return char + "{%d,}" % lo
    if lo == hi:
        return char + "{%d}" % lo
    return char + "{%d,%d}" % (lo, hi)


def _fit_length(node: Any, lo: int, hi: int | None) -> Any:
    """The anchored pattern ``node`` restricted to lengths [lo, hi], when one repeat decides it."""
    items = list(node.items) if isinstance(node, rx.Seq) else [node]
    lengths = [rx.node_length(i) for i in items]
    variable = [k for k, (a, b) in enumerate(lengths) if a != b]
    if len(variable) != 1:
        return None
    k = variable[0]
    item = items[k]
    if not (isinstance(item, rx.Repeat) and rx.node_length(item.node) == (1, 1)):
        return None
    fixed = sum(a for j, (a, _) in enumerate(lengths) if j != k)
    new_lo = max(item.lo, lo - fixed)
    new_hi = item.hi if hi is None else (hi - fixed if item.hi is None else min(item.hi, hi - fixed))
    if new_hi is not None and new_hi < new_lo:
        return rx.Chars(())
    items[k] = rx.Repeat(item.node, new_lo, new_hi)
    return rx.Seq(tuple(items))


# Regex compilation cost grows quickly with the depth of the excluded words' trie
def _other_string(words: list[str]) -> str:
    """A terminal for JSON strings other than ``words``, in their canonical spelling.

    With one spelling per string, removing the words' spellings removes the words; the engine
    subtracts them from the automaton exactly (``except_words``).
    """
    body = '"(?:' + rx.ANY_CHAR + ')*"'
    return except_words(['"' + rx.canonical(w) + '"' for w in words]) + body if words else body
