"""Sampling parameters (validated) and the batched logits processing that applies them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from onrails.errors import BadRequestError

__all__ = ["LOGPROBS_MODES", "MAX_STOPS", "MAX_TOP_LOGPROBS", "SamplingParams"]

MAX_STOPS = 4
MAX_TOP_LOGPROBS = 20
LOGPROBS_MODES = ("raw", "masked")
#: A logit_bias of this value (or below) bans the token outright, as OpenAI documents.
BAN_BIAS = -100.0
#: ``SamplingParams`` fields that a request names as they are; ``max_tokens`` and the logprobs
#: fields are spelled differently by each endpoint, so each adds its own.
REQUEST_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "seed",
    "min_tokens",
    "stop",
    "ensure_parsable",
)


def _number(value: Any, param: str, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequestError(f"must be a number, not {type(value).__name__}", param=param)
    number = float(value)
    if math.isnan(number) or number < low or number > high or (low_open and number == low):
        bracket = "(" if low_open else "["
        raise BadRequestError(f"must be in {bracket}{low}, {high}], got {value!r}", param=param)
    return number


def _integer(value: Any, param: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequestError(f"must be an integer, not {type(value).__name__}", param=param)
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" and at most {high}"
        raise BadRequestError(f"must be at least {low}{upper}, got {value}", param=param)
    return value


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence picks its tokens; validated on construction (``BadRequestError``).

    ``temperature`` 0 is greedy. ``top_k`` 0 and ``top_p`` 1 disable those filters. ``min_p``
    (0 disables) removes the tokens whose tempered probability is below ``min_p`` times the top
    token's, after top-k and top-p as in Hugging Face's ``MinPLogitsWarper`` (so ``top_p``
    measures its mass before min-p removes anything; vLLM applies min-p first).
    ``repetition_penalty`` (Hugging Face style, over prompt and output) divides positive logits
    and multiplies negative ones; ``frequency_penalty`` / ``presence_penalty`` (OpenAI style,
    over the output) subtract ``count * f + (count > 0) * p``. ``logit_bias`` maps token ids to
    additive biases; -100 bans. ``min_tokens`` holds back end tokens and stop strings until that
    many tokens exist (-1: until ``max_tokens``). ``max_tokens`` None means until the grammar or
    the model ends, within the context. ``stop``: up to 4 strings, excluded from the text.
    ``logprobs``: how many top alternatives to report (0-20; None: no logprobs), of the raw model
    distribution (``logprobs_mode="raw"``) or of the distribution renormalised over the tokens
    the grammar allows (``"masked"``). ``ensure_parsable``: near the token limit (``max_tokens``
    or the end of the context), steer a grammar-constrained sequence to the shortest way to
    finish its grammar, so that its output still parses.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    seed: int | None = None
    min_tokens: int = 0
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    logprobs_mode: str = "raw"
    ensure_parsable: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "temperature", _number(self.temperature, "temperature", 0.0, 2.0))
        set_(self, "top_p", _number(self.top_p, "top_p", 0.0, 1.0, low_open=True))
        set_(self, "top_k", _integer(self.top_k, "top_k", 0))
        set_(self, "min_p", _number(self.min_p, "min_p", 0.0, 1.0))
        set_(self, "repetition_penalty", _number(self.repetition_penalty, "repetition_penalty", 0.0, 10.0, low_open=True))
        set_(self, "frequency_penalty", _number(self.frequency_penalty, "frequency_penalty", -2.0, 2.0))
        set_(self, "presence_penalty", _number(self.presence_penalty, "presence_penalty", -2.0, 2.0))
        if not isinstance(self.logit_bias, Mapping):
            raise BadRequestError("must be a mapping of token id to bias", param="logit_bias")
        bias: dict[int, float] = {}
        for key, value in self.logit_bias.items():
            try:
                token = int(key)  # JSON clients send ids as strings
            except (TypeError, ValueError):
                raise BadRequestError(f"key {key!r} is not a token id", param="logit_bias") from None
            bias[token] = _number(value, f"logit_bias[{key!r}]", -100.0, 100.0)
        set_(self, "logit_bias", bias)
        if self.seed is not None:
            set_(self, "seed", _integer(self.seed, "seed", -(2**63), 2**63 - 1))
        set_(self, "min_tokens", _integer(self.min_tokens, "min_tokens", -1))
        if self.max_tokens is not None:
            set_(self, "max_tokens", _integer(self.max_tokens, "max_tokens", 1))
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise BadRequestError(
                f"min_tokens {self.min_tokens} exceeds max_tokens {self.max_tokens}", param="min_tokens"
            )
        set_(self, "stop", normalize_stop(self.stop))
        if self.logprobs is not None:
            set_(self, "logprobs", _integer(self.logprobs, "logprobs", 0, MAX_TOP_LOGPROBS))
        if self.logprobs_mode not in LOGPROBS_MODES:
            raise BadRequestError(f"must be one of {LOGPROBS_MODES}, got {self.logprobs_mode!r}", param="logprobs_mode")
        if not isinstance(self.ensure_parsable, bool):
            raise BadRequestError("must be a bool", param="ensure_parsable")

    def check_vocabulary(self, vocab_size: int) -> None:
        """Raise ``BadRequestError`` for ``logit_bias`` ids outside ``[0, vocab_size)``."""
        for token in self.logit_bias:
            if not 0 <= token < vocab_size:
                raise BadRequestError(f"token id {token} is outside the vocabulary (size {vocab_size})", param="logit_bias")


def normalize_stop(stop: "str | Iterable[str] | None") -> tuple[str, ...]:
    """``stop`` as a tuple of up to 4 non-empty strings (``BadRequestError`` otherwise)."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    try:
        items = list(stop)
    except TypeError:
        raise BadRequestError("must be a string or a list of strings", param="stop") from None
    if len(items) > MAX_STOPS:
        raise BadRequestError(f"at most {MAX_STOPS} stop strings, got {len(items)}", param="stop")
    for item in items:
        if not isinstance(item, str) or not item:
            raise BadRequestError(f"stop strings must be non-empty strings, got {item!r}", param="stop")
    return tuple(items)


