"""Request planning: every parameter of a completions or chat request checked, before any work.

``plan_completion`` and ``plan_chat`` take the SDK's keyword arguments (plus onrails' constraint
and sampling extras) and return a ``Plan``: the encoded prompts, the compiled constraint and one
``SequenceRequest`` per sequence to decode. An invalid parameter raises ``BadRequestError``
naming it; nothing has been decoded by then. ``onrails.Client`` and the server share them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from onrails.errors import BadRequestError, GrammarError
from onrails.runtime.api import (
    Constraint,
    chat_prompt,
    check_budget,
    encode_prompt,
    resolve_constraint,
    resolve_model,
)
from onrails.runtime.chat import template_messages, with_tools_prompt
from onrails.runtime.generation import SequenceRequest, Timing
from onrails.runtime.models import Model
from onrails.runtime.sampling import REQUEST_FIELDS, SamplingParams

__all__ = ["Plan", "plan_chat", "plan_completion"]

_MAX_SEQUENCES = 128


@dataclass
class Plan:
    """A checked request: its model, encoded prompts (and their texts), constraint and the
    ``SequenceRequest`` of each sequence (``best_of`` per prompt, ``n`` of them kept), with the
    response options (``echo``, ``raw_tokens``, ``logprobs``, ``include_usage``, ``tools``),
    its timing, creation time and response id."""

    model: Model
    prompts: list[list[int]]
    prompt_texts: list[str]
    requests: list[SequenceRequest]
    constraint: Constraint
    n: int
    best_of: int
    echo: bool = False
    raw_tokens: bool = False
    logprobs: int | None = None
    include_usage: bool = False
    tools: bool = False
    timing: Timing = field(default_factory=Timing)
    created: int = field(default_factory=lambda: int(time.time()))
    id: str = ""


def _bool(value: Any, param: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequestError("must be a bool", param=param)
    return value


def _count(value: Any, param: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequestError(f"must be a positive integer, got {value!r}", param=param)
    return value


def _stream_options(options: Any, stream: bool) -> bool:
    if options is None:
        return False
    if not stream:
        raise BadRequestError("only allowed with stream=True", param="stream_options")
    if not isinstance(options, Mapping) or set(options) - {"include_usage"}:
        raise BadRequestError("must be {'include_usage': bool}", param="stream_options")
    return _bool(options.get("include_usage"), "stream_options.include_usage")


# Fields the official SDKs send or document that change nothing here: who the caller is, a
# prompt-cache routing key (the prefix cache is automatic), a service tier, and a reasoning
# effort (the served models have no reasoning mode). Accepted and ignored, as the README says.
IGNORED_FIELDS = ("user", "prompt_cache_key", "service_tier", "reasoning_effort")


def _reject_unknown(extra: dict[str, Any]) -> None:
    for name in IGNORED_FIELDS:
        extra.pop(name, None)
    if extra:
        name = next(iter(extra))
        raise BadRequestError("unknown parameter", param=name)


def _resolve(client_model: Model, model: Any) -> Model:
    if model is None or model == client_model.name or model is client_model:
        return client_model
    return resolve_model(model)


def _prompt_list(prompt: Any) -> list[Any]:
    """The SDK's prompt forms: a string, a list of strings, a list of ids, a list of id lists."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, Sequence) and prompt:
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return [list(prompt)]
        # A batch: each entry a string or a list of ids (encode_prompt checks each).
        return [list(p) if isinstance(p, Sequence) and not isinstance(p, str) else p for p in prompt]
    raise BadRequestError("must be a string, a list of strings, a list of token ids or a list of those", param="prompt")


_SAMPLING_KEYS = (*REQUEST_FIELDS, "logprobs_mode")


def _pop_sampling(k: dict[str, Any], *, logprobs: int | None, max_tokens: Any) -> SamplingParams:
    """SamplingParams from the request's sampling keys (popped from ``k``); unset ones default."""
    given = {key: k.pop(key, None) for key in _SAMPLING_KEYS}
    given.update(logprobs=logprobs, max_tokens=max_tokens)
    return SamplingParams(**{key: v for key, v in given.items() if v is not None})


def _choice_seed(seed: int | None, index: int) -> int | None:
    """Choice 0 uses ``seed`` itself (same seed, same text); others derive distinct seeds."""
    if seed is None or index == 0:
        return seed
    return (seed * 1_000_003 + index * 7_919) % 2**63


