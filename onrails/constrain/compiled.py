"""Compiling a grammar against a vocabulary, and computing token masks.

A token is allowed in an automaton state when walking its bytes keeps the state alive. Masks are
computed per configuration as two parts:

* the *pure* part: tokens whose bytes stay inside the terminal being lexed. It depends only on
  (terminal, DFA state), never on the parser stack, and is computed once by a vectorised walk of
  the whole vocabulary trie through that terminal's byte DFA;
* the *crossing* part: tokens that complete the terminal part-way and continue in the next
  terminal. Only the subtrees below the trie nodes where the terminal can end ("exits") are
  walked, through the full automaton, from the boundary state after the terminal.

Both are cached, the final mask of an automaton state too, so a decoding step that revisits a
state is a dictionary lookup and a 16 KB copy.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from onrails.constrain._automaton import DEAD, UNKNOWN, Automaton, Config, NeedsDeeper
from onrails.constrain._bytedfa import ByteDFA, regex_to_byte_dfa
from onrails.constrain._frontend import GrammarSpec, parse_lark
from onrails.constrain._lr import ParseTable, build_parse_table
from onrails.constrain._trie import TokenTrie
from onrails.constrain.vocabulary import Vocabulary
from onrails.errors import GrammarError

BUILTIN_ROOTS = (
    "root",
    "fcall",
    "nofcall",
    "insidevalue",
    "value",
    "object",
    "array",
    "string",
    "number",
    "funcarray",
    "func",
    "ws",
)
WHITESPACE_MODES = ("flexible", "bounded", "compact")
_WS_OVERRIDES = {
    "flexible": "",
    "bounded": "\n%override WS: /\\r?\\n[ \\t]{0,32}|[ \\t]{1,32}/\n",
    "compact": "\n%override ws: \n",
}
_MASK_CACHE_ENTRIES = 2048
_MAX_STATES = 100_000
_FIRST_CUT = 8
_MAX_SUSPENSIONS = 8
_Suspension = tuple[int, np.ndarray]  # (truncated automaton state, trie nodes where it was met)
_Parts = tuple[np.ndarray, list[_Suspension]]


def builtin_grammar_text(whitespace: str = "bounded") -> str:
    """The built-in JSON / function-calling grammar as Lark text, for a whitespace mode."""
    if whitespace not in WHITESPACE_MODES:
        raise GrammarError(f"whitespace must be one of {WHITESPACE_MODES}, not {whitespace!r}")
    text = resources.files("onrails.grammars").joinpath("json.lark").read_text(encoding="utf-8")
    return text + _WS_OVERRIDES[whitespace]


def words_for(size: int) -> int:
    """Number of int32 words in a bitmask row for a vocabulary of ``size`` tokens."""
    return (size + 31) // 32


def _pack(allowed: np.ndarray) -> np.ndarray:
    packed = np.packbits(allowed, bitorder="little")
    pad = (-packed.size) % 4
    if pad:
        packed = np.concatenate([packed, np.zeros(pad, dtype=np.uint8)])
    return packed.view("<i4").copy()


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


@dataclass
class _Pure:
    stay: np.ndarray  # packed words
    exits: np.ndarray  # trie nodes where the terminal may end and the token continues


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
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _pure: dict[tuple[int, int], _Pure] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._words = words_for(self.vocabulary.size)
        self._eos = _pack(self._bool_of(sorted(self.vocabulary.eos_token_ids)))
        self._generation = _Generation(self)

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

    def _pure_part(self, terminal: int, dfa_state: int) -> _Pure:
        key = (terminal, dfa_state)
        pure = self._pure.get(key)
        if pure is None:
            dfa = self._dfas[terminal]
            trie = self._trie
            parents = np.zeros(1, dtype=np.int64)
            states = np.array([dfa_state], dtype=np.int64)
            found = []
            exits = []
            while parents.size:
                child, which = trie.children(parents)
                if not child.size:
                    break
                nxt = dfa.table[states[which], trie.node_byte[child]]
                live = nxt >= 0
                child, nxt = child[live], nxt[live].astype(np.int64)
                found.append(child)
                exits.append(child[dfa.accepting[nxt] & (trie.child_count[child] > 0)])
                parents, states = child, nxt
            nodes = np.concatenate(found) if found else np.zeros(0, np.int64)
            pure = _Pure(
                stay=_pack(self._bool_of(trie.tokens_at(nodes))),
                exits=np.concatenate(exits) if exits else np.zeros(0, np.int64),
            )
            self._pure[key] = pure
        return pure

    def memory_bytes(self) -> int:
        """Approximate bytes held by this grammar's tables and caches (the shared trie excluded)."""
        total = sum(p.stay.nbytes + p.exits.nbytes for p in self._pure.values())
        total += sum(d.table.nbytes for d in self._dfas)
        return total + self._generation.memory_bytes()


