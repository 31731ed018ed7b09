"""Packed token bitmasks: one int32 word per 32 token ids, bit ``i % 32`` of word ``i // 32``."""

from __future__ import annotations

import numpy as np


def words_for(size: int) -> int:
    """Number of int32 words in a bitmask row for a vocabulary of ``size`` tokens."""
    return (size + 31) // 32


def allocate_token_bitmask(batch_size: int, vocab_size: int) -> np.ndarray:
    """A zeroed int32 bitmask of shape ``[batch_size, ceil(vocab_size / 32)]``.

    Bit ``i % 32`` of word ``i // 32`` is token ``i``. torch users may wrap it with
    ``torch.from_numpy`` (no copy).
    """
    return np.zeros((batch_size, words_for(vocab_size)), dtype=np.int32)


def pack_bool_mask(allowed: np.ndarray) -> np.ndarray:
    """One bitmask row (int32 words) from a bool per token id; O(len(allowed)), a copy."""
    packed = np.packbits(allowed, bitorder="little")
    pad = (-packed.size) % 4
    if pad:
        packed = np.concatenate([packed, np.zeros(pad, dtype=np.uint8)])
    return packed.view("<i4").copy()
