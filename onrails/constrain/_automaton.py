"""The byte automaton of a grammar: lexer automata and a GLR parser, determinised lazily.

A *configuration* is ``(stack, terminal, dfa_state)``: the parser stack (an interned id) and the
terminal currently being lexed with the state of its byte DFA, or ``terminal == -1`` at a
boundary before any terminal. An automaton *state* is a set of configurations (lexing is
scannerless and parsing nondeterministic, so every reading is kept). States are interned to small
ints and their byte transitions are memoised in a dense table that grows on demand, so text the
grammar has seen before costs one table lookup per byte.

Every configuration in a non-empty state can be completed to a sentence: terminals enter only
when the parser can shift them, DFA states are trimmed, and the grammar has no unproductive rules.
So "state != DEAD" is exactly "the bytes so far are a viable prefix".
"""

from __future__ import annotations

import mmap
import threading
from collections import OrderedDict
from collections.abc import Iterable, Set as AbstractSet
from typing import Final

import numpy as np

from onrails.constrain._bytedfa import DEAD as DFA_DEAD
from onrails.constrain._bytedfa import ByteDFA
from onrails.constrain._item_sets import AT_TOP, NO_ENTRY
from onrails.constrain._lr import ParseTable
from onrails.constrain._native import kernel as _kernel
from onrails.errors import OnRailsError


# Final: the compiled core (setup.py) reads these as constants, not module lookups.
DEAD: Final = 0
UNKNOWN: Final = -1
# ``Automaton.source_status`` of a state: its sources not computed yet, computed, or computed
# and some configurations suspended (they need the stack below a truncation).
SOURCES_UNKNOWN: Final = 0
SOURCES_KNOWN: Final = 1
SOURCES_SUSPENDED: Final = 2
_MAX_GLR_STACKS: Final = 20000
_SOURCE_CACHE_ENTRIES: Final = 1024
# Mask walks follow a state one terminal at a time (``split``) when it has at most this many
# ways forward; more (a quote that may open any of 20 keys) cost more apart than together.
_MAX_SPLIT: Final = 8
# Transition rows: doubled up to this many states, then reserved at once (see ``Automaton._grow``).
_RESERVE_FROM = 1 << 12
_RESERVED_ROWS = 1 << 17
# Tables of this many rows and more (4 MB, where numpy asks for huge pages) are mapped in small
# pages (``_reserve_rows``): after a few hundred schemas, doubling 8k rows into huge pages
# stalled one mask 21-63 ms (o60790 on the dev set; 4.7 ms alone in a fresh process).
_SMALL_PAGES_FROM: Final = 1 << 12
# Transition rows set UNKNOWN at once when a state past them is interned.
_UNKNOWN_BLOCK: Final = 64
# ``Automaton.splits`` of a state: not decided yet, followed terminal by terminal, or as a whole.
SPLIT_UNKNOWN: Final = 0
SPLIT: Final = 1
WHOLE: Final = 2
_UNDECIDED = object()  # a state missing from ``Automaton._split``

Config = tuple[int, int, int]
_GuardGroups = tuple[tuple[int, int, int, tuple[tuple[int, int], ...]], ...]


class AmbiguityError(OnRailsError):
    """The grammar is so ambiguous that one step would track too many parser stacks."""


def _bits(positions: "Iterable[int]") -> int:
    """An int with the given bits set."""
    out = 0
    for position in positions:
        out |= 1 << position
    return out


def _too_ambiguous() -> AmbiguityError:
    return AmbiguityError(f"more than {_MAX_GLR_STACKS} parser stacks in one step; the grammar is too ambiguous")


class NeedsDeeper(Exception):
    """A computation on a truncated stack popped below its cut: retry with more of the stack."""


OPAQUE: Final = 1  # the bottom of truncated stacks: its LR state is unknown


