"""The batched, grammar-constrained decoding loop.

All sequences of a call decode together: one forward pass per step for the whole batch, with a
KV cache, left padding and an attention mask. Each step fills one packed int32 bitmask (a row per
sequence, from its ``Matcher``; unconstrained rows allow content and end tokens) and applies it to
the logits on the model's device. Filling the masks runs in a helper thread while the forward
pass computes, so a grammar state seen for the first time costs little extra.

Prompts: identical prompts of a call are computed once, and a prompt that starts like a recent
one (the model keeps the KV of recent prompts) feeds only the tokens after the shared part.

Jump-forward: when the grammar leaves a single way forward, the forced bytes are tokenized
canonically and appended without sampling; they join the next forward passes, whose logits also
score them. The last forced token is left to the model, so it can merge with what follows. In a
big batch a row feeds its forced tokens a few per step (it samples again once they are in),
so one row's jump does not pad every row of the pass.

Parsable at the limit: with a grammar, every step near the token limit (``max_tokens``, or the
end of the context) checks that the shortest way to finish the grammar still fits; a token that
would break that is replaced by that completion, so the output parses and ``finish_reason`` is
"stop". The shortest completion is exact (``Matcher.shortest_completion``).
"""

from __future__ import annotations

import codecs
import inspect
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from onrails.constrain import Matcher, allocate_token_bitmask
from onrails.constrain.torch_ops import apply_token_bitmask_inplace
from onrails.runtime.sampling import BAN_BIAS, SamplingParams, apply_bias, apply_penalties, sample

if TYPE_CHECKING:
    from onrails.constrain import CompiledGrammar, Vocabulary
    from onrails.runtime.models import Model

__all__ = ["SequenceRequest", "SequenceResult", "Timing", "generate_sequences", "stream_sequences"]

# Steering checks run every step once the token budget left is within this many tokens of the
# shortest completion's length (and every _STEER_REFRESH steps before, to track that length).
_STEER_MARGIN = 16
_STEER_REFRESH = 8
_mask_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onrails-masks")


@dataclass
class SequenceRequest:
    """One sequence to decode: its prompt ids, sampling parameters and optional grammar.

    ``root`` picks the grammar's start rule (default: its first). ``score`` computes each
    token's log-probability even without ``params.logprobs`` (for ``best_of`` ranking);
    ``prompt_logprobs`` scores the prompt tokens too (``echo`` with ``logprobs``).
    ``jump_forward`` appends grammar-forced tokens without sampling.
    """

    prompt_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    grammar: "CompiledGrammar | None" = None
    root: str | None = None
    score: bool = False
    prompt_logprobs: bool = False
    jump_forward: bool = True


@dataclass
class SequenceResult:
    """What one sequence produced.

    ``text`` is the output decoded from the tokens' exact bytes, cut before a stop string.
    ``token_logprobs[i]`` / ``top_logprobs[i]`` (when scored) belong to ``token_ids[i]``;
    ``text_offsets[i]`` is the character offset in ``text`` where that token starts.
    ``prompt_token_logprobs`` starts with None (the first prompt token has no context).
    ``forced_tokens`` counts tokens appended by jump-forward; ``steered`` says the end was
    steered to finish the grammar within ``max_tokens``; ``finished`` is False in the
    intermediate results of a stream, where only the first ``ready_tokens`` tokens have their
    scores (forced tokens are scored by the next pass).
    """

    request: SequenceRequest
    token_ids: list[int]
    text: str
    finish_reason: str
    text_offsets: list[int]
    token_logprobs: list[float] | None
    top_logprobs: list[list[tuple[int, float]]] | None
    prompt_token_logprobs: list[float | None] | None
    prompt_top_logprobs: list[list[tuple[int, float]] | None] | None
    cumulative_logprob: float
    forced_tokens: int
    steered: bool
    finished: bool
    ready_tokens: int


@dataclass
class Timing:
    """``time.perf_counter()`` marks of one call: the model lock acquired, the first token of
    every sequence chosen (the prompt processed), every sequence finished."""

    started: float = field(default_factory=time.perf_counter)
    acquired: float | None = None
    first_token: float | None = None
    finished: float | None = None


