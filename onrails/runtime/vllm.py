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
run on with blank lines to its token limit). Requests without
the key are left alone. Arguments are checked by ``validate_params`` when vLLM admits the request,
so a bad one fails that request (vLLM's 400) and never the engine. Each worker compiles through
one ``GrammarCompiler`` for the model's vocabulary, shared by all requests: a schema compiles once.

This module is the only one in onrails that imports vLLM.
"""

from __future__ import annotations

import json
import logging
import threading
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

if TYPE_CHECKING:
    from vllm.config import VllmConfig

logger = logging.getLogger(__name__)

_KEY = "onrails"
_KINDS = ("grammar_root", "grammar", "json_schema", "tools")
_OPTIONS = {
    "grammar_root": {"whitespace"},
    "grammar": {"start"},
    "json_schema": {"whitespace", "strict"},
    "tools": {"whitespace", "tool_choice", "parallel_tool_calls"},
}


@dataclass(frozen=True)
class _Request:
    """A request's constraint, validated: what to compile and from which root to match."""

    kind: str
    value: Any
    options: dict[str, Any]

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
    return _Request(kind, value, {k: v for k, v in args.items() if k != kind})


@dataclass
class _Sequence:
    """One constrained request in the batch: its matcher and how much of its output it has seen."""

    matcher: Matcher | None  # None: its constraint failed to compile; it may only end
    output: list[int]  # vLLM's live list of the request's output ids
    ends: np.ndarray  # packed mask of the ids vLLM stops this request on
    seen: list[int] = field(default_factory=list)

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


class _Worker:
    """Per-process state shared by every logits processor instance: vocabulary and compiler."""

    _lock = threading.Lock()
    _compilers: dict[tuple[str, int], GrammarCompiler] = {}

    @classmethod
    def compiler(cls, tokenizer_path: str, vocab_size: int, trust_remote_code: bool) -> GrammarCompiler:
        key = (tokenizer_path, vocab_size)
        with cls._lock:
            compiler = cls._compilers.get(key)
            if compiler is None:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, trust_remote_code=trust_remote_code)
                vocab = Vocabulary.from_tokenizer(tokenizer, size=vocab_size)
                compiler = cls._compilers[key] = GrammarCompiler(vocab)
            return compiler


class OnRailsLogitsProcessor(LogitsProcessor):
    """Masks each onrails-constrained request's logits to the tokens its grammar allows.

    Cost per step: one mask per constrained request (a cache lookup once a state has been seen),
    one host-to-device copy of the packed bitmask, one in-place masking kernel.
    """

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
        model_config = vllm_config.model_config
        self._tokenizer_path = str(model_config.tokenizer)
        self._vocab_size = int(model_config.get_vocab_size())
        self._trust_remote_code = bool(model_config.trust_remote_code)
        self._device = device
        self._pin = is_pin_memory
        self._sequences: dict[int, _Sequence] = {}
        self._bitmask: np.ndarray | None = None
        self._not_ends: np.ndarray | None = None
        self._grammar_compiler: GrammarCompiler | None = None

    def _compiler(self) -> GrammarCompiler:
        # Looked up once per processor: apply() runs every decoding step.
        if self._grammar_compiler is None:
            self._grammar_compiler = _Worker.compiler(self._tokenizer_path, self._vocab_size, self._trust_remote_code)
        return self._grammar_compiler

    def _not_vocab_ends(self, vocab: Vocabulary) -> np.ndarray:
        if self._not_ends is None:
            others = np.ones(vocab.size, dtype=bool)
            others[list(vocab.eos_token_ids)] = False
            self._not_ends = pack_bool_mask(others)
        return self._not_ends

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is not None:
            for index in batch_update.removed:
                self._sequences.pop(index, None)
            for index, params, _prompt, output in batch_update.added:
                sequence = self._new_sequence(params, output)
                if sequence is None:
                    self._sequences.pop(index, None)
                else:
                    self._sequences[index] = sequence
            for a, b, direction in batch_update.moved:
                first = self._sequences.pop(a, None)
                second = self._sequences.pop(b, None)
                if first is not None:
                    self._sequences[b] = first
                if second is not None and direction == MoveDirectionality.SWAP:
                    self._sequences[a] = second

    def _new_sequence(self, params: SamplingParams, output: list[int]) -> _Sequence | None:
        request = _parse_request(params)
        if request is None:
            return None
        compiler = self._compiler()
        try:
            grammar, root = request.compile(compiler)
            matcher: Matcher | None = Matcher(grammar, root)
        except OnRailsError as exc:
            # validate_params caught syntax; what is left (a compile budget) must not stop the engine.
            logger.error("onrails: request constraint failed to compile (%s); it may only end", exc)
            matcher = None
        vocab = compiler.vocabulary
        stops = np.zeros(vocab.size, dtype=bool)
        stops[[t for t in params.all_stop_token_ids if 0 <= t < vocab.size]] = True
        return _Sequence(matcher, output, pack_bool_mask(stops))

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self._sequences:
            return logits
        batch = logits.shape[0]
        compiler = self._compiler()
        vocab = compiler.vocabulary
        if self._bitmask is None or self._bitmask.shape[0] < batch:
            self._bitmask = allocate_token_bitmask(max(batch, 8), vocab.size)
        bitmask = self._bitmask
        rows = sorted(i for i in self._sequences if i < batch)
        if not rows:
            return logits
        for i in rows:
            sequence = self._sequences[i]
            sequence.sync()
            matcher = sequence.matcher
            if matcher is None:
                bitmask[i] = sequence.ends
                continue
            matcher.fill_next_token_bitmask(bitmask, i)
            # The grammar ends on the tokenizer's end tokens; vLLM stops on the request's stop
            # ids (EOS, the generation config's, the user's): allow those, and only those, to end.
            bitmask[i] &= self._not_vocab_ends(vocab)
            if matcher.is_accepting():
                bitmask[i] |= sequence.ends
        masks = torch.from_numpy(bitmask[: max(rows) + 1])
        if logits.device.type != "cpu":
            masks = masks.pin_memory() if self._pin else masks
            masks = masks.to(logits.device, non_blocking=self._pin)
        apply_token_bitmask_inplace(logits, masks, indices=None if len(rows) == batch else rows)
        return logits


def _check_without_vocabulary(request: _Request) -> None:
    """Raise the errors a compile would raise for syntax, without loading a tokenizer."""
    from onrails.constrain.lark_frontend import parse_lark

    if request.kind == "grammar":
        parse_lark(request.value, [request.options.get("start", "start")])
    elif request.kind == "json_schema":
        from onrails.constrain import schema_to_grammar

        schema_to_grammar(request.value, strict=request.options.get("strict", True))