class Automaton:
    """Lazily determinised byte automaton shared by all matchers of one compiled grammar.

    Thread-safe: growth happens under a lock; lookups of known transitions do not lock.
    """

    def __init__(
        self,
        table: ParseTable,
        dfas: list[ByteDFA],
        ignored: list[int],
    ) -> None:
        self.table = table
        self.dfas = dfas
        self.ignored = tuple(ignored)
        self._lock = threading.RLock()
        # Interned stacks: node 0 is the empty stack, node 1 (OPAQUE) the cut of truncated ones.
        # An entry of a tracked list also has a tag (``_item_sets``); other entries' tags are 0.
        self.stack_state: list[int] = [-1, -1]
        self.stack_parent: list[int] = [-1, OPAQUE]
        self.stack_depth: list[int] = [0, 0]
        self.stack_tag: list[int] = [0, 0]
        self._stack_ids: dict[tuple[int, ...], int] = {}
        self._lists = table.lists.lists
        self._list_updates = table.lists.updates
        self._guards = table.lists.guards
        self._guarded = table.lists.guarded
        # Answers of the tracked lists' guards by (kind, list, tag), a bit per item
        # (``TrackedList.passed``): an object's key is asked of every stack that may shift it,
        # and after each new tag every key of an object of 100 properties is asked again.
        self._allows: dict[tuple[int, int, int], int] = {}
        self._truncated: dict[tuple[int, int], int] = {}
        self._shift_cache: dict[tuple[int, int], tuple[int, ...]] = {}
        self._accept_cache: dict[int, bool] = {}
        self._allowed_cache: dict[int, tuple[int, ...]] = {}
        self._boundaries: dict[tuple[int, int], int] = {}
        # Interned configuration sets; state 0 is the dead (empty) set.
        # A state's configurations are a sorted tuple: tuples of ints are not tracked by Python's
        # cycle collector, and a grammar's automaton holds tens of thousands of states, whose
        # frozensets made full collections (100-200 ms, every state of every grammar scanned)
        # come every few schemas, each a pause in some mask.
        self.configs: list[tuple[Config, ...]] = [()]
        self._state_ids: dict[tuple[Config, ...], int] = {(): DEAD}
        # Rows from ``_unknown_to`` on are not initialised (see ``_grow``).
        self.trans = np.full((64, 256), UNKNOWN, dtype=np.int32)
        self._unknown_to = 64
        self.trans[DEAD, :] = DEAD
        self._accepting: list[bool | None] = [False]
        # Configurations of a truncated state whose next byte needs the stack below the cut;
        # they are left out of the state's row and resumed on the real stack by the mask code.
        self.suspended: dict[int, tuple[Config, ...]] = {}
        self.source_status = np.full(64, SOURCES_UNKNOWN, dtype=np.int8)
        self.source_status[DEAD] = SOURCES_KNOWN
        self._row_done = np.zeros(64, dtype=bool)
        self._row_done[DEAD] = True
        # Whether mask walks follow a state terminal by terminal (``split``).
        self.splits = np.zeros(64, dtype=np.int8)
        self.splits[DEAD] = WHOLE
        # ``split`` of every state decided (None: stepped whole), read without the lock.
        self._split: dict[int, tuple[Config, ...] | None] = {}
        # Recently used states' ways forward: (stack, terminal) per source and the sources' DFA
        # rows stacked. Mask walks fill a state a few bytes at a time, so they are reused.
        self._source_cache: OrderedDict[int, tuple[tuple[tuple[int, int], ...], np.ndarray]] = OrderedDict()
        self._rows_cache: OrderedDict[tuple[tuple[int, int], ...], np.ndarray] = OrderedDict()
        # Terminals with the same reduce actions in every LR state reduce a stack alike, so the
        # reduction closure is computed once per class (schema grammars have one terminal per
        # property name, nearly all in one class).
        self._reduce_class = table.reduce_class
        # Tuples, not lists: lists are tracked by the cycle collector (see ``configs``).
        self._closure_cache: dict[tuple[int, int], tuple[int, ...]] = {}
        # Per LR state met, for closures of several classes at once (``_class_closure``): each
        # rule it reduces with the classes it reduces under (a bit per class), its shiftable
        # terminals by class, and the classes of the terminals it reduces on (only they need the
        # stack below). Made with the state (``_prepare``), when a stack first enters it.
        self._rule_classes: dict[int, tuple[tuple[int, int], ...]] = {}
        self._shift_classes: dict[int, tuple[tuple[int, tuple[int, ...]], ...]] = {}
        self._reducing_classes: dict[int, int] = {}
        # Per LR state met, the guards on its shifts by (kind, list, where the entry is), each with
        # (terminal, item bit) of every terminal it guards (``_passing``).
        self._guard_groups: dict[int, _GuardGroups] = {}
        self._all_classes = _bits(self._reduce_class[t] for t in range(len(dfas)))
        # The shortest-completion search over this automaton (``_shortest``), made at its first
        # use and kept here, not in a table by weak reference: compiled by mypyc, the class has none.
        self.completions: object = None
        self.initial: dict[str, int] = {}
        for name, lr_state in table.initial.items():
            root = self._push(0, lr_state)
            self.initial[name] = self.intern(frozenset([(root, -1, 0)]))

    # -- stacks ---------------------------------------------------------------------------------

    def _push(self, parent: int, lr_state: int, tag: int = 0) -> int:
        key = (lr_state, parent, tag) if tag else (lr_state, parent)
        node = self._stack_ids.get(key)
        if node is None:
            if lr_state not in self._rule_classes:
                self._prepare(lr_state)
            node = len(self.stack_state)
            self.stack_state.append(lr_state)
            self.stack_parent.append(parent)
            self.stack_depth.append(self.stack_depth[parent] + 1)
            self.stack_tag.append(tag)
            self._stack_ids[key] = node
        return node

    def _prepare(self, lr_state: int) -> None:
        """Build an LR state and its reduce classes (before a stack holds it)."""
        table = self.table
        table.build(lr_state)
        by_rule: dict[int, int] = {}
        actions = table.reduce[lr_state]
        for lookahead, rules in actions.items():
            for rule in rules:
                by_rule[rule] = by_rule.get(rule, 0) | 1 << self._reduce_class[lookahead]
        by_class: dict[int, set[int]] = {}
        for t in table.shift[lr_state]:
            by_class.setdefault(self._reduce_class[t], set()).add(t)
        self._shift_classes[lr_state] = tuple((c, tuple(sorted(ts))) for c, ts in by_class.items())
        self._reducing_classes[lr_state] = _bits(self._reduce_class[t] for t in actions if t != table.end)
        groups: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
        for t in table.shift[lr_state]:
            guard = self._guards.get((lr_state, t))
            if guard is not None:
                kind, list_id, bit, where = guard
                groups.setdefault((kind, list_id, where), []).append((t, bit))
        # Tuples of ints only: the cycle collector stops tracking them (see ``configs``).
        self._guard_groups[lr_state] = tuple((*key, tuple(bits)) for key, bits in groups.items())
        self._rule_classes[lr_state] = tuple(by_rule.items())  # last: it marks the state prepared

    def reduce_closure(self, stack: int, lookahead: int) -> list[int]:
        """All stacks reachable from ``stack`` by reductions valid under ``lookahead``."""
        table = self.table
        seen = {stack}
        todo = [stack]
        out = [stack]
        while todo:
            node = todo.pop()
            for rule in table.reduce[self.stack_state[node]].get(lookahead, ()):
                new = self._reduce(node, rule)
                if new is not None and new not in seen:
                    seen.add(new)
                    todo.append(new)
                    out.append(new)
                    if len(seen) > _MAX_GLR_STACKS:
                        raise _too_ambiguous()
        return out

    def _reduce(self, node: int, rule: int) -> int | None:
        """The stack once ``rule`` is reduced on top of ``node`` (None: no goto there)."""
        table = self.table
        base = node
        for _ in range(table.rule_len[rule]):
            base = self.stack_parent[base]
        if base == OPAQUE:
            raise NeedsDeeper
        target = table.goto[self.stack_state[base]].get(table.rule_lhs[rule])
        if target is None:
            return None
        update = self._list_updates.get(rule)
        if update is None:
            return self._push(base, target)
        list_id, bit, extends = update
        # The list entry being extended is the rule's first symbol, just above ``base``.
        tag = self._lists[list_id].added(self.stack_tag[self.below(node, 2)] if extends else 0, bit)
        return None if tag is None else self._push(base, target, tag)

    def truncate(self, stack: int, depth: int) -> int:
        """The top ``depth`` entries of ``stack`` on an OPAQUE bottom.

        Anything computed from it that does not raise NeedsDeeper holds for every stack with the
        same top entries, which is what lets masks be shared across nesting contexts.
        """
        key = (stack, depth)
        cached = self._truncated.get(key)
        if cached is not None:
            return cached
        entries = []
        node = stack
        for _ in range(depth):
            entries.append((self.stack_state[node], self.stack_tag[node]))
            node = self.stack_parent[node]
        node = OPAQUE
        for lr_state, tag in reversed(entries):
            node = self._push(node, lr_state, tag)
        self._truncated[key] = node
        return node

    def rebase(self, stack: int, base: int) -> int:
        """Replace the OPAQUE bottom of a truncated stack by the real stack ``base``."""
        entries = []
        node = stack
        while node != OPAQUE:
            entries.append((self.stack_state[node], self.stack_tag[node]))
            node = self.stack_parent[node]
        node = base
        for lr_state, tag in reversed(entries):
            node = self._push(node, lr_state, tag)
        return node

    def below(self, stack: int, depth: int) -> int:
        """The stack left after removing the top ``depth`` entries."""
        for _ in range(depth):
            stack = self.stack_parent[stack]
        return stack

    def shift(self, stack: int, terminal: int) -> tuple[int, ...]:
        """Stacks after reducing under ``terminal`` and shifting it (empty: not allowed)."""
        key = (stack, terminal)
        cached = self._shift_cache.get(key)
        if cached is None:
            out = []
            guarded = terminal in self._guarded
            for node in self._closure(stack, terminal):
                target = self.table.shift[self.stack_state[node]].get(terminal)
                if target is not None and (not guarded or self._guard_allows(node, terminal)):
                    out.append(self._push(node, target))
            cached = tuple(dict.fromkeys(out))
            self._shift_cache[key] = cached
        return cached

    def _guard_allows(self, node: int, terminal: int) -> bool:
        """Whether a tracked list lets ``terminal`` be shifted on ``node`` (``_item_sets``)."""
        guard = self._guards.get((self.stack_state[node], terminal))
        if guard is None:
            return True
        kind, list_id, bit, where = guard
        return bool(self._passed(node, kind, list_id, where) >> bit & 1)

    def _passed(self, node: int, kind: int, list_id: int, where: int) -> int:
        """What a guard of ``kind`` on ``node`` lets through, a bit per item (``TrackedList.passed``)."""
        if where == NO_ENTRY:
            tag = 0
        else:
            entry = node if where == AT_TOP else self.stack_parent[node]
            if entry == OPAQUE:
                raise NeedsDeeper
            tag = self.stack_tag[entry]
        key = (kind, list_id, tag)
        passed = self._allows.get(key)
        if passed is None:
            passed = self._allows[key] = self._lists[list_id].passed(kind, tag)
        return passed

    def _passing(self, node: int, terminals: Iterable[int], groups: "_GuardGroups") -> set[int]:
        """The ``terminals`` (shiftable on ``node``) that its LR state's guards let through."""
        out = set(terminals)
        for kind, list_id, where, bits in groups:
            asked = [(t, bit) for t, bit in bits if t in out]
            if asked:
                passed = self._passed(node, kind, list_id, where)
                out.difference_update([t for t, bit in asked if not passed >> bit & 1])
        return out

    def _closure(self, stack: int, terminal: int) -> tuple[int, ...]:
        """``reduce_closure`` memoised per reduce class of the look-ahead terminal."""
        key = (stack, self._reduce_class[terminal])
        closure = self._closure_cache.get(key)
        if closure is None:
            closure = self._closure_cache[key] = tuple(self.reduce_closure(stack, terminal))
        return closure

    def can_end(self, stack: int) -> bool:
        """Whether the parser accepts at ``stack`` when the input ends."""
        cached = self._accept_cache.get(stack)
        if cached is None:
            end = self.table.end
            cached = any(self.table.accept[self.stack_state[n]] for n in self.reduce_closure(stack, end))
            self._accept_cache[stack] = cached
        return cached

    def allowed_terminals(self, stack: int) -> tuple[int, ...]:
        """Terminals that may start at a boundary with this stack (ignored ones included)."""
        cached = self._allowed_cache.get(stack)
        if cached is None:
            stack_state = self.stack_state
            # A terminal is allowed when some stack of its class's closure shifts it: the stack
            # itself shifts its own (every closure holds it), the others those of their classes.
            if stack > OPAQUE:
                shifting: list[tuple[int, Iterable[int]]] = [(stack, self.table.shift[stack_state[stack]])]
                classes = self._reducing_classes[stack_state[stack]]
            else:
                shifting, classes = [], self._all_classes
            if classes:
                shift_classes = self._shift_classes
                for node, node_classes in self._class_closure(stack, classes).items():
                    if node != stack or stack <= OPAQUE:
                        for c, of_class in shift_classes[stack_state[node]]:
                            if node_classes >> c & 1:
                                shifting.append((node, of_class))
            # Terminals a tracked list may refuse are allowed where some stack may shift them:
            # every such pair is asked, as ``shift`` asks them (any may need the stack below a
            # cut). A key of an object of 100 optional properties is asked once here, not in a
            # closure search of its own, and the keys of one list together (``_passing``).
            guard_groups = self._guard_groups
            allowed: set[int] = set()
            for node, terminals in shifting:
                groups = guard_groups[stack_state[node]] if stack > OPAQUE else ()
                allowed.update(self._passing(node, terminals, groups) if groups else terminals)
            cached = tuple(sorted(allowed.difference(self.ignored))) + self.ignored
            self._allowed_cache[stack] = cached
        return cached

    def _class_closure(self, stack: int, classes: int) -> dict[int, int]:
        """The reduction closures of ``stack`` under look-aheads of several classes (a bit per
        class) in one search: each stack reached, with the classes it is reached under.

        The closures of one stack under different look-aheads mostly share their reductions, so
        this costs about one ``reduce_closure``, not one per class; each class's closure is kept
        for ``shift``.
        """
        found = {stack: classes}
        todo = [(stack, classes)]
        while todo:
            node, node_classes = todo.pop()
            for rule, rule_classes in self._rule_classes[self.stack_state[node]]:
                reduced = node_classes & rule_classes
                if not reduced:
                    continue
                new = self._reduce(node, rule)
                if new is None:
                    continue
                known = found.get(new, 0)
                if reduced & ~known:
                    found[new] = known | reduced
                    todo.append((new, reduced & ~known))
                    if len(found) > _MAX_GLR_STACKS:
                        raise _too_ambiguous()
        while classes:
            low = classes & -classes
            classes ^= low
            key = (stack, low.bit_length() - 1)
            if key not in self._closure_cache:
                self._closure_cache[key] = tuple(node for node, bits in found.items() if bits & low)
        return found

    def after_terminal(self, stack: int, terminal: int) -> tuple[int, ...]:
        """Stacks once ``terminal`` is complete: shifted, or unchanged if it is ignored."""
        shifted = self.shift(stack, terminal)
        if terminal in self.ignored:
            return (stack,) + shifted
        return shifted

    # -- configuration sets ---------------------------------------------------------------------

    def intern(self, configs: AbstractSet[Config]) -> int:
        """The state of a set of configurations."""
        return self._intern_sorted(tuple(sorted(configs)))

    def _intern_sorted(self, key: tuple[Config, ...]) -> int:
        """The state of the configurations ``key``, sorted and each once."""
        sid = self._state_ids.get(key)
        if sid is None:
            with self._lock:
                sid = self._state_ids.get(key)
                if sid is None:
                    sid = len(self.configs)
                    if sid >= self._unknown_to:
                        if sid >= self.trans.shape[0]:
                            self._grow()
                        # Rows are set UNKNOWN a block at a time: one numpy call per new state
                        # cost 1 us, 2.6% of first visits (py-spy, every 10th dev schema).
                        self._unknown_to = min(sid + _UNKNOWN_BLOCK, self.trans.shape[0])
                        self.trans[sid : self._unknown_to] = UNKNOWN
                    self.configs.append(key)
                    self._accepting.append(None)
                    self._state_ids[key] = sid
        return sid

    def _grow(self) -> None:
        """Enlarge the per-state tables. The transition rows are left uninitialised until their
        state is interned: filling a table of 64k states with UNKNOWN wrote 64 MB at once, a
        pause of 40-120 ms in whichever mask met the new state. Past ``_RESERVE_FROM`` states
        the table jumps to ``_RESERVED_ROWS`` rows (``_reserve_rows``), whose pages the system
        maps only as states arrive: the copies of 32-64 MB that doubling made there cost single
        masks of a large schema 35-80 ms each, and from 16k states (16 MB) 15-16 ms, the slowest
        mask of the dev set (detekt-1.22.0; reserved from 4k, its slowest is 5-7 ms). Caches
        weigh the table as reserved, as an address-space limit counts it."""
        size = self.trans.shape[0]
        rows = _RESERVED_ROWS if _RESERVE_FROM <= size < _RESERVED_ROWS else size * 2

        def grown(old: np.ndarray, fill: int) -> np.ndarray:
            new = np.full((rows,) + old.shape[1:], fill, dtype=old.dtype)
            new[:size] = old
            return new

        trans = _reserve_rows(rows) if rows >= _SMALL_PAGES_FROM else np.empty((rows, 256), dtype=np.int32)
        trans[:size] = self.trans
        self.trans = trans
        self.source_status = grown(self.source_status, SOURCES_UNKNOWN)
        self._row_done = grown(self._row_done, False)
        self.splits = grown(self.splits, SPLIT_UNKNOWN)

    def _accepts(self, configs: tuple[Config, ...]) -> bool:
        for stack, t, d in configs:
            if t < 0:
                if self.can_end(stack):
                    return True
            elif self.dfas[t].accepts(d):
                if any(self.can_end(s) for s in self.after_terminal(stack, t)):
                    return True
        return False

    def accepting(self, state: int) -> bool:
        """Whether the input may end in ``state`` (only meaningful for untruncated stacks)."""
        flag = self._accepting[state]
        if flag is None:
            with self._lock:
                flag = self._accepts(self.configs[state])
                self._accepting[state] = flag
        return flag

    def boundary_state(self, stacks: tuple[int, ...]) -> int:
        if len(stacks) == 1:
            return self._intern_sorted(((stacks[0], -1, 0),))
        return self.intern({(s, -1, 0) for s in stacks})

    def boundary_after(self, stack: int, terminal: int) -> int:
        """The boundary state once ``terminal`` ends on ``stack`` (DEAD if it cannot be shifted)."""
        key = (stack, terminal)
        boundary = self._boundaries.get(key)
        if boundary is None:
            boundary = self._boundaries[key] = self.boundary_state(self.after_terminal(stack, terminal))
        return boundary

    def _sources(self, config: Config) -> list[tuple[int, int, int]]:
        """Every way a configuration can take one more byte: (stack, terminal, DFA state)."""
        stack, t, d = config
        if t < 0:
            stacks: tuple[int, ...] = (stack,)
            sources = []
        else:
            sources = [config]
            if not self.dfas[t].accepts(d):
                return sources
            stacks = self.after_terminal(stack, t)
        for s in stacks:
            sources.extend((s, t2, 0) for t2 in self.allowed_terminals(s))
        return sources

    def split(self, state: int) -> tuple[Config, ...] | None:
        """``state``'s ways forward as configurations inside terminals, to be followed one by
        one (the state reads the union of what they read): its own, and at a boundary each
        terminal allowed there from its DFA's start. None when they are more than a few or a
        boundary needs the stack below a truncation (a walk then steps the state as a whole)."""
        decided = self._split.get(state, _UNDECIDED)
        if decided is not _UNDECIDED:
            return decided  # type: ignore[return-value]
        with self._lock:
            if state not in self._split:
                ways: list[Config] = []
                try:
                    for stack, t, d in self.configs[state]:
                        if t >= 0:
                            ways.append((stack, t, d))
                        else:
                            allowed = self.allowed_terminals(stack)
                            if len(ways) + len(allowed) > _MAX_SPLIT:
                                # Stepped whole: a quote that opens any of 99 keys made 99 ways.
                                ways = []
                                break
                            ways.extend((stack, t2, 0) for t2 in allowed)
                except NeedsDeeper:
                    ways = []
                split = 0 < len(ways) <= _MAX_SPLIT
                self._split[state] = tuple(ways) if split else None
                self.splits[state] = SPLIT if split else WHOLE
            return self._split[state]

    def fill(self, state: int, byte: int) -> int:
        """Compute and memoise one transition (the per-byte path used when advancing)."""
        with self._lock:
            nxt = int(self.trans[state, byte])
            if nxt == UNKNOWN:
                # Advancing only meets real stacks, which never suspend; one byte is cheaper to
                # follow through each configuration than to gather the state's sources.
                out = set()
                dfas = self.dfas
                for config in self.configs[state]:
                    for stack, t, d in self._sources(config):
                        d = dfas[t].step(d, byte)
                        if d != DFA_DEAD:
                            out.add((stack, t, d))
                nxt = self.intern(frozenset(out))
                self.trans[state, byte] = nxt
            return nxt

    def state_sources(self, state: int) -> tuple[tuple[tuple[int, int], ...], np.ndarray]:
        """Every way ``state`` can take one more byte: (stack, terminal) per source and their DFA
        rows stacked ``[source, byte]``.

        Configurations of truncated stacks that need the stack below the cut are recorded in
        ``suspended`` and left out: the mask code resumes them on the real stack.
        """
        with self._lock:
            cached = self._source_cache.get(state)
            if cached is not None:
                self._source_cache.move_to_end(state)
                return cached
            sources = []
            suspended = []
            for config in self.configs[state]:
                try:
                    sources.extend(self._sources(config))
                except NeedsDeeper:
                    suspended.append(config)
            if suspended:
                self.suspended[state] = tuple(suspended)
            self.source_status[state] = SOURCES_SUSPENDED if suspended else SOURCES_KNOWN
            # A tuple of int pairs: the collector stops tracking it (every key position of a
            # tracked list is a new state with a source per key).
            cached = (tuple([(stack, t) for stack, t, _ in sources]), self._rows([(t, d) for _, t, d in sources]))
            self._source_cache[state] = cached
            if len(self._source_cache) > _SOURCE_CACHE_ENTRIES:
                self._source_cache.popitem(last=False)
            return cached

    def _rows(self, keys: list[tuple[int, int]]) -> np.ndarray:
        """The DFA rows of (terminal, DFA state) pairs stacked ``[pair, byte]``, cached by the pairs."""
        key = tuple(keys)
        rows = self._rows_cache.get(key)
        if rows is None:
            if len(keys) == 1:
                t, d = keys[0]
                rows = self.dfas[t].row(d)[None, :]
            elif keys:
                rows = np.stack([self.dfas[t].row(d) for t, d in keys])
            else:
                rows = np.full((0, 256), DFA_DEAD, np.int32)
            self._rows_cache[key] = rows
            if len(self._rows_cache) > _SOURCE_CACHE_ENTRIES:
                self._rows_cache.popitem(last=False)
        else:
            self._rows_cache.move_to_end(key)
        return rows

    def source_bytes(self) -> int:
        """Bytes held by the DFA rows stacked for recently used states' sources."""
        return sum(rows.nbytes for rows in list(self._rows_cache.values()))

    def fill_bytes(self, state: int, byts: "bytes | np.ndarray") -> None:
        """Compute and memoise the transitions of ``state`` on ``byts`` (uint8, repeats allowed:
        mask walks need only the bytes the vocabulary trie has below their nodes, rarely a row).

        Bytes are grouped by the configurations they lead to (``_column_groups``), so this costs
        one interning per distinct successor rather than per byte.
        """
        with self._lock:
            keys, rows = self.state_sources(state)
            group = _kernel.column_groups if _kernel is not None else _column_groups
            cols, groups, columns = group(rows, self.trans[state], byts)
            if not cols:
                return
            if len(keys) == 1:
                # One way forward (inside a key, a keyword, a number): successors are the
                # terminal's own DFA states.
                stack, terminal = keys[0]
                targets = [DEAD if d == DFA_DEAD else self._intern_sorted(((stack, terminal, d),)) for (d,) in columns]
            else:
                targets = [self._intern_column(keys, column) for column in columns]
            found = np.array(targets, dtype=np.int32)[np.frombuffer(groups, dtype=np.uint8)]
            self.trans[state, np.frombuffer(cols, dtype=np.uint8)] = found

    def _intern_column(self, keys: tuple[tuple[int, int], ...], column: tuple[int, ...]) -> int:
        """The state of the sources' configurations at the DFA states ``column`` (one per source)."""
        return self.intern(frozenset((keys[i][0], keys[i][1], d) for i, d in enumerate(column) if d != DFA_DEAD))

    def fill_row(self, state: int) -> np.ndarray:
        """Compute and memoise every transition of ``state`` (for searches over whole rows)."""
        with self._lock:
            if not self._row_done[state]:
                self.fill_bytes(state, _ALL_BYTES)
                self._row_done[state] = True
            return self.trans[state]

    def step(self, state: int, byte: int) -> int:
        nxt = int(self.trans[state, byte])
        if nxt == UNKNOWN:
            nxt = self.fill(state, byte)
        return nxt

    def run(self, state: int, data: bytes) -> int:
        """State after ``data`` from ``state`` (DEAD if it leaves the language)."""
        trans = self.trans
        for byte in data:
            nxt = trans[state, byte]
            if nxt < 0:
                nxt = self.fill(state, byte)
                trans = self.trans
            state = int(nxt)
            if state == DEAD:
                return DEAD
        return state


