"""A Hugging Face ``LogitsProcessor``: any onrails grammar inside ``model.generate``.

    processor = OnRailsLogitsProcessor.from_model(model, grammar_root="object")
    out = model.model.generate(ids, logits_processor=[processor], max_new_tokens=64)

One processor serves one ``generate`` call: it starts a ``Matcher`` per row on its first call
(beams and ``num_return_sequences`` are rows too) and advances each by the token ``generate``
appended since; when beam search reorders rows, a row's matcher replays that row's tokens. Masks are applied in place on the scores' device. It does not jump forward or
steer at the length limit: that is the onrails loop's work (``onrails.generate``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from transformers import LogitsProcessor

from onrails.constrain import Matcher, MatcherError, allocate_token_bitmask
from onrails.constrain.torch_ops import apply_token_bitmask_inplace

if TYPE_CHECKING:
    from onrails.constrain import CompiledGrammar
    from onrails.runtime.models import Model

__all__ = ["OnRailsLogitsProcessor"]


class OnRailsLogitsProcessor(LogitsProcessor):  # type: ignore[misc]
    """Masks the scores of each row to the tokens ``grammar`` allows next (from ``root``).

    Cost per step: one mask lookup per row and one vectorised masking of the batch.
    Raises ``MatcherError`` if ``generate`` appends a token the grammar refused (another
    processor overriding this one, for instance).
    """

    def __init__(self, grammar: "CompiledGrammar", root: str | None = None) -> None:
        self.grammar = grammar
        self.root = root
        self._matchers: list[Matcher] = []
        self._histories: list[list[int]] = []
        self._prompt_length = 0
        self._bitmask: torch.Tensor | None = None

    @classmethod
    def from_model(cls, model: "Model", **constraint: Any) -> "OnRailsLogitsProcessor":
        """A processor for ``model`` from the constraint arguments of ``onrails.generate``:
        ``grammar_root``, ``grammar`` (+ ``grammar_start``), ``response_format``,
        ``whitespace``. Raises ``BadRequestError`` for invalid ones."""
        from onrails.errors import BadRequestError
        from onrails.runtime.api import resolve_constraint

        resolved = resolve_constraint(model, **constraint)
        if resolved.grammar is None:
            raise BadRequestError("name a constraint: grammar_root, grammar or response_format", param="grammar_root")
        return cls(resolved.grammar, resolved.root)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = input_ids.shape[0]
        if not self._matchers:
            self._prompt_length = input_ids.shape[1]
            self._matchers = [Matcher(self.grammar, self.root) for _ in range(rows)]
            self._histories = [[] for _ in range(rows)]
            self._bitmask = torch.from_numpy(allocate_token_bitmask(rows, self.grammar.vocabulary.size))
        elif input_ids.shape[1] > self._prompt_length:
            generated = input_ids[:, self._prompt_length :].tolist()
            for i, tokens in enumerate(generated):
                history = self._histories[i]
                if tokens[:-1] != history:
                    # Beam search reorders rows: replay this row's tokens on a fresh matcher.
                    self._matchers[i] = Matcher(self.grammar, self.root)
                    history.clear()
                    for token in tokens[:-1]:
                        self._follow(i, token)
                self._follow(i, tokens[-1])
        assert self._bitmask is not None
        for i, matcher in enumerate(self._matchers):
            matcher.fill_next_token_bitmask(self._bitmask, i)
        apply_token_bitmask_inplace(scores, self._bitmask)
        return scores

    def _follow(self, row: int, token: int) -> None:
        matcher = self._matchers[row]
        self._histories[row].append(token)
        # Finished rows are padded by generate (often with the end token): nothing to follow.
        if matcher.is_terminated():
            return
        if not matcher.advance(int(token)):
            raise MatcherError(f"row {row}: generate appended token {token}, which the grammar forbids")
