"""``onrails.Client`` / ``onrails.AsyncClient``: the Cerebras SDK's surface over a local model.

``client.completions.create(...)`` and ``client.chat.completions.create(...)`` take the SDK's
parameters (plus onrails' constraint and sampling extras) and return the typed objects of
:mod:`onrails.runtime.types`; ``stream=True`` returns an iterator of chunks. Every parameter is
checked before any work starts: an invalid one raises ``BadRequestError`` naming it.

Tools: the model sees them through its chat template when the template handles tools, else
through a system message (``TOOLS_SYSTEM_PROMPT``). The tools grammar makes the reply either a
JSON array of calls ``[{"name": ..., "arguments": {...}}]`` or plain text (``tool_choice="auto"``),
never ambiguous; calls come back as ``message.tool_calls`` with arguments valid under each
tool's ``parameters``.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from onrails.errors import BadRequestError, OnRailsError
from onrails.runtime.api import (
    Constraint,
    chat_prompt,
    check_budget,
    encode_prompt,
    resolve_constraint,
    resolve_model,
)
from onrails.runtime.generation import (
    SequenceRequest,
    SequenceResult,
    Timing,
    generate_sequences,
    held_back_chars,
    stream_sequences,
)
from onrails.runtime.models import Model
from onrails.runtime.sampling import REQUEST_FIELDS, SamplingParams
from onrails.runtime.types import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    ChatCompletionTokenLogprob,
    ChatCompletionTopLogprob,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionUsage,
    Function,
    TimeInfo,
)

__all__ = ["TOOLS_SYSTEM_PROMPT", "AsyncClient", "Client"]

#: How tools are shown to a model whose chat template has no tool support ({tools}: their JSON).
TOOLS_SYSTEM_PROMPT = (
    "You can call these tools (JSON Schema of each tool's arguments):\n{tools}\n"
    "To call tools, reply with only a JSON array of calls, each "
    '{{"name": "<tool name>", "arguments": {{...}}}}. Otherwise reply in plain text.'
)
_MAX_SEQUENCES = 128
_ROLES = ("system", "user", "assistant", "tool", "developer")
_BLANKS = " \t\r\n"


# -- planning: every parameter checked, before any work -------------------------------------------


@dataclass
class _Plan:
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


def _reject_unknown(extra: Mapping[str, Any]) -> None:
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


def _chosen(plan: _Plan, results: list[SequenceResult]) -> list[SequenceResult]:
    """The ``n`` choices of each prompt: the best ``best_of`` by cumulative log-probability."""
    out: list[SequenceResult] = []
    for p in range(len(plan.prompts)):
        group = results[p * plan.best_of : (p + 1) * plan.best_of]
        if plan.best_of > plan.n:
            group = sorted(group, key=lambda r: r.cumulative_logprob, reverse=True)[: plan.n]
        out.extend(group)
    return out


def _usage(plan: _Plan, results: list[SequenceResult]) -> CompletionUsage:
    prompt = sum(len(ids) for ids in plan.prompts)
    completion = sum(len(r.token_ids) for r in results)
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _time_info(plan: _Plan) -> TimeInfo:
    t = plan.timing
    end = t.finished or time.perf_counter()
    acquired = t.acquired or end
    first = t.first_token or end
    return TimeInfo(
        queue_time=acquired - t.started,
        prompt_time=first - acquired,
        completion_time=end - first,
        total_time=end - t.started,
        created=float(plan.created),
    )


def _fingerprint(model: Model) -> str:
    return "fp_" + model.vocabulary.fingerprint[:10]


def _token_text(model: Model, token: int) -> str:
    """A token's text; bytes that are not whole UTF-8 characters are spelled ``bytes:\\xNN``."""
    data = model.vocabulary.token_bytes[token] if token < model.vocabulary.size else None
    if data is None:
        return str(model.tokenizer.convert_ids_to_tokens(token) or "")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in data)


# -- completions ------------------------------------------------------------------------------------


