# Types of the compiled mask walk (_walk.c).
from collections.abc import Callable

import numpy as np

class Walker:
    def __init__(
        self, trie: tuple[np.ndarray, ...], automaton: object, over_budget: Callable[[int], BaseException]
    ) -> None: ...
    def walk(
        self,
        starts: list[tuple[np.ndarray, int]],
        follow: bool,
        words: np.ndarray,
        budget: int,
        callbacks: tuple[Callable[..., object], ...],
    ) -> bytes: ...
    def root_pass(
        self,
        state: int,
        level_start: np.ndarray,
        node_of_id: np.ndarray,
        words: np.ndarray,
        fill_bytes: Callable[[int, bytes], None],
    ) -> None: ...
    def held_bytes(self) -> int: ...

def dfa_pass(
    trie: tuple[np.ndarray, ...],
    levels: tuple[np.ndarray, np.ndarray, np.ndarray],
    table: np.ndarray,
    accepting: np.ndarray,
    start: int,
    words: np.ndarray,
) -> bytes: ...
def pair_pass(
    trie: tuple[np.ndarray, ...],
    table: np.ndarray,
    accepting: np.ndarray,
    base_table: np.ndarray,
    base_accepting: np.ndarray,
    start: int,
    base_start: int,
    in_words: np.ndarray | None,
    budget: int,
) -> tuple[bytes, bytes] | None: ...
def below_pass(
    trie: tuple[np.ndarray, ...],
    table: np.ndarray,
    accepting: np.ndarray,
    start: int,
    nodes: np.ndarray,
    words: np.ndarray,
    budget: int,
) -> bytes | None: ...
def literal_pass(trie: tuple[np.ndarray, ...], data: bytes, words: np.ndarray) -> int: ...
def or_at(words: np.ndarray, at: np.ndarray, bits: np.ndarray) -> None: ...
def column_groups(
    rows: np.ndarray, row: np.ndarray, byts: bytes | np.ndarray
) -> tuple[bytes, bytes, list[tuple[int, ...]]]: ...
def equivalent_states(table: np.ndarray, accepting: np.ndarray) -> bytes: ...
def live_states(table: np.ndarray, accepting: np.ndarray) -> bytes: ...
def determinise(
    move_start: np.ndarray,
    move_lo: np.ndarray,
    move_hi: np.ndarray,
    move_target: np.ndarray,
    eps_start: np.ndarray,
    eps_target: np.ndarray,
    cuts: np.ndarray,
    start: int,
    end: int,
    check: Callable[[int], None],
) -> tuple[bytes, bytes]: ...
