"""``onrails demo``: the default model's tokenizer read into a byte vocabulary, with timings."""

from __future__ import annotations

import time

from onrails.runtime.tokenizers import DEFAULT_MODEL, load_tokenizer


def run(model: str = DEFAULT_MODEL) -> None:
    """Load ``model``'s tokenizer offline, build its ``Vocabulary`` and print what it holds."""
    from onrails.constrain.vocabulary import Vocabulary

    start = time.perf_counter()
    tokenizer = load_tokenizer(model)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    vocab = Vocabulary.from_tokenizer(tokenizer)
    built = time.perf_counter() - start

    eos = ", ".join(f"{i} {tokenizer.convert_ids_to_tokens(i)}" for i in sorted(vocab.eos_token_ids))
    content = vocab.size - len(vocab.special_token_ids)
    longest = max((b for b in vocab.token_bytes if b is not None), key=len)
    print(f"model            {model}")
    print(f"tokenizer        {type(tokenizer).__name__}, loaded in {loaded:.2f} s")
    print(f"vocabulary       {vocab.size} ids: {content} content tokens, {len(vocab.special_token_ids)} special")
    print(f"end tokens       {eos}")
    print(f"longest token    {len(longest)} bytes: {longest!r}")
    print(f"built in         {built * 1000:.0f} ms (fingerprint {vocab.fingerprint[:16]})")
