"""Compiling a grammar against a vocabulary, and computing token masks.

A token is allowed in an automaton state when walking its bytes keeps the state alive. Masks are
computed per configuration as two parts:

* the *pure* part: tokens whose bytes stay inside the terminal being lexed. It depends only on
  (terminal, DFA state), never on the parser stack, and is computed once by a vectorised walk of
  the whole vocabulary trie through that terminal's byte DFA;
* the *crossing* part: tokens that complete the terminal part-way and continue in the next
  terminal. Only the subtrees below the trie nodes where the terminal can end ("exits") are
  walked, from the boundary state after the terminal. Where the walk is at a state with a
  few ways forward (a boundary allowing a few terminals, or inside one or two terminals), it
  follows them one by one: below such a node a token reads on in each terminal's DFA whatever
  the stack, so the walk reads those nodes in that DFA alone and goes back to the automaton
  only where a terminal can end, at the boundary after it. Other states (a quote that may open
  any of 20 keys) are stepped byte by byte through the full automaton. The walk runs in
  compiled code (``_walk.c``); where the package was built without it, in numpy, which takes
  the nodes read inside a terminal from a cache shared by grammars. Where the crossing walks
  would start at thousands of nodes (a user grammar's words next to words), the state's whole
  mask is instead one pass from the trie's root through the automaton.

Both are cached, the final mask of an automaton state too, so a decoding step that revisits a
state is a dictionary lookup and a 16 KB copy.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.ma  # noqa: F401  (np.unique imports it on its first call: 25 ms of a user's first mask)

from onrails.constrain._automaton import (
    DEAD,
    SOURCES_KNOWN,
    SOURCES_SUSPENDED,
    SOURCES_UNKNOWN,
    UNKNOWN,
    Automaton,
    Config,
    NeedsDeeper,
    SPLIT,
    SPLIT_UNKNOWN,
)
from onrails.constrain._bytedfa import DEAD as DEAD_DFA
from onrails.constrain._bytedfa import ByteDFA, Counted, EmptyLanguage, regex_to_byte_dfa
from onrails.constrain._collector import collector_held
from onrails.constrain._compile_processes import CompileProcesses
from onrails.constrain._native import kernel as _kernel
from onrails.constrain.lark_frontend import GrammarSpec, RuleSpec, TerminalSpec, parse_lark, spec_from_rules, without_terminals
from onrails.constrain._lr import ParseTable, build_parse_table
from onrails.constrain._trie import NodePairs, TokenTrie
from onrails.constrain.bitmask import pack_bool_mask, words_for
from onrails.constrain.vocabulary import Vocabulary
from onrails.errors import CompileBudgetError, GrammarError
from onrails.grammars.regex_notes import has_notes
from onrails.grammars.builtin import BUILTIN_ROOTS, builtin_grammar_text, builtin_rules
from onrails.grammars.schema import load_documents, load_schema, pydantic_schema, schema_to_grammar
from onrails.grammars.tools import tools_to_grammar

if TYPE_CHECKING:
    from onrails.constrain._walk import Walker


# A compiler's caches together (compiled grammars with their masks: half of it).
_CACHE_BYTES = 1 << 30
# One automaton generation's masks, per kind (configurations', states'): 1,024 Llama-3.2 masks.
_MASK_CACHE_BYTES = 16 << 20
# Pure parts a grammar keeps by terminal and DFA state (``CompiledGrammar._pure_part``).
_PURE_REF_BYTES = 8 << 20
# The automata a compile process keeps for its later compiles.
_WORKER_DFA_BYTES = 128 << 20
_MAX_STATES = 100_000
_FIRST_CUT = 8
_MAX_SUSPENSIONS = 8
# Up to this many start nodes, a walk follows the terminals of states with few ways forward one
# by one (``_follow_terminals``, shared across stacks). Past it, the walk covers a large part of
# the trie (a user grammar's first mask: words next to words, blanks between them), and walks
# from each start would meet a node once per start above it (every prefix of a word ends one):
# the state's mask is then one pass from the trie root through the automaton, a gather per trie
# level, each node once (``benchmarks/user_grammars.py`` on Llama-3.2, first masks:
# identifiers_adjacent 69 -> 20 ms, common_ws_words 75 -> 40 ms).
_FOLLOWED_NODES = 4096
# Up to this many trie nodes, a walk's mask is built from the token ids listed at them.
_LISTED_NODES = 8192
# Up to this many, the nodes a walk entered at one state are kept in a set, past it as flags.
_FEW_ENTERED = 4096
# Up to this many token ids, a mask is made by setting their bits, past it from a bool per id.
_SCATTERED_IDS = 400
# A state's pure part is read beside a dense state's of its DFA while they read apart at no more
# than this many nodes (past it, one pass over the whole trie costs less).
_NEAR_NODES = 4096
# Tokens flipped one by one in a pure part derived from another (``_flipped``); more at once.
_FEW_FLIPS = 32
_Suspension = tuple[int, np.ndarray]  # (truncated automaton state, trie nodes where it was met)
_Parts = tuple[np.ndarray, tuple[_Suspension, ...]]


_tries: "weakref.WeakKeyDictionary[Vocabulary, TokenTrie]" = weakref.WeakKeyDictionary()
_tries_lock = threading.Lock()


def _trie_for(vocab: Vocabulary) -> TokenTrie:
    with _tries_lock:
        trie = _tries.get(vocab)
        if trie is None:
            trie = TokenTrie(vocab.token_bytes)
            _tries[vocab] = trie
        return trie


@dataclass(frozen=True)
class Explanation:
    """Why a token is allowed or not in a matcher's current state."""

    token_id: int
    token_bytes: bytes | None
    allowed: bool
    failing_offset: int | None = None
    failing_byte: int | None = None
    expected_bytes: tuple[int, ...] = ()
    expected_terminals: tuple[str, ...] = ()
    in_terminal: tuple[str, ...] = ()
    rule_context: tuple[str, ...] = ()
    message: str = ""

    def __str__(self) -> str:
        return self.message


# A pure part: (packed words of the tokens that stay inside, trie nodes where the terminal may
# end and the token continues). A plain tuple: the cycle collector stops tracking tuples of
# arrays, not instances of classes, and a compiler keeps thousands (see ``Automaton.configs``).
_Pure = tuple[np.ndarray, np.ndarray]


class _Below(NamedTuple):
    """What a terminal reads below some trie nodes (``CompiledGrammar._below``): the words of a
    packed mask holding its tokens (``at``, ``bits``), and where it may end with bytes below."""

    at: np.ndarray
    bits: np.ndarray
    ends: np.ndarray


class _Units(NamedTuple):
    """Per token, read from one state of an uncounted string: whether it stays inside, whether it
    closes the string, and how many units it starts; where it may end with bytes below."""

    alive: np.ndarray  # bool per token id
    closed: np.ndarray  # bool per token id
    started: np.ndarray  # int16 per token id
    exits: np.ndarray  # trie nodes
    exit_started: np.ndarray  # int16 per exit