class GrammarCompiler:
    """Compiles grammars for one vocabulary and caches them by grammar text and options.

    Thread-safe. The first compile of a vocabulary also builds its byte trie (about a second for
    a 128k vocabulary); later compiles reuse it.
    """

    def __init__(self, vocabulary: Vocabulary, *, budget_s: float = 30.0) -> None:
        self.vocabulary = vocabulary
        self.budget_s = budget_s
        self._cache: dict[tuple[str, tuple[str, ...]], CompiledGrammar] = {}
        self._lock = threading.Lock()

    def compile_builtin(self, whitespace: str = "bounded") -> CompiledGrammar:
        """The built-in JSON / function-calling grammar with every documented root."""
        return self.compile_lark(builtin_grammar_text(whitespace), BUILTIN_ROOTS)

    def compile_lark(
        self, grammar: str, start: "str | list[str] | tuple[str, ...]" = "start"
    ) -> CompiledGrammar:
        """Compile Lark grammar text; ``start`` names the root rule(s) matchers may begin from.

        Raises GrammarError (with line, column or rule) for grammars that do not parse, use
        undefined rules, unsupported regex features or exceed the time budget.
        """
        starts = (start,) if isinstance(start, str) else tuple(start)
        key = (grammar, starts)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
        deadline = time.monotonic() + self.budget_s
        spec = parse_lark(grammar, starts)
        compiled = _compile_spec(spec, self.vocabulary, deadline)
        with self._lock:
            return self._cache.setdefault(key, compiled)


