"""Exact shortest completions: the fewest bytes that take an automaton state to acceptance.

Lexing is scannerless: a terminal may end wherever its DFA accepts and any terminal the parser
allows may follow, so the language from a configuration ``(stack, terminal, dfa_state)`` is "the
rest of the current terminal, then whole terminals the parser shifts one after another until it
can end". Which string a terminal takes never constrains what follows, so the shortest completion
is a shortest path over parser stacks, an edge per terminal costing its shortest string (at
least one byte: a terminal enters the automaton by reading a byte).

The search is A* over stacks. Its heuristic is the exact cost of finishing a stack in the
context-free grammar, read off the LR(0) items: the top state's kernel items say what is left of
the rules in progress (the cheapest yield of the symbols after the dot), and a reduction hands
over to the state below, whose items say what is left there. This never overestimates (the
parser's reduce look-aheads only remove impossible derivations) and is consistent, so A* stays
exact; being exact in practice, it walks straight down one optimal path. A tracked list (object
members, ``_item_sets``) adds what it still owes to the grammar's cost: its missing required
items and enough items for its minimum, each at its cheapest.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable

import numpy as np

from onrails.constrain._automaton import AmbiguityError, Automaton
from onrails.constrain._bytedfa import DEAD as DFA_DEAD
from onrails.constrain._bytedfa import ByteDFA

_INF = 1 << 60
# Stacks expanded per search before giving up. The heuristic is exact for the grammars the
# engine builds, so a search expands about one stack per terminal of its answer; the budget
# only guards against something pathological.
_MAX_EXPANDED = 20000


def _byte_rank() -> np.ndarray:
    # Among equally short strings, prefer ones that read (and tokenize) well.
    order = list(b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    order += [b for b in range(0x21, 0x7F) if b not in order]
    order += [b for b in range(256) if b not in order]
    rank = np.empty(256, dtype=np.int64)
    rank[np.array(order)] = np.arange(256)
    return rank


_RANK = _byte_rank()


class _TerminalPaths:
    """Shortest strings inside one terminal's DFA."""

    def __init__(self, dfa: ByteDFA) -> None:
        self.dfa = dfa
        # A counted string: the uncounted string's distances, plus the shortest unit per unit
        # still needed (the closing quote needs them; reaching ``inside`` starts none).
        self._base = None if dfa.counter is None else _TerminalPaths(dfa.counter.base)
        self._dist: np.ndarray | None = None
        self._unit = 0
        self.min_length = self._min_length()
        self._whole: bytes | None = None
        self._finish: dict[int, bytes] = {}

    def _min_length(self) -> int:
        """Length of the shortest non-empty lexeme (``_INF`` if there is none)."""
        if self.dfa.literal is not None:
            return len(self.dfa.literal) if self.dfa.literal else _INF
        if self.dfa.counter is not None:
            return int(self.distance(np.zeros(1, dtype=np.int64))[0])
        # Breadth-first from the initial state, stopping at the first accepting level.
        table, accepting = self.dfa.table, self.dfa.accepting
        seen = np.zeros(self.dfa.n_states, dtype=bool)
        frontier = np.array([0])
        for length in range(1, self.dfa.n_states + 1):
            nxt = np.unique(table[frontier])
            nxt = nxt[nxt != DFA_DEAD]
            if accepting[nxt].any():
                return length
            nxt = nxt[~seen[nxt]]
            if not nxt.size:
                break
            seen[nxt] = True
            frontier = nxt
        return _INF

    def distance(self, states: np.ndarray) -> np.ndarray:
        """Per state (``DEAD`` entries give garbage), the fewest bytes to an accepting state."""
        counter = self.dfa.counter
        if counter is None or self._base is None:
            return self._distances()[states]
        base_dist = self._base._distances()
        if not self._unit:
            inside_row = counter.base.table[counter.inside]
            self._unit = int(base_dist[inside_row[counter.starts[counter.inside] > 0]].min())
        units, base_states = np.divmod(np.maximum(states, 0), counter.base.n_states)
        needed = np.maximum(counter.lo - units, 0)
        return np.where(counter.final[base_states], 0, base_dist[base_states] + needed * self._unit)

    def _distances(self) -> np.ndarray:
        """Per DFA state, the fewest bytes to an accepting state (a backward BFS, done once)."""
        if self._dist is None and self.dfa.literal is not None:
            # State i of a literal has read i bytes (schema keys: most terminals of big grammars).
            self._dist = np.arange(len(self.dfa.literal), -1, -1, dtype=np.int64)
        if self._dist is None:
            table = self.dfa.table
            n = self.dfa.n_states
            dist = np.full(n, -1, dtype=np.int64)
            src, _ = np.nonzero(table != DFA_DEAD)
            dst = table[table != DFA_DEAD]
            order = np.argsort(dst, kind="stable")
            preds, bounds = src[order], np.searchsorted(dst[order], np.arange(n + 1))
            frontier = np.flatnonzero(self.dfa.accepting)
            dist[frontier] = 0
            level = 0
            while frontier.size:
                level += 1
                found = np.unique(np.concatenate([preds[bounds[s] : bounds[s + 1]] for s in frontier.tolist()]))
                frontier = found[dist[found] < 0]
                dist[frontier] = level
            self._dist = dist
        return self._dist

    def finish(self, state: int) -> bytes:
        """The shortest bytes from ``state`` to an accepting state (preferred bytes on ties)."""
        cached = self._finish.get(state)
        if cached is None:
            out = bytearray()
            at = state
            left = int(self.distance(np.array([at]))[0])
            while left > 0:
                at = self._step(at, left - 1, out)
                left -= 1
            cached = self._finish[state] = bytes(out)
        return cached

    def whole(self) -> bytes:
        """The shortest non-empty lexeme."""
        if self._whole is None:
            if self.dfa.literal is not None:
                self._whole = self.dfa.literal
            else:
                out = bytearray()
                state = self._step(0, self.min_length - 1, out)
                self._whole = bytes(out) + self.finish(state)
        return self._whole

    def _step(self, state: int, want: int, out: bytearray) -> int:
        row = self.dfa.row(state)
        ok = np.flatnonzero((row != DFA_DEAD) & (self.distance(row) == want))
        byte = int(ok[np.argmin(_RANK[ok])])
        out.append(byte)
        return int(row[byte])


