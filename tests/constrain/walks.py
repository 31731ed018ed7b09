"""Random walks through a matcher: sample uniformly among the allowed tokens until an end token."""

from __future__ import annotations

import numpy as np

from onrails import Matcher


def random_walk(
    matcher: Matcher, rng: np.random.Generator, max_steps: int = 200, end_bias: float = 0.0
) -> tuple[bytes, bool]:
    """Return the bytes produced and whether the walk ended with an end token.

    ``end_bias`` is the chance of taking an allowed end token outright: with 128k-token
    vocabularies a uniform draw almost never picks it, and free-text rules would never end.
    Asserts on the way that no reachable state has an empty mask and that every sampled
    token is accepted.
    """
    vocab = matcher.grammar.vocabulary
    out = bytearray()
    for _ in range(max_steps):
        allowed = matcher.allowed_token_ids()
        assert allowed.size, f"empty mask after {bytes(out)!r}"
        ends = [t for t in vocab.eos_token_ids if matcher.is_allowed(t)]
        token = ends[0] if ends and rng.random() < end_bias else int(rng.choice(allowed))
        assert matcher.advance(token), f"allowed token {token} rejected after {bytes(out)!r}"
        if token in vocab.eos_token_ids:
            return bytes(out), True
        out += vocab.token_bytes[token]  # type: ignore[operator]
    return bytes(out), False