def _plan_completion(client_model: Model, kwargs: dict[str, Any]) -> tuple[_Plan, bool]:
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
    k.pop("user", None)  # accepted for compatibility; it identifies the caller, nothing more
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
    plan = _Plan(
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


def _completion_logprobs(plan: _Plan, r: SequenceResult, prompt_index: int, upto: int | None = None) -> CompletionLogprobs:
    model = plan.model
    tokens: list[str] = []
    values: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    offsets: list[int] = []
    shift = 0
    if plan.echo:
        ids = plan.prompts[prompt_index]
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        offset = 0
        for j, t in enumerate(ids):
            tokens.append(_token_text(model, t))
            offsets.append(offset)
            offset += len(decoder.decode(model.vocabulary.token_bytes[t] or b""))
            values.append(r.prompt_token_logprobs[j] if r.prompt_token_logprobs else None)
            top = r.prompt_top_logprobs[j] if r.prompt_top_logprobs else None
            tops.append(None if top is None else {_token_text(model, a): v for a, v in top})
        shift = len(plan.prompt_texts[prompt_index])
    count = len(r.token_ids) if upto is None else upto
    for i in range(count):
        tokens.append(_token_text(model, r.token_ids[i]))
        offsets.append(shift + r.text_offsets[i])
        values.append(r.token_logprobs[i] if r.token_logprobs else None)
        tops.append({_token_text(model, a): v for a, v in r.top_logprobs[i]} if r.top_logprobs else {})
    return CompletionLogprobs(text_offset=offsets, token_logprobs=values, tokens=tokens, top_logprobs=tops)


def _completion(plan: _Plan, results: list[SequenceResult]) -> Completion:
    choices = []
    for index, r in enumerate(_chosen(plan, results)):
        prompt_index = index // plan.n
        text = "" if plan.raw_tokens else (plan.prompt_texts[prompt_index] + r.text if plan.echo else r.text)
        choices.append(
            CompletionChoice(
                index=index,
                text=text,
                finish_reason=r.finish_reason,  # type: ignore[arg-type]
                logprobs=_completion_logprobs(plan, r, prompt_index) if plan.logprobs is not None else None,
                tokens=list(r.token_ids) if plan.raw_tokens else None,
            )
        )
    return Completion(
        id=plan.id,
        choices=choices,
        created=plan.created,
        model=plan.model.name,
        system_fingerprint=_fingerprint(plan.model),
        time_info=_time_info(plan),
        usage=_usage(plan, results),
    )


def _stream_completion(plan: _Plan, steps: Iterable[list[SequenceResult]] | None = None) -> Iterator[Completion]:
    """Chunks of a streamed completion. ``steps``: the cumulative results after each decoding
    step (default: decode here); the server passes its scheduler's."""
    sent_text = [0] * len(plan.requests)
    sent_tokens = [0] * len(plan.requests)
    done = [False] * len(plan.requests)
    results: list[SequenceResult] = []

    def chunk(choices: list[CompletionChoice], usage: CompletionUsage | None = None) -> Completion:
        return Completion(
            id=plan.id,
            choices=choices,
            created=plan.created,
            model=plan.model.name,
            system_fingerprint=_fingerprint(plan.model),
            usage=usage,
            time_info=_time_info(plan) if usage is not None else None,
        )

    if plan.echo and not plan.raw_tokens:
        yield chunk([CompletionChoice(index=i, text=plan.prompt_texts[i // plan.n]) for i in range(len(plan.requests))])
    for results in steps if steps is not None else stream_sequences(plan.model, plan.requests, plan.timing):
        choices = []
        for i, r in enumerate(results):
            if done[i]:
                continue
            stable = len(r.text) - held_back_chars(r)
            ready = len(r.token_ids) if r.finished else r.ready_tokens
            delta = r.text[sent_text[i] : stable]
            new_tokens = r.token_ids[sent_tokens[i] : ready]
            if not delta and not new_tokens and not r.finished:
                continue
            logprobs = None
            if plan.logprobs is not None:
                full = _completion_logprobs(
                    _Plan(**{**plan.__dict__, "echo": False}), r, i // plan.n, upto=ready
                )
                logprobs = CompletionLogprobs(
                    text_offset=(full.text_offset or [])[sent_tokens[i] :],
                    token_logprobs=(full.token_logprobs or [])[sent_tokens[i] :],
                    tokens=(full.tokens or [])[sent_tokens[i] :],
                    top_logprobs=(full.top_logprobs or [])[sent_tokens[i] :],
                )
            choices.append(
                CompletionChoice(
                    index=i,
                    text="" if plan.raw_tokens else delta,
                    finish_reason=r.finish_reason if r.finished else None,  # type: ignore[arg-type]
                    logprobs=logprobs,
                    tokens=new_tokens if plan.raw_tokens else None,
                )
            )
            sent_text[i] = max(sent_text[i], stable)
            sent_tokens[i] = ready
            done[i] = r.finished
        if choices:
            yield chunk(choices)
    if plan.include_usage:
        yield chunk([], _usage(plan, results))


# -- chat -------------------------------------------------------------------------------------------


def _template_messages(messages: Any, template_has_tools: bool) -> list[dict[str, Any]]:
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise BadRequestError("must be a non-empty list of messages", param="messages")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise BadRequestError("must be a dict with 'role' and 'content'", param=where)
        role = message.get("role")
        if role not in _ROLES:
            raise BadRequestError(f"role must be one of {_ROLES}, got {role!r}", param=f"{where}.role")
        content = message.get("content")
        if isinstance(content, list):  # content parts: only text is supported
            texts = []
            for j, part in enumerate(content):
                if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise BadRequestError("only text parts are supported", param=f"{where}.content[{j}]")
                texts.append(part["text"])
            content = "".join(texts)
        calls = message.get("tool_calls")
        if content is None and not (role == "assistant" and calls):
            raise BadRequestError("is required", param=f"{where}.content")
        if content is not None and not isinstance(content, str):
            raise BadRequestError("must be a string or a list of text parts", param=f"{where}.content")
        entry: dict[str, Any] = {"role": "system" if role == "developer" else role, "content": content or ""}
        if calls:
            if template_has_tools:
                entry["tool_calls"] = calls
            else:
                # Shown as the model would have written them under the tools grammar.
                shown = [
                    {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                    for c in calls
                ]
                entry["content"] = json.dumps(shown)
        if role == "tool" and "tool_call_id" in message and template_has_tools:
            entry["tool_call_id"] = message["tool_call_id"]
        out.append(entry)
    return out


def _with_tools_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    described = json.dumps([t["function"] for t in tools], indent=1)
    text = TOOLS_SYSTEM_PROMPT.format(tools=described)
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0], content=messages[0]["content"] + "\n\n" + text)
        return [first] + messages[1:]
    return [{"role": "system", "content": text}] + messages


def _plan_chat(client_model: Model, kwargs: dict[str, Any]) -> tuple[_Plan, bool]:
    k = dict(kwargs)
    model = _resolve(client_model, k.pop("model", None))
    if "messages" not in k:
        raise BadRequestError("is required", param="messages")
    messages = k.pop("messages")
    stream = _bool(k.pop("stream", None), "stream")
    include_usage = _stream_options(k.pop("stream_options", None), stream)
    n = _count(k.pop("n", None), "n", 1)
    k.pop("user", None)
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
        except OnRailsError as exc:
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
    shaped = _template_messages(messages, template_has_tools)
    if use_tools and not template_has_tools:
        assert tools is not None
        shaped = _with_tools_prompt(shaped, tools)
    text = chat_prompt(model, shaped, tools if use_tools and template_has_tools else None)
    ids = encode_prompt(model, text, "messages")
    requests = _plan(model, [ids], [text], params, constraint, n=n, best_of=n, jump_forward=jump_forward)
    plan = _Plan(
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


@dataclass
class _Call:
    """One call of a tool-call turn as far as it is written; ``arguments`` is the raw text of its
    arguments object, whole or cut where the text ends."""

    name: str
    id: str = field(default_factory=lambda: "call_" + secrets.token_hex(12))
    arguments: str = ""
    sent: int | None = None  # how much of ``arguments`` a stream has sent; None: not announced yet


class _Turn:
    """A tool-call turn ``[{"name": ..., "arguments": {...}}, ...]`` read as its text grows.

    The tools grammar only lets the model write a prefix of such a turn, so following strings and
    bracket depth finds each call's name and the slice of text holding its arguments. Whole and
    streamed responses both take ``arguments`` from that raw slice (not a re-serialisation), so a
    stream's fragments concatenate to exactly the non-streamed string.
    """

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self.closed = False  # the turn's final "]" has been read
        self._read = 0
        self._depth = 0  # 1: in the array, 2: in a call, 3 and more: in its arguments
        self._string: int | None = None  # where the string being read starts
        self._escaped = False
        self._strings = 0  # strings closed at the current call's level: "name", the name, "arguments"
        self._arguments: int | None = None  # where the open arguments object starts

    def feed(self, text: str) -> None:
        """Read ``text``, the turn so far: it extends the text of the previous call."""
        for pos in range(self._read, len(text)):
            ch = text[pos]
            if self._string is not None:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    if self._depth == 2:
                        self._strings += 1
                        if self._strings == 2:
                            self.calls.append(_Call(json.loads(text[self._string : pos + 1])))
                    self._string = None
            elif ch == '"':
                self._string = pos
            elif ch in "[{":
                self._depth += 1
                if self._depth == 2:
                    self._strings = 0
                elif self._depth == 3:  # the only value a call holds that opens a bracket
                    self._arguments = pos
            elif ch in "]}":
                self._depth -= 1
                if self._depth == 2:
                    self.calls[-1].arguments = text[self._arguments : pos + 1]
                    self._arguments = None
                self.closed = self._depth == 0
        self._read = len(text)
        if self._arguments is not None:
            self.calls[-1].arguments = text[self._arguments :]

    def finish_reason(self, r: SequenceResult) -> str:
        return "tool_calls" if self.closed else r.finish_reason

    def fragments(self) -> list[ChoiceDeltaToolCall]:
        """What the calls gained since the last fragments: a call's first fragment carries its id
        and name (OpenAI's stream helper concatenates repeats), later ones arguments pieces only."""
        out = []
        for j, call in enumerate(self.calls):
            if call.sent is None:
                function = ChoiceDeltaToolCallFunction(name=call.name, arguments=call.arguments)
                out.append(ChoiceDeltaToolCall(index=j, id=call.id, type="function", function=function))
            elif len(call.arguments) > call.sent:
                function = ChoiceDeltaToolCallFunction(arguments=call.arguments[call.sent :])
                out.append(ChoiceDeltaToolCall(index=j, type="function", function=function))
            call.sent = len(call.arguments)
        return out


def _calling(plan: _Plan, text: str) -> bool:
    """Whether ``text`` begins a tool-call turn (the tools grammar's other branch is plain text)."""
    return plan.tools and text.lstrip(_BLANKS).startswith("[")


def _chat_logprobs(plan: _Plan, r: SequenceResult, start: int = 0, upto: int | None = None) -> ChoiceLogprobs:
    model = plan.model
    content = []
    end = len(r.token_ids) if upto is None else upto
    for i in range(start, end):
        t = r.token_ids[i]
        data = model.vocabulary.token_bytes[t] or b""
        tops = r.top_logprobs[i] if r.top_logprobs else []
        content.append(
            ChatCompletionTokenLogprob(
                token=_token_text(model, t),
                logprob=r.token_logprobs[i] if r.token_logprobs else 0.0,
                bytes=list(data),
                top_logprobs=[
                    ChatCompletionTopLogprob(
                        token=_token_text(model, a), logprob=v, bytes=list(model.vocabulary.token_bytes[a] or b"")
                    )
                    for a, v in tops
                ],
            )
        )
    return ChoiceLogprobs(content=content)


def _message(plan: _Plan, r: SequenceResult) -> tuple[ChatCompletionMessage, str]:
    turn = _Turn()
    if _calling(plan, r.text):
        turn.feed(r.text)
    if turn.calls:  # a turn cut before its first name is left as text, as a stream sends it
        calls = [
            ChatCompletionMessageToolCall(id=c.id, function=Function(name=c.name, arguments=c.arguments), index=j)
            for j, c in enumerate(turn.calls)
        ]
        return ChatCompletionMessage(content=None, tool_calls=calls), turn.finish_reason(r)
    parsed = None
    if plan.constraint.pydantic_model is not None and r.finish_reason == "stop":
        parsed = plan.constraint.parse(r.text)
    return ChatCompletionMessage(content="" if plan.raw_tokens else r.text, parsed=parsed), r.finish_reason


def _chat_completion(plan: _Plan, results: list[SequenceResult]) -> ChatCompletion:
    choices = []
    for index, r in enumerate(results):
        message, finish = _message(plan, r)
        choices.append(
            ChatCompletionChoice(
                index=index,
                message=message,
                finish_reason=finish,  # type: ignore[arg-type]
                logprobs=_chat_logprobs(plan, r) if plan.logprobs is not None else None,
            )
        )
    return ChatCompletion(
        id=plan.id,
        choices=choices,
        created=plan.created,
        model=plan.model.name,
        system_fingerprint=_fingerprint(plan.model),
        time_info=_time_info(plan),
        usage=_usage(plan, results),
    )


def _stream_chat(plan: _Plan, steps: Iterable[list[SequenceResult]] | None = None) -> Iterator[ChatCompletionChunk]:
    """Chunks of a streamed chat completion; ``steps`` as in ``_stream_completion``."""
    count = len(plan.requests)
    sent_text = [0] * count
    sent_tokens = [0] * count
    done = [False] * count
    turns = [_Turn() for _ in range(count)]
    results: list[SequenceResult] = []

    def chunk(choices: list[ChatCompletionChunkChoice], usage: CompletionUsage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=plan.id,
            choices=choices,
            created=plan.created,
            model=plan.model.name,
            system_fingerprint=_fingerprint(plan.model),
            usage=usage,
            time_info=_time_info(plan) if usage is not None else None,
        )

    yield chunk([ChatCompletionChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content="")) for i in range(count)])
    for results in steps if steps is not None else stream_sequences(plan.model, plan.requests, plan.timing):
        choices = []
        for i, r in enumerate(results):
            if done[i]:
                continue
            stable = len(r.text) - held_back_chars(r)
            ready = len(r.token_ids) if r.finished else r.ready_tokens
            finish = r.finish_reason if r.finished else None
            calling = _calling(plan, r.text[:stable])
            if calling:
                turns[i].feed(r.text[:stable])
                # A turn that ends before naming a call goes out as text, as _message answers it.
                calling = bool(turns[i].calls) or not r.finished
            if calling:
                calls = turns[i].fragments()
                if not calls and not r.finished:
                    continue  # tokens and logprobs go with the next fragment
                delta = ChoiceDelta(tool_calls=calls or None)
                if r.finished:
                    finish = turns[i].finish_reason(r)
            else:
                if plan.tools and not r.finished and not r.text[:stable].strip(_BLANKS):
                    stable = 0  # only whitespace so far: it may still become a call
                text = r.text[sent_text[i] : stable]
                if not text and ready == sent_tokens[i] and not r.finished:
                    continue
                delta = ChoiceDelta(content="" if plan.raw_tokens else text)
                sent_text[i] = max(sent_text[i], stable)
            if plan.raw_tokens:
                delta.tokens = r.token_ids[sent_tokens[i] : ready]
            choices.append(
                ChatCompletionChunkChoice(
                    index=i,
                    delta=delta,
                    finish_reason=finish,  # type: ignore[arg-type]
                    logprobs=_chat_logprobs(plan, r, sent_tokens[i], ready) if plan.logprobs is not None else None,
                )
            )
            sent_tokens[i] = ready
            done[i] = r.finished
        if choices:
            yield chunk(choices)
    if plan.include_usage:
        yield chunk([], _usage(plan, results))


# -- the clients ------------------------------------------------------------------------------------


class Completions:
    """``client.completions``: text completions."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    @overload
    def create(self, *, stream: Literal[True], **params: Any) -> Iterator[Completion]: ...

    @overload
    def create(self, *, stream: Literal[False] | None = None, **params: Any) -> Completion: ...

    def create(self, *, stream: bool | None = None, **params: Any) -> "Completion | Iterator[Completion]":
        """Complete ``prompt`` (a string, strings, token ids or lists of ids); see the SDK.

        Parameters: ``prompt``, ``model``, ``best_of``, ``echo``, ``frequency_penalty``,
        ``logit_bias``, ``logprobs`` (0-20), ``max_tokens``, ``min_tokens``, ``n``,
        ``presence_penalty``, ``return_raw_tokens``, ``seed``, ``stop``, ``stream``,
        ``stream_options``, ``suffix``, ``temperature``, ``top_p``, ``user``, and onrails'
        ``grammar_root``, ``grammar`` + ``grammar_start``, ``response_format``, ``whitespace``,
        ``top_k``, ``repetition_penalty``, ``logprobs_mode``, ``ensure_parsable``,
        ``jump_forward``. Raises ``BadRequestError`` (naming the parameter) before any work.
        """
        plan, streaming = _plan_completion(self._client.model, {**params, "stream": stream})
        if streaming:
            return _stream_completion(plan)
        return _completion(plan, generate_sequences(plan.model, plan.requests, plan.timing))


class ChatCompletions:
    """``client.chat.completions``: chat completions, with tools and structured output."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    @overload
    def create(self, *, stream: Literal[True], **params: Any) -> Iterator[ChatCompletionChunk]: ...

    @overload
    def create(self, *, stream: Literal[False] | None = None, **params: Any) -> ChatCompletion: ...

    def create(self, *, stream: bool | None = None, **params: Any) -> "ChatCompletion | Iterator[ChatCompletionChunk]":
        """Answer ``messages`` through the model's chat template; see the SDK.

        Parameters: ``messages``, ``model``, ``frequency_penalty``, ``logit_bias``,
        ``logprobs`` (bool) + ``top_logprobs``, ``max_completion_tokens`` / ``max_tokens``,
        ``min_tokens``, ``n``, ``parallel_tool_calls``, ``presence_penalty``,
        ``response_format`` (dict or pydantic class: ``message.parsed``), ``seed``, ``stop``,
        ``stream``, ``stream_options``, ``temperature``, ``tool_choice``, ``tools``, ``top_p``,
        ``user``, and the onrails extras of ``completions.create``.
        """
        plan, streaming = _plan_chat(self._client.model, {**params, "stream": stream})
        if streaming:
            return _stream_chat(plan)
        return _chat_completion(plan, generate_sequences(plan.model, plan.requests, plan.timing))


class Chat:
    """``client.chat``."""

    def __init__(self, client: "Client") -> None:
        self.completions = ChatCompletions(client)


class Client:
    """A local, offline stand-in for the Cerebras SDK client, over one loaded model.

    ``model``: a loaded ``Model``, a name or path for ``load_model`` (default: the default
    model). Loading happens here, once; requests then share the model (one at a time).
    """

    def __init__(self, model: "Model | str | None" = None, *, device: Any = None, dtype: Any = None) -> None:
        if isinstance(model, Model):
            self.model = model
        else:
            from onrails.runtime.models import load_model
            from onrails.runtime.tokenizers import DEFAULT_MODEL

            self.model = load_model(model or DEFAULT_MODEL, device=device, dtype=dtype)
        self.completions = Completions(self)
        self.chat = Chat(self)


class _AsyncCompletions:
    def __init__(self, sync: Completions) -> None:
        self._sync = sync

    @overload
    async def create(self, *, stream: Literal[True], **params: Any) -> AsyncIterator[Completion]: ...

    @overload
    async def create(self, *, stream: Literal[False] | None = None, **params: Any) -> Completion: ...

    async def create(self, *, stream: bool | None = None, **params: Any) -> "Completion | AsyncIterator[Completion]":
        """As ``Client.completions.create``, off the event loop; streams are async iterators."""
        plan, streaming = _plan_completion(self._sync._client.model, {**params, "stream": stream})
        if streaming:
            return _aiter(_stream_completion(plan))
        results = await asyncio.to_thread(generate_sequences, plan.model, plan.requests, plan.timing)
        return _completion(plan, results)


class _AsyncChatCompletions:
    def __init__(self, sync: ChatCompletions) -> None:
        self._sync = sync

    @overload
    async def create(self, *, stream: Literal[True], **params: Any) -> AsyncIterator[ChatCompletionChunk]: ...

    @overload
    async def create(self, *, stream: Literal[False] | None = None, **params: Any) -> ChatCompletion: ...

    async def create(
        self, *, stream: bool | None = None, **params: Any
    ) -> "ChatCompletion | AsyncIterator[ChatCompletionChunk]":
        """As ``Client.chat.completions.create``, off the event loop; streams are async iterators."""
        plan, streaming = _plan_chat(self._sync._client.model, {**params, "stream": stream})
        if streaming:
            return _aiter(_stream_chat(plan))
        results = await asyncio.to_thread(generate_sequences, plan.model, plan.requests, plan.timing)
        return _chat_completion(plan, results)


class _AsyncChat:
    def __init__(self, sync: Chat) -> None:
        self.completions = _AsyncChatCompletions(sync.completions)


class AsyncClient:
    """``Client`` for asyncio: the same surface with ``await``; decoding runs in a worker thread."""

    def __init__(self, model: "Model | str | None" = None, *, device: Any = None, dtype: Any = None) -> None:
        self._client = Client(model, device=device, dtype=dtype)
        self.model = self._client.model
        self.completions = _AsyncCompletions(self._client.completions)
        self.chat = _AsyncChat(self._client.chat)


async def _aiter(items: Iterator[Any]) -> AsyncIterator[Any]:
    """Drive a blocking iterator from a worker thread, one item at a time."""
    done = object()
    while True:
        item = await asyncio.to_thread(next, items, done)
        if item is done:
            return
        yield item