def _toggled(nodes: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """The nodes in exactly one of ``nodes`` and ``flips`` (neither with repeats), ascending:
    ``np.setxor1d``, whose argument handling cost 37 us on a key's 91 ends and one flip, in 9."""
    both = np.concatenate([nodes, flips])
    both.sort()
    single = np.ones(both.size, dtype=bool)
    twice = both[1:] == both[:-1]
    single[1:] &= ~twice
    single[:-1] &= ~twice
    return both[single]


def _weight(value: object) -> int:
    """Bytes a cache entry holds, counted by its arrays."""
    if isinstance(value, CompiledGrammar):
        return value._cached_bytes()
    if isinstance(value, ByteDFA):
        return 2 * value.table.nbytes + value.accepting.nbytes  # with its flat table
    assert isinstance(value, tuple), type(value)  # a pure part or _Units
    return sum(a.nbytes for a in value)


class _LRU(OrderedDict):  # type: ignore[type-arg]
    """A mapping bounded in bytes (``_weight`` of each value) that forgets the least recently
    used entries first (thread-safe). The newest entry stays, whatever its size."""

    def __init__(self, capacity_bytes: int) -> None:
        super().__init__()
        self.capacity_bytes = capacity_bytes
        self.bytes = 0
        self._weights: dict[object, int] = {}
        self.lock = threading.Lock()

    def lookup(self, key: object) -> object:
        with self.lock:
            value = self.get(key)
            if value is not None:
                self.move_to_end(key)
            return value

    def keep(self, key: object, value: object) -> object:
        """Store ``value`` unless another thread stored one first; return the stored one."""
        with self.lock:
            stored = self.setdefault(key, value)
            if key not in self._weights:
                self._weights[key] = _weight(stored)
                self.bytes += self._weights[key]
            self.move_to_end(key)
            self._trim()
            return stored

    def reweigh(self) -> None:
        """Weigh every entry again (compiled grammars grow as they cache masks), then trim."""
        with self.lock:
            for key, value in self.items():
                weight = _weight(value)
                self.bytes += weight - self._weights[key]
                self._weights[key] = weight
            self._trim()

    def _trim(self) -> None:
        while self.bytes > self.capacity_bytes and len(self) > 1:
            key, _ = self.popitem(last=False)
            self.bytes -= self._weights.pop(key)


@dataclass
class _Shared:
    """What grammars compiled for one vocabulary share: byte DFAs by regex (and the windows of
    counted strings, ``CompiledGrammar._window``), pure masks by what the DFA reads from a state on
    (``ByteDFA.signature``). Most JSON-Schema grammars lex strings
    and numbers alike, so a new schema mostly reuses the vocabulary walks of earlier ones.
    ``cache_bytes`` bounds them: a quarter for pure masks, an eighth each for DFAs and walks."""

    cache_bytes: int = _CACHE_BYTES
    dfas: _LRU = field(init=False)
    pure: _LRU = field(init=False)
    # Trie nodes read on inside one terminal: (DFA serial, DFA state, trie nodes) -> ``_Below``.
    # Read without locking on the hot path; the oldest entries go first once they hold
    # ``below_capacity`` bytes.
    below: "dict[tuple[int, int, bytes], _Below]" = field(default_factory=dict)
    below_bytes: int = 0
    below_capacity: int = field(init=False)
    # Per DFA signature: where a lexeme may end in the trie's first levels, which tells whether a
    # walk from its ends would be a root pass (``CompiledGrammar._opens_wide``).
    ends_near_root: dict[Hashable, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.dfas = _LRU(0)
        self.pure = _LRU(0)
        self.resize(self.cache_bytes)

    def resize(self, cache_bytes: int) -> None:
        self.cache_bytes = cache_bytes
        self.dfas.capacity_bytes = cache_bytes // 8
        self.pure.capacity_bytes = cache_bytes // 4
        self.dfas.reweigh()
        self.pure.reweigh()
        with self.lock:
            self.below_capacity = cache_bytes // 8
            self.trim_below()

    def trim_below(self) -> None:
        """Drop the oldest walks past ``below_capacity`` (with ``lock`` held)."""
        while self.below_bytes > self.below_capacity:
            oldest = next(iter(self.below))
            self.below_bytes -= _nbytes(oldest, self.below.pop(oldest))


def _set_below(words: np.ndarray, below: _Below) -> None:
    """Set the tokens of ``below`` in the packed mask ``words`` (in compiled code where built: a
    walk's first terminals set a few dozen words each, 19k times on every 10th dev schema)."""
    if _kernel is not None:
        _kernel.or_at(words, below.at, below.bits)
    else:
        words[below.at] |= below.bits


def _nbytes(key: tuple[int, int, bytes], parts: "_Below") -> int:
    return len(key[2]) + sum(part.nbytes for part in parts)


@dataclass
class CompiledGrammar:
    """A grammar compiled for one vocabulary: reusable across sequences and threads.

    Create with :class:`GrammarCompiler`. ``roots`` lists the start rules a :class:`Matcher`
    may begin from; all share this object's caches.
    """

    vocabulary: Vocabulary
    roots: tuple[str, ...]
    terminal_names: tuple[str, ...]
    _table: ParseTable = field(repr=False)
    _dfas: list[ByteDFA] = field(repr=False)
    _ignored: list[int] = field(repr=False)
    _trie: TokenTrie = field(repr=False)
    _shared: _Shared = field(default_factory=_Shared, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self._words = words_for(self.vocabulary.size)
        self._eos = pack_bool_mask(self._bool_of(sorted(self.vocabulary.eos_token_ids)))
        self._generation = _Generation(self)
        # Pure parts by (terminal, DFA state) (``_pure_part``); also held by the shared cache
        # while it keeps them, and weighed here as this grammar's.
        self._pure_refs: dict[tuple[int, int], _Pure] = {}
        self._pure_ref_bytes = 0

    def _current_generation(self) -> "_Generation":
        """The generation new matchers start in (renewed once the current one is too big)."""
        with self._lock:
            if len(self._generation.automaton.configs) > _MAX_STATES:
                self._generation = _Generation(self)
            return self._generation

    # -- masks ----------------------------------------------------------------------------------

    def _bool_of(self, ids: "np.ndarray | list[int]") -> np.ndarray:
        allowed = np.zeros(self._words * 32, dtype=bool)
        allowed[np.asarray(ids, dtype=np.int64)] = True
        return allowed

    def _packed_of(self, ids: np.ndarray) -> np.ndarray:
        """Packed mask of the token ``ids`` (repeats allowed). A first visit's walk finds a few
        dozen tokens: setting their bits costs a tenth of a bool per token id packed."""
        if ids.size > _SCATTERED_IDS:
            return pack_bool_mask(self._bool_of(ids))
        words = np.zeros(self._words, dtype=np.uint32)
        if ids.size:
            np.bitwise_or.at(words, ids >> 5, np.left_shift(np.uint32(1), (ids & 31).astype(np.uint32)))
        return words.view(np.int32)

    def _union(self, masks: list[np.ndarray]) -> np.ndarray:
        """A new packed mask, the union of ``masks``."""
        if len(masks) < 2:
            return masks[0].copy() if masks else np.zeros(self._words, dtype=np.int32)
        words = masks[0] | masks[1]
        for mask in masks[2:]:
            words |= mask
        return words

    def _words_at(self, nodes: list[np.ndarray]) -> np.ndarray:
        """Packed mask of the tokens ending at any of ``nodes`` (arrays of trie nodes, repeats
        allowed). Walks through adjacent terminals meet many nodes several times: past a few
        thousand, flagging nodes and reading the flags per token id beats listing tokens."""
        trie = self._trie
        total = sum(n.size for n in nodes)
        if total <= _LISTED_NODES:
            return self._packed_of(trie.tokens_at(np.concatenate(nodes)) if nodes else np.zeros(0, np.int64))
        hit = np.zeros(trie.n_nodes + 1, dtype=bool)  # the last slot: ids without content
        for n in nodes:
            hit[n] = True
        allowed = np.zeros(self._words * 32, dtype=bool)
        allowed[: trie.node_of_id.size] = hit[trie.node_of_id]
        return pack_bool_mask(allowed)

    def _pure_part(self, terminal: int, dfa_state: int) -> _Pure:
        """The pure part of a terminal's state for a crossing walk from its ends: raises
        ``_WideWalk`` rather than making one whose ends are too many to walk from. Kept by
        (terminal, DFA state) too, up to ``_PURE_REF_BYTES``: the shared cache's lookup by
        signature cost 0.8 us, and a first visit asks for 5 (99 in an object of 100 keys)."""
        key = (terminal, dfa_state)
        pure = self._pure_refs.get(key)
        if pure is None:
            pure = self._pure_of(self._dfas[terminal], dfa_state, wide_walk=True)
            weight = _weight(pure)
            if self._pure_ref_bytes + weight > _PURE_REF_BYTES:
                self._pure_refs.clear()
                self._pure_ref_bytes = 0
            self._pure_refs[key] = pure
            self._pure_ref_bytes += weight
        return pure

    def _pure_of(self, dfa: ByteDFA, dfa_state: int, wide_walk: bool = False) -> _Pure:
        if dfa.counter is not None:
            return self._counted_pure(dfa.counter, dfa_state)
        key = dfa.signature(dfa_state)
        pure = self._shared.pure.lookup(key)
        if pure is None and dfa.literal is not None:
            pure = self._shared.pure.keep(key, self._literal_pure(dfa.literal[dfa_state:]))
        if pure is None and isinstance(key, tuple) and key[0] == "forced":
            pure = self._shared.pure.keep(key, self._forced_pure(dfa, dfa_state))
        if pure is None and dfa.shadow is not None:
            shadow = dfa.shadow
            base = self._pure_of(shadow.base, int(shadow.base_state[dfa_state]))
            pure = base if not shadow.in_words[dfa_state] else self._shadow_pure(dfa, dfa_state, base)
            pure = self._shared.pure.keep(key, pure)
        if pure is None:
            if wide_walk and self._opens_wide(dfa, dfa_state, key):
                raise _WideWalk
            pure = self._shared.pure.keep(key, self._trie_pass(dfa, dfa_state))
        assert isinstance(pure, tuple)
        return pure

    def _trie_pass(self, dfa: ByteDFA, dfa_state: int) -> _Pure:
        """The pure part of a DFA state from one pass over the trie: the tokens it reads alive,
        and the nodes with bytes below where it accepts (ending before any byte, at the root, is
        the caller's case: the boundary's own mask). In compiled code the pass costs the live
        nodes' children while they are few (a pattern keeps a few thousand of Llama-3.2's 274,521
        nodes: 1.0 ms in numpy, which steps whole levels once they fill, 0.18 ms so), then each node
        of the levels below once."""
        trie = self._trie
        if _kernel is not None:
            near = self._near_pass(dfa, dfa_state)
            if near is not None:
                return near
            stay = np.zeros(self._words, dtype=np.int32)
            ends = _kernel.dfa_pass(
                trie.kernel_arrays, trie.kernel_levels, dfa.flat_table(), dfa.accepting, dfa_state * 256, stay
            )
            if not dfa.dense_state and np.count_nonzero(stay) * 4 > stay.size:
                dfa.dense_state.append(dfa_state)
            return stay, np.frombuffer(ends, dtype=np.int64)
        states, nodes, node_states = trie.level_pass(dfa.flat_table(), dfa.n_states, dfa_state)
        if states is None:
            stay = self._packed_of(trie.tokens_at(nodes))
            return stay, nodes[(trie.child_count[nodes] > 0) & dfa.accepting[node_states >> 8]]
        stay = pack_bool_mask(states[trie.node_of_id] != dfa.n_states * 256)
        return stay, trie.exits(states, np.flatnonzero(dfa.accepting) * 256)

    def _opens_wide(self, dfa: ByteDFA, dfa_state: int, key: Hashable) -> bool:
        """Whether a walk from where a lexeme read from ``dfa_state`` may end would start at more
        than ``_FOLLOWED_NODES`` trie nodes (words next to words), told from the trie's first
        three levels (more than half as many ends there) before the pure part (``key``) is made:
        the state's mask is then one root pass, and the pure part, a pass over the whole trie,
        would be wasted (a third of arithmetic's first mask on Llama-3.2)."""
        near = self._shared.ends_near_root.get(key)
        if near is None:
            near = self._shared.ends_near_root[key] = self._trie.ends_near_root(
                dfa.flat_table(), dfa.n_states, dfa.accepting, dfa_state, 3
            )
        # Such lexemes end at ten times more nodes below (Llama-3.2: an identifier at 6,600 in
        # the first three levels, 47,000 in all; ``[a-z]+`` at 3,100 and 18,600), JSON's numbers
        # and blanks at a few dozen there, a string's content at its quote.
        return near * 2 > _FOLLOWED_NODES

    def _counted_pure(self, counting: Counted, dfa_state: int) -> _Pure:
        """The pure part inside a counted string from the uncounted string's units per token.

        Tokens stay inside when the uncounted string reads them, they start no more units than
        are left, and where they close the string, no fewer than are needed. A token starts at
        most one unit per byte, so counts past the longest token read alike and every string
        sharing the uncounted automaton shares these parts: instead of a pass over the trie per
        position (a new state at each character), a few comparisons over the vocabulary.
        """
        cap = self._trie.max_len + 1
        remaining = counting.remaining(dfa_state)
        left = cap if remaining < 0 else min(remaining, cap)
        needed = min(counting.needed(dfa_state), cap)
        base, base_state = counting.base, counting.split(dfa_state)[0]
        key = ("counted", base.signature(base_state), left, needed)
        pure = self._shared.pure.lookup(key)
        if pure is None:
            units = self._units(counting, base_state)
            stay = units.alive & (units.started <= left) & (~units.closed | (units.started >= needed))
            exits = units.exits[(units.exit_started <= left) & (units.exit_started >= needed)]
            pure = self._shared.pure.keep(key, (pack_bool_mask(stay), exits))
        assert isinstance(pure, tuple)
        return pure

    def _units(self, counting: Counted, base_state: int) -> "_Units":
        base = counting.base
        key = ("units", base.signature(base_state))
        units = self._shared.pure.lookup(key)
        if units is None:
            trie = self._trie
            dead = base.n_states * 256
            increments = np.concatenate([counting.starts, np.zeros((1, 256), np.int8)]).ravel()
            states, counts = trie.count_pass(base.flat_table(), base.n_states, base_state, increments)
            ends = np.flatnonzero(base.accepting) * 256
            token_states = states[trie.node_of_id]
            exits = trie.exits(states, ends)
            units = self._shared.pure.keep(
                key,
                _Units(
                    alive=token_states != dead,
                    closed=np.isin(token_states, ends),
                    started=counts[trie.node_of_id],
                    exits=exits,
                    exit_started=counts[exits],
                ),
            )
        assert isinstance(units, _Units)
        return units

    def _below(self, dfa: ByteDFA, dfa_state: int, nodes: np.ndarray, node_key: "bytes | None" = None) -> "_Below":
        """``TokenTrie.below`` read in ``dfa`` from ``dfa_state``, the tokens of the nodes below as
        the words of a packed mask that have any (a few dozen of 4,008 for Llama-3.2 mostly),
        cached by the node set: walks that enter a terminal meet the same nodes whatever the
        stack (the ``"`` tokens after a colon, say), so every grammar of the compiler lexing with
        that DFA shares the result. A counted string is read in a window of its counts that a
        token can reach. ``node_key``: ``nodes.tobytes()``, where known."""
        if dfa.counter is not None:
            dfa, dfa_state = self._window(dfa, dfa_state)
        shared = self._shared
        key = (dfa._serial, dfa_state, nodes.tobytes() if node_key is None else node_key)
        parts = shared.below.get(key)
        if parts is None:
            if _kernel is not None:
                trie = self._trie
                inside = np.zeros(self._words, dtype=np.int32)
                nodes = np.ascontiguousarray(nodes, dtype=np.int64)
                table, start = dfa.flat_table(), dfa_state * 256
                budget = trie.max_step_nodes
                found = _kernel.below_pass(trie.kernel_arrays, table, dfa.accepting, start, nodes, inside, budget)
                if found is None:
                    raise _over_walk_budget(budget)
                ends = np.frombuffer(found, dtype=np.int64)
            else:
                alive, ends = self._trie.below(dfa.flat_table(), dfa.n_states, dfa.accepting, nodes, dfa_state)
                inside = self._words_at([alive])
            at = np.flatnonzero(inside)
            parts = _Below(at, inside[at], ends)
            with shared.lock:
                if key not in shared.below:
                    shared.below[key] = parts
                    shared.below_bytes += _nbytes(key, parts)
                shared.trim_below()
        return parts

    def _window(self, dfa: ByteDFA, dfa_state: int) -> tuple[ByteDFA, int]:
        """The window a counted string reads in from ``dfa_state`` for one token, with the state it
        starts at there (``Counted.window_of``). Windows are kept with the terminal automata: every
        grammar of the compiler whose strings have the same units shares them."""
        assert dfa.counter is not None
        key, start = dfa.counter.window_of(dfa_state, self._trie.max_len)
        window = self._shared.dfas.lookup(key)
        if window is None:
            window = self._shared.dfas.keep(key, dfa.counter.window(key))
        assert isinstance(window, ByteDFA)
        return window, start

    def _near_pass(self, dfa: ByteDFA, dfa_state: int) -> "_Pure | None":
        """The pure part of ``dfa_state`` from that of a state of the same DFA whose pass kept most
        of the trie alive, read beside it only until both meet in one state: a pattern's states
        inside a string (``10\\.\\d+(\\.\\d+)?/.+``: 87 of them, dozens met) mostly read as
        one another after a byte or two, where each pass over the whole trie cost 1-1.6 ms. None
        without such a state, or when they read apart for more than ``_NEAR_NODES`` nodes."""
        if not dfa.dense_state or dfa.dense_state[0] == dfa_state:
            return None
        assert _kernel is not None
        near = dfa.dense_state[0]
        base = self._shared.pure.lookup(dfa.signature(near))
        if base is None:  # forgotten: the next dense state is read instead
            dfa.dense_state.clear()
            return None
        table = dfa.flat_table()
        accepting = dfa.accepting
        flips = _kernel.pair_pass(
            self._trie.kernel_arrays, table, accepting, table, accepting, dfa_state * 256, near * 256, None, _NEAR_NODES
        )
        if flips is None:
            return None
        assert isinstance(base, tuple)
        return self._flipped(base, *flips)

    def _flipped(self, base: _Pure, stay_flip: bytes, exit_flip: bytes) -> _Pure:
        """``base`` with the tokens at the nodes ``stay_flip`` and the ends ``exit_flip`` (native
        int64) flipped."""
        stay, exits = base
        flip_nodes, flip_exits = np.frombuffer(stay_flip, np.int64), np.frombuffer(exit_flip, np.int64)
        if flip_nodes.size:
            flip = self._trie.tokens_at(flip_nodes)
            stay = stay.copy()
            words = stay.view(np.uint32)
            if flip.size <= _FEW_FLIPS:
                # A key's string minus names flips a token or two: ufunc.at costs 6 us more.
                for token in flip.tolist():
                    words[token >> 5] ^= 1 << (token & 31)
            else:
                np.bitwise_xor.at(words, flip >> 5, np.left_shift(np.uint32(1), (flip & 31).astype(np.uint32)))
        if flip_exits.size:
            exits = _toggled(exits, flip_exits)
        return stay, exits

    def _shadow_pure(self, dfa: ByteDFA, dfa_state: int, base: _Pure) -> _Pure:
        """The pure part of a DFA-minus-words state from its base state's: only trie paths that
        can still complete a word read differently, so only they are walked (a few nodes instead
        of a pass over the whole trie), in compiled code where built: the children of the nodes
        along the words are thousands (a key's quote has 2,000 below it in Llama-3.2)."""
        shadow = dfa.shadow
        assert shadow is not None
        base_state = int(shadow.base_state[dfa_state])
        if _kernel is None:
            return self._flipped(base, *self._shadow_flips(dfa, dfa_state, base_state))
        flips = _kernel.pair_pass(
            self._trie.kernel_arrays,
            dfa.flat_table(),
            dfa.accepting,
            shadow.base.flat_table(),
            shadow.base.accepting,
            dfa_state * 256,
            base_state * 256,
            shadow.in_words,
            0,
        )
        assert flips is not None
        return self._flipped(base, *flips)

    def _shadow_flips(self, dfa: ByteDFA, dfa_state: int, base_state: int) -> tuple[bytes, bytes]:
        """``_walk.pair_pass`` of a DFA minus words in Python: the nodes read alive in one DFA and
        not the other, and the nodes with bytes below where one accepts and not the other."""
        shadow = dfa.shadow
        assert shadow is not None
        trie = self._trie
        child_start, child_count, byte_of = trie.child_start_view, trie.child_count_view, trie.byte_view
        in_words = memoryview(np.ascontiguousarray(shadow.in_words))  # type: ignore[arg-type]
        accepting = memoryview(np.ascontiguousarray(dfa.accepting))  # type: ignore[arg-type]
        base_accepting = memoryview(np.ascontiguousarray(shadow.base.accepting))  # type: ignore[arg-type]
        dead_row = [DEAD_DFA] * 256
        rows: dict[int, list[int]] = {DEAD_DFA: dead_row}
        base_rows: dict[int, list[int]] = {DEAD_DFA: dead_row}
        stay_flip: list[int] = []
        exit_flip: list[int] = []
        frontier = [(0, dfa_state, base_state)]
        while frontier:
            deeper = []
            for node, state, base_at in frontier:
                row = rows.get(state)
                if row is None:
                    row = rows[state] = dfa.table[state].tolist()
                base_row = base_rows.get(base_at)
                if base_row is None:
                    base_row = base_rows[base_at] = shadow.base.table[base_at].tolist()
                first = child_start[node]
                for child in range(first, first + child_count[node]):
                    byte = byte_of[child]
                    nxt, base_nxt = row[byte], base_row[byte]
                    if nxt < 0:
                        if base_nxt < 0:
                            continue
                    elif not in_words[nxt]:
                        continue  # no word can be completed any more: both read alike below
                    if (nxt >= 0) != (base_nxt >= 0):
                        stay_flip.append(child)
                    ends = nxt >= 0 and accepting[nxt]
                    base_ends = base_nxt >= 0 and base_accepting[base_nxt]
                    if ends != base_ends and child_count[child]:
                        exit_flip.append(child)
                    deeper.append((child, nxt, base_nxt))
            frontier = deeper
        return np.array(stay_flip, dtype=np.int64).tobytes(), np.array(exit_flip, dtype=np.int64).tobytes()

    def _literal_pure(self, rest: bytes) -> _Pure:
        """The pure part inside a fixed string: the tokens that are prefixes of what is left of it
        (in compiled code, where built: a key's positions cost 43 µs each in Python inside a mask,
        3 in C)."""
        trie = self._trie
        if _kernel is not None:
            stay = np.zeros(self._words, dtype=np.int32)
            last = _kernel.literal_pass(trie.kernel_arrays, rest, stay)
        else:
            nodes = trie.path(rest)
            stay = self._packed_of(trie.tokens_at(nodes))
            last = int(nodes[-1]) if 0 < nodes.size == len(rest) else -1
        if last >= 0 and trie.child_count[last] > 0:
            return stay, np.array([last], dtype=np.int64)
        return stay, np.zeros(0, np.int64)

    def _forced_pure(self, dfa: ByteDFA, dfa_state: int) -> _Pure:
        """The pure part of a state every lexeme goes on from with the same bytes (``forced``):
        the tokens that are prefixes of them, and those reading on from the trie node that spells
        them, in the state after them (a walk below one node, not a pass over the whole trie:
        a schema's 63 HTTP codes took 40 ms in one mask)."""
        forced, after = dfa.forced(dfa_state)
        trie = self._trie
        nodes = trie.path(forced)
        if nodes.size < len(forced):
            return self._packed_of(trie.tokens_at(nodes)), np.zeros(0, np.int64)
        below = self._below(dfa, after, nodes[-1:])
        words = self._words_at([nodes])
        _set_below(words, below)
        return words, below.ends

    def _cached_bytes(self) -> int:
        # What the compiler's cache charges this grammar (shared parts are charged apart).
        return self._generation.cached_bytes() + self._pure_ref_bytes

    def memory_bytes(self) -> int:
        """Approximate bytes held by this grammar's tables and caches, with the pure masks it
        shares with other grammars of its compiler (the vocabulary trie excluded)."""
        mine = {sig for dfa in self._dfas for sig in dfa._signatures.values()}
        # Counted strings' parts are keyed by the uncounted automaton's signatures.
        counted = {sig for dfa in self._dfas if dfa.counter is not None for sig in dfa.counter.base._signatures.values()}
        with self._shared.pure.lock:
            parts = [
                p
                for key, p in self._shared.pure.items()
                if key in mine or (key[0] in ("counted", "units") and key[1] in counted)
            ]
        total = sum(_weight(p) for p in parts)
        # Pure parts the shared cache has let go of, still held by (terminal, DFA state).
        shared = {id(p) for p in parts}
        total += sum(_weight(p) for p in list(self._pure_refs.values()) if id(p) not in shared)
        bases = {dfa.counter.base._serial for dfa in self._dfas if dfa.counter is not None}
        with self._shared.dfas.lock:
            windows = [w for key, w in self._shared.dfas.items() if isinstance(key, tuple) and key[1] in bases]
        serials = {dfa._serial for dfa in self._dfas + windows}
        with self._shared.lock:
            total += sum(_nbytes(key, p) for key, p in self._shared.below.items() if key[0] in serials)
        total += sum(d.table.nbytes + sum(f.nbytes for f in d._flat) for d in self._dfas + windows)
        return total + self._generation.memory_bytes()


class GrammarCompiler:
    """Compiles grammars for one vocabulary and caches them by grammar text and options.

    Thread-safe; concurrent compiles of one grammar are done once. The first compile of a
    vocabulary also builds its byte trie (about a second for a 128k vocabulary); later compiles
    reuse it, and share terminal DFAs and the masks inside terminals with every grammar this
    compiler compiled before. ``cache_bytes`` bounds what its caches hold: compiled grammars with
    their masks (half of it, least recently used dropped first; a grammar grows as its matchers
    meet new states and is weighed again at each compile call), masks inside terminals, terminal
    automata and trie walks shared between grammars (the rest). Every compile, conversion included, must finish within ``budget_s`` (``CompileBudgetError``).
    ``processes`` > 0 compiles in that many worker processes instead of the calling thread (see
    ``use_processes``).
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        *,
        budget_s: float = 30.0,
        cache_bytes: int = _CACHE_BYTES,
        processes: int = 0,
        max_waiting: int = 8,
    ) -> None:
        self.vocabulary = vocabulary
        self.budget_s = budget_s
        self._cache = _LRU(0)
        self._shared = _Shared()
        self.set_cache_bytes(cache_bytes)
        self._pending: dict[object, Future[CompiledGrammar]] = {}
        self._pending_lock = threading.Lock()
        self._processes: CompileProcesses | None = None
        self.use_processes(processes, max_waiting=max_waiting)

    def set_cache_bytes(self, cache_bytes: int) -> None:
        """Bound the caches to ``cache_bytes`` from now on (dropping what no longer fits)."""
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes <= 0:
            raise ValueError(f"cache_bytes must be a positive integer, got {cache_bytes!r}")
        self.cache_bytes = cache_bytes
        self._shared.resize(cache_bytes)
        self._cache.capacity_bytes = cache_bytes // 2
        self._cache.reweigh()

    def memory_bytes(self) -> int:
        """Bytes the caches hold now, as ``cache_bytes`` bounds them: compiled grammars' masks
        and automaton tables, and the masks, automata and walks they share."""
        self._cache.reweigh()
        shared = self._shared
        return self._cache.bytes + shared.pure.bytes + shared.dfas.bytes + shared.below_bytes

    def use_processes(self, processes: int, *, max_waiting: int = 8) -> None:
        """Compile in ``processes`` worker processes (0: in the calling thread), with up to
        ``max_waiting`` more compiles waiting for one; beyond that a compile raises
        ``QueueFullError`` at once, and so does one that waited ``budget_s`` without a worker.
        A compile in a worker holds no lock of this process (the calling thread only waits) and
        is killed at its budget; cached grammars never wait.
        Returns once the workers are up (they start in parallel, about half a second); they
        run at a lower CPU priority than this process.
        """
        for name, value in (("processes", processes), ("max_waiting", max_waiting)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        old, self._processes = self._processes, None
        if old is not None:
            old.close()
        if processes:
            self._processes = CompileProcesses(processes, max_waiting, _warm_worker)

    @property
    def processes(self) -> tuple[int, int]:
        """``(processes, max_waiting)`` as last set by ``use_processes`` (``(0, 0)``: in-thread)."""
        pool = self._processes
        return (0, 0) if pool is None else (pool.processes, pool.max_waiting)

    def close(self) -> None:
        """Stop the worker processes, if any (compiles after this run in the calling thread)."""
        self.use_processes(0)

    def compile_builtin(self, whitespace: str = "bounded") -> CompiledGrammar:
        """The built-in JSON / function-calling grammar with every documented root (the same
        grammar, and cache entry, as ``compile_lark`` of its text)."""
        key = ("lark", builtin_grammar_text(whitespace), BUILTIN_ROOTS)
        return self._compiled(key, _build_builtin, (whitespace,))

    def compile_lark(
        self, grammar: str, start: "str | list[str] | tuple[str, ...]" = "start"
    ) -> CompiledGrammar:
        """Compile Lark grammar text; ``start`` names the root rule(s) matchers may begin from.

        Raises GrammarError (with line, column or rule) for grammars that do not parse, use
        undefined rules, unsupported regex features or exceed the time budget.
        """
        starts = (start,) if isinstance(start, str) else tuple(start)
        return self._compiled(("lark", grammar, starts), _build_lark, (grammar, starts))

    # -- JSON Schema, pydantic and tools (written by onrails.grammars) ----------------------

    def compile_json_schema(
        self,
        schema: "dict[str, object] | bool | str",
        *,
        whitespace: str = "flexible",
        strict: bool = True,
        schemas: "Mapping[str, dict[str, object] | bool] | None" = None,
    ) -> CompiledGrammar:
        """Compile a JSON Schema (dict, boolean or JSON text); its root is the schema's value.

        ``schemas`` maps absolute URIs to the other documents its ``$ref``s may name (nothing
        is fetched). Cached by the canonical JSON of the schema and documents, and the options.
        Raises SchemaError (invalid schema, a ``$ref`` to a URI no document defines, or a
        keyword not enforceable exactly in strict mode), GrammarError or CompileBudgetError.
        ``schema_to_grammar`` shows the Lark text and, in lenient mode, what was left out.
        """
        loaded = load_schema(schema)
        documents = load_documents(schemas)
        key = ("schema", json.dumps([loaded, documents], sort_keys=True, ensure_ascii=False), whitespace, strict)
        return self._compiled(key, _build_schema, (loaded, whitespace, strict, documents))

    def compile_pydantic(
        self, model_or_type: object, *, whitespace: str = "flexible", strict: bool = True
    ) -> CompiledGrammar:
        """Compile the JSON Schema of a pydantic BaseModel class or any type TypeAdapter takes."""
        return self.compile_json_schema(pydantic_schema(model_or_type), whitespace=whitespace, strict=strict)

    def compile_tools(
        self,
        tools: "list[dict[str, object]]",
        *,
        tool_choice: "str | dict[str, object]" = "auto",
        parallel_tool_calls: bool = True,
        whitespace: str = "bounded",
        strict: bool = True,
    ) -> CompiledGrammar:
        """Compile OpenAI-style tools into the built-in function-calling rules, specialised.

        The grammar's single root depends on ``tool_choice`` (see ``onrails.grammars.tools``).
        """
        options = (tool_choice, parallel_tool_calls, whitespace, strict)
        try:
            key: object = ("tools", json.dumps([tools, *options], sort_keys=True, ensure_ascii=False))
        except (TypeError, ValueError):
            key = None  # not JSON: the conversion refuses it with a message naming the place
        return self._compiled(key, _build_tools, (tools, *options))

    def _compiled(self, key: object, build: "Callable[..., _Built]", args: tuple[object, ...]) -> CompiledGrammar:
        """The cached grammar of ``key``, or ``build(*args, deadline)`` attached to this
        vocabulary, the deadline ``budget_s`` from when the build starts; callers asking for a
        key being compiled wait for that compile."""
        self._cache.reweigh()
        cached = self._cache.lookup(key) if key is not None else None
        if isinstance(cached, CompiledGrammar):
            return cached
        with self._pending_lock:
            running = self._pending.get(key) if key is not None else None
            if running is None:
                mine: Future[CompiledGrammar] = Future()
                if key is not None:
                    self._pending[key] = mine
        if running is not None:
            return running.result()
        try:
            processes = self._processes
            if processes is None:
                built = build(*args, time.monotonic() + self.budget_s, self._shared.dfas)
            else:
                built = processes.run(build, args, self.budget_s)
            compiled = self._attach(built)
            if key is not None:
                stored = self._cache.keep(key, compiled)
                assert isinstance(stored, CompiledGrammar)
                compiled = stored
            mine.set_result(compiled)
            return compiled
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            if key is not None:
                with self._pending_lock:
                    del self._pending[key]

    def _attach(self, built: "_Built") -> CompiledGrammar:
        shared = self._shared
        # Automata built elsewhere give way to equal ones already here, whose work is cached.
        dfas = []
        for regex, dfa in zip(built.regexes, built.dfas):
            kept = shared.dfas.keep(regex, dfa)
            assert isinstance(kept, ByteDFA)
            dfas.append(kept)
        return CompiledGrammar(
            vocabulary=self.vocabulary,
            roots=built.starts,
            terminal_names=built.terminal_names,
            _table=built.table,
            _dfas=dfas,
            _ignored=built.ignored,
            _trie=_trie_for(self.vocabulary),
            _shared=shared,
        )


@dataclass(frozen=True)
class _Built:
    """A compiled grammar before it meets a vocabulary (what a compile process sends back)."""

    starts: tuple[str, ...]
    terminal_names: tuple[str, ...]
    regexes: tuple[str, ...]
    dfas: tuple[ByteDFA, ...]
    table: ParseTable
    ignored: list[int]


# Terminal automata a compile process built, by regex, kept for its later compiles.
_worker_dfas: "_LRU | None" = None


def _dfa_cache(dfas: "_LRU | None") -> _LRU:
    global _worker_dfas
    if dfas is not None:
        return dfas
    if _worker_dfas is None:
        _worker_dfas = _LRU(_WORKER_DFA_BYTES)
    return _worker_dfas


def _build_spec(spec: GrammarSpec, deadline: float, dfas: "_LRU | None") -> _Built:
    cache = _dfa_cache(dfas)
    built = []
    empty = set()
    for t in spec.terminals:
        dfa = cache.lookup(t.regex)
        if dfa is None:
            try:
                dfa = cache.keep(t.regex, regex_to_byte_dfa(t.regex, name=t.name, deadline=deadline))
            except EmptyLanguage:
                # an intersection or difference (a schema's pattern within a length...) can turn
                # out empty only here: what uses it is impossible, as for an unproductive rule
                if not has_notes(t.regex):
                    raise
                empty.add(t.name)
                continue
        assert isinstance(dfa, ByteDFA)
        built.append(dfa)
    if empty:
        spec = without_terminals(spec, empty)
    table = build_parse_table(spec, deadline)
    index = {t.name: i for i, t in enumerate(spec.terminals)}
    return _Built(
        starts=spec.starts,
        terminal_names=tuple(t.name for t in spec.terminals),
        regexes=tuple(t.regex for t in spec.terminals),
        dfas=tuple(built),
        table=table,
        ignored=[index[name] for name in spec.ignore if name in index],
    )


@collector_held
def _build_lark(grammar: str, starts: tuple[str, ...], deadline: float, dfas: "_LRU | None" = None) -> _Built:
    return _build_spec(parse_lark(grammar, starts), deadline, dfas)


@collector_held
def _build_builtin(whitespace: str, deadline: float, dfas: "_LRU | None" = None) -> _Built:
    terminals, rules, ignore = builtin_rules(whitespace)
    spec = GrammarSpec(
        terminals=tuple(TerminalSpec(name=name, regex=regex) for name, regex in terminals),
        rules=tuple(RuleSpec(lhs=lhs, rhs=rhs) for lhs, rhs in rules),
        ignore=ignore,
        starts=BUILTIN_ROOTS,
    )
    return _build_spec(spec, deadline, dfas)


@collector_held
def _build_schema(
    loaded: "dict[str, object] | bool",
    whitespace: str,
    strict: bool,
    documents: "dict[str, dict[str, object] | bool]",
    deadline: float,
    dfas: "_LRU | None" = None,
) -> _Built:
    # One budget for converting and compiling, not one each.
    budget = max(0.0, deadline - time.monotonic())
    converted = schema_to_grammar(loaded, whitespace=whitespace, strict=strict, budget_s=budget, schemas=documents)
    spec = spec_from_rules(converted.rules, converted.terminals, (converted.start,), converted.item_sets)
    return _build_spec(spec, deadline, dfas)


@collector_held
def _build_tools(
    tools: "list[dict[str, object]]",
    tool_choice: "str | dict[str, object]",
    parallel_tool_calls: bool,
    whitespace: str,
    strict: bool,
    deadline: float,
    dfas: "_LRU | None" = None,
) -> _Built:
    converted = tools_to_grammar(
        tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        whitespace=whitespace,
        strict=strict,
        budget_s=max(0.0, deadline - time.monotonic()),
    )
    return _build_lark(converted.lark, (converted.start,), deadline, dfas)


def _warm_worker() -> None:
    """Load what compiles need once per process before the first: the Unicode classes of regex
    escapes (for schemas, which skip Lark) and Lark's own grammar (for Lark text and tools)."""
    deadline = time.monotonic() + 60.0
    _build_schema({"type": "string", "pattern": "^\\d\\w\\s\\D$"}, "flexible", True, {}, deadline)
    _build_lark('start: "a"', ("start",), deadline)


def _over_walk_budget(budget: int) -> CompileBudgetError:
    """What a compiled walk or reading past ``budget`` (trie node, state) pairs raises."""
    return CompileBudgetError(f"a token mask would walk more than {budget} (trie node, state) pairs (its budget)")


def _starts(pairs: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Walk starts as (trie nodes, automaton state of each) from (nodes, one state) pairs."""
    nodes = np.concatenate([n for n, _ in pairs])
    states = np.repeat(np.array([s for _, s in pairs], dtype=np.int64), [n.size for n, _ in pairs])
    return nodes, states


class _WideWalk(Exception):
    """A configuration's crossing walk would start at more than ``_FOLLOWED_NODES`` trie nodes."""


class _Entered:
    """The (trie node, automaton state) pairs a walk was started at or sent to by following
    terminals. Where terminals may follow each other (``A*`` with ``A: /[a-z]+/``, a blank
    run of an ignored terminal), a run of bytes splits into terminals in exponentially many
    ways, each reaching the same node at the same boundary; each such pair goes on once.

    The nodes entered at a state are a Python set while they are few (most walks: a JSON
    value's ends, a node or two past each terminal of a long token), then flags per trie node
    (``NodePairs``).
    """

    def __init__(self, n_nodes: int, nodes: np.ndarray, states: np.ndarray) -> None:
        self._start = (nodes, states)
        self._start_states: set[int] | None = None
        self._first: dict[int, np.ndarray] = {}
        self._few: dict[int, set[int]] = {}
        self._many = NodePairs(n_nodes)
        self._flagged: set[int] = set()

    def _fresh(self, at: np.ndarray, state: int) -> np.ndarray:
        """The nodes of ``at`` not entered at ``state`` before, once each; marks them entered."""
        if state not in self._flagged:
            seen = self._few.get(state)
            if seen is None:
                start_nodes, start_states = self._start
                first = self._first.pop(state, None)
                if self._start_states is None:
                    self._start_states = set(start_states.tolist())
                if first is None and state not in self._start_states:
                    # The first arrival at a state the walk did not start at is taken as it
                    # is: most states are met once, and repeats cost work only from the second.
                    self._first[state] = at
                    return at
                seen = set((start_nodes[start_states == state] if first is None else first).tolist())
            if len(seen) + at.size <= _FEW_ENTERED:
                fresh = [node for node in dict.fromkeys(at.tolist()) if node not in seen]
                seen.update(fresh)
                self._few[state] = seen
                return np.array(fresh, dtype=np.int64)
            self._few.pop(state, None)
            self._many.add(np.fromiter(seen, dtype=np.int64, count=len(seen)), state)
            self._flagged.add(state)
        return self._many.first_time(at, np.full(at.size, state, dtype=np.int64))[0]

    def first_time(self, ends_at: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
        """The (node, state) pairs among ``ends_at`` (nodes, the state they reach) not entered
        before, once each, as nodes and their states."""
        if not ends_at:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        fresh = [self._fresh(at, state) for at, state in ends_at]
        states = np.repeat(np.array([state for _, state in ends_at], dtype=np.int64), [f.size for f in fresh])
        return np.concatenate(fresh), states


def _too_wide(starts: list[tuple[np.ndarray, int]]) -> bool:
    """Whether a walk from ``starts`` begins at more than ``_FOLLOWED_NODES`` trie nodes (a
    root pass costs less than such a walk, and it steps its states whole)."""
    return sum(nodes.size for nodes, _ in starts) > _FOLLOWED_NODES


def _parts_bytes(parts: _Parts) -> int:
    words, suspensions = parts
    if not suspensions:  # nearly all: real stacks never suspend
        return words.nbytes
    return words.nbytes + sum(nodes.nbytes for _, nodes in suspensions)


class _Generation:
    """One lazily built automaton of a compiled grammar, with the mask caches keyed by its states.

    The automaton only grows (every new nesting context adds states), so a long-lived grammar
    starts a fresh generation past ``_MAX_STATES``; matchers keep the generation they began in.
    """

    def __init__(self, grammar: "CompiledGrammar") -> None:
        self.grammar = grammar
        self.automaton = Automaton(grammar._table, grammar._dfas, grammar._ignored)
        self._trie = grammar._trie
        self._lock = grammar._lock
        self._config_masks: "OrderedDict[Config, _Parts]" = OrderedDict()
        self._state_masks: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self.config_mask_bytes = 0
        self.state_mask_bytes = 0
        self._too_shallow: set[Config] = set()
        self._cuts_met: set[Config] = set()
        self._walker: "Walker | None" = None  # see ``_kernel_walker``
        # Per uncounted terminal, its DFA's flat table, accepting flags and dead state (times
        # 256), as ``_ways_of`` hands them to the walker (a few ways per state met).
        self._lexing: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}

    def cached_bytes(self) -> int:
        """Bytes its table, mask caches and walker hold (what the compiler's cache charges)."""
        walker = 0 if self._walker is None else self._walker.held_bytes()
        return self.automaton.trans.nbytes + self.config_mask_bytes + self.state_mask_bytes + walker

    def memory_bytes(self) -> int:
        return self.cached_bytes() + self.automaton.source_bytes()

    def _walk(self, starts: list[tuple[np.ndarray, int]], words: np.ndarray) -> list[_Suspension]:
        """Add to the packed mask ``words`` the tokens that stay alive below the trie nodes of
        ``starts`` ((nodes, the automaton state of each) pairs).

        Also returns where the walk met suspended configurations (truncated stacks only): the
        subtrees below those nodes are finished on the real stack by the caller. The walk runs
        in the compiled kernel (``_walk.c``) where the package was built with it, else in numpy
        (``_walk_numpy``); both give the same masks.
        """
        if _kernel is None:
            walked, suspensions = self._walk_numpy(*_starts(starts))
            words |= walked
            return suspensions
        automaton = self.automaton
        follow = not _too_wide(starts)
        if follow:
            starts = self._enter_terminals(starts, words)
        met = (self._walker or self._kernel_walker()).walk(
            starts,
            follow,
            words,
            self._trie.max_step_nodes,
            (self._ways_of, automaton.boundary_after, automaton.state_sources, automaton.fill_bytes),
        )
        if not met:
            return []
        pairs = np.frombuffer(met, dtype=np.int64).reshape(-1, 2)
        return self._suspensions(pairs[:, 0], pairs[:, 1])

    def _kernel_walker(self) -> "Walker":
        """The compiled walk over this automaton, made at its first use (it keeps the ways of the
        states it followed)."""
        assert _kernel is not None
        if self._walker is None:
            self._walker = _kernel.Walker(self._trie.kernel_arrays, self.automaton, _over_walk_budget)
        return self._walker

    def _enter_terminals(self, starts: list[tuple[np.ndarray, int]], words: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """``starts`` with those at states followed terminal by terminal moved past their first
        terminals (``_past_terminals``). A walk starts where pure parts end, at the same nodes
        whatever the stack (a string's closing quotes, a key's colon): read through ``_below``'s
        cache, that costs a few words set per terminal. The walker read them node by node, 93% of
        the children it stepped (every 10th dev schema: the walks' own time 1,077 -> 446 ms, their
        masks' mean 7-11% lower, paired)."""
        out: list[tuple[np.ndarray, int]] = []
        for nodes, state in starts:
            ways = self.automaton.split(state)
            if ways is None:
                out.append((nodes, state))
            else:
                out += self._past_terminals(nodes, ways, words)
        return out

    def _past_terminals(
        self, nodes: np.ndarray, ways: tuple[Config, ...], words: np.ndarray
    ) -> list[tuple[np.ndarray, int]]:
        """Each of ``ways`` (``Automaton.split``) read on below the trie ``nodes`` in its
        terminal's DFA through ``_below``'s cache, the tokens inside set in ``words``: where each
        terminal may end, with the boundary after it. Never needs the stack below a truncation:
        the terminal was allowed on this stack, which took the same reduction closure that
        shifting it takes."""
        automaton = self.automaton
        node_key = nodes.tobytes()
        out: list[tuple[np.ndarray, int]] = []
        for stack, terminal, dfa_state in ways:
            below = self.grammar._below(automaton.dfas[terminal], dfa_state, nodes, node_key)
            if below.at.size:
                _set_below(words, below)
            ends = below.ends
            if ends.size:
                boundary = automaton.boundary_after(stack, terminal)
                if boundary != DEAD:
                    out.append((ends, boundary))
        return out

    def _ways_of(self, state: int) -> "tuple[tuple[np.ndarray, np.ndarray, int, int, int, int], ...] | None":
        """``Automaton.split`` of ``state`` with each terminal's flat DFA table, accepting flags,
        start and dead state (times 256), for the kernel; None where the state is stepped whole."""
        ways = self.automaton.split(state)
        if ways is None:
            return None
        out = []
        lexing = self._lexing
        for stack, terminal, dfa_state in ways:
            arrays = lexing.get(terminal)
            if arrays is None:
                dfa = self.automaton.dfas[terminal]
                if dfa.counter is None:
                    arrays = lexing[terminal] = (dfa.flat_table(), dfa.accepting, dfa.n_states * 256)
                else:  # a counted string reads in a window of its position's (not kept here)
                    dfa, dfa_state = self.grammar._window(dfa, dfa_state)
                    arrays = (dfa.flat_table(), dfa.accepting, dfa.n_states * 256)
            flat, accepting, dead = arrays
            out.append((flat, accepting, dfa_state * 256, dead, stack, terminal))
        return tuple(out)

    def _walk_numpy(self, parents: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, list[_Suspension]]:
        """``_walk`` in numpy: a few dozen array operations per level of the walk."""
        automaton = self.automaton
        trie = self._trie
        child_count, byte32 = trie.child_count, trie.byte32
        found: list[np.ndarray] = []
        words = np.zeros(self.grammar._words, dtype=np.int32)
        suspensions: list[_Suspension] = []
        entered = _Entered(trie.n_nodes, parents, states)
        follow = parents.size <= _FOLLOWED_NODES
        while parents.size:
            # Leaves are already counted; only nodes with bytes below need their state's sources
            # (a state left unexpanded costs nothing), and only they can have a walk to resume.
            counts = child_count[parents]
            inner = counts > 0
            if not inner.all():
                parents, states, counts = parents[inner], states[inner], counts[inner]
                if not parents.size:
                    break
            if follow:
                splits = automaton.splits[states]
                if (splits == SPLIT_UNKNOWN).any():
                    for state in set(states[splits == SPLIT_UNKNOWN].tolist()):
                        automaton.split(state)
                    splits = automaton.splits[states]
                split = splits == SPLIT
                if split.any():
                    # The nodes this reaches are at boundaries that may split in turn.
                    parents, states = self._follow_terminals(parents, states, split, words, entered)
                    continue
            status = automaton.source_status[states]
            if (status != SOURCES_KNOWN).any():
                # Sources are computed before suspensions are read: computing them finds them.
                for state in set(states[status == SOURCES_UNKNOWN].tolist()):
                    automaton.state_sources(state)
                hit = automaton.source_status[states] == SOURCES_SUSPENDED
                if hit.any():
                    suspensions += self._suspensions(parents[hit], states[hit])
            child, counts = trie.children(parents, counts)
            nxt = self._step(np.repeat(states, counts), byte32[child])
            live = nxt != DEAD
            parents, states = child[live], nxt[live]
            found.append(parents)
        words |= self.grammar._words_at(found)
        return words, suspensions

    def _step(self, states: np.ndarray, byts: np.ndarray) -> np.ndarray:
        """The automaton's state after each of ``states`` reads its byte, filling the table where
        needed (only the bytes met: most states of a walk need a few)."""
        automaton = self.automaton
        index = states * 256 + byts
        nxt = automaton.trans.ravel()[index]
        todo = nxt == UNKNOWN
        if todo.any():
            index_todo = index[todo]
            origin_todo = index_todo >> 8
            for state in set(origin_todo.tolist()):
                automaton.fill_bytes(state, (index_todo[origin_todo == state] & 255).astype(np.uint8))
            nxt = automaton.trans.ravel()[index]
        return nxt

    def _root_pass(self, state: int) -> np.ndarray:
        """Packed mask of the tokens ``state`` reads, in one pass down the trie from its root (a
        real stack's state: nothing suspends), each live node's children stepped once. In
        compiled code where the package has it (``Walker.root_pass``; the user grammars' walks on
        Llama-3.2, paired in both orders: arithmetic's mask p99 16-20 -> 12.5 ms, csv's 4.8-7.9 ->
        3.9-4.2, s-expressions' 3.0-3.2 -> 1.7-1.8; most of what is left is ``fill_bytes``, the
        new automaton states a pass meets). In numpy, while the live nodes' children are a small
        part of their level they are stepped alone, and from the first level that they fill
        (words next to words keep most of the vocabulary alive) every node of each level is
        stepped at once, dead parents reading the dead row, without gathering children: the root
        pass of csv's first mask on Llama-3.2 took 24-29 ms stepped alone, 8-14 ms so."""
        trie = self._trie
        if _kernel is not None:
            words = np.zeros(self.grammar._words, dtype=np.int32)
            self._kernel_walker().root_pass(state, trie.level_start, trie.node_of_id, words, self.automaton.fill_bytes)
            return words
        child_count, byte32 = trie.child_count, trie.byte32
        # Per node its state; the last slot, the node of ids without content, stays dead.
        states = np.zeros(trie.n_nodes + 1, dtype=np.int32)
        states[0] = state
        nodes, node_states = np.zeros(1, np.int64), np.array([state], np.int32)
        depth, deepest = 1, trie.level_start.size - 2
        while depth <= deepest and nodes.size:
            counts = child_count[nodes]
            if depth > 1 and trie.fills_level(int(counts.sum()), depth):
                break
            child, counts = trie.children(nodes, counts)
            nxt = self._step(np.repeat(node_states, counts), byte32[child])
            live = nxt != DEAD
            nodes, node_states = child[live], nxt[live]
            states[nodes] = node_states
            depth += 1
        if nodes.size:
            for depth in range(depth, deepest + 1):
                first, parents, byts = trie.level(depth)
                level = self._step(states[parents], byts)
                states[first : first + level.size] = level
                if not level.any():
                    break
        allowed = np.zeros(self.grammar._words * 32, dtype=bool)
        allowed[: trie.node_of_id.size] = states[trie.node_of_id] != DEAD
        return pack_bool_mask(allowed)

    def _follow_terminals(
        self,
        parents: np.ndarray,
        states: np.ndarray,
        split: np.ndarray,
        words: np.ndarray,
        entered: "_Entered",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Move a walk past the nodes (``split``) at states it follows one terminal at a time.

        A state reads the union of what its ways forward read (``Automaton.split``), and below
        a node each reads on in its terminal's DFA, whatever the stack, until the terminal ends
        (``_past_terminals``: the tokens read inside are set in ``words``). What each reads below
        comes from a cache shared across grammars (a string's content below ``"`` is read once per
        vocabulary, not once per property; the ``", "`` after a value once for every value), and
        the walk goes on from where each terminal may end, at the boundary after it. Stepping
        such states through the automaton instead would build states for every new parser stack:
        per whitespace run, per first byte of each terminal.
        """
        nodes, at_states = parents[split], states[split]
        automaton = self.automaton
        ends_at: list[tuple[np.ndarray, int]] = []
        for state in set(at_states.tolist()):
            at = nodes[at_states == state]
            ways = automaton.split(state)
            assert ways is not None
            ends_at += self._past_terminals(at, ways, words)
        new_nodes, new_states = entered.first_time(ends_at)
        return np.concatenate([parents[~split], new_nodes]), np.concatenate([states[~split], new_states])

    @staticmethod
    def _suspensions(nodes: np.ndarray, states: np.ndarray) -> list[_Suspension]:
        """The nodes met at each suspended state (all of ``states`` are suspended)."""
        return [(state, nodes[states == state]) for state in sorted(set(states.tolist()))]

    def _config_mask(self, config: Config) -> _Parts:
        """Mask parts of a truncated configuration (cached: the top's other stacks share them) and
        where its walk suspended; raises NeedsDeeper where the top does not decide them."""
        cached = self._config_masks.get(config)
        if cached is not None:
            self._config_masks.move_to_end(config)
            return cached
        # The masks this one is the union of (pure parts, configurations at the boundary),
        # shared as they are where one is all of it: a copy costs a new 16 kB array per mask.
        pieces: list[np.ndarray] = []
        suspensions: list[_Suspension] = []
        # Crossing walks of every terminal here go down the trie together: one walk, not one per
        # terminal (a boundary allows a dozen terminals; each level of a walk has a fixed cost).
        starts: list[tuple[np.ndarray, int]] = []
        self._gather(config, pieces, suspensions, starts)
        if _too_wide(starts):
            raise _WideWalk
        if len(pieces) == 1 and not starts:
            words = pieces[0]
        else:
            words = self.grammar._union(pieces)
            if starts:
                suspensions += self._walk(starts, words)
        parts = (words, tuple(suspensions))
        self._config_masks[config] = parts
        self.config_mask_bytes += _parts_bytes(parts)
        while self.config_mask_bytes > _MASK_CACHE_BYTES and len(self._config_masks) > 1:
            self.config_mask_bytes -= _parts_bytes(self._config_masks.popitem(last=False)[1])
        return parts

    def _gather(
        self,
        config: Config,
        pieces: list[np.ndarray],
        suspensions: list[_Suspension],
        starts: list[tuple[np.ndarray, int]],
    ) -> None:
        """Add what ``config`` reads to the pieces of a mask: the pure part of each terminal it
        may lex, the walks from where they may end with bytes below (``starts``), and, where one
        may end here, the boundary's configurations: cached masks as they are, the others
        gathered in turn, walked with the rest. A number that may end or go on was walked once
        for its own ends and again for what may follow it, each walk's mask a new array, when
        boundaries' masks were made apart (every 10th dev schema: 84% of them were never asked
        for again)."""
        automaton = self.automaton
        stack, terminal, dfa_state = config
        lexing = [(t, 0) for t in automaton.allowed_terminals(stack)] if terminal < 0 else [(terminal, dfa_state)]
        for t, d in lexing:
            stay, exits = self.grammar._pure_part(t, d)
            pieces.append(stay)
            ends_here = automaton.dfas[t].accepts(d)
            if not (exits.size or ends_here):
                continue
            boundary = automaton.boundary_after(stack, t)
            if boundary == DEAD:
                continue
            if ends_here:
                for c in automaton.configs[boundary]:
                    cached = self._config_masks.get(c)
                    if cached is None:
                        self._gather(c, pieces, suspensions, starts)
                    else:
                        self._config_masks.move_to_end(c)
                        pieces.append(cached[0])
                        suspensions += cached[1]
            if exits.size:
                starts.append((exits, boundary))

    def _add_config(self, config: Config, pieces: list[np.ndarray], starts: list[tuple[np.ndarray, int]]) -> None:
        """Add the mask of ``config`` to a state's: the masks it is the union of to ``pieces``,
        the walks still to make on real stacks (trie nodes, automaton state) to ``starts``.

        Masks of truncated stacks are shared by every stack with the same top, so a nesting
        context met again (a recursive schema's next level) mostly reuses earlier work; tokens
        whose fate depends on deeper entries are finished on the real stack from where the
        truncated walk suspended them. A top is worked on only from its second meeting: most
        tops are met once (a schema's objects differ in keys and members held), and walking one
        twice, truncated and then for real when the walk's states are stepped into, cost first
        visits about 5% (paired on 150 dev schemas). Real stacks' masks are not kept apart from
        their states' (``_gather``): every 10th dev schema asked for 60 of 16,193 again, and
        the walks of a state's configurations go down the trie together.
        """
        automaton = self.automaton
        stack, terminal, dfa_state = config
        if terminal >= 0:
            stay, exits = self.grammar._pure_part(terminal, dfa_state)
            if not exits.size and not automaton.dfas[terminal].accepts(dfa_state):
                # No token read from here reaches the terminal's end: the stack plays no part.
                # (An ambiguous schema's state holds the same terminal on a dozen stacks.)
                pieces.append(stay)
                return
        depth = automaton.stack_depth[stack]
        keep = _FIRST_CUT
        while keep < depth:
            cut = (automaton.truncate(stack, keep), terminal, dfa_state)
            if cut not in self._cuts_met:
                self._cuts_met.add(cut)
            elif cut not in self._too_shallow:
                try:
                    words, suspensions = self._config_mask(cut)
                except NeedsDeeper:
                    self._too_shallow.add(cut)
                else:
                    if len(suspensions) <= _MAX_SUSPENSIONS or keep * 2 >= depth:
                        base = automaton.below(stack, keep)
                        for state, nodes in suspensions:
                            suspended = automaton.suspended[state]
                            real = frozenset((automaton.rebase(s, base), t, d) for s, t, d in suspended)
                            starts.append((nodes, automaton.intern(real)))
                        pieces.append(words)
                        return
            keep *= 2
        met: list[_Suspension] = []
        self._gather(config, pieces, met, starts)
        assert not met, "real stacks never suspend"

    def _meet_cuts(self, configs: tuple[Config, ...]) -> None:
        """Count the first cuts that several of ``configs`` share as met twice (``_add_config``
        works on a top from its second meeting). An ambiguous grammar's state holds a position on
        a few stacks that differ only deep down (an object that may be either of two): the first
        was walked on its real stack, then the top again for the second (every 5th dev schema,
        paired in both orders: mask mean -1.5% and -2.4%, p99 662 -> 615 and 605 -> 587 us)."""
        automaton = self.automaton
        seen: set[Config] = set()
        for stack, terminal, dfa_state in configs:
            if automaton.stack_depth[stack] > _FIRST_CUT:
                cut = (automaton.truncate(stack, _FIRST_CUT), terminal, dfa_state)
                if cut in seen:
                    self._cuts_met.add(cut)
                seen.add(cut)

    def state_mask(self, state: int) -> np.ndarray:
        """Packed mask of an automaton state, end tokens included when it accepts."""
        cached = self._state_masks.get(state)
        if cached is not None:
            return cached
        with self._lock:
            configs = self.automaton.configs[state]
            accepting = self.automaton.accepting(state)
            try:
                pieces: list[np.ndarray] = []
                starts: list[tuple[np.ndarray, int]] = []
                if len(configs) > 1:
                    self._meet_cuts(configs)
                for config in configs:
                    self._add_config(config, pieces, starts)
                # Configurations on different stacks often share one mask (a pure part).
                parts = list({id(piece): piece for piece in pieces}.values())
                if len(parts) == 1 and not starts and not accepting:
                    # A pure part alone is the state's mask as it is, not a copy.
                    words = parts[0]
                else:
                    if _too_wide(starts):
                        raise _WideWalk
                    words = self.grammar._union(parts)
                    if starts:
                        more = self._walk(starts, words)
                        assert not more, "real stacks never suspend"
            except _WideWalk:
                # One pass from the trie's root meets each token once: the automaton is
                # deterministic, so a node has one state whatever split of its bytes led there.
                words = self._root_pass(state)
            if accepting:
                words |= self.grammar._eos
            words.setflags(write=False)
            self._state_masks[state] = words
            self.state_mask_bytes += words.nbytes
            while self.state_mask_bytes > _MASK_CACHE_BYTES and len(self._state_masks) > 1:
                self.state_mask_bytes -= self._state_masks.popitem(last=False)[1].nbytes
            return words