_ALL_BYTES = bytes(range(256))


def _column_groups(
    rows: np.ndarray, row: np.ndarray, byts: "bytes | np.ndarray"
) -> tuple[bytes, bytes, list[tuple[int, ...]]]:
    """``_walk.column_groups`` in Python: the bytes of ``byts`` unknown in ``row``, each one's
    group, and each group's column of ``rows`` (DFA states of the sources), equal columns one
    group: each byte's column is what it leads to."""
    wanted = np.zeros(256, dtype=bool)
    wanted[np.frombuffer(byts, dtype=np.uint8)] = True
    cols = np.flatnonzero(wanted & (row == UNKNOWN))
    index: dict[tuple[int, ...], int] = {}
    columns = zip(*rows[:, cols].tolist()) if rows.shape[0] else [()] * cols.size
    groups = bytes(index.setdefault(column, len(index)) for column in columns)
    return cols.astype(np.uint8).tobytes(), groups, list(index)


def _reserve_rows(rows: int) -> np.ndarray:
    """An uninitialised ``[rows, 256]`` transition table whose memory the system provides a page
    at a time, as rows are first written: an anonymous private mapping, without the huge pages
    numpy asks for on large arrays. On a virtual machine, copying the 16 MB of 16k states into
    huge pages took 55-80 ms where they were touched first, into small pages 13-20 ms."""
    try:
        area = mmap.mmap(-1, rows * 256 * 4, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (AttributeError, TypeError):  # no such mappings (Windows): numpy's own memory
        return np.empty((rows, 256), dtype=np.int32)
    return np.frombuffer(area, dtype=np.int32).reshape(rows, 256)
