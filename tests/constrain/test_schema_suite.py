"""The official JSON Schema Test Suite (draft 2020-12) through the engine.

Every group whose schema compiles in strict mode must accept each valid instance and reject each
invalid one, serialized compactly and indented. Some object members keep ``properties`` order
(a documented narrowing), so a valid instance written in another order counts as accepted when
some reordering of its members is. ``format.json`` is left out: it tests that formats are
annotations by default, while onrails asserts every format of the vocabulary (checked with
``optional/format`` instead, for soundness).

The documents the suite's remote references name (its ``remotes/`` folder, served at
``http://localhost:1234/`` by its harness) are kept beside this module, from the suite's
repository (LICENSE there), and given to the converter as a user would: ``schemas=``.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import referencing
import referencing.jsonschema

from onrails import GrammarCompiler, Matcher, SchemaError, schema_to_grammar
from onrails.constrain.compiled import CompiledGrammar
from onrails.grammars._schema_formats import FORMATS
from onrails.grammars.schema import SCHEMA_WHITESPACE_MODES
from onrails.errors import CompileBudgetError, GrammarError
from tests.constrain.small_vocab import small_vocabulary

# Draft 2020-12's format vocabulary (validation, section 7.3)
SPECIFIED_FORMATS = (
    "date-time", "date", "time", "duration", "email", "idn-email", "hostname", "idn-hostname", "ipv4", "ipv6",
    "uri", "uri-reference", "iri", "iri-reference", "uuid", "uri-template", "json-pointer", "relative-json-pointer",
    "regex",
)
assert "flexible" in SCHEMA_WHITESPACE_MODES


REMOTES_DIR = Path(__file__).resolve().parent / "jsonschema_remotes"


def _remotes() -> dict[str, Any]:
    """The suite's remote documents by the URI its tests name them with."""
    return {
        "http://localhost:1234/" + path.relative_to(REMOTES_DIR).as_posix(): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(REMOTES_DIR.rglob("*.json"))
    }


REMOTES = _remotes()


def _groups(folder: Path, names: "list[str] | None" = None) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(folder.glob("*.json")):
        if names is not None and path.stem not in names:
            continue
        for group in json.loads(path.read_text(encoding="utf-8")):
            out.append((path.name, group))
    return out


def _texts(data: Any) -> list[str]:
    return [
        json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        json.dumps(data, ensure_ascii=False, indent=2),
    ]


def _reorderings(value: Any) -> list[Any]:
    """The value with its objects' members in other orders (bounded)."""
    if isinstance(value, dict):
        keys = list(value)
        subs = [_reorderings(value[k])[:4] for k in keys]
        out = []
        for perm in itertools.islice(itertools.permutations(range(len(keys))), 24):
            for combo in itertools.islice(itertools.product(*[subs[i] for i in perm]), 8):
                out.append({keys[i]: c for i, c in zip(perm, combo)})
        return out or [value]
    if isinstance(value, list) and value:
        return [list(c) for c in itertools.islice(itertools.product(*[_reorderings(x)[:3] for x in value]), 16)]
    return [value]


def _accepts(compiled: CompiledGrammar, text: str) -> bool:
    matcher = Matcher(compiled)
    return matcher.advance_bytes(text.encode("utf-8")) and matcher.is_accepting()


def _accepts_some_order(compiled: CompiledGrammar, data: Any, indent: bool) -> bool:
    for variant in _reorderings(data)[:200]:
        text = json.dumps(variant, ensure_ascii=False, indent=2 if indent else None, separators=None if indent else (",", ":"))
        if _accepts(compiled, text):
            return True
    return False


def _compile(compiler: GrammarCompiler, schema: Any) -> "CompiledGrammar | None":
    try:
        converted = schema_to_grammar(schema, whitespace="flexible", strict=True, schemas=REMOTES)
    except SchemaError:
        return None
    return compiler.compile_lark(converted.lark, converted.start)


