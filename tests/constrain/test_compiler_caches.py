"""A compiler's caches are bounded in bytes: compiled grammars (with the masks they cache) and
the parts grammars share, least recently used dropped first, masks unchanged by any of it."""

from __future__ import annotations

import resource
import signal
from typing import Any

import numpy as np
import pytest

from onrails import GrammarCompiler, Matcher
from onrails.constrain import compiled

from .grammar_limits import in_child, status_kb
from .small_vocab import small_vocabulary


def _walk(grammar: Any, seed: int, steps: int = 30) -> list[bytes]:
    rng = np.random.default_rng(seed)
    matcher = Matcher(grammar)
    masks = []
    for _ in range(steps):
        allowed = matcher.allowed_token_ids()
        masks.append(allowed.tobytes())
        matcher.advance(int(rng.choice(allowed)))
        if matcher.is_terminated():
            break
    return masks


def _schema(i: int) -> dict[str, Any]:
    return {"type": "object", "properties": {f"k{i}": {"enum": [f"v{i}", f"w{i}x"]}, "n": {"type": "integer"}}, "required": [f"k{i}", "n"]}


def test_caches_stay_within_cache_bytes_and_keep_the_most_recent_grammars(smollm2_vocab: Any) -> None:
    limit = 8 << 20
    compiler = GrammarCompiler(smollm2_vocab, cache_bytes=limit)
    first = compiler.compile_json_schema(_schema(0))
    for i in range(40):
        _walk(compiler.compile_json_schema(_schema(i)), i)
        assert compiler.memory_bytes() <= limit
    last = compiler.compile_json_schema(_schema(39))
    assert compiler.compile_json_schema(_schema(39)) is last
    assert compiler.compile_json_schema(_schema(0)) is not first  # dropped, compiled again
    compiler.set_cache_bytes(1 << 20)
    assert compiler.memory_bytes() <= 1 << 20
    with pytest.raises(ValueError, match="cache_bytes"):
        compiler.set_cache_bytes(0)


def test_a_compiler_holding_many_grammars_stays_within_an_address_space_cap(smollm2_vocab: Any) -> None:
    """What a grammar reserves counts against an address-space limit even where no page is
    touched: 60 grammars, each with the masks of a short walk, in 512 MB past the start."""

    def many() -> dict[str, Any]:
        limit = status_kb("VmSize") * 1024 + (512 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        signal.alarm(300)
        compiler = GrammarCompiler(smollm2_vocab)
        for i in range(60):
            _walk(compiler.compile_json_schema(_schema(i)), i, 10)
        return {"grammars": i + 1}

    result = in_child(many)
    assert result["ok"], result["error"]
    assert result["grammars"] == 60


def test_masks_are_the_same_when_every_cache_keeps_only_its_newest_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    vocab = small_vocabulary()
    expected = [_walk(GrammarCompiler(vocab).compile_builtin(), seed, 60) for seed in range(10)]
    monkeypatch.setattr(compiled, "_MASK_CACHE_BYTES", 1)
    tiny = GrammarCompiler(vocab, cache_bytes=8)
    assert [_walk(tiny.compile_builtin(), seed, 60) for seed in range(10)] == expected