class SequenceState:
    """Mutable decoding state of one sequence."""

    def __init__(self, model: "Model", request: SequenceRequest, max_tokens: int) -> None:
        self.model = model
        self.request = request
        self.params = request.params
        self.max_tokens = max_tokens
        self.min_tokens = max_tokens if self.params.min_tokens == -1 else self.params.min_tokens
        self.matcher = Matcher(request.grammar, request.root) if request.grammar is not None else None
        self.generator = torch.Generator(device=model.device)
        seed = self.params.seed if self.params.seed is not None else secrets.randbits(63)
        self.generator.manual_seed(seed % 2**64)
        self.tokens: list[int] = []
        self.offsets: list[int] = []
        self.text = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.scored = request.score or self.params.logprobs is not None
        self.logprobs: list[float | None] = []
        self.tops: list[list[tuple[int, float]]] = []
        self.prompt_logprobs: list[float | None] | None = None
        self.prompt_tops: list[list[tuple[int, float]] | None] | None = None
        # Tokens fed at the next forward pass: the last appended token, then forced ones.
        self.feed: list[int] = list(request.prompt_ids)
        # Forced tokens awaiting their score from the next forward: (token index, mask or None).
        self.unscored: list[tuple[int, np.ndarray | None]] = []
        self.finish: str | None = None
        self._closed = False
        self.forced = 0
        self.steered = False
        self._stop_scan = 0
        self._steps_since_check = _STEER_REFRESH
        self._completion_len = 0
        vocab = model.vocabulary.size
        needs_seen = self.params.repetition_penalty != 1.0
        needs_counts = bool(self.params.frequency_penalty or self.params.presence_penalty)
        self.seen = torch.zeros(vocab, dtype=torch.bool, device=model.device) if needs_seen else None
        if self.seen is not None and request.prompt_ids:
            self.seen[torch.tensor(request.prompt_ids, device=model.device)] = True
        self.counts = torch.zeros(vocab, dtype=torch.float32, device=model.device) if needs_counts else None

    # -- appending --------------------------------------------------------------------------------

    def append(self, token: int, logprob: float | None, top: list[tuple[int, float]]) -> None:
        """Add a content token (the matcher has already advanced over it)."""
        self.offsets.append(len(self.text))
        self.tokens.append(token)
        self.logprobs.append(logprob)
        self.tops.append(top)
        data = self.model.vocabulary.token_bytes[token] if token < self.model.vocabulary.size else None
        self.text += self._decoder.decode(data or b"")
        if self.seen is not None:
            self.seen[token] = True
        if self.counts is not None:
            self.counts[token] += 1

    def check_stop(self) -> None:
        """Finish with "stop" when a stop string appeared (once ``min_tokens`` are out)."""
        stops = self.params.stop
        if not stops or self.finish is not None or len(self.tokens) < self.min_tokens:
            return
        window = self.text[self._stop_scan :]
        hits = [i for i in (window.find(s) for s in stops) if i >= 0]
        if hits:
            cut = self._stop_scan + min(hits)
            keep = sum(1 for offset in self.offsets if offset < cut)
            del self.tokens[keep:], self.offsets[keep:], self.logprobs[keep:], self.tops[keep:]
            self.unscored = [(i, m) for i, m in self.unscored if i < keep]
            self.text = self.text[:cut]
            self.finish = "stop"
            return
        longest = max(len(s) for s in stops)
        self._stop_scan = max(0, len(self.text) - longest + 1)

    def close(self, reason: str) -> None:
        if self.finish is None:
            self.finish = reason
        if not self._closed:
            self._closed = True
            self.text += self._decoder.decode(b"", final=True)

    def result(self) -> SequenceResult:
        logprobs = [lp if lp is not None else 0.0 for lp in self.logprobs]
        return SequenceResult(
            request=self.request,
            token_ids=list(self.tokens),
            text=self.text,
            finish_reason=self.finish or "length",
            text_offsets=list(self.offsets),
            token_logprobs=logprobs if self.scored else None,
            top_logprobs=list(self.tops) if self.scored else None,
            prompt_token_logprobs=self.prompt_logprobs,
            prompt_top_logprobs=self.prompt_tops,
            cumulative_logprob=float(sum(logprobs)) if self.scored else 0.0,
            forced_tokens=self.forced,
            steered=self.steered,
            finished=self._closed,
            ready_tokens=len(self.tokens) - len(self.unscored),
        )


