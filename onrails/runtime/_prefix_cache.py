"""Prompt prefix reuse: the KV cache of recent prompts, so a prompt that starts like one of them
(the same system prompt, chat template header or tool list) prefills only what differs.

A key/value vector at position j depends only on tokens 0..j, so the first n positions of a
stored prompt serve any prompt sharing its first n tokens. Entries are whole prompts, evicted
least recently used beyond a byte budget. Used under the model's generation lock only.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

# Prompts shorter than this gain less from reuse than the bookkeeping costs.
_MIN_REUSE = 4

Layers = list[tuple[torch.Tensor, torch.Tensor]]


class PrefixCache:
    """Recent prompts' per-layer keys and values (``[1, heads, length, dim]`` each)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], tuple[np.ndarray, Layers, int]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.reused_tokens = 0

    def lookup(self, ids: list[int]) -> tuple[int, Layers]:
        """The longest stored prefix of ``ids`` that leaves at least one token to feed (whose
        logits the step needs): its length and its layers cut to that length; ``(0, [])``
        when no entry shares ``_MIN_REUSE`` tokens."""
        query = np.asarray(ids, dtype=np.int64)
        limit = len(ids) - 1
        best, best_key = 0, None
        for key, (stored, _, _) in self._entries.items():
            m = min(limit, stored.size)
            if m <= best:
                continue
            differ = np.flatnonzero(stored[:m] != query[:m])
            shared = int(differ[0]) if differ.size else m
            if shared > best:
                best, best_key = shared, key
        if best_key is None or best < _MIN_REUSE:
            return 0, []
        self._entries.move_to_end(best_key)
        layers = self._entries[best_key][1]
        self.hits += 1
        self.reused_tokens += best
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in layers]

    def store(self, ids: list[int], layers: Layers) -> None:
        """Keep ``layers`` (the KV of all of ``ids``, already detached copies) for later prompts."""
        key = tuple(ids)
        if len(ids) < _MIN_REUSE + 1 or key in self._entries:
            if key in self._entries:
                self._entries.move_to_end(key)
            return
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        if size > self.max_bytes // 4:
            return
        # A stored prompt that this one extends is redundant: this entry serves its prefixes too.
        for old in [k for k in self._entries if len(k) <= len(key) and key[: len(k)] == k]:
            self._bytes -= self._entries.pop(old)[2]
        self._entries[key] = (np.asarray(ids, dtype=np.int64), layers, size)
        self._bytes += size
        self.trim()

    def trim(self) -> None:
        """Drop the least recently used entries until they fit in ``max_bytes``."""
        while self._bytes > self.max_bytes:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._bytes = 0