def _plan(
    model: Model,
    prompts: list[list[int]],
    prompt_texts: list[str],
    params: SamplingParams,
    constraint: Constraint,
    *,
    n: int,
    best_of: int,
    jump_forward: Any,
    prompt_logprobs: bool = False,
) -> list[SequenceRequest]:
    if best_of < n:
        raise BadRequestError(f"must be at least n ({n})", param="best_of")
    if len(prompts) * best_of > _MAX_SEQUENCES:
        raise BadRequestError(f"at most {_MAX_SEQUENCES} sequences per request (prompts × best_of)", param="n")
    jump = True if jump_forward is None else _bool(jump_forward, "jump_forward")
    requests = []
    for ids in prompts:
        check_budget(model, ids, params)
        for k in range(best_of):
            choice = SamplingParams(**{**params.__dict__, "seed": _choice_seed(params.seed, k)})
            requests.append(
                SequenceRequest(
                    ids,
                    choice,
                    constraint.grammar,
                    constraint.root,
                    score=best_of > n,
                    prompt_logprobs=prompt_logprobs,
                    jump_forward=jump,
                )
            )
    return requests


def plan_completion(client_model: Model, kwargs: dict[str, Any]) -> tuple[Plan, bool]:
    """The plan of a ``completions.create`` request (``kwargs``: its parameters) and whether it
    streams. Raises ``BadRequestError`` naming an invalid parameter. Cost: encoding the prompts
    and compiling the constraint (cached per model); nothing is decoded."""
    k = dict(kwargs)
    model = _resolve(client_model, k.pop("model", None))
    if "prompt" not in k:
        raise BadRequestError("is required", param="prompt")
    raw_prompts = _prompt_list(k.pop("prompt"))
    stream = _bool(k.pop("stream", None), "stream")
    include_usage = _stream_options(k.pop("stream_options", None), stream)
    echo = _bool(k.pop("echo", None), "echo")
    raw_tokens = _bool(k.pop("return_raw_tokens", None), "return_raw_tokens")
    if echo and raw_tokens:
        raise BadRequestError("cannot be combined with echo", param="return_raw_tokens")
    n = _count(k.pop("n", None), "n", 1)
    best_of = _count(k.pop("best_of", None), "best_of", n)
    if stream and best_of > n:
        raise BadRequestError("cannot be used with stream=True", param="best_of")
    suffix = k.pop("suffix", None)
    if suffix is not None and echo:
        raise BadRequestError("cannot be combined with echo", param="suffix")
    logprobs = k.pop("logprobs", None)
    constraint = resolve_constraint(
        model,
        grammar_root=k.pop("grammar_root", None),
        grammar=k.pop("grammar", None),
        grammar_start=k.pop("grammar_start", "start"),
        response_format=k.pop("response_format", None),
        whitespace=k.pop("whitespace", "bounded"),
    )
    jump_forward = k.pop("jump_forward", None)
    params = _pop_sampling(k, logprobs=logprobs, max_tokens=k.pop("max_tokens", None))
    _reject_unknown(k)
    prompts = [
        encode_prompt(model, p, f"prompt[{i}]" if len(raw_prompts) > 1 else "prompt", suffix=suffix)
        for i, p in enumerate(raw_prompts)
    ]
    texts = [p if isinstance(p, str) else str(model.tokenizer.decode(ids)) for p, ids in zip(raw_prompts, prompts)]
    requests = _plan(
        model,
        prompts,
        texts,
        params,
        constraint,
        n=n,
        best_of=best_of,
        jump_forward=jump_forward,
        prompt_logprobs=echo and params.logprobs is not None,
    )
    plan = Plan(
        model=model,
        prompts=prompts,
        prompt_texts=texts,
        requests=requests,
        constraint=constraint,
        n=n,
        best_of=best_of,
        echo=echo,
        raw_tokens=raw_tokens,
        logprobs=params.logprobs,
        include_usage=include_usage,
        id="cmpl-" + secrets.token_hex(12),
    )
    return plan, stream