def _run(groups: list[tuple[str, dict[str, Any]]], compiler: GrammarCompiler, sound_only: bool) -> Iterator[tuple[str, Any]]:
    """Yield ("refused" | "budget" | "compiled", file), ("ok", None) per instance decided right,
    and every mismatch as ("fail" | "missed", details)."""
    for file, group in groups:
        try:
            compiled = _compile(compiler, group["schema"])
        except CompileBudgetError:  # a clean failure, within the budget
            yield "budget", file
            continue
        except GrammarError as exc:  # a compile failure that is not a clean refusal
            yield "fail", (file, group["description"], f"compile error {exc}")
            continue
        if compiled is None:
            yield "refused", file
            continue
        yield "compiled", file
        for test in group["tests"]:
            for indent, text in enumerate(_texts(test["data"])):
                accepted = _accepts(compiled, text)
                if not accepted and test["valid"]:
                    accepted = _accepts_some_order(compiled, test["data"], bool(indent))
                if accepted and not test["valid"]:
                    yield "fail", (file, group["description"], test["description"], "invalid accepted", text)
                elif not accepted and test["valid"]:
                    yield ("missed" if sound_only else "fail"), (file, group["description"], test["description"], text)
                else:
                    yield "ok", None


@pytest.fixture(scope="module")
def suite_dir(shared_dir: Path) -> Path:
    path = shared_dir / "jsonschema-test-suite" / "tests" / "draft2020-12"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="module")
def compiler() -> GrammarCompiler:
    return GrammarCompiler(small_vocabulary(), budget_s=20)


def test_every_group_compiled_in_strict_mode_accepts_valid_and_rejects_invalid_instances(
    suite_dir: Path, compiler: GrammarCompiler
) -> None:
    groups = [(f, g) for f, g in _groups(suite_dir) if f != "format.json"]
    counts = {"compiled": 0, "refused": 0, "budget": 0}
    failures = []
    per_group_failed = set()
    for kind, detail in _run(groups, compiler, sound_only=False):
        if kind in counts:
            counts[kind] += 1
        elif kind == "fail":
            failures.append(detail)
            per_group_failed.add(detail[:2])
    passing = counts["compiled"] - len(per_group_failed)
    print(
        f"\nJSON Schema Test Suite draft2020-12: {len(groups)} groups, {counts['compiled']} compile in strict"
        f" mode, {passing} pass, {counts['refused']} refused (SchemaError), {counts['budget']} over budget"
    )
    assert not failures, "\n".join(map(str, failures[:20]))
    assert passing >= 338  # a regression guard on coverage, not a target


