"""LR(0) automaton with SLR(1) reduce lookaheads, conflicts kept (the engine parses like GLR).

Conflicts are not errors: the engine follows every action at once, so any context-free grammar
without hidden left recursion works, and ambiguity only costs speed. The LR(0) states are exact
for viable prefixes, which is what makes "a stack that shifted is always completable" true.
"""

from __future__ import annotations

import threading
import time

from onrails.constrain._item_sets import ListAnalysis
from onrails.constrain.lark_frontend import GrammarSpec
from onrails.errors import CompileBudgetError, GrammarError


class ParseTable:
    """LR(0) states with SLR(1) reduce look-aheads, each made when a parser stack first enters it.

    A schema grammar of 13,516 rules has 20,365 LR states, of which a decode meets a few
    hundred: making them all took 230 ms of its compile. ``build`` makes one state's actions
    (thread-safe, once); ``shift``, ``goto``, ``reduce`` and ``accept`` hold the states built so
    far, ``items`` the kernel of every state found so far. Terminals are ``0..n_terminals-1``,
    ``end`` is ``n_terminals``, nonterminal ``n`` is symbol ``end + 1 + n``.
    """

    def __init__(
        self,
        terminal_names: list[str],
        nonterminal_names: list[str],
        rules: list[tuple[int, tuple[int, ...]]],
        follow: list[set[int]],
        start_rules: dict[str, int],
        lists: ListAnalysis,
    ) -> None:
        self.terminal_names = terminal_names
        self.nonterminal_names = nonterminal_names
        self.rule_lhs = [lhs for lhs, _ in rules]
        self.rule_len = [len(rhs) for _, rhs in rules]
        self.rule_rhs = [rhs for _, rhs in rules]
        self.start_rules = frozenset(start_rules.values())
        self.lists = lists.result
        self.shift: dict[int, dict[int, int]] = {}
        self.goto: dict[int, dict[int, int]] = {}
        self.reduce: dict[int, dict[int, tuple[int, ...]]] = {}
        self.accept: dict[int, bool] = {}
        self.items: list[tuple[tuple[int, int], ...]] = []
        # Tuples, not sets and lists: the cycle collector stops tracking tuples of ints, and a
        # grammar keeps one per nonterminal (tens of thousands of objects each full collection
        # of the process would scan again).
        self._follow = [tuple(f) for f in follow]
        self._analysis = lists
        by_lhs: dict[int, list[int]] = {}
        for i, (lhs, _) in enumerate(rules):
            by_lhs.setdefault(lhs, []).append(i)
        self._rules_by_lhs = {lhs: tuple(found) for lhs, found in by_lhs.items()}
        self._state_of: dict[tuple[tuple[int, int], ...], int] = {}
        self._lock = threading.Lock()
        # Terminals under which every state reduces alike (the same nonterminals' FOLLOW sets
        # hold them) share a class: a parser stack's reductions are worked out once per class.
        holding: dict[int, list[int]] = {}
        for n, follows in enumerate(follow):
            if n in self._rules_by_lhs and not all(r in self.start_rules for r in self._rules_by_lhs[n]):
                for t in follows:
                    holding.setdefault(t, []).append(n)
        class_ids: dict[tuple[int, ...], int] = {}
        self.reduce_class = [class_ids.setdefault(tuple(holding.get(t, ())), len(class_ids)) for t in range(self.end + 1)]
        self.initial = {start: self._state_for(((rule, 0),)) for start, rule in start_rules.items()}
        for state in self.initial.values():
            self.build(state)

    @property
    def end(self) -> int:
        return len(self.terminal_names)

    # What pickling keeps (compile processes send tables back): every attribute but the lock.
    _PICKLED = (
        "terminal_names", "nonterminal_names", "rule_lhs", "rule_len", "rule_rhs", "start_rules", "lists", "shift",
        "goto", "reduce", "accept", "items", "_follow", "_analysis", "_rules_by_lhs", "_state_of", "reduce_class",
        "initial",
    )

    def __reduce__(self) -> tuple[object, ...]:
        # Compiled by mypyc (setup.py), the class has no ``__dict__`` and is only made through
        # ``__init__``: an empty table is made, then given the attributes.
        return ParseTable, ([], [], [], [], {}, self._analysis), {name: getattr(self, name) for name in self._PICKLED}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def build(self, state: int) -> None:
        """Make the actions of ``state`` (found earlier: a kernel in ``items``) unless made."""
        if state in self.accept:
            return
        with self._lock:
            if state in self.accept:
                return
            items = self._closure(self.items[state])
            moves: dict[int, list[tuple[int, int]]] = {}
            reduces: dict[int, list[int]] = {}
            accept = False
            for rule, dot in items:
                rhs = self.rule_rhs[rule]
                if dot < len(rhs):
                    moves.setdefault(rhs[dot], []).append((rule, dot + 1))
                elif rule in self.start_rules:
                    accept = True
                else:
                    for la in self._follow[self.rule_lhs[rule]]:
                        reduces.setdefault(la, []).append(rule)
            shift: dict[int, int] = {}
            goto: dict[int, int] = {}
            end = self.end
            for symbol, kernel in moves.items():
                target = self._state_for(tuple(kernel))
                if symbol > end:
                    goto[symbol - end - 1] = target
                else:
                    shift[symbol] = target
            self._analysis.add_state(state, items, shift)
            self.shift[state] = shift
            self.goto[state] = goto
            self.reduce[state] = {la: tuple(rs) for la, rs in reduces.items()}
            self.accept[state] = accept  # last: it marks the state built

    def _state_for(self, kernel: tuple[tuple[int, int], ...]) -> int:
        kernel = tuple(sorted(kernel))
        state = self._state_of.get(kernel)
        if state is None:
            state = self._state_of[kernel] = len(self.items)
            self.items.append(kernel)
        return state

    def _closure(self, kernel: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
        end = self.end
        items = list(kernel)
        seen = set(kernel)
        added: set[int] = set()
        i = 0
        while i < len(items):
            rule, dot = items[i]
            i += 1
            rhs = self.rule_rhs[rule]
            if dot < len(rhs) and rhs[dot] > end and rhs[dot] not in added:
                added.add(rhs[dot])
                for r in self._rules_by_lhs.get(rhs[dot] - end - 1, ()):
                    if (r, 0) not in seen:
                        seen.add((r, 0))
                        items.append((r, 0))
        return items

    def describe_items(self, state: int) -> list[str]:
        """Dotted rules of a state's kernel, for explanations."""
        out = []
        for rule, dot in self.items[state]:
            names = [self._name(s) for s in self.rule_rhs[rule]]
            lhs = self.nonterminal_names[self.rule_lhs[rule]]
            out.append(f"{lhs}: {' '.join(names[:dot] + ['•'] + names[dot:])}")
        return out

    def _name(self, symbol: int) -> str:
        end = self.end
        return self.terminal_names[symbol] if symbol < end else self.nonterminal_names[symbol - end - 1]


def build_parse_table(spec: GrammarSpec, deadline: float | None = None) -> ParseTable:
    """Build the tables; raise GrammarError for unknown or unproductive starts and hidden left recursion."""
    term_index = {t.name: i for i, t in enumerate(spec.terminals)}
    nt_names: list[str] = []
    nt_index: dict[str, int] = {}
    for spec_rule in spec.rules:
        if spec_rule.lhs not in nt_index:
            nt_index[spec_rule.lhs] = len(nt_names)
            nt_names.append(spec_rule.lhs)
    for start in spec.starts:
        if start not in nt_index:
            raise GrammarError(f"unknown start rule {start!r}", rule=start)

    n_terms = len(spec.terminals)

    def sym(name: str) -> int:
        # Nonterminals are encoded after terminals and the end marker.
        if name in term_index:
            return term_index[name]
        return n_terms + 1 + nt_index[name]

    raw_rules = [(nt_index[r.lhs], tuple(sym(s) for s in r.rhs)) for r in spec.rules]

    # Drop rules that can never derive a terminal string. Worklists here and below: fixpoints
    # re-reading every rule per pass cost seconds on schema grammars of 10k+ rules.
    productive = _productive(raw_rules, n_terms, len(nt_names))
    # A tracked list that cannot hold what it must (a required item unproductive, too few items
    # for its minimum) is unproductive itself, and so may be what uses it.
    while True:
        names = {nt_names[n] for n in productive}
        dead = {nt_index[s.rule] for s in spec.item_sets if s.rule in names and not s.feasible(names)}
        if not dead:
            break
        raw_rules = [rule for rule in raw_rules if rule[0] not in dead]
        productive = _productive(raw_rules, n_terms, len(nt_names))
    for start in spec.starts:
        if nt_index[start] not in productive:
            raise GrammarError(f"start rule {start!r} derives no finite string", rule=start)
    rules = [
        (lhs, rhs)
        for lhs, rhs in raw_rules
        if lhs in productive and all(s < n_terms or (s - n_terms - 1) in productive for s in rhs)
    ]

    # Augmented start rules come last: lhs = a fresh nonterminal per start.
    augmented: dict[str, int] = {}
    for start in spec.starts:
        aug_nt = len(nt_names)
        nt_names.append(f"<start {start}>")
        augmented[start] = len(rules)
        rules.append((aug_nt, (n_terms + 1 + nt_index[start],)))
    n_nts = len(nt_names)

    def is_nt(s: int) -> bool:
        return s > n_terms

    def nt_of(s: int) -> int:
        return s - n_terms - 1

    nullable = _nullable(rules, n_terms, n_nts)

    _check_hidden_left_recursion(rules, nullable, nt_names, is_nt, nt_of, n_nts)

    # FIRST sets by a worklist over "FIRST(A) includes FIRST(B)": re-running every rule until
    # nothing changes took seconds on schema grammars of a few thousand rules.
    first: list[set[int]] = [set() for _ in range(n_nts)]
    includers: list[set[int]] = [set() for _ in range(n_nts)]
    for lhs, rhs in rules:
        for s in rhs:
            if is_nt(s):
                includers[nt_of(s)].add(lhs)
                if not nullable[nt_of(s)]:
                    break
            else:
                first[lhs].add(s)
                break
    _propagate(first, includers)

    # FOLLOW sets: what a rule puts after each nonterminal directly, then "FOLLOW(B) includes
    # FOLLOW(A)" where B ends a rule of A (up to a nullable tail), by a worklist.
    end = n_terms
    follow: list[set[int]] = [set() for _ in range(n_nts)]
    for start in spec.starts:
        follow[nt_index[start]].add(end)
        follow[rules[augmented[start]][0]].add(end)
    follow_includers: list[set[int]] = [set() for _ in range(n_nts)]
    for lhs, rhs in rules:
        trailer: set[int] = set()
        tail_nullable = True
        for s in reversed(rhs):
            if is_nt(s):
                n = nt_of(s)
                follow[n] |= trailer
                if tail_nullable:
                    follow_includers[lhs].add(n)
                if nullable[n]:
                    trailer = trailer | first[n]
                else:
                    trailer = set(first[n])
                    tail_nullable = False
            else:
                trailer = {s}
                tail_nullable = False
    _propagate(follow, follow_includers)

    lists = ListAnalysis(spec.item_sets, rules, nt_index, n_terms, first, nullable, nt_names)
    if deadline is not None and time.monotonic() > deadline:
        raise CompileBudgetError("building the parse table exceeded the time budget")
    return ParseTable([t.name for t in spec.terminals], nt_names, rules, follow, augmented, lists)


def _propagate(sets: list[set[int]], includers: list[set[int]]) -> None:
    """Grow ``sets`` until each includes the sets of those it is listed under (``includers[a]``
    holds every b whose set includes a's)."""
    todo = [n for n, found in enumerate(sets) if found]
    while todo:
        grown = todo.pop()
        for n in includers[grown]:
            before = len(sets[n])
            sets[n] |= sets[grown]
            if len(sets[n]) != before:
                todo.append(n)


def _productive(rules: list[tuple[int, tuple[int, ...]]], n_terms: int, n_nts: int) -> set[int]:
    """Nonterminals deriving some terminal string: a rule's lhs is once its nonterminals are."""
    waiting: list[list[int]] = [[] for _ in range(n_nts)]  # rules per nonterminal of their rhs
    missing = []
    todo = []
    for index, (lhs, rhs) in enumerate(rules):
        nts = {s - n_terms - 1 for s in rhs if s > n_terms}
        missing.append(len(nts))
        for n in nts:
            waiting[n].append(index)
        if not nts:
            todo.append(lhs)
    productive: set[int] = set()
    while todo:
        n = todo.pop()
        if n in productive:
            continue
        productive.add(n)
        for index in waiting[n]:
            missing[index] -= 1
            if not missing[index]:
                todo.append(rules[index][0])
    return productive


def _nullable(rules: list[tuple[int, tuple[int, ...]]], n_terms: int, n_nts: int) -> list[bool]:
    """Per nonterminal, whether it derives the empty string."""
    waiting: list[list[int]] = [[] for _ in range(n_nts)]
    missing = []
    todo = []
    for index, (lhs, rhs) in enumerate(rules):
        if any(s < n_terms for s in rhs):
            missing.append(-1)  # a terminal: never empty
            continue
        nts = {s - n_terms - 1 for s in rhs}
        missing.append(len(nts))
        for n in nts:
            waiting[n].append(index)
        if not nts:
            todo.append(lhs)
    nullable = [False] * n_nts
    while todo:
        n = todo.pop()
        if nullable[n]:
            continue
        nullable[n] = True
        for index in waiting[n]:
            missing[index] -= 1
            if not missing[index]:
                todo.append(rules[index][0])
    return nullable


def _check_hidden_left_recursion(rules, nullable, nt_names, is_nt, nt_of, n_nts) -> None:  # type: ignore[no-untyped-def]
    """Reject A -> B A ... with B nullable: GLR reductions would grow the stack without end."""
    # left_corner[a] = nonterminals that can begin a derivation step of a (through nullable prefixes)
    left_corner: list[set[int]] = [set() for _ in range(n_nts)]
    hidden: list[tuple[int, int, int]] = []
    for idx, (lhs, rhs) in enumerate(rules):
        for pos, s in enumerate(rhs):
            if not is_nt(s):
                break
            left_corner[lhs].add(nt_of(s))
            if pos > 0:
                hidden.append((lhs, nt_of(s), idx))
            if not nullable[nt_of(s)]:
                break
    reach: dict[int, set[int]] = {}
    for _, b, _ in hidden:
        if b in reach:
            continue
        # Only the nonterminals after a nullable prefix need their left corners (a few).
        seen = set()
        stack = [b]
        while stack:
            x = stack.pop()
            for y in left_corner[x]:
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
        reach[b] = seen
    for lhs, b, _ in hidden:
        if b == lhs or lhs in reach[b]:
            raise GrammarError(
                "hidden left recursion (a rule starts with an optional part and then recurses "
                "into itself); rewrite it so the recursion comes first or drop the optional prefix",
                rule=nt_names[lhs],
            )