def _compile_spec(spec: GrammarSpec, vocabulary: Vocabulary, deadline: float) -> CompiledGrammar:
    dfas = [regex_to_byte_dfa(t.regex, name=t.name, deadline=deadline) for t in spec.terminals]
    table = build_parse_table(spec, deadline)
    index = {t.name: i for i, t in enumerate(spec.terminals)}
    ignored = [index[name] for name in spec.ignore if name in index]
    return CompiledGrammar(
        vocabulary=vocabulary,
        roots=spec.starts,
        terminal_names=tuple(t.name for t in spec.terminals),
        _table=table,
        _dfas=dfas,
        _ignored=ignored,
        _trie=_trie_for(vocabulary),
    )


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
        self._too_shallow: set[Config] = set()

    def memory_bytes(self) -> int:
        total = self.automaton.trans.nbytes
        total += sum(m[0].nbytes for m in self._config_masks.values())
        total += sum(m.nbytes for m in self._state_masks.values())
        return total

    def _walk(self, parents: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, list[_Suspension]]:
        """Tokens below ``parents`` (each at its automaton state) that stay alive.

        Also returns where the walk met suspended configurations (truncated stacks only): the
        subtrees below those nodes are finished on the real stack by the caller.
        """
        automaton = self.automaton
        trie = self._trie
        found = []
        suspensions: list[_Suspension] = []
        while parents.size:
            # Rows are filled before suspensions are read: filling is what discovers them.
            for state in np.unique(states):
                if not automaton.row_done(int(state)):
                    automaton.fill_row(int(state))
            suspensions += self._suspensions(parents, states)
            child, which = trie.children(parents)
            if not child.size:
                break
            nxt = automaton.trans[states[which], trie.node_byte[child]]
            live = nxt != DEAD
            parents, states = child[live], nxt[live].astype(np.int64)
            found.append(parents)
        tokens = trie.tokens_at(np.concatenate(found)) if found else np.zeros(0, np.int64)
        return tokens, suspensions

    def _suspensions(self, nodes: np.ndarray, states: np.ndarray) -> list[_Suspension]:
        automaton = self.automaton
        if not nodes.size:
            return []
        hit = automaton.has_suspended[states]
        if not hit.any():
            return []
        nodes, states = nodes[hit], states[hit]
        return [(int(state), nodes[states == state]) for state in np.unique(states)]

    def _config_mask(self, config: Config) -> _Parts:
        """Mask parts of one configuration (cached); raises NeedsDeeper for some truncated ones."""
        cached = self._config_masks.get(config)
        if cached is not None:
            self._config_masks.move_to_end(config)
            return cached
        automaton = self.automaton
        stack, terminal, dfa_state = config
        suspensions: list[_Suspension] = []
        if terminal < 0:
            words = np.zeros(self.grammar._words, dtype=np.int32)
            for t in automaton.allowed_terminals(stack):
                sub_words, sub_susp = self._config_mask((stack, t, 0))
                words |= sub_words
                suspensions += sub_susp
        else:
            pure = self.grammar._pure_part(terminal, dfa_state)
            words = pure.stay.copy()
            ends_here = bool(automaton.dfas[terminal].accepting[dfa_state])
            if pure.exits.size or ends_here:
                after = automaton.after_terminal(stack, terminal)
                if after:
                    boundary = automaton.boundary_state(after)
                    if ends_here:
                        for c in automaton.configs[boundary]:
                            sub_words, sub_susp = self._config_mask(c)
                            words |= sub_words
                            suspensions += sub_susp
                    if pure.exits.size:
                        starts = np.full(pure.exits.size, boundary, dtype=np.int64)
                        tokens, walk_susp = self._walk(pure.exits, starts)
                        suspensions += walk_susp
                        if tokens.size:
                            words |= _pack(self.grammar._bool_of(tokens))
        parts = (words, suspensions)
        self._config_masks[config] = parts
        if len(self._config_masks) > _MASK_CACHE_ENTRIES:
            self._config_masks.popitem(last=False)
        return parts

    def _real_config_mask(self, config: Config) -> np.ndarray:
        """The mask of ``config``, computed on the top of its stack when that decides it.

        Masks of truncated stacks are shared by every stack with the same top, so a new nesting
        context mostly reuses earlier work; tokens whose fate depends on deeper entries are
        finished on the real stack from where the truncated walk suspended them.
        """
        automaton = self.automaton
        stack, terminal, dfa_state = config
        depth = automaton.stack_depth[stack]
        keep = _FIRST_CUT
        while keep < depth:
            cut = (automaton.truncate(stack, keep), terminal, dfa_state)
            if cut not in self._too_shallow:
                try:
                    words, suspensions = self._config_mask(cut)
                except NeedsDeeper:
                    self._too_shallow.add(cut)
                else:
                    if len(suspensions) <= _MAX_SUSPENSIONS or keep * 2 >= depth:
                        return self._resume(words, suspensions, automaton.below(stack, keep))
            keep *= 2
        words, suspensions = self._config_mask(config)
        assert not suspensions, "real stacks never suspend"
        return words

    def _resume(self, words: np.ndarray, suspensions: list[_Suspension], base: int) -> np.ndarray:
        if not suspensions:
            return words
        automaton = self.automaton
        words = words.copy()
        for state, nodes in suspensions:
            real = automaton.intern(
                frozenset((automaton.rebase(s, base), t, d) for s, t, d in automaton.suspended[state])
            )
            tokens, more = self._walk(nodes, np.full(nodes.size, real, dtype=np.int64))
            assert not more, "real stacks never suspend"
            if tokens.size:
                words |= _pack(self.grammar._bool_of(tokens))
        return words

    def state_mask(self, state: int) -> np.ndarray:
        """Packed mask of an automaton state, end tokens included when it accepts."""
        cached = self._state_masks.get(state)
        if cached is not None:
            return cached
        with self._lock:
            configs = self.automaton.configs[state]
            words = np.zeros(self.grammar._words, dtype=np.int32)
            for config in configs:
                words |= self._real_config_mask(config)
            if self.automaton.accepting(state):
                words |= self.grammar._eos
            words.setflags(write=False)
            self._state_masks[state] = words
            if len(self._state_masks) > _MASK_CACHE_ENTRIES:
                self._state_masks.popitem(last=False)
            return words

