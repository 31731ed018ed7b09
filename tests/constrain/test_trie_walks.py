"""Walks of the vocabulary trie below given nodes read the same whichever way they go: node by
node in Python (few nodes below) or level by level in numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from onrails.constrain import _trie
from onrails.constrain._bytedfa import regex_to_byte_dfa
from onrails.constrain.compiled import _trie_for

PATTERNS = [r"[ \t]+", r"-", r"[A-Za-z_][A-Za-z0-9_]*", r"[0-9]+(\.[0-9]+)?", r'"([^"\\]|\\.)*"', r"\)", r"a+b?"]


def _by_numpy(trie: Any, dfa: Any, nodes: np.ndarray, start: int, monkeypatch: pytest.MonkeyPatch) -> tuple[set[int], set[int]]:
    with monkeypatch.context() as patch:
        patch.setattr(_trie, "_MAX_BY_NODE", -1)
        alive, ends = trie.below(dfa.flat_table(), dfa.n_states, dfa.accepting, nodes, start)
    return set(alive.tolist()), set(ends.tolist())


def test_node_by_node_walks_equal_level_walks_on_a_real_vocabulary(
    llama_vocab: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    trie = _trie_for(llama_vocab)
    rng = np.random.default_rng(0)
    small = np.flatnonzero((trie.nodes_below > 0) & (trie.nodes_below <= 300))
    by_node = 0
    for pattern in PATTERNS:
        dfa = regex_to_byte_dfa(pattern)
        for _ in range(60):
            nodes = rng.choice(small, size=int(rng.integers(1, 4)), replace=False)
            # Starts one below another too (a walk through letters next to letters).
            nodes = np.unique(np.concatenate([nodes, trie.node_parent[nodes][trie.node_parent[nodes] > 0]]))
            start = int(rng.integers(0, dfa.n_states))
            alive, ends = trie.below(dfa.flat_table(), dfa.n_states, dfa.accepting, nodes, start)
            by_node += int(trie.nodes_below[nodes].sum()) <= _trie._MAX_BY_NODE
            assert (set(alive.tolist()), set(ends.tolist())) == _by_numpy(trie, dfa, nodes, start, monkeypatch)
    assert by_node > 300, "most of these walks should have gone node by node"


def test_nodes_below_and_levels_below_count_the_subtrees(llama_vocab: Any) -> None:
    trie = _trie_for(llama_vocab)
    for node in [0, 1, 2, *np.flatnonzero(trie.nodes_below > 1000)[:5].tolist()]:
        frontier, count, levels = [node], 0, 0
        while True:
            children = [c for n in frontier for c in range(trie.child_start[n], trie.child_start[n] + trie.child_count[n])]
            if not children:
                break
            count += len(children)
            levels += 1
            frontier = children
        assert trie.nodes_below[node] == count and trie.levels_below[node] == levels, node


def test_tokens_at_a_few_nodes_equal_the_vectorised_gather(llama_vocab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    trie = _trie_for(llama_vocab)
    rng = np.random.default_rng(1)
    for _ in range(300):
        nodes = rng.integers(0, trie.n_nodes, int(rng.integers(0, 40)))
        few = trie.tokens_at(nodes)
        with monkeypatch.context() as patch:
            patch.setattr(_trie, "_FEW_NODES", -1)
            gathered = trie.tokens_at(nodes)
        assert sorted(few.tolist()) == sorted(gathered.tolist())


def test_the_path_of_every_tokens_bytes_ends_at_that_token(llama_vocab: Any) -> None:
    trie = _trie_for(llama_vocab)
    for token, data in enumerate(llama_vocab.token_bytes):
        if data:
            path = trie.path(data)
            assert path.size == len(data) and token in trie.tokens_at(path[-1:]).tolist(), token
    assert trie.path(b"\x00\x00\x00zzzz").size < 7


def test_the_trie_numbers_every_prefix_in_byte_order_level_by_level() -> None:
    # Zero bytes (as key padding would read them), duplicates, and runs sharing their first 16
    # bytes, which the numpy sort leaves to Python.
    rng = np.random.default_rng(7)
    alphabet = [b"\x00", b"\x01", b"a", b"b", b"\xff"]
    shared = b"x" * 16
    tokens: list[bytes | None] = [None, b"a", b"a\x00", b"a\x00\x00", b"a", b"", shared, shared + b"\x00", shared + b"a"]
    for _ in range(3000):
        body = b"".join(alphabet[i] for i in rng.integers(0, len(alphabet), int(rng.integers(1, 22))))
        tokens.append(shared[: int(rng.integers(0, 17))] + body if rng.random() < 0.3 else body)
    trie = _trie.TokenTrie(tokens)
    prefix = [b""] * trie.n_nodes
    for node in range(1, trie.n_nodes):
        prefix[node] = prefix[trie.node_parent[node]] + bytes([trie.node_byte[node]])
    for depth in range(1, trie.max_len + 1):
        level = prefix[trie.level_start[depth] : trie.level_start[depth + 1]]
        assert level == sorted({t[:depth] for t in tokens if t and len(t) >= depth}), depth
    for token, data in enumerate(tokens):
        node = trie.token_node[token]
        assert (prefix[node] == data) if data else node == -1, token
