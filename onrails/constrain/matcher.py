"""The per-sequence matcher: allowed tokens, advancing, rollback, forced bytes, explanations."""

from __future__ import annotations

from typing import Any

import numpy as np

from onrails.constrain._automaton import DEAD
from onrails.constrain._shortest import shortest_completion
from onrails.constrain.bitmask import words_for
from onrails.constrain.compiled import CompiledGrammar, Explanation
from onrails.errors import OnRailsError


class MatcherError(OnRailsError, ValueError):
    """A matcher was used wrongly (unknown root, rollback past the start, bad bitmask)."""


class Matcher:
    """Tracks one sequence through a compiled grammar, starting from ``root``.

    ``root`` defaults to the grammar's first root. Costs: ``fill_next_token_bitmask`` is a cache
    lookup and a copy once a state has been seen (a vectorised vocabulary walk the first time);
    ``advance`` is one table lookup per byte of the token.
    """

    def __init__(self, grammar: CompiledGrammar, root: str | None = None) -> None:
        if root is None:
            root = grammar.roots[0]
        if root not in grammar.roots:
            raise MatcherError(f"unknown root {root!r}; this grammar has {list(grammar.roots)}")
        self.grammar = grammar
        self.root = root
        self._generation = grammar._current_generation()
        self._automaton = self._generation.automaton
        self._initial = self._automaton.initial[root]
        self._state = self._initial
        self._terminated = False
        self._history: list[tuple[int, bool]] = []

    # -- queries --------------------------------------------------------------------------------

    def is_accepting(self) -> bool:
        """Whether the output so far is a complete sentence (the end token is allowed)."""
        return self._terminated or self._automaton.accepting(self._state)

    def is_terminated(self) -> bool:
        """Whether an end token has been accepted."""
        return self._terminated

    def fill_next_token_bitmask(self, bitmask: Any, index: int = 0) -> None:
        """Write the allowed-token mask into row ``index`` of an int32 bitmask (numpy or torch CPU).

        Once terminated, only end tokens are allowed (so padded batch steps stay well defined).
        """
        words = self._words()
        if isinstance(bitmask, np.ndarray):
            row = bitmask[index] if bitmask.ndim == 2 else bitmask
        elif hasattr(bitmask, "numpy"):
            row = (bitmask[index] if bitmask.dim() == 2 else bitmask).numpy()
        else:
            raise MatcherError(f"bitmask must be a numpy array or a CPU torch tensor, not {type(bitmask)!r}")
        if row.dtype != np.int32 or row.shape != words.shape:
            raise MatcherError(
                f"bitmask row must be int32 of {words.shape[0]} words, not {row.dtype} {row.shape}"
            )
        row[...] = words  # np.copyto makes the same copy with more argument handling: 1.8-3.0 -> 1.5 us a hit

    def _words(self) -> np.ndarray:
        if self._terminated:
            return self.grammar._eos
        return self._generation.state_mask(self._state)

    def allowed_token_ids(self) -> np.ndarray:
        """Sorted ids of the allowed tokens (convenience; allocates)."""
        bits = np.unpackbits(self._words().view(np.uint8), bitorder="little")
        return np.flatnonzero(bits[: self.grammar.vocabulary.size])

    def is_allowed(self, token_id: int) -> bool:
        """Whether ``token_id`` is allowed now, without advancing."""
        if not 0 <= token_id < self.grammar.vocabulary.size:
            return False
        return bool((int(self._words()[token_id >> 5]) >> (token_id & 31)) & 1)

    # -- moves ----------------------------------------------------------------------------------

    def advance(self, token_id: int) -> bool:
        """Consume ``token_id`` if allowed and return True; otherwise change nothing, return False."""
        vocab = self.grammar.vocabulary
        if self._terminated or not 0 <= token_id < vocab.size:
            return False
        data = vocab.token_bytes[token_id]
        if data is None:
            if token_id in vocab.eos_token_ids and self._automaton.accepting(self._state):
                self._history.append((self._state, False))
                self._terminated = True
                return True
            return False
        if not data:
            return False
        return self.advance_bytes(data)

    def advance_bytes(self, data: bytes) -> bool:
        """Consume raw bytes (e.g. a forced continuation); all-or-nothing, like ``advance``."""
        if self._terminated:
            return False
        # bytes() of bytes is the object itself; the compiled parser core reads bytes only.
        nxt = self._automaton.run(self._state, bytes(data))
        if nxt == DEAD:
            return False
        self._history.append((self._state, False))
        self._state = nxt
        return True

    def rollback(self, k: int = 1) -> None:
        """Undo the last ``k`` successful advances (for speculative decoding)."""
        if k < 0 or k > len(self._history):
            raise MatcherError(f"cannot roll back {k} steps; {len(self._history)} are recorded")
        for _ in range(k):
            self._state, self._terminated = self._history.pop()

    def reset(self) -> None:
        """Back to the start of the root rule."""
        self._state = self._initial
        self._terminated = False
        self._history.clear()

    @property
    def num_steps(self) -> int:
        """Advances that can be rolled back."""
        return len(self._history)

    def forced_continuation(self, max_bytes: int = 256) -> bytes:
        """Bytes that must come next whatever is generated (empty when there is a choice).

        Stops where the output could end, where two or more bytes are possible, or at
        ``max_bytes``. The bytes may end inside a UTF-8 character.
        """
        automaton = self._automaton
        state = self._state
        out = bytearray()
        while len(out) < max_bytes and not self._terminated and not automaton.accepting(state):
            row = automaton.fill_row(state)
            live = np.flatnonzero(row != DEAD)
            if live.size != 1:
                break
            byte = int(live[0])
            out.append(byte)
            state = int(row[byte])
        return bytes(out)

    def shortest_completion(self) -> bytes | None:
        """The shortest bytes that take this matcher to an accepting state: ``b""`` if it already
        accepts or has terminated; None only if the search gives up on a pathological grammar.

        Exact: an A* search over parser stacks, a step per terminal, guided by the grammar's
        remaining cost. The first call on a grammar precomputes that cost (milliseconds); a
        search then costs well under a millisecond typically and a few at worst (one parser
        stack expanded per terminal of the answer); a repeated state is a dictionary lookup.
        """
        if self._terminated:
            return b""
        return shortest_completion(self._automaton, self._state)

    # -- explanations ---------------------------------------------------------------------------

    def explain(self, token_id: int) -> Explanation:
        """Say why ``token_id`` is allowed or forbidden here: where it fails and what was expected."""
        grammar = self.grammar
        automaton = self._automaton
        vocab = grammar.vocabulary
        if not 0 <= token_id < vocab.size:
            return Explanation(token_id, None, False, message=f"token {token_id} is outside the vocabulary")
        data = vocab.token_bytes[token_id]
        if self._terminated:
            return Explanation(token_id, data, False, message="the sequence has already ended")
        if data is None:
            if token_id in vocab.eos_token_ids:
                ok = automaton.accepting(self._state)
                message = "end token: the output is complete" if ok else (
                    "end token forbidden: the output is not a complete sentence yet; "
                    + self._describe(self._state)
                )
                return Explanation(token_id, None, ok, message=message, **self._context(self._state))
            return Explanation(token_id, None, False, message="special token: never content")
        state = self._state
        for offset, byte in enumerate(data):
            nxt = automaton.step(state, byte)
            if nxt == DEAD:
                row = automaton.fill_row(state)
                expected = tuple(int(b) for b in np.flatnonzero(row != DEAD))
                ctx = self._context(state)
                message = (
                    f"token {token_id} {data!r} fails at byte {offset} ({bytes([byte])!r}); "
                    f"expected one of {_show_bytes(expected)}; " + self._describe(state)
                )
                return Explanation(
                    token_id,
                    data,
                    False,
                    failing_offset=offset,
                    failing_byte=byte,
                    expected_bytes=expected,
                    message=message,
                    **ctx,
                )
            state = nxt
        return Explanation(token_id, data, True, message=f"token {token_id} {data!r} is allowed")

    def _context(self, state: int) -> dict[str, Any]:
        automaton = self._automaton
        names = self.grammar.terminal_names
        table = automaton.table
        in_terminal = []
        expected_terminals = []
        rules = []
        for stack, terminal, _ in sorted(automaton.configs[state]):
            if terminal >= 0:
                in_terminal.append(names[terminal])
                stacks = automaton.after_terminal(stack, terminal)
            else:
                stacks = (stack,)
            rules.extend(table.describe_items(automaton.stack_state[stack]))
            for s in stacks:
                for t in automaton.allowed_terminals(s):
                    expected_terminals.append(names[t])
                    # where that terminal would fit, once the finished rules are reduced
                    for node in automaton.reduce_closure(s, t):
                        if t in table.shift[automaton.stack_state[node]]:
                            rules.extend(table.describe_items(automaton.stack_state[node]))
        return {
            "in_terminal": tuple(dict.fromkeys(in_terminal)),
            "expected_terminals": tuple(dict.fromkeys(expected_terminals)),
            "rule_context": tuple(dict.fromkeys(rules)),
        }

    def _describe(self, state: int) -> str:
        ctx = self._context(state)
        parts = []
        if ctx["in_terminal"]:
            parts.append(f"inside terminal {', '.join(ctx['in_terminal'])}")
        if ctx["expected_terminals"]:
            parts.append(f"then terminals {', '.join(ctx['expected_terminals'])}")
        if ctx["rule_context"]:
            parts.append(f"at {' | '.join(ctx['rule_context'][:4])}")
        return "; ".join(parts)


def _show_bytes(values: tuple[int, ...], limit: int = 12) -> str:
    shown = ", ".join(repr(bytes([b]))[1:] for b in values[:limit])
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return "{" + shown + more + "}"
