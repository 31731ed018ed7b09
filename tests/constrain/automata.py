"""Reading byte automata in tests: whether one accepts some bytes, whether two read the same words."""

from __future__ import annotations

from onrails.constrain._bytedfa import ByteDFA


def accepts(dfa: ByteDFA, data: bytes) -> bool:
    """Whether ``dfa`` reads ``data`` from its start into an accepting state."""
    state = 0
    for byte in data:
        state = int(dfa.table[state, byte])
        if state < 0:
            return False
    return bool(dfa.accepting[state])


def read_alike(a: ByteDFA, x: int, b: ByteDFA, y: int) -> bool:
    """Whether state ``x`` of ``a`` and state ``y`` of ``b`` read the same words (a search over
    pairs of states). Trimmed automata: a byte one of them rejects and the other takes already
    tells them apart."""
    seen = {(x, y)}
    todo = [(x, y)]
    while todo:
        p, q = todo.pop()
        if a.accepting[p] != b.accepting[q]:
            return False
        ra, rb = a.table[p], b.table[q]
        if ((ra < 0) != (rb < 0)).any():
            return False
        for pair in set(zip(ra.tolist(), rb.tolist())):
            if pair[0] >= 0 and pair not in seen:
                seen.add(pair)
                todo.append(pair)
    return True


def same_language(a: ByteDFA, b: ByteDFA) -> bool:
    return read_alike(a, 0, b, 0)