def _harvest(node: Any, names: set[str], values: list[Any]) -> None:
    """Property names and literal values a schema mentions (to build instances from)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "dependentSchemas", "dependentRequired"):
                names.update(value)
            elif key == "required":
                names.update(n for n in value if isinstance(n, str))
            elif key == "const":
                values.append(value)
            elif key == "enum":
                values.extend(value)
            _harvest(value, names, values)
    elif isinstance(node, list):
        for value in node:
            _harvest(value, names, values)


def _instance(rng: random.Random, names: list[str], values: list[Any], depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.35:
        return {n: _instance(rng, names, values, depth + 1) for n in rng.sample(names, rng.randint(0, min(4, len(names))))}
    if depth < 2 and roll < 0.6:
        return [_instance(rng, names, values, depth + 1) for _ in range(rng.randint(0, 4))]
    return rng.choice(values)


def test_groups_of_references_unevaluated_and_unique_items_agree_with_jsonschema_on_generated_instances(
    suite_dir: Path, compiler: GrammarCompiler
) -> None:
    """Beyond the suite's own instances: objects and arrays built from the names and values each
    schema mentions, judged by jsonschema (with the same remote documents)."""
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (uri, referencing.jsonschema.DRAFT202012.create_resource(doc)) for uri, doc in REMOTES.items()
    )
    files = ["refRemote", "dynamicRef", "unevaluatedProperties", "unevaluatedItems", "uniqueItems", "contains", "minContains"]
    rng = random.Random(0)
    wrong, checked = [], 0
    for _, group in _groups(suite_dir, files):
        compiled = _compile(compiler, group["schema"])
        if compiled is None:
            continue
        names: set[str] = {"foo", "bar", "zz"}
        values: list[Any] = [1, 2.5, "a", "foo", None, True, [], {}, *(t["data"] for t in group["tests"])]
        _harvest(group["schema"], names, values)
        validator = jsonschema.Draft202012Validator(group["schema"], registry=registry)
        for _ in range(60):
            data = _instance(rng, sorted(names), values)
            valid = validator.is_valid(data)
            text = _texts(data)[0]
            accepted = _accepts(compiled, text) or (valid and _accepts_some_order(compiled, data, False))
            if accepted != valid:
                wrong.append((group["description"], text, "valid" if valid else "invalid"))
            checked += 1
    assert checked > 3000
    assert not wrong, wrong[:10]


def test_every_specified_format_is_asserted() -> None:
    assert sorted(FORMATS) == sorted(SPECIFIED_FORMATS)


def test_formats_reject_every_invalid_instance_of_the_optional_format_suite(suite_dir: Path, compiler: GrammarCompiler) -> None:
    """Every file of ``optional/format`` (the specified formats, ECMA-262 regexes, an unknown
    format); the valid instances outside a (narrower, documented) format are reported."""
    folder = suite_dir / "optional" / "format"
    failures = []
    lines = []
    for path in sorted(folder.glob("*.json")):
        invalid, missed = set(), set()
        for kind, detail in _run(_groups(folder, [path.stem]), compiler, sound_only=True):
            if kind == "fail":
                failures.append(detail)
                invalid.add(detail[:3])
            elif kind == "missed":
                missed.add(detail[:3])
        lines.append(f"{path.stem:22s} {len(invalid)} invalid accepted, {len(missed)} valid rejected")
    print("\noptional/format, instances:\n" + "\n".join(lines))
    assert not failures, "\n".join(map(str, failures[:20]))


def test_optional_edge_cases_reject_every_invalid_instance(suite_dir: Path, compiler: GrammarCompiler) -> None:
    groups = _groups(suite_dir / "optional", ["bignum", "ecmascript-regex", "non-bmp-regex", "float-overflow", "dependencies-compatibility", "no-schema", "id", "anchor", "unknownKeyword", "refOfUnknownKeyword", "dynamicRef", "format-assertion"])
    failures, missed, ok = [], [], 0
    for kind, detail in _run(groups, compiler, sound_only=True):
        if kind == "fail":
            failures.append(detail)
        elif kind == "missed":
            missed.append(detail)
        elif kind == "ok":
            ok += 1
    print(f"\noptional suite: {ok} instances decided right, {len(missed)} valid instances outside the (narrower) grammar")
    assert not failures, "\n".join(map(str, failures[:20]))


def test_suite_instances_are_accepted_token_by_token_with_the_llama_vocabulary(suite_dir: Path, llama_tokenizer: Any, llama_vocab: Any) -> None:
    """The masks agree with advancing: each token of a valid instance is allowed before it is taken."""
    compiler = GrammarCompiler(llama_vocab, budget_s=20)
    groups = [(f, g) for f, g in _groups(suite_dir) if f != "format.json"][::6]
    checked = 0
    for _, group in groups:
        compiled = _compile(compiler, group["schema"])
        if compiled is None:
            continue
        for test in group["tests"]:
            text = _texts(test["data"])[0]
            if not _accepts(compiled, text):
                continue  # another member order; covered above
            matcher = Matcher(compiled)
            for token in llama_tokenizer.encode(text, add_special_tokens=False):
                assert matcher.is_allowed(token), (group["description"], text, token)
                assert matcher.advance(token)
            assert matcher.is_accepting()
            assert any(matcher.is_allowed(e) for e in llama_vocab.eos_token_ids)
            checked += 1
    assert checked > 30