def generate_sequences(
    model: "Model", requests: list[SequenceRequest], timing: Timing | None = None
) -> list[SequenceResult]:
    """Decode all ``requests`` together and return their results, in order.

    Cost: one forward pass of the batch per step (forced tokens join it), plus a mask lookup
    per constrained sequence per step. Holds the model's generation lock while it runs;
    ``timing`` receives when it got the lock, chose the first tokens and finished.
    """
    seqs = [SequenceState(model, r, token_budget(model, r)) for r in requests]
    for _ in _locked(model, seqs, timing):
        pass
    return [s.result() for s in seqs]


def stream_sequences(
    model: "Model", requests: list[SequenceRequest], timing: Timing | None = None
) -> Iterator[list[SequenceResult]]:
    """Decode ``requests`` together, yielding every sequence's result-so-far after each step.

    The last yield has every sequence finished. Holds the model's generation lock while it runs
    (until the iterator is exhausted or closed).
    """
    seqs = [SequenceState(model, r, token_budget(model, r)) for r in requests]
    for _ in _locked(model, seqs, timing):
        yield [s.result() for s in seqs]


def _locked(model: "Model", seqs: list[SequenceState], timing: Timing | None) -> Iterator[None]:
    timing = timing or Timing()
    with model._generate_lock:
        timing.acquired = time.perf_counter()
        for _ in _decode(model, seqs):
            if timing.first_token is None:
                timing.first_token = time.perf_counter()
            yield None
        timing.finished = time.perf_counter()


def held_back_chars(result: SequenceResult) -> int:
    """How many trailing characters of an unfinished result's text a stream should hold back."""
    stops = result.request.params.stop
    if not stops or result.finished:
        return 0
    text = result.text
    for size in range(min(len(text), max(len(s) for s in stops) - 1), 0, -1):
        if any(s.startswith(text[-size:]) for s in stops):
            return size
    return 0


def token_budget(model: "Model", request: SequenceRequest) -> int:
    """How many tokens ``request`` may generate: its ``max_tokens``, capped by the room its
    prompt leaves in the context (at least 0). O(1)."""
    room = model.context_length - len(request.prompt_ids)
    limit = request.params.max_tokens
    return max(0, room if limit is None else min(limit, room))


@torch.inference_mode()
def _decode(model: "Model", seqs: list[SequenceState]) -> Iterator[None]:
    vocab = model.vocabulary
    device = model.device
    eos_ids = sorted(vocab.eos_token_ids)
    eos_tensor = torch.tensor(eos_ids, dtype=torch.long, device=device)
    bitmask = torch.from_numpy(allocate_token_bitmask(max(1, len(seqs)), vocab.size))
    if device.type == "cuda":
        bitmask = bitmask.pin_memory()
    open_words = open_row(vocab)
    eos_words = eos_row(vocab.size, eos_ids)

    for s in seqs:
        if s.max_tokens <= 0:
            s.close("length")
    active = [s for s in seqs if s.finish is None]
    cache = None
    attention = None
    first = True
    while active:
        attention, cache = decode_step(model, active, bitmask, open_words, eos_tensor, eos_words, attention, cache, first=first)
        first = False
        yield None
        keep_rows = [i for i, s in enumerate(active) if s.finish is None or (s.unscored and s.scored)]
        for s in active:
            if s.finish is not None and not (s.unscored and s.scored):
                s.close(s.finish)
        if len(keep_rows) < len(active):
            index = torch.tensor(keep_rows, dtype=torch.long, device=device)
            if keep_rows:
                cache.batch_select_indices(index)
                attention = attention.index_select(0, index)
            active = [active[i] for i in keep_rows]
    for s in seqs:
        s.close(s.finish or "length")
    yield None


