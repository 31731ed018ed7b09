"""The engine on the three reference tokenizers: real documents, random walks, and the oracle.

Llama-3.2 (128k byte-level BPE), SmolLM2 (49k byte-level BPE) and Gemma 3 (262k SentencePiece
with byte fallback). Documents are the valid instances of ../shared/maskbench/dev.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from onrails import BUILTIN_ROOTS, GrammarCompiler, Matcher, Vocabulary, builtin_grammar_text

from ..reference import ReferenceGrammar
from .test_builtin_grammar import check_output
from .walks import random_walk

VOCABS = ["llama_vocab", "smollm2_vocab", "gemma_vocab"]
STRUCTURAL = set(b'{}[]",: \n\t0123456789-.\\')


@pytest.fixture(scope="module")
def documents(shared_dir: Path) -> list[object]:
    files = sorted((shared_dir / "maskbench" / "dev").glob("*.json"))
    rng = random.Random(5)
    docs = []
    for path in rng.sample(files, 60):
        for test in json.loads(path.read_text())["tests"]:
            if test["valid"]:
                docs.append(test["data"])
    return docs[:80]


def _compiler(request: pytest.FixtureRequest, name: str) -> tuple[object, Vocabulary, GrammarCompiler]:
    vocab = request.getfixturevalue(name)
    tokenizer = request.getfixturevalue(name.replace("_vocab", "_tokenizer"))
    return tokenizer, vocab, GrammarCompiler(vocab)


@pytest.mark.parametrize("name", VOCABS)
def test_real_documents_are_accepted_token_by_token(request: pytest.FixtureRequest, name: str, documents: list[object]) -> None:
    tokenizer, vocab, compiler = _compiler(request, name)
    eos = min(vocab.eos_token_ids)
    for mode, dumps in [
        ("flexible", lambda d: json.dumps(d, ensure_ascii=False, indent=2)),
        ("bounded", lambda d: json.dumps(d, ensure_ascii=False)),
        ("compact", lambda d: json.dumps(d, ensure_ascii=False, separators=(",", ":"))),
    ]:
        grammar = compiler.compile_builtin(mode)
        for doc in documents:
            text = dumps(doc)
            matcher = Matcher(grammar, "value")
            for token in tokenizer.encode(text, add_special_tokens=False):
                assert matcher.is_allowed(token), f"{mode}: {text[:80]!r}: {matcher.explain(token)}"
                assert matcher.advance(token)
            assert matcher.advance(eos), f"{mode}: end refused after {text[:80]!r}"


@pytest.mark.parametrize("name", VOCABS)
def test_broken_documents_are_rejected_at_some_step(request: pytest.FixtureRequest, name: str, documents: list[object]) -> None:
    tokenizer, vocab, compiler = _compiler(request, name)
    grammar = compiler.compile_builtin("flexible")
    eos = min(vocab.eos_token_ids)
    rng = random.Random(11)
    checked = 0
    for doc in documents:
        text = json.dumps(doc, ensure_ascii=False)
        if len(text) < 4:
            continue
        cut = rng.randrange(1, len(text) - 1)
        for broken in [text[:-1], text[:cut] + "\u0001" + text[cut:], text + ",", "{" + text[1:] if text[0] == "[" else "[" + text[1:]]:
            try:
                json.loads(broken)
                continue
            except ValueError:
                pass
            matcher = Matcher(grammar, "value")
            tokens = tokenizer.encode(broken, add_special_tokens=False) + [eos]
            assert not all(matcher.advance(t) for t in tokens), f"accepted invalid {broken[:80]!r}"
            checked += 1
    assert checked > 50


@pytest.mark.parametrize("name", VOCABS)
def test_random_walks_on_real_vocabularies_parse(request: pytest.FixtureRequest, name: str) -> None:
    _, vocab, compiler = _compiler(request, name)
    grammar = compiler.compile_builtin("bounded")
    rng = np.random.default_rng(3)
    for root in BUILTIN_ROOTS:
        finished = 0
        for _ in range(25):
            data, done = random_walk(Matcher(grammar, root), rng, max_steps=80, end_bias=0.3)
            if done:
                finished += 1
                check_output(root, data)
        # Uniform draws over 100k+ tokens rarely close a whole call within 80 steps; the small
        # vocabulary's 1,000 walks per root cover the call rules to the end.
        assert finished >= (0 if root in ("func", "funcarray", "fcall") else 1), root


@pytest.mark.parametrize("name", VOCABS)
def test_masks_on_sampled_states_equal_the_reference(request: pytest.FixtureRequest, name: str, documents: list[object]) -> None:
    """Both directions, on a sample of tokens: every token with a JSON-structural byte plus a random draw."""
    tokenizer, vocab, compiler = _compiler(request, name)
    text = builtin_grammar_text("flexible")
    grammar = compiler.compile_builtin("flexible")
    reference = ReferenceGrammar(text, "value")
    rng = random.Random(2)
    content = [i for i, b in enumerate(vocab.token_bytes) if b]
    structural = [i for i in content if set(vocab.token_bytes[i]) & STRUCTURAL and len(vocab.token_bytes[i]) <= 6]  # type: ignore[arg-type]
    sample = sorted(set(rng.sample(structural, min(1500, len(structural))) + rng.sample(content, 1500)))
    for doc in documents[:4]:
        tokens = tokenizer.encode(json.dumps(doc, ensure_ascii=False), add_special_tokens=False)
        matcher = Matcher(grammar, "value")
        prefix = b""
        for step, token in enumerate(tokens):
            if step % max(1, len(tokens) // 4) == 0:
                allowed = set(matcher.allowed_token_ids().tolist())
                checker = reference.prefix_checker(prefix)
                for t in sample:
                    assert (t in allowed) == checker.viable(vocab.token_bytes[t]), (prefix, vocab.token_bytes[t])  # type: ignore[arg-type]
            assert matcher.advance(token)
            prefix += vocab.token_bytes[token]  # type: ignore[operator]
