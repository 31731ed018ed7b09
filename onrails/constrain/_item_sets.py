"""Tracked lists in the parse table: what the parser checks for a grammar's ``ItemSet``s.

A tracked list's stack entry carries a *tag*: which tracked items the list holds (a bit each)
and how many items it has (capped where larger counts stop mattering), ``bits | count << width``.
Reducing ``rule separator item`` adds the item to the tag of the list entry below; shifting a
terminal is *guarded* where it would start a tracked item already held (ADD), start another item
when none can follow (CONTINUE), or close the list too early (CLOSE). A guard only lets through a
terminal after which the list can still be completed, so "every configuration can be completed"
stays true for the automaton.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from onrails.errors import GrammarError
from onrails.grammars.item_sets import ItemSet

# Guard kinds: the terminal starts an item, the separator before one, or what follows the list.
ADD, CONTINUE, CLOSE = 0, 1, 2
# Where a guard finds the list entry: the stack top itself, the entry below it, or nowhere (the
# first item of a list, whose tag is empty).
AT_TOP, BELOW_TOP, NO_ENTRY = 0, 1, -1


@dataclass(frozen=True)
class TrackedList:
    """One tracked list's rules, as bits and counts."""

    width: int  # tracked items, one bit each
    required: int  # bits of the required ones
    min_items: int
    max_items: int  # -1: no maximum
    cap: int  # counts from here on are not told apart
    untracked: bool  # whether some item may repeat

    def _split(self, tag: int) -> tuple[int, int]:
        return tag & ((1 << self.width) - 1), tag >> self.width

    def addable(self, tag: int) -> int:
        """The items that may come next, a bit each: the tracked ones by their bits, an untracked
        one by bit ``width``. One answer serves every key of an object asked after the same tag."""
        bits, count = self._split(tag)
        free = ((1 << self.width) - 1) & ~bits | 1 << self.width
        if self.max_items < 0:
            return free
        missing = self.required & ~bits
        # Room for more items once every missing required one is counted in: a required item
        # needs none beyond its own place, any other needs one.
        room = self.max_items - count - missing.bit_count()
        return free if room >= 1 else missing if room == 0 else 0

    def position(self, bit: int) -> int:
        """Where an item (``bit``: tracked, -1: untracked) is answered in ``addable`` and ``passed``."""
        return self.width if bit < 0 else bit

    def can_add(self, tag: int, bit: int) -> bool:
        """Whether an item (``bit``: tracked, -1: untracked) may come next."""
        return bool(self.addable(tag) >> self.position(bit) & 1)

    def can_continue(self, tag: int) -> bool:
        """Whether some item may come next (the separator may be written)."""
        addable = self.addable(tag)
        return bool(addable & ((1 << self.width) - 1) or self.untracked and addable >> self.width & 1)

    def can_close(self, tag: int) -> bool:
        bits, count = self._split(tag)
        return not self.required & ~bits and count >= self.min_items

    def added(self, tag: int, bit: int) -> int | None:
        """The tag once an item is added (None: a tracked item already held)."""
        bits, count = self._split(tag)
        if bit >= 0:
            if bits >> bit & 1:
                return None
            bits |= 1 << bit
        return bits | min(count + 1, self.cap) << self.width

    def passed(self, kind: int, tag: int) -> int:
        """What a guard of ``kind`` lets through after ``tag``, a bit per item as in ``addable``
        (the separator and the list's end are let through for every item or none)."""
        if kind == ADD:
            return self.addable(tag)
        allowed = self.can_continue(tag) if kind == CONTINUE else self.can_close(tag)
        return -1 if allowed else 0


@dataclass
class ListRules:
    """The tracked lists of a parse table: per list rule, how it changes its entry's tag; per
    (LR state, terminal), the guard on shifting it."""

    lists: list[TrackedList]
    # rule -> (list, item bit or -1, whether the rule extends a list entry below)
    updates: dict[int, tuple[int, int, bool]]
    # (LR state, terminal) -> (kind, list, the item's bit in ``TrackedList.passed``, where the list
    # entry is)
    guards: dict[tuple[int, int], tuple[int, int, int, int]]
    # Every terminal of ``guards`` (they grow as LR states are built).
    guarded: set[int]