def decode_step(
    model: "Model",
    rows: list[SequenceState],
    bitmask: torch.Tensor,
    open_words: np.ndarray,
    eos_tensor: torch.Tensor,
    eos_words: np.ndarray,
    attention: torch.Tensor | None,
    cache: Any,
    *,
    first: bool,
) -> tuple[torch.Tensor, Any]:
    """One decoding step of ``rows``: fill their masks while one forward pass feeds them (their
    prompts when ``first``), score what was fed, then pick each ready row's next token.

    A row whose feed holds more than this step's width (forced tokens from jump-forward) feeds
    the first part now and the rest at the next steps, without sampling in between: padding
    every row to the longest feed would make the whole batch pay for one row's jump.
    Returns the new attention mask and cache. Cost: one forward pass plus the rows' masks.
    """
    width = max(len(s.feed) for s in rows)
    if not first:
        width = min(width, max(1, _step_positions(model) // len(rows)))
    wants_all = any(s.request.prompt_logprobs if first else bool(s.scored and s.unscored) for s in rows)
    chunks = [s.feed[:width] for s in rows]
    masks = _mask_pool.submit(_fill_masks, rows, bitmask, open_words)
    try:
        if first and not wants_all:
            logits, attention, cache = _prefill(model, chunks)
        else:
            logits, attention, cache = _forward(model, chunks, attention, cache, width if wants_all else 1)
    finally:
        masks.result()
    _score_fed(model, rows, logits, first, chunks)
    ready: list[int] = []
    for i, s in enumerate(rows):
        s.feed = s.feed[len(chunks[i]) :]
        if s.finish is None and not s.feed:
            ready.append(i)
    if ready:
        _sample_step(model, [rows[i] for i in ready], logits[ready, -1, :], bitmask[ready], eos_tensor, eos_words)
    return attention, cache


def _step_positions(model: "Model") -> int:
    # Token positions a step can feed before its cost grows with them: on a CPU the weights'
    # reading dominates up to a few positions; an accelerator takes hundreds for the same time.
    return 16 if model.device.type == "cpu" else 512


def _forward(
    model: "Model",
    feeds: list[list[int]],
    attention: torch.Tensor | None,
    cache: Any,
    keep: int,
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """One forward pass: ``feeds`` left-padded into one chunk after what the cache holds."""
    device = model.device
    width = max(len(f) for f in feeds)
    ids = torch.zeros((len(feeds), width), dtype=torch.long)
    new = torch.zeros((len(feeds), width), dtype=torch.long)
    for i, feed in enumerate(feeds):
        if feed:
            ids[i, width - len(feed) :] = torch.tensor(feed)
            new[i, width - len(feed) :] = 1
    ids, new = ids.to(device), new.to(device)
    attention = new if attention is None else torch.cat([attention, new], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, -width:]
    if cache is None:
        from transformers import DynamicCache

        cache = DynamicCache()
    name = _cache_argument(model.model)
    out = model.model(
        input_ids=ids,
        attention_mask=attention,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=keep,
        **{name: cache},
    )
    return out.logits.float(), attention, getattr(out, name)


_CACHE_ARGUMENTS: dict[type, str] = {}


def _cache_argument(module: Any) -> str:
    """The keyword (and output attribute) of ``module``'s KV cache: ``cache`` from transformers
    5.24 on (where ``past_key_values`` still works but logs a deprecation), ``past_key_values``
    before it, as in the older transformers that vLLM pins. Read once per model class."""
    kind = type(module)
    name = _CACHE_ARGUMENTS.get(kind)
    if name is None:
        name = "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"
        _CACHE_ARGUMENTS[kind] = name
    return name


def _prefill(model: "Model", prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The prompts' pass (last logits only): identical prompts are computed once (``n``,
    ``best_of``), and a prompt that starts like a recent one feeds only what follows the
    shared part, on top of that part's stored KV. Same result as ``_forward`` from scratch."""
    store = model._prefix_cache
    unique: dict[tuple[int, ...], int] = {}
    index = [unique.setdefault(tuple(p), len(unique)) for p in prompts]
    distinct = [list(p) for p in unique]
    reused = [store.lookup(p) for p in distinct]
    attention, cache = _past(reused, model.device)
    logits, attention, cache = _forward(model, [p[n:] for p, (n, _) in zip(distinct, reused)], attention, cache, 1)
    if per_token_layers(cache):
        for row, p in enumerate(distinct):
            columns = torch.nonzero(attention[row]).flatten()
            store.store(p, [(layer.keys[row : row + 1, :, columns], layer.values[row : row + 1, :, columns]) for layer in cache.layers])
    if len(distinct) < len(prompts):
        select = torch.tensor(index, dtype=torch.long, device=model.device)
        cache.batch_select_indices(select)
        attention = attention.index_select(0, select)
        logits = logits.index_select(0, select)
    return logits, attention, cache


def per_token_layers(cache: Any) -> bool:
    """Whether every layer of ``cache`` keeps one column per token (no sliding window), so rows
    can be padded, stacked, cut on the left and read by position exactly (True when None)."""
    from transformers.cache_utils import DynamicLayer

    return cache is None or all(type(layer) is DynamicLayer for layer in cache.layers)


def _past(reused: list[tuple[int, list[tuple[torch.Tensor, torch.Tensor]]]], device: torch.device) -> tuple[torch.Tensor | None, Any]:
    """A cache holding each row's reused prefix, left-padded to the longest (None if none)."""
    width = max(n for n, _ in reused)
    if width == 0:
        return None, None
    from transformers import DynamicCache

    template = next(layers for n, layers in reused if n)
    cache = DynamicCache()
    for i, (k0, v0) in enumerate(template):
        keys, values = [], []
        for n, layers in reused:
            k, v = layers[i] if n else (k0[:, :, :0], v0[:, :, :0])
            keys.append(left_padded(k, width, 2))
            values.append(left_padded(v, width, 2))
        cache.update(torch.cat(keys), torch.cat(values), i)
    attention = torch.zeros((len(reused), width), dtype=torch.long, device=device)
    for row, (n, _) in enumerate(reused):
        if n:
            attention[row, width - n :] = 1
    return attention, cache


def left_padded(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``t`` with zeros prepended along ``dim`` up to ``width`` (``t`` itself when already there)."""
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _fill_masks(active: list[SequenceState], bitmask: torch.Tensor, open_words: np.ndarray) -> None:
    rows = bitmask.numpy()
    for i, s in enumerate(active):
        if s.finish is not None:
            continue
        if s.matcher is not None:
            s.matcher.fill_next_token_bitmask(rows, i)
        else:
            rows[i] = open_words


def _top(logprobs: torch.Tensor, n: int) -> list[tuple[int, float]]:
    if n <= 0:
        return []
    values, ids = torch.topk(logprobs, n)
    # Masked distributions may have fewer than n possible tokens: impossible ones are not shown.
    return [(int(t), float(v)) for t, v in zip(ids.tolist(), values.tolist()) if v != float("-inf")]


def _score_fed(model: "Model", active: list[SequenceState], logits: torch.Tensor, first: bool, chunks: list[list[int]]) -> None:
    """Log-probabilities of the tokens fed in this pass (``chunks[row]``, the head of each
    row's feed): prompt tokens, or the forced tokens that the fed positions predict."""
    keep = logits.shape[1]
    for row, s in enumerate(active):
        n_top = s.params.logprobs or 0
        if first and s.request.prompt_logprobs:
            prompt = s.request.prompt_ids
            s.prompt_logprobs = [None]
            s.prompt_tops = [None]
            start = keep - len(prompt)  # the pass kept every position: prompt[0] sits here
            lsm = torch.log_softmax(logits[row], dim=-1)
            for j in range(1, len(prompt)):
                pos = start + j - 1
                s.prompt_logprobs.append(float(lsm[pos, prompt[j]]))
                s.prompt_tops.append(_top(lsm[pos], n_top))
            continue
        if not (s.scored and s.unscored):
            continue
        fed = chunks[row]
        # unscored[k] is the feed's token k + 1, predicted by the logits at feed position k.
        for k, (index, mask) in enumerate(s.unscored[: len(fed)]):
            pos = keep - len(fed) + k
            row_logits = logits[row, pos].clone()
            if mask is not None:
                apply_token_bitmask_inplace(row_logits, torch.from_numpy(mask))
            lsm = torch.log_softmax(row_logits, dim=-1)
            s.logprobs[index] = float(lsm[s.tokens[index]])
            s.tops[index] = _top(lsm, n_top)
        s.unscored = s.unscored[len(fed) :]


def _sample_step(
    model: "Model",
    seqs: list[SequenceState],
    raw: torch.Tensor,
    bitmask: torch.Tensor,
    eos_tensor: torch.Tensor,
    eos_words: np.ndarray,
) -> None:
    """Process the last logits of every live row, pick each row's token and advance it."""
    params = [s.params for s in seqs]
    logits = raw.clone()
    apply_penalties(logits, params, [s.seen for s in seqs], [s.counts for s in seqs])
    apply_bias(logits, params)
    for i, s in enumerate(seqs):
        if len(s.tokens) < s.min_tokens:
            logits[i, eos_tensor] = float("-inf")
    apply_token_bitmask_inplace(logits, bitmask)
    raw_lsm = torch.log_softmax(raw, dim=-1) if any(s.scored for s in seqs) else None
    masked_rows = [i for i, s in enumerate(seqs) if s.scored and s.params.logprobs_mode == "masked"]
    masked_lsm: dict[int, torch.Tensor] = {}
    if masked_rows:
        picked = raw[masked_rows].clone()
        apply_token_bitmask_inplace(picked, bitmask[masked_rows])
        for j, i in enumerate(masked_rows):
            masked_lsm[i] = torch.log_softmax(picked[j], dim=-1)
    for i, s in enumerate(seqs):
        row = logits[i]
        # Only bans and min_tokens can leave a row empty: the grammar always allows a token.
        banning = len(s.tokens) < s.min_tokens or any(b <= BAN_BIAS for b in s.params.logit_bias.values())
        if banning and not bool(torch.isfinite(row).any()):
            # Bans or min_tokens left nothing the grammar allows: the grammar wins.
            row = raw[i].clone()
            apply_token_bitmask_inplace(row, bitmask[i])
            if not bool(torch.isfinite(row).any()):
                s.finish = "length"
                continue
        token = sample(row, s.params, s.generator)
        lsm = masked_lsm.get(i) if i in masked_lsm else (raw_lsm[i] if raw_lsm is not None else None)
        _commit(model, s, token, lsm, eos_words)


def _commit(model: "Model", s: SequenceState, token: int, lsm: torch.Tensor | None, eos_words: np.ndarray) -> None:
    """Append the sampled ``token`` (or the steered completion instead), then jump forward."""
    vocab = model.vocabulary
    n_top = s.params.logprobs or 0

    def score(t: int) -> tuple[float | None, list[tuple[int, float]]]:
        if lsm is None:
            return None, []
        return float(lsm[t]), _top(lsm, n_top)

    matcher = s.matcher
    if token in vocab.eos_token_ids:
        if matcher is not None:
            matcher.advance(token)
        s.finish = "stop"
        return
    forced_after: list[int] = []
    if matcher is not None:
        if not matcher.advance(token):
            raise AssertionError(f"token {token} passed the mask but the matcher refused it")
        steer = _steering(s, token)
        if steer is not None:
            s.steered = True
            if not steer:
                s.finish = "stop"
                return
            token, forced_after = steer[0], steer[1:]
            matcher.advance(token)
    logprob, top = score(token)
    s.append(token, logprob, top)
    s.feed = [token]
    s.check_stop()
    if s.finish is None and forced_after:
        _append_forced(s, forced_after)
    elif s.finish is None and matcher is not None and s.request.jump_forward:
        _jump_forward(model, s)
    _maybe_finish(model, s, eos_words)


def _maybe_finish(model: "Model", s: SequenceState, eos_words: np.ndarray) -> None:
    if s.finish is not None:
        return
    matcher = s.matcher
    if matcher is not None and matcher.is_accepting():
        row = allocate_token_bitmask(1, model.vocabulary.size)
        matcher.fill_next_token_bitmask(row, 0)
        if np.array_equal(row[0], eos_words):
            s.finish = "stop"  # only an end token may follow: no need to sample it
            return
    if len(s.tokens) >= s.max_tokens:
        parsed = matcher is not None and matcher.is_accepting()
        s.finish = "stop" if parsed else "length"


def _append_forced(s: SequenceState, tokens: list[int]) -> None:
    """Append tokens without sampling (the matcher advances; scores come from the next pass)."""
    matcher = s.matcher
    vocab_size = s.model.vocabulary.size
    for t in tokens:
        if len(s.tokens) >= s.max_tokens or s.finish is not None:
            break
        mask = None
        if matcher is not None:
            if s.scored and s.params.logprobs_mode == "masked":
                mask = allocate_token_bitmask(1, vocab_size)[0]
                matcher.fill_next_token_bitmask(mask)
            if not matcher.advance(t):
                break
        s.append(t, None, [])
        s.unscored.append((len(s.tokens) - 1, mask))
        s.feed.append(t)
        s.forced += 1
        s.check_stop()


def _jump_forward(model: "Model", s: SequenceState) -> None:
    matcher = s.matcher
    assert matcher is not None
    forced = matcher.forced_continuation()
    if not forced:
        return
    tokens = model.vocabulary.spell(forced, model.encode)[:-1]  # the last one is the model's, to merge onward
    tokens = tokens[: max(0, s.max_tokens - len(s.tokens) - 1)]
    if not tokens:
        return
    if _steers(s) and _near_limit(s, len(tokens)):
        # Near the limit, jump only if the grammar can still be finished after the jump.
        advanced = 0
        for t in tokens:
            if not matcher.advance(t):
                break
            advanced += 1
        rest = matcher.shortest_completion()
        matcher.rollback(advanced)
        budget = s.max_tokens - len(s.tokens)
        if rest is None or advanced + len(model.vocabulary.spell(rest, model.encode)) > budget:
            return
    _append_forced(s, tokens)


def _steers(s: SequenceState) -> bool:
    # The limit is max_tokens or, without it, what is left of the context: both are steered.
    return s.matcher is not None and s.params.ensure_parsable


def _near_limit(s: SequenceState, extra: int = 0) -> bool:
    left = s.max_tokens - len(s.tokens) - extra
    return left <= s._completion_len + _STEER_MARGIN


def _steering(s: SequenceState, token: int) -> list[int] | None:
    """The completion to emit instead of ``token`` (empty: finish before it), or None to keep it.

    Called with the matcher past ``token``; when it returns a completion the matcher is back
    before ``token``. Keeps "the shortest completion fits in the budget left" true once it
    held; the check runs near the limit (and every few steps before, to track the length).
    """
    if not _steers(s):
        return None
    matcher = s.matcher
    assert matcher is not None
    s._steps_since_check += 1
    if not _near_limit(s) and s._steps_since_check < _STEER_REFRESH:
        return None
    s._steps_since_check = 0
    left = s.max_tokens - len(s.tokens) - 1  # budget after ``token``
    after = matcher.shortest_completion()
    if after is not None:
        after_tokens = s.model.vocabulary.spell(after, s.model.encode)
        if len(after_tokens) <= left:
            s._completion_len = len(after_tokens)
            return None
    if after is None:
        return None  # no completion found within the search's bounds: nothing to steer to
    matcher.rollback(1)
    before = matcher.shortest_completion()
    tokens = None if before is None else s.model.vocabulary.spell(before, s.model.encode)
    if tokens is None or len(tokens) > left + 1:
        matcher.advance(token)  # it no longer fits either way: "length" is unavoidable
        return None
    return tokens  # empty when the text before ``token`` already parses: stop there


def open_row(vocab: "Vocabulary") -> np.ndarray:
    """The mask of unconstrained rows: content tokens and end tokens.

    Other special tokens (``<|im_start|>``, padding ids past the tokenizer) add no text, so
    they are never sampled. Cost: one pass over the vocabulary.
    """
    allowed = np.array([b is not None for b in vocab.token_bytes], dtype=bool)
    allowed[sorted(vocab.eos_token_ids)] = True
    row = allocate_token_bitmask(1, vocab.size)[0]
    packed = np.packbits(np.concatenate([allowed, np.zeros(row.size * 32 - allowed.size, bool)]), bitorder="little")
    row[:] = packed.view("<i4")
    return row


def eos_row(vocab_size: int, eos_ids: list[int]) -> np.ndarray:
    """A packed bitmask row allowing only ``eos_ids``. Cost: one row of ``vocab_size`` bits."""
    row = allocate_token_bitmask(1, vocab_size)[0]
    for t in eos_ids:
        row[t >> 5] |= np.int32(np.uint32(1 << (t & 31)).view(np.int32))
    return row