class _Solver:
    """Per automaton: the grammar's static costs and memoised stack costs."""

    def __init__(self, automaton: Automaton) -> None:
        self.automaton = automaton
        table = automaton.table
        self.paths = [_TerminalPaths(d) for d in automaton.dfas]
        self.term_cost = [p.min_length for p in self.paths]
        end = table.end
        n_nts = len(table.nonterminal_names)
        n_rules = len(table.rule_lhs)
        rhs = table.rule_rhs
        self.aug_rules = table.start_rules
        nt_cost = [_INF] * n_nts

        def cost(sym: int) -> int:
            return self.term_cost[sym] if sym < end else nt_cost[sym - end - 1]

        self._tracked_lists(rhs)
        first_items = {r: (u[0], u[1]) for r, u in table.lists.updates.items() if not u[2]}
        changed = True
        while changed:
            changed = False
            self._list_costs(cost)
            # Rules of unreachable nonterminals get costs too; no stack ever asks for them.
            for r in range(n_rules):
                c = min(_INF, sum(cost(s) for s in rhs[r]))
                if r in first_items:
                    # a list's first item also owes the items the list must take after it
                    list_id, bit = first_items[r]
                    c = min(_INF, c + self._owed(list_id, table.lists.lists[list_id].added(0, bit) or 0, False))
                if c < nt_cost[table.rule_lhs[r]]:
                    nt_cost[table.rule_lhs[r]] = c
                    changed = True
        self._list_costs(cost)
        # rest[r][dot]: the cheapest yield of rule r's symbols from the dot on (for a list's
        # first item, with what the list owes after it).
        self.rest: list[list[int]] = []
        for r in range(n_rules):
            suffix = [0] * (len(rhs[r]) + 1)
            if r in first_items:
                list_id, bit = first_items[r]
                suffix[-1] = self._owed(list_id, table.lists.lists[list_id].added(0, bit) or 0, False)
            for i in range(len(rhs[r]) - 1, -1, -1):
                suffix[i] = min(_INF, suffix[i + 1] + cost(rhs[r][i]))
            self.rest.append(suffix)
        # Left-corner edges X -> Y (a rule X: Y ...), weighted by what the rule needs after Y.
        self.left_corner: list[list[tuple[int, int]]] = [[] for _ in range(n_nts)]
        for r in range(n_rules):
            if rhs[r] and rhs[r][0] > end:
                self.left_corner[table.rule_lhs[r]].append((rhs[r][0] - end - 1, self.rest[r][1]))
        # Per LR state met, its kernel items whose next symbol is a nonterminal: (rule, dot, nt).
        self._kernel_next: dict[int, list[tuple[int, int, int]]] = {}
        self._lc: dict[int, dict[int, int]] = {}
        self._h: dict[tuple[int, int], int] = {}
        self._f: dict[int, int] = {}
        # Per stack, a proven shortest way to the end: (its cost, first terminal, stack after it).
        self._next: dict[int, tuple[int, int, int]] = {}
        self.results: dict[int, bytes | None] = {}

    def _tracked_lists(self, rhs: "list[tuple[int, ...]]") -> None:
        """The tracked lists' shapes: per list, its separator and items (symbol and bit); per LR
        state entered by a list's rule, that list; per LR state inside an item's rule, the item."""
        table = self.automaton.table
        lists = table.lists
        self._separator = [-1] * len(lists.lists)
        self._items: list[list[tuple[int, int]]] = [[] for _ in lists.lists]
        list_nt: dict[int, int] = {}
        item_nt: dict[int, tuple[int, int]] = {}
        for r, (list_id, bit, extends) in lists.updates.items():
            list_nt[table.end + 1 + table.rule_lhs[r]] = list_id
            item_nt[rhs[r][-1] - table.end - 1] = (list_id, bit)
            if extends:
                self._separator[list_id] = rhs[r][1]
            else:
                self._items[list_id].append((rhs[r][-1], bit))
        self._list_nt = list_nt
        self._item_nt = item_nt
        self._lists_at: dict[int, int | None] = {}
        self._items_at: dict[int, tuple[int, int] | None] = {}

    def _list_at(self, lr_state: int) -> int | None:
        """The tracked list whose rule's symbol enters ``lr_state``, if any."""
        if lr_state not in self._lists_at:
            table = self.automaton.table
            # Every kernel item past its first symbol follows the symbol that enters the state.
            self._lists_at[lr_state] = next(
                (self._list_nt.get(table.rule_rhs[r][dot - 1]) for r, dot in table.items[lr_state] if dot), None
            )
        return self._lists_at[lr_state]

    def _item_at(self, lr_state: int) -> tuple[int, int] | None:
        """The tracked item (list, bit) whose own rule ``lr_state`` is inside, past its first symbol."""
        if lr_state not in self._items_at:
            table = self.automaton.table
            self._items_at[lr_state] = next(
                (
                    self._item_nt[table.rule_lhs[r]]
                    for r, dot in table.items[lr_state]
                    if dot == 1 and table.rule_lhs[r] in self._item_nt
                ),
                None,
            )
        return self._items_at[lr_state]

    def kernel_next(self, lr_state: int) -> list[tuple[int, int, int]]:
        """Kernel items of ``lr_state`` whose next symbol is a nonterminal: (rule, dot, nt)."""
        found = self._kernel_next.get(lr_state)
        if found is None:
            table = self.automaton.table
            end = table.end
            rhs = table.rule_rhs
            found = self._kernel_next[lr_state] = [
                (r, dot, rhs[r][dot] - end - 1)
                for r, dot in table.items[lr_state]
                if dot < len(rhs[r]) and rhs[r][dot] > end
            ]
        return found

    def _list_costs(self, cost: "Callable[[int], int]") -> None:
        """Per list, each tracked item's cost and the cheapest item's, with the separator before
        them, under the symbol costs ``cost``."""
        self._item_costs: list[list[int]] = []
        self._cheapest: list[int] = []
        for list_id, tl in enumerate(self.automaton.table.lists.lists):
            separator = self._separator[list_id]
            before = cost(separator) if separator >= 0 else _INF
            by_bit = [_INF] * tl.width
            cheapest = _INF
            for symbol, bit in self._items[list_id]:
                item = min(_INF, cost(symbol) + before)
                if bit >= 0:
                    by_bit[bit] = item
                cheapest = min(cheapest, item)
            self._item_costs.append(by_bit)
            self._cheapest.append(cheapest)

    def _owed(self, list_id: int, tag: int, in_progress: bool) -> int:
        """A lower bound on the bytes a list with ``tag`` must still take: its missing required
        items, then the cheapest items up to its minimum (``in_progress``: an unknown item is
        being written, so less the dearest of those, which may be it)."""
        tl = self.automaton.table.lists.lists[list_id]
        bits, count = tag & ((1 << tl.width) - 1), tag >> tl.width
        need = tl.required & ~bits
        owed = [self._item_costs[list_id][b] for b in range(tl.width) if need >> b & 1]
        owed += [self._cheapest[list_id]] * max(0, tl.min_items - count - len(owed))
        if in_progress and owed:
            owed.remove(max(owed))
        return min(_INF, sum(owed))

    def _owed_by_lists(self, stack: int) -> int:
        """``_owed`` summed over the tracked lists open on ``stack``; an item being written
        above a list's entry counts as written (its rest is in the grammar's part of the cost)."""
        automaton = self.automaton
        total = 0
        node, above, item_start = stack, -1, -1
        while automaton.stack_depth[node] > 0:
            list_id = self._list_at(automaton.stack_state[node])
            if list_id is not None:
                tag = automaton.stack_tag[node]
                writing = self._item_at(automaton.stack_state[item_start]) if item_start >= 0 else None
                if writing is not None and writing[0] == list_id:
                    tag = automaton.table.lists.lists[list_id].added(tag, writing[1]) or tag
                    total += self._owed(list_id, tag, False)
                else:
                    total += self._owed(list_id, tag, item_start >= 0)
            node, above, item_start = automaton.stack_parent[node], node, above
        return min(total, _INF)

    def lc_from(self, nt: int) -> dict[int, int]:
        """Cheapest left-corner chain from ``nt`` to each nonterminal (Dijkstra, memoised)."""
        dist = self._lc.get(nt)
        if dist is None:
            dist = {}
            heap = [(0, nt)]
            while heap:
                d, x = heapq.heappop(heap)
                if x in dist:
                    continue
                dist[x] = d
                for y, w in self.left_corner[x]:
                    if y not in dist and d + w < _INF:
                        heapq.heappush(heap, (d + w, y))
            self._lc[nt] = dist
        return dist

    def after_reduce(self, stack: int, nt: int) -> int:
        """Cheapest cost to finish once ``nt`` is reduced onto ``stack`` (memoised)."""
        automaton = self.automaton
        memo = self._h
        todo = [(stack, nt)]
        # Each value needs values on stacks strictly below, so an explicit stack terminates
        # (and deep nesting cannot overflow Python's recursion).
        while todo:
            key = todo[-1]
            if key in memo:
                todo.pop()
                continue
            node, target = key
            best = _INF
            missing = []
            for rule, dot, nxt in self.kernel_next(automaton.stack_state[node]):
                chain = self.lc_from(nxt).get(target)
                if chain is None:
                    continue
                here = chain + self.rest[rule][dot + 1]
                if rule in self.aug_rules:
                    best = min(best, here)
                    continue
                below = (automaton.below(node, dot), automaton.table.rule_lhs[rule])
                sub = memo.get(below)
                if sub is None:
                    missing.append(below)
                else:
                    best = min(best, here + sub)
            if missing:
                todo.extend(missing)
                continue
            memo[key] = min(best, _INF)
            todo.pop()
        return memo[(stack, nt)]

    def to_end(self, stack: int) -> int:
        """Cheapest cost (in bytes of whole terminals) to finish from a boundary at ``stack``."""
        cached = self._f.get(stack)
        if cached is None:
            automaton = self.automaton
            table = automaton.table
            cached = _INF
            for rule, dot in table.items[automaton.stack_state[stack]]:
                rest = self.rest[rule][dot]
                if rule not in self.aug_rules:
                    rest += self.after_reduce(automaton.below(stack, dot), table.rule_lhs[rule])
                cached = min(cached, rest)
            if self._list_nt:
                cached = min(_INF, cached + self._owed_by_lists(stack))
            self._f[stack] = cached
        return cached

    def search(self, state: int) -> bytes | None:
        """The shortest completion from an automaton state (None past the expansion budget)."""
        automaton = self.automaton
        heap: list[tuple[int, int, int, int, int, int, int, int]] = []
        best_g: dict[int, int] = {}
        tick = 0

        def push(stack: int, g: int, parent: int, terminal: int, dfa_state: int) -> None:
            nonlocal tick
            if g >= best_g.get(stack, _INF):
                return
            h = self.to_end(stack)
            if h >= _INF:
                return
            best_g[stack] = g
            tick += 1
            # Ties go to the deeper path: with an exact heuristic it heads straight to an end.
            heapq.heappush(heap, (g + h, -g, tick, stack, g, parent, terminal, dfa_state))

        for stack, terminal, dfa_state in automaton.configs[state]:
            if terminal < 0:
                push(stack, 0, -1, -1, 0)
            else:
                finish = int(self.paths[terminal].distance(np.array([dfa_state]))[0])
                for after in automaton.after_terminal(stack, terminal):
                    push(after, finish, -1, terminal, dfa_state)
        # back[stack] = (previous stack or -1, terminal read to get here, its DFA state or -1 if whole)
        back: dict[int, tuple[int, int, int]] = {}
        while heap:
            f, _, _, stack, g, parent, terminal, dfa_state = heapq.heappop(heap)
            if stack in back:
                continue
            back[stack] = (parent, terminal, dfa_state)
            if automaton.can_end(stack):
                self._next[stack] = (0, -1, -1)
            known = self._next.get(stack)
            # A known way on that costs the lower bound is optimal, so the search is over.
            if known is not None and known[0] == f - g:
                return self._spell(back, stack)
            if len(back) > _MAX_EXPANDED:
                return None
            for t in automaton.allowed_terminals(stack):
                w = self.term_cost[t]
                if w >= _INF:
                    continue
                for after in automaton.after_terminal(stack, t):
                    if after not in back:
                        push(after, g + w, stack, t, -1)
        return None

    def _spell(self, back: dict[int, tuple[int, int, int]], stack: int) -> bytes:
        """The bytes of the path found to ``stack`` and its known way on from there.

        Every stack on the path learns its way on: a part of a shortest path is shortest, so
        later searches (the next bytes of the same output) stop as soon as they meet it.
        """
        tail = []
        at = stack
        while True:
            _, terminal, after = self._next[at]
            if terminal < 0:
                break
            tail.append(self.paths[terminal].whole())
            at = after
        head = []
        while stack >= 0:
            parent, terminal, dfa_state = back[stack]
            if terminal >= 0:
                paths = self.paths[terminal]
                head.append(paths.whole() if dfa_state < 0 else paths.finish(dfa_state))
            if parent >= 0 and parent not in self._next:
                self._next[parent] = (self._next[stack][0] + self.term_cost[terminal], terminal, stack)
            stack = parent
        return b"".join(reversed(head)) + b"".join(tail)


_solvers_lock = threading.Lock()


def shortest_completion(automaton: Automaton, state: int) -> bytes | None:
    """The shortest bytes from ``state`` (untruncated) to acceptance; None if the search gives up."""
    with _solvers_lock:
        solver = automaton.completions
        if not isinstance(solver, _Solver):
            solver = automaton.completions = _Solver(automaton)
    # The search interns stacks and fills the automaton's caches, which its lock guards.
    with automaton._lock:
        if state not in solver.results:
            try:
                solver.results[state] = solver.search(state)
            except AmbiguityError:
                solver.results[state] = None
        return solver.results[state]
