"""The vocabulary as a flat byte trie, laid out level by level for vectorised walks.

Nodes are numbered breadth-first with siblings sorted by byte, so the children of a node are a
contiguous range and a whole level of a walk is a handful of numpy operations.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

import numpy as np

from onrails.errors import CompileBudgetError

# A level is stepped child by child while the live nodes' children are under 1/8 of it.
_SPARSE_SHARE = 8
# The most children one walk step may gather (int64 arrays of a few times this size).
_MIN_STEP_BUDGET = 1 << 22
_STEP_BUDGET_PER_NODE = 8
# From this many starts at several depths, a ``below`` walk removes repeated (node, state) pairs.
_NESTED_STARTS = 256
# A ``below`` walk goes node by node in Python where its starts have at most this many nodes
# below them per level (or 64 in all): a Python step costs about a fortieth of a level of numpy
# operations, and past the ends of a long token (``-----`` read as unary minuses, a run of blanks)
# the trie below is a chain, one node per level.
_NODES_PER_LEVEL = 32
_SMALL_BELOW = 64
_MAX_BY_NODE = 4096
# Up to this many nodes, the tokens ending at them are gathered in Python.
_FEW_NODES = 32


class TokenTrie:
    """Flat trie over the content tokens of a vocabulary. Node 0 is the root (empty prefix)."""

    def __init__(self, token_bytes: Sequence[bytes | None]) -> None:
        ids = [i for i, b in enumerate(token_bytes) if b]
        strings: list[bytes] = [token_bytes[i] for i in ids]  # type: ignore[misc]
        n = len(strings)
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=n)
        flat = np.frombuffer(b"".join(strings), dtype=np.uint8)
        starts = np.cumsum(lengths) - lengths
        # Rows are read in byte order through their starts; the bytes stay where they are.
        order = _byte_order(strings, flat, starts, lengths)
        ids_sorted = np.array(ids, dtype=np.int64)[order]
        lengths, starts = lengths[order], starts[order]
        max_len = int(lengths.max()) if n else 0

        node_byte = [np.zeros(1, dtype=np.uint8)]
        node_parent = [np.full(1, -1, dtype=np.int64)]
        level_start = [0, 1]
        # node of each row's prefix of the current depth (root for depth 0)
        row_node = np.zeros(n, dtype=np.int64)
        total = 1
        idx = np.arange(n)
        for depth in range(1, max_len + 1):
            idx = idx[lengths[idx] >= depth]  # rows long enough, still in sorted order
            col = flat[starts[idx] + depth - 1]
            # rows are sorted, so equal prefixes are adjacent among the active rows
            differs = np.ones(idx.size, dtype=bool)
            if idx.size > 1:
                same_parent = row_node[idx[1:]] == row_node[idx[:-1]]
                differs[1:] = ~(same_parent & (col[1:] == col[:-1]))
            numbering = np.cumsum(differs) - 1 + total
            parents = row_node[idx]
            node_byte.append(col[differs])
            node_parent.append(parents[differs])
            row_node[idx] = numbering
            total += int(differs.sum())
            level_start.append(total)
        self.node_byte = np.concatenate(node_byte)
        self.node_parent = np.concatenate(node_parent)
        self.n_nodes = total
        self.level_start = np.array(level_start, dtype=np.int64)
        # children ranges: nodes are grouped by parent in increasing order within each level
        child_start = np.zeros(total, dtype=np.int64)
        child_end = np.zeros(total, dtype=np.int64)
        parents = self.node_parent[1:]
        child_ids = np.arange(1, total)
        first = np.ones(parents.size, dtype=bool)
        first[1:] = parents[1:] != parents[:-1]
        last = np.ones(parents.size, dtype=bool)
        last[:-1] = parents[1:] != parents[:-1]
        child_start[parents[first]] = child_ids[first]
        child_end[parents[last]] = child_ids[last] + 1
        self.child_start = child_start
        self.child_count = child_end - child_start
        self.child_count[self.child_count < 0] = 0
        # tokens ending at each node (several ids can share the same bytes)
        token_node = row_node
        by_node = np.argsort(token_node, kind="stable")
        self.token_ids_by_node = ids_sorted[by_node]
        counts = np.bincount(token_node, minlength=total)
        self.node_token_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.node_token_count = counts.astype(np.int64)
        self.token_node = np.full(len(token_bytes), -1, dtype=np.int64)
        self.token_node[ids_sorted] = token_node
        self.max_len = max_len
        # For walks that step every node of a level at once (see ``level_pass``).
        self._parent = np.maximum(self.node_parent, 0)
        self._widest = int(np.diff(self.level_start).max()) if total > 1 else 1
        self.byte32 = self.node_byte.astype(np.int32)
        # Per token id, the node its bytes end at (``n_nodes`` for ids without content, a slot
        # ``level_pass`` keeps dead).
        self.node_of_id = np.full(len(token_bytes), total, dtype=np.int64)
        self.node_of_id[ids_sorted] = token_node
        # Widest step a walk may take: a level has at most ``n_nodes`` nodes, and walks meet
        # a node once per automaton state (a few) since pairs are entered once.
        self.max_step_nodes = max(_MIN_STEP_BUDGET, _STEP_BUDGET_PER_NODE * total)
        # Per node, the nodes strictly below it and the levels they span, from the deepest level up.
        below = np.zeros(total, dtype=np.int64)
        height = np.zeros(total, dtype=np.int64)
        for depth in range(len(level_start) - 2, 0, -1):
            # A level's parents lie in the level above: sums and maxima over that level's slice.
            a, b = level_start[depth], level_start[depth + 1]
            up = level_start[depth - 1]
            parents = self.node_parent[a:b] - up
            below[up:a] += np.bincount(parents, weights=below[a:b] + 1, minlength=a - up).astype(np.int64)
            np.maximum.at(height[up:a], parents, height[a:b] + 1)
        self.nodes_below = below
        self.levels_below = height
        # Python ints per index, for walks that go node by node (``below``, literal paths, the
        # paths of words taken out of a string's automaton).
        self.child_start_view = memoryview(self.child_start)  # type: ignore[arg-type]
        self.child_count_view = memoryview(self.child_count)  # type: ignore[arg-type]
        self.byte_view = memoryview(self.byte32)  # type: ignore[arg-type]
        self._token_start_py = memoryview(self.node_token_start)  # type: ignore[arg-type]
        self._token_count_py = memoryview(self.node_token_count)  # type: ignore[arg-type]
        self._token_ids_py = memoryview(self.token_ids_by_node)  # type: ignore[arg-type]
        # The arrays the compiled walks read (``_walk.c``), in the order they take them, and
        # the levels its passes over the whole trie read too.
        self.kernel_arrays = (
            self.child_start,
            self.child_count,
            self.byte32,
            self.node_token_start,
            self.node_token_count,
            self.token_ids_by_node,
        )
        self.kernel_levels = (self._parent, self.level_start, self.node_of_id)

    def children(self, nodes: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All children of ``nodes``, grouped by parent in order, and each parent's count
        (``counts``, when given, is ``child_count[nodes]`` already gathered)."""
        if counts is None:
            counts = self.child_count[nodes]
        ends = np.cumsum(counts)
        total = int(ends[-1]) if ends.size else 0
        if total > self.max_step_nodes:
            # A mask walk this wide has lost its way (each step allocates a few arrays of this
            # size): fail the request rather than the process.
            raise CompileBudgetError(
                f"a token mask would step {total:,} trie nodes at once (budget {self.max_step_nodes:,})"
            )
        # Child k of the run is child_start[parent] + (k - the run's first index).
        return np.arange(total) + np.repeat(self.child_start[nodes] - (ends - counts), counts), counts

    def fills_level(self, children: int, depth: int) -> bool:
        """Whether a walk with this many children at ``depth`` should step that whole level (one
        gather over a contiguous slice) rather than only those children."""
        return children * _SPARSE_SHARE >= int(self.level_start[depth + 1] - self.level_start[depth])

    def level(self, depth: int) -> tuple[int, np.ndarray, np.ndarray]:
        """The first node of a level with its nodes' parents and bytes (views; depth >= 1)."""
        a, b = int(self.level_start[depth]), int(self.level_start[depth + 1])
        return a, self._parent[a:b], self.byte32[a:b]

    def path(self, data: bytes) -> np.ndarray:
        """The nodes spelling ``data`` from the root, as far as the trie goes (root excluded)."""
        child_start, child_count, byte_of = self.child_start_view, self.child_count_view, self.byte_view
        out = []
        node = 0
        for byte in data:
            first = child_start[node]
            last = first + child_count[node]
            k = bisect_left(byte_of, byte, first, last)
            if k == last or byte_of[k] != byte:
                break
            node = k
            out.append(node)
        return np.array(out, dtype=np.int64)

    def tokens_at(self, nodes: np.ndarray) -> np.ndarray:
        """Token ids whose bytes end exactly at ``nodes``."""
        if nodes.size <= _FEW_NODES:
            # A key's or a keyword's path: a few nodes, where numpy's fixed costs are 10x the work.
            starts, counts, token_ids = self._token_start_py, self._token_count_py, self._token_ids_py
            found: list[int] = []
            for node in nodes.tolist():
                count = counts[node]
                if count:
                    found.extend(token_ids[starts[node] : starts[node] + count].tolist())
            return np.array(found, dtype=np.int64)
        counts = self.node_token_count[nodes]
        keep = counts > 0
        nodes, counts = nodes[keep], counts[keep]
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        return self.token_ids_by_node[np.repeat(self.node_token_start[nodes], counts) + offsets]

    def _step(
        self, flat_table: np.ndarray, dead: int, nodes: np.ndarray, states: np.ndarray, counts: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The live children of ``nodes`` and their states (all times 256, ``dead`` included)."""
        child, counts = self.children(nodes, counts)
        level = flat_table[np.repeat(states, counts) + self.byte32[child]]
        live = level != dead
        return child[live], level[live]

    def level_pass(
        self, flat_table: np.ndarray, dead: int, start: int
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """Every trie node's automaton state after reading its bytes from ``start``, for a
        ``flat_table[state * 256 + byte]`` holding the next state times 256 that maps ``dead``
        to itself.

        Returns ``(states, nodes, node_states)``. While few nodes are alive the pass expands
        children of the live ones only (a pattern's first digits); once a level is mostly alive
        (a string's content) it steps whole levels, each one gather over a contiguous slice.
        ``states`` is then every node's state times 256 (``dead * 256`` where it died, one more
        always dead entry for the ``node_of_id`` of ids without content) and ``nodes`` /
        ``node_states`` are unused; ``states`` is None when the whole pass stayed sparse, and the
        live nodes (root excluded) are ``nodes`` with their states times 256.
        """
        dead *= 256
        bounds = self.level_start
        nodes = np.zeros(1, dtype=np.int64)
        node_states = np.array([start * 256], dtype=np.int32)
        found_nodes: list[np.ndarray] = []
        found_states: list[np.ndarray] = []
        states = None
        for depth in range(1, bounds.size - 1):
            if not nodes.size:
                break
            counts = self.child_count[nodes]
            if depth == 1 or not self.fills_level(int(counts.sum()), depth):
                nodes, node_states = self._step(flat_table, dead, nodes, node_states, counts)
                found_nodes.append(nodes)
                found_states.append(node_states)
                continue
            states = np.full(self.n_nodes + 1, dead, dtype=np.int32)
            states[0] = start * 256
            for n, st in zip(found_nodes, found_states):
                states[n] = st
            for _ in self._dense_levels(flat_table, dead, states, depth):
                pass
            break
        if states is not None or not found_nodes:
            return states, nodes[:0], node_states[:0]
        return None, np.concatenate(found_nodes), np.concatenate(found_states)

    def ends_near_root(self, flat_table: np.ndarray, dead: int, accepting: np.ndarray, start: int, depth: int) -> int:
        """How many nodes with bytes below, at most ``depth`` bytes deep, end a lexeme read from
        ``start`` (a pure part's first exits); 0 as soon as a level's live nodes outnumber its
        ends fourfold (a string's content, which ends only at its quote)."""
        dead *= 256
        nodes = np.zeros(1, dtype=np.int64)
        states = np.array([start * 256], dtype=np.int32)
        ends = 0
        for _ in range(depth):
            nodes, states = self._step(flat_table, dead, nodes, states)
            met = int(np.count_nonzero(accepting[states >> 8] & (self.child_count[nodes] > 0)))
            if met * 4 < nodes.size:
                return 0
            ends += met
        return ends

    def count_pass(
        self, flat_table: np.ndarray, dead: int, start: int, increments: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every node's state times 256 (as ``level_pass`` gives it, whole trie) and the sum of
        ``increments[state * 256 + byte]`` (int8, ``flat_table``'s layout) along its bytes."""
        dead *= 256
        states = np.full(self.n_nodes + 1, dead, dtype=np.int32)
        states[0] = start * 256
        counts = np.zeros(self.n_nodes + 1, dtype=np.int16)
        parent = self._parent
        for a, b, index in self._dense_levels(flat_table, dead, states, 1):
            counts[a:b] = counts[parent[a:b]] + increments[index]
        return states, counts

    def _dense_levels(
        self, flat_table: np.ndarray, dead: int, states: np.ndarray, first: int
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Step every node of each level from depth ``first`` on, in place in ``states`` (times
        256; ``dead`` too), yielding each level's node range and flat-table index, until a level
        is all dead. The index is a scratch buffer: read it before asking for the next level."""
        bounds = self.level_start
        parent, byte = self._parent, self.byte32
        scratch = np.empty(self._widest, dtype=np.int32)
        for depth in range(first, bounds.size - 1):
            a, b = int(bounds[depth]), int(bounds[depth + 1])
            # In place, through ``take``: fancy indexing would allocate and cast three arrays per
            # level (a third of the time of a pass over the whole trie).
            index = scratch[: b - a]
            states.take(parent[a:b], out=index)
            index += byte[a:b]
            level = states[a:b]
            flat_table.take(index, out=level)
            yield a, b, index
            if level.min() == dead:  # ``dead`` is the largest entry: the level is all dead
                return

    def exits(self, states: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Nodes other than the root, with bytes below, whose state (times 256, from a whole-trie
        pass) is one of ``ends``: found by comparing values (a terminal has one or two accepting
        states), then kept where the token goes on, 4x cheaper than gathering by node."""
        at_end = states[:-1] == ends[0] if ends.size == 1 else np.isin(states[:-1], ends)
        found = np.flatnonzero(at_end)
        return found[(self.child_count[found] > 0) & (found > 0)]

    def below(
        self, flat_table: np.ndarray, dead: int, accepting: np.ndarray, nodes: np.ndarray, start: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reading on from ``nodes`` in a DFA (``flat_table`` as for ``level_pass``) from state
        ``start``: the nodes strictly below them that stay alive, and where the DFA accepts with
        bytes still below (``nodes`` themselves included), as ``(alive, ends)``."""
        if nodes.size <= _MAX_BY_NODE:
            count = int(self.nodes_below[nodes].sum())
            if count <= _MAX_BY_NODE and count <= max(_SMALL_BELOW, _NODES_PER_LEVEL * int(self.levels_below[nodes].max())):
                return self._below_by_node(flat_table, dead * 256, accepting, nodes, start)
        dead *= 256
        current = nodes.astype(np.int64)
        states = np.full(current.size, start * 256, dtype=np.int32)
        alive: list[np.ndarray] = []
        ends: list[np.ndarray] = []
        if accepting[start]:
            ends.append(current[self.child_count[current] > 0])
        # Starts at several depths may lie one below another (a walk through letters next to
        # letters starts at every letter node): their readings then meet at the same (node,
        # state) pairs, each of which goes on once, so the cost is the nodes below, not the
        # nodes below times their depth.
        nested = nodes.size >= _NESTED_STARTS and self._depth(nodes.min()) != self._depth(nodes.max())
        seen = NodePairs(self.n_nodes) if nested else None
        while current.size:
            current, states = self._step(flat_table, dead, current, states)
            if seen is not None:
                current, states = seen.first_time(current, states)
            alive.append(current)
            ends.append(current[accepting[states >> 8] & (self.child_count[current] > 0)])
        none = np.zeros(0, dtype=np.int64)
        return (np.concatenate(alive) if alive else none), (np.concatenate(ends) if ends else none)

    def _below_by_node(
        self, flat_table: np.ndarray, dead: int, accepting: np.ndarray, nodes: np.ndarray, start: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``below`` for a few nodes with few below them, one (node, state) pair at a time."""
        child_start, child_count, byte = self.child_start_view, self.child_count_view, self.byte_view
        table = memoryview(flat_table)  # type: ignore[arg-type]
        accepts = memoryview(np.ascontiguousarray(accepting).view(np.uint8))  # type: ignore[arg-type]
        starts = nodes.tolist()
        alive: list[int] = []
        ends = [n for n in starts if child_count[n]] if accepts[start] else []
        todo = [(n, start * 256) for n in starts]
        expanded: set[tuple[int, int]] = set()
        while todo:
            pair = todo.pop()
            if pair in expanded:  # starts one below another meet again
                continue
            expanded.add(pair)
            node, state = pair
            first = child_start[node]
            for child in range(first, first + child_count[node]):
                nxt = table[state + byte[child]]
                if nxt == dead:
                    continue
                alive.append(child)
                if child_count[child]:
                    if accepts[nxt >> 8]:
                        ends.append(child)
                    todo.append((child, nxt))
        return np.array(alive, dtype=np.int64), np.array(ends, dtype=np.int64)

    def _depth(self, node: int) -> int:
        return int(np.searchsorted(self.level_start, node, side="right")) - 1


class NodePairs:
    """A set of (trie node, state) pairs: a flag per trie node for each state met (pages of
    zeros cost nothing until written), so a check costs a gather, not a sort."""

    def __init__(self, n_nodes: int) -> None:
        self._n_nodes = n_nodes
        self._flags: dict[int, np.ndarray] = {}
        self._slot: np.ndarray | None = None

    def _of(self, state: int) -> np.ndarray:
        flags = self._flags.get(state)
        if flags is None:
            flags = self._flags[state] = np.zeros(self._n_nodes, dtype=bool)
        return flags

    def add(self, nodes: np.ndarray, state: int) -> None:
        self._of(state)[nodes] = True

    def first_time(self, nodes: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pairs not in the set, once each (in no particular order); adds them."""
        if not nodes.size:
            return nodes, states
        if self._slot is None:
            self._slot = np.empty(self._n_nodes, dtype=np.int32)
        keep = np.zeros(nodes.size, dtype=bool)
        low = int(states.min())
        present = np.flatnonzero(np.bincount(states - low)) + low
        for state in present.tolist():
            at = np.flatnonzero(states == state) if present.size > 1 else np.arange(nodes.size)
            flags = self._of(state)
            at = at[~flags[nodes[at]]]
            # Repeats among ``nodes``: each node keeps the position written last for it.
            self._slot[nodes[at]] = at
            at = at[self._slot[nodes[at]] == at]
            flags[nodes[at]] = True
            keep[at] = True
        return nodes[keep], states[keep]


def _byte_order(strings: list[bytes], flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The order that sorts ``strings`` (laid end to end in ``flat``) by their bytes.

    Sorted by their first 16 bytes as two big-endian integers, zeros past the end, in numpy;
    only runs equal in those (a few hundred of Llama-3.2's 128k tokens) are sorted in Python.
    Sorting the 128k byte strings in Python took 120 ms, most of a cold compile.
    """
    n = len(strings)
    shown = np.minimum(lengths, 16)
    row = np.repeat(np.arange(n), shown)
    col = np.arange(row.size) - np.repeat(np.cumsum(shown) - shown, shown)
    head = np.zeros((n, 16), dtype=np.uint8)
    head[row, col] = flat[starts[row] + col]
    keys = head.view(">u8")
    high, low = keys[:, 0], keys[:, 1]
    order = np.lexsort((low, high))
    high, low = high[order], low[order]
    tied = np.flatnonzero((high[1:] == high[:-1]) & (low[1:] == low[:-1]))
    if not tied.size:
        return order
    # Runs of equal keys: each tie joins a row to the next.
    run_starts = tied[np.concatenate([[True], tied[1:] != tied[:-1] + 1])]
    run_ends = tied[np.concatenate([tied[1:] != tied[:-1] + 1, [True]])] + 2
    for a, b in zip(run_starts.tolist(), run_ends.tolist()):
        order[a:b] = sorted(order[a:b].tolist(), key=strings.__getitem__)
    return order