# -- batched processing -------------------------------------------------------------------------


def apply_penalties(
    logits: torch.Tensor,
    params: list[SamplingParams],
    seen: list[torch.Tensor | None],
    counts: list[torch.Tensor | None],
) -> None:
    """Apply repetition, frequency and presence penalties in place, row by row where set.

    ``seen[i]`` marks the tokens of row i's prompt and output (bool ``[vocab]``); ``counts[i]``
    counts its output tokens (float ``[vocab]``). Rows without penalties are untouched.
    """
    for i, p in enumerate(params):
        row = logits[i]
        if p.repetition_penalty != 1.0 and seen[i] is not None:
            mask = seen[i]
            assert mask is not None
            picked = row[mask]
            row[mask] = torch.where(picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty)
        count = counts[i]
        if count is not None and (p.frequency_penalty or p.presence_penalty):
            row -= count * p.frequency_penalty + (count > 0).to(row.dtype) * p.presence_penalty


def apply_bias(logits: torch.Tensor, params: list[SamplingParams]) -> None:
    """Add each row's ``logit_bias`` in place; a bias of -100 bans the token (-inf)."""
    for i, p in enumerate(params):
        for token, bias in p.logit_bias.items():
            if token < logits.shape[1]:
                logits[i, token] = float("-inf") if bias <= BAN_BIAS else logits[i, token] + bias


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Pick one token from a row of processed logits (float32 ``[vocab]``, -inf for forbidden).

    Greedy when ``temperature`` is 0; otherwise temperature, top-k, top-p, min-p, then one draw
    from ``generator``, so a sequence's choices depend only on its own seed.
    """
    if params.temperature == 0.0:
        return int(torch.argmax(logits))
    scaled = logits / params.temperature
    if params.top_k and params.top_k < scaled.shape[0]:
        kth = torch.topk(scaled, params.top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        # Keep the smallest prefix whose mass reaches top_p (the first token is always kept).
        sorted_probs = sorted_probs.masked_fill(before >= params.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    if params.min_p > 0.0:
        # Top-k and top-p keep the top token and leave the ratios to it as they were, so this
        # removes what min-p removes from the whole tempered distribution; only top_p's mass is
        # measured before it. The top token always passes (min_p <= 1).
        probs = probs.masked_fill(probs < params.min_p * probs.max(), 0.0)
    return _draw(probs, generator)


def _draw(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One index drawn with weights ``probs`` (non-negative, not all zero).

    An exponential race among the possible tokens: each gets a draw E ~ Exp(1) and the largest
    ``p / E`` wins, which picks token i with probability p_i. A token's win depends on its own
    weight and draw, so the tiny differences in logits between batch shapes rarely change the
    choice (an inverse-CDF draw moves whenever the cumulative sum does). Drawing only for
    tokens the mask allows costs far less than ``torch.multinomial`` (~2 ms per row on a 49k
    vocabulary on CPU) when the grammar leaves few choices.
    """
    possible = torch.nonzero(probs).flatten()
    race = torch.rand(possible.shape[0], generator=generator, device=probs.device).log_().neg_()
    return int(possible[torch.argmax(probs[possible] / race)])