def plan_chat(client_model: Model, kwargs: dict[str, Any]) -> tuple[Plan, bool]:
    """The plan of a ``chat.completions.create`` request (``kwargs``: its parameters) and whether
    it streams. Raises ``BadRequestError`` naming an invalid parameter. Cost: templating and
    encoding the messages and compiling the constraint or tools grammar (cached per model);
    nothing is decoded."""
    k = dict(kwargs)
    model = _resolve(client_model, k.pop("model", None))
    if "messages" not in k:
        raise BadRequestError("is required", param="messages")
    messages = k.pop("messages")
    stream = _bool(k.pop("stream", None), "stream")
    include_usage = _stream_options(k.pop("stream_options", None), stream)
    n = _count(k.pop("n", None), "n", 1)
    want_logprobs = _bool(k.pop("logprobs", None), "logprobs")
    top = k.pop("top_logprobs", None)
    if top is not None and not want_logprobs:
        raise BadRequestError("needs logprobs=True", param="top_logprobs")
    logprobs = (0 if top is None else top) if want_logprobs else None
    max_tokens = k.pop("max_completion_tokens", None)
    legacy = k.pop("max_tokens", None)
    if max_tokens is not None and legacy is not None:
        raise BadRequestError("give max_completion_tokens or max_tokens, not both", param="max_tokens")
    max_tokens = legacy if max_tokens is None else max_tokens
    # The Cerebras chat signature has min_completion_tokens beside min_tokens: the same limit.
    min_completion = k.pop("min_completion_tokens", None)
    if min_completion is not None:
        if k.get("min_tokens") is not None:
            raise BadRequestError("give min_completion_tokens or min_tokens, not both", param="min_tokens")
        k["min_tokens"] = min_completion

    tools = k.pop("tools", None)
    tool_choice = k.pop("tool_choice", None)
    parallel = k.pop("parallel_tool_calls", None)
    whitespace = k.pop("whitespace", "bounded")
    response_format = k.pop("response_format", None)
    grammar_root = k.pop("grammar_root", None)
    grammar = k.pop("grammar", None)
    grammar_start = k.pop("grammar_start", "start")
    template = str(getattr(model.tokenizer, "chat_template", "") or "")
    template_has_tools = "tools" in template
    use_tools = bool(tools) and tool_choice != "none"
    if tools is not None and not isinstance(tools, list):
        raise BadRequestError("must be a list of tools", param="tools")
    if tool_choice is not None and not tools:
        raise BadRequestError("needs tools", param="tool_choice")
    if parallel is not None:
        _bool(parallel, "parallel_tool_calls")
    if tools and use_tools:
        if response_format is not None or grammar_root is not None or grammar is not None:
            raise BadRequestError("cannot be combined with tools (unless tool_choice='none')", param="response_format" if response_format is not None else "grammar")
        try:
            compiled = model.compiler.compile_tools(
                tools,
                tool_choice="auto" if tool_choice is None else tool_choice,
                parallel_tool_calls=True if parallel is None else parallel,
                whitespace=whitespace,
            )
        except GrammarError as exc:
            param = "tool_choice" if "tool_choice" in str(exc) else "tools"
            raise BadRequestError(str(exc), param=param) from exc
        constraint = Constraint(compiled, None)
    else:
        constraint = resolve_constraint(
            model,
            grammar_root=grammar_root,
            grammar=grammar,
            grammar_start=grammar_start,
            response_format=response_format,
            whitespace=whitespace,
        )
    jump_forward = k.pop("jump_forward", None)
    raw_tokens = _bool(k.pop("return_raw_tokens", None), "return_raw_tokens")
    params = _pop_sampling(k, logprobs=logprobs, max_tokens=max_tokens)
    _reject_unknown(k)
    shaped = template_messages(messages, template_has_tools)
    if use_tools and not template_has_tools:
        assert tools is not None
        shaped = with_tools_prompt(shaped, tools)
    text = chat_prompt(model, shaped, tools if use_tools and template_has_tools else None)
    ids = encode_prompt(model, text, "messages")
    requests = _plan(model, [ids], [text], params, constraint, n=n, best_of=n, jump_forward=jump_forward)
    plan = Plan(
        model=model,
        prompts=[ids],
        prompt_texts=[text],
        requests=requests,
        constraint=constraint,
        n=n,
        best_of=n,
        raw_tokens=raw_tokens,
        logprobs=params.logprobs,
        include_usage=include_usage,
        tools=use_tools,
        id="chatcmpl-" + secrets.token_hex(12),
    )
    return plan, stream
