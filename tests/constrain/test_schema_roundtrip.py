"""Round trip on real-world schemas: random outputs of a schema's grammar validate against it.

Schemas come from ``../shared/maskbench/dev`` (a deterministic sample); each one that compiles in
strict mode is walked at random through the engine (small vocabulary), and every finished output
must validate with ``jsonschema`` (formats asserted, as onrails asserts them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from onrails import GrammarCompiler, Matcher, SchemaError, schema_to_grammar
from onrails.grammars.schema import validator_class
from onrails.errors import CompileBudgetError
from tests.constrain.small_vocab import small_vocabulary

SAMPLE = 200
WALKS = 2
# tokens that close strings and containers get more weight, so that walks finish
_CLOSERS = b'"]},'


def _guided_walk(matcher: Matcher, rng: np.random.Generator, weights: np.ndarray, max_steps: int = 400) -> bytes | None:
    vocab = matcher.grammar.vocabulary
    out = bytearray()
    for _ in range(max_steps):
        allowed = matcher.allowed_token_ids()
        assert allowed.size, f"empty mask after {bytes(out)!r}"
        ends = [t for t in vocab.eos_token_ids if matcher.is_allowed(t)]
        if ends and rng.random() < 0.5:
            return bytes(out)
        w = weights[allowed]
        token = int(rng.choice(allowed, p=w / w.sum()))
        assert matcher.advance(token)
        if token in vocab.eos_token_ids:
            return bytes(out)
        out += vocab.token_bytes[token]  # type: ignore[operator]
    return None


def _sample(shared_dir: Path) -> list[Path]:
    files = sorted((shared_dir / "maskbench" / "dev").glob("*.json"))
    if not files:
        pytest.skip("no MaskBench schemas")
    step = max(1, len(files) // SAMPLE)
    return files[::step][:SAMPLE]


def test_random_outputs_of_maskbench_schema_grammars_validate_with_jsonschema(shared_dir: Path) -> None:
    vocab = small_vocabulary()
    compiler = GrammarCompiler(vocab, budget_s=10)
    weights = np.ones(vocab.size)
    for tid, data in enumerate(vocab.token_bytes):
        if data and any(b in _CLOSERS for b in data):
            weights[tid] = 40.0
    rng = np.random.default_rng(2024)
    counts = {"schemas": 0, "compiled": 0, "refused": 0, "budget": 0, "outputs": 0, "unfinished": 0}
    for path in _sample(shared_dir):
        counts["schemas"] += 1
        schema = json.loads(path.read_text(encoding="utf-8"))["schema"]
        try:
            converted = schema_to_grammar(schema, whitespace="compact", strict=True, budget_s=10)
            compiled = compiler.compile_lark(converted.lark, converted.start)
        except CompileBudgetError:
            counts["budget"] += 1
            continue
        except SchemaError:
            counts["refused"] += 1
            continue
        counts["compiled"] += 1
        cls = validator_class(schema)
        validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        for _ in range(WALKS):
            out = _guided_walk(Matcher(compiled), rng, weights)
            if out is None:
                counts["unfinished"] += 1
                continue
            instance: Any = json.loads(out)
            errors = list(validator.iter_errors(instance))
            assert not errors, f"{path.name}: {out[:300]!r} is invalid: {errors[0].message}"
            counts["outputs"] += 1
    print(f"\nMaskBench round trip: {counts}")
    # Nearly half the walks finish: additional members (an arbitrary key and JSON value) may come
    # first, and a walk that opens one often wanders for its 400 steps.
    assert counts["outputs"] >= 0.9 * counts["compiled"]