class ListAnalysis:
    """Builds ``ListRules`` while the LR states are made: the rules first, then each state's
    guards from its closure items."""

    def __init__(
        self,
        item_sets: "tuple[ItemSet, ...]",
        rules: "list[tuple[int, tuple[int, ...]]]",
        nt_index: "dict[str, int]",
        n_terms: int,
        first: "list[set[int]]",
        nullable: "list[bool]",
        nt_names: "list[str]",
    ) -> None:
        self._n_terms = n_terms
        self._nt_names = nt_names
        # FIRST sets of the lists' items only, as tuples (see ``ParseTable``).
        self._first: dict[int, tuple[int, ...]] = {}
        self.result = ListRules(lists=[], updates={}, guards={}, guarded=set())
        self._rules = rules
        self._list_of: dict[int, int] = {}  # list nonterminal -> list id
        self._item_bits: list[dict[int, int]] = []  # per list: item nonterminal -> bit or -1
        rules_of: dict[int, list[int]] = {}
        for index, (lhs, _) in enumerate(rules):
            rules_of.setdefault(lhs, []).append(index)
        for item_set in item_sets:
            if nt_index.get(item_set.rule) not in rules_of:
                continue  # the list was unproductive and is gone
            lhs = nt_index[item_set.rule]
            # Unproductive items are gone from the rules: they get no bit, so no guard waits on them.
            tracked = [nt_index[s] for s in item_set.tracked if nt_index.get(s) in rules_of]
            bits = {n: bit for bit, n in enumerate(tracked)}
            bits.update({nt_index[s]: -1 for s in item_set.untracked if nt_index.get(s) in rules_of})
            for n in bits:
                if nullable[n]:
                    raise GrammarError(f"an item of tracked list {item_set.rule!r} can be empty", rule=item_set.rule)
            # A terminal starting two items is counted twice (pairs of items: quadratic in a
            # list of hundreds of properties).
            starting = Counter(t for n in bits for t in first[n])
            for n, bit in bits.items():
                if bit >= 0 and any(starting[t] > 1 for t in first[n]):
                    raise GrammarError(
                        f"a tracked item of list {item_set.rule!r} shares its first terminals with another item",
                        rule=item_set.rule,
                    )
            self._first.update((n, tuple(first[n])) for n in bits)
            list_id = len(self.result.lists)
            self._list_of[lhs] = list_id
            self._item_bits.append(bits)
            list_symbol = n_terms + 1 + lhs
            separator = None
            for index in rules_of[lhs]:
                rhs = rules[index][1]
                item = rhs[-1] - n_terms - 1 if rhs else -1
                extends = len(rhs) == 3 and rhs[0] == list_symbol and rhs[1] < n_terms
                if not (len(rhs) == 1 or extends) or item not in bits or (extends and separator not in (None, rhs[1])):
                    raise GrammarError(
                        f"tracked list {item_set.rule!r} has a rule other than 'item' and 'list separator item'",
                        rule=item_set.rule,
                    )
                if extends:
                    separator = rhs[1]
                self.result.updates[index] = (list_id, bits[item], extends)
            required = 0
            for s in item_set.required:
                required |= 1 << bits[nt_index[s]]
            max_items = -1 if item_set.max_items is None else item_set.max_items
            counted = max(item_set.min_items, max_items)
            self.result.lists.append(
                TrackedList(
                    width=len(tracked),
                    required=required,
                    min_items=item_set.min_items,
                    max_items=max_items,
                    # counts matter only up to the bounds; without bounds they are not kept
                    cap=counted if counted > 0 else 0,
                    untracked=any(bit < 0 for bit in bits.values()),
                )
            )
        # What follows a tracked list is guarded when LR states are built, at decode time; a
        # list followed by anything but a terminal (or its own separator) is refused here.
        for lhs, rhs in rules:
            for dot in range(1, len(rhs) + 1):
                if rhs[dot - 1] <= n_terms or rhs[dot - 1] - n_terms - 1 not in self._list_of:
                    continue
                if not (lhs == rhs[dot - 1] - n_terms - 1 and dot == 1) and not (dot < len(rhs) and rhs[dot] < n_terms):
                    name = nt_names[rhs[dot - 1] - n_terms - 1]
                    raise GrammarError(f"tracked list {name!r} must be followed by a terminal", rule=name)

    def add_state(self, state: int, items: "list[tuple[int, int]]", shift: "dict[int, int]") -> None:
        """Record the guards of one LR state (``items``: its closure)."""
        if not self._list_of:
            return
        n_terms = self._n_terms
        for rule, dot in items:
            lhs, rhs = self._rules[rule]
            list_id = self._list_of.get(lhs)
            if list_id is not None and dot == len(rhs) - 1:
                bit = self._item_bits[list_id][rhs[dot] - n_terms - 1]
                tracked = self.result.lists[list_id]
                where = BELOW_TOP if dot else NO_ENTRY
                # A list's first item sees an empty tag: decided here. Only the first items of
                # lists after the same opening (enum objects) share a state, and those pass.
                if where == NO_ENTRY and tracked.can_add(0, bit):
                    continue
                for t in self._first[rhs[dot] - n_terms - 1]:
                    if t in shift:
                        self._guard(state, t, (ADD, list_id, tracked.position(bit), where), lhs)
            if dot and rhs[dot - 1] > n_terms:
                before = self._list_of.get(rhs[dot - 1] - n_terms - 1)
                if before is None:
                    continue
                # ``__init__`` made sure one of these holds.
                # The separator and the list's end are let through for every item or none.
                anywhere = self.result.lists[before].position(-1)
                if lhs == rhs[dot - 1] - n_terms - 1 and dot == 1:
                    self._guard(state, rhs[1], (CONTINUE, before, anywhere, AT_TOP), lhs)
                elif dot < len(rhs) and rhs[dot] < n_terms:
                    self._guard(state, rhs[dot], (CLOSE, before, anywhere, AT_TOP), lhs)

    def _guard(self, state: int, terminal: int, guard: "tuple[int, int, int, int]", lhs: int) -> None:
        known = self.result.guards.setdefault((state, terminal), guard)
        self.result.guarded.add(terminal)
        if known != guard:
            name = self._nt_names[lhs]
            raise GrammarError(f"two tracked lists guard one terminal in a parser state of {name!r}", rule=name)
