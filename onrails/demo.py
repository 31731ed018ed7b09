"""``onrails demo``: the engine on the default model's tokenizer, with timings."""

from __future__ import annotations

import time

from onrails.runtime.tokenizers import DEFAULT_MODEL, load_tokenizer

_DOCUMENT = '{"name": "get_weather", "arguments": {"city": "Zürich", "days": [1, 2.5e3]}}'


def run(model: str = DEFAULT_MODEL) -> None:
    """Load ``model``'s tokenizer offline, compile the built-in grammar, walk a document through it."""
    import numpy as np

    from onrails.constrain import GrammarCompiler, Matcher, Vocabulary, allocate_token_bitmask

    start = time.perf_counter()
    tokenizer = load_tokenizer(model)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    vocab = Vocabulary.from_tokenizer(tokenizer)
    built = time.perf_counter() - start
    print(f"model            {model}")
    print(f"tokenizer        {type(tokenizer).__name__}, loaded in {loaded:.2f} s")
    print(f"vocabulary       {vocab.size} ids, {len(vocab.special_token_ids)} special, built in {built * 1000:.0f} ms")

    start = time.perf_counter()
    grammar = GrammarCompiler(vocab).compile_builtin()
    matcher = Matcher(grammar, "func")
    mask = allocate_token_bitmask(1, vocab.size)
    matcher.fill_next_token_bitmask(mask)
    compiled = time.perf_counter() - start
    print(f"built-in grammar compiled to first mask in {compiled * 1000:.0f} ms, roots: {', '.join(grammar.roots)}")

    ids = tokenizer.encode(_DOCUMENT, add_special_tokens=False)
    times = []
    print(f"\nfeeding {_DOCUMENT!r} ({len(ids)} tokens) through root 'func':")
    for token in ids:
        start = time.perf_counter()
        matcher.fill_next_token_bitmask(mask)
        times.append(time.perf_counter() - start)
        allowed = int(np.unpackbits(mask.view(np.uint8)).sum())
        assert matcher.advance(token)
        print(f"  {tokenizer.decode([token])!r:>14}  {allowed:>6} tokens allowed")
    print(f"accepting: {matcher.is_accepting()}, median mask {np.median(times) * 1e6:.0f} µs")

    matcher = Matcher(grammar, "func")
    bad = tokenizer.encode('{"nme"', add_special_tokens=False)
    for token in bad:
        if not matcher.advance(token):
            print(f"\n'{{\"nme\"' is refused at {tokenizer.decode([token])!r}: {matcher.explain(token)}")
            break
