"""Response building: the typed objects of :mod:`onrails.runtime.types` from a ``Plan`` and its
decoded sequences, whole (``completion``, ``chat_completion``) or as stream chunks
(``stream_completion``, ``stream_chat``), with logprobs, usage, time info and the fingerprint.

Under the tools grammar a reply that starts a JSON array is a tool-call turn: it comes back as
``message.tool_calls`` (streamed: ``delta.tool_calls`` fragments), with each call's arguments
the exact text the model wrote; any other reply is plain content.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterable, Iterator

from onrails.runtime.chat import BLANKS, Turn, calling
from onrails.runtime.generation import SequenceResult, held_back_chars, stream_sequences
from onrails.runtime.models import Model
from onrails.runtime.planning import Plan
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
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionUsage,
    Function,
    TimeInfo,
)

__all__ = ["chat_completion", "completion", "stream_chat", "stream_completion"]


def _chosen(plan: Plan, results: list[SequenceResult]) -> list[SequenceResult]:
    """The ``n`` choices of each prompt: the best ``best_of`` by cumulative log-probability."""
    out: list[SequenceResult] = []
    for p in range(len(plan.prompts)):
        group = results[p * plan.best_of : (p + 1) * plan.best_of]
        if plan.best_of > plan.n:
            group = sorted(group, key=lambda r: r.cumulative_logprob, reverse=True)[: plan.n]
        out.extend(group)
    return out


def _usage(plan: Plan, results: list[SequenceResult]) -> CompletionUsage:
    prompt = sum(len(ids) for ids in plan.prompts)
    generated = sum(len(r.token_ids) for r in results)
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=generated, total_tokens=prompt + generated)


def _time_info(plan: Plan) -> TimeInfo:
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


def _completion_logprobs(plan: Plan, r: SequenceResult, prompt_index: int, upto: int | None = None) -> CompletionLogprobs:
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


def completion(plan: Plan, results: list[SequenceResult]) -> Completion:
    """The ``Completion`` of ``plan`` from its decoded ``results`` (one per request, in order):
    the ``n`` best of each prompt's ``best_of``. Cost: linear in the tokens (logprobs included)."""
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


def stream_completion(plan: Plan, steps: Iterable[list[SequenceResult]] | None = None) -> Iterator[Completion]:
    """Chunks of a streamed completion, lazily: decoding runs as it is iterated. ``steps``: the
    cumulative results after each decoding step (default: decode here); the server passes its
    scheduler's. Cost per chunk: the new text and tokens (and their logprobs)."""
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
                    Plan(**{**plan.__dict__, "echo": False}), r, i // plan.n, upto=ready
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


def _calling(plan: Plan, text: str) -> bool:
    """Whether ``text`` begins a tool-call turn of a request with tools."""
    return plan.tools and calling(text)


def _chat_logprobs(plan: Plan, r: SequenceResult, start: int = 0, upto: int | None = None) -> ChoiceLogprobs:
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


def _message(plan: Plan, r: SequenceResult) -> tuple[ChatCompletionMessage, str]:
    turn = Turn()
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


def chat_completion(plan: Plan, results: list[SequenceResult]) -> ChatCompletion:
    """The ``ChatCompletion`` of ``plan`` from its decoded ``results`` (one per choice): content,
    ``parsed`` for a pydantic ``response_format``, or tool calls. Cost: linear in the tokens."""
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


def stream_chat(plan: Plan, steps: Iterable[list[SequenceResult]] | None = None) -> Iterator[ChatCompletionChunk]:
    """Chunks of a streamed chat completion, lazily: a role chunk, content or tool-call
    fragments, then usage if asked; ``steps`` as in ``stream_completion``. Cost per chunk: the
    new text and tokens (and their logprobs)."""
    count = len(plan.requests)
    sent_text = [0] * count
    sent_tokens = [0] * count
    done = [False] * count
    turns = [Turn() for _ in range(count)]
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
            tool_turn = _calling(plan, r.text[:stable])
            if tool_turn:
                turns[i].feed(r.text[:stable])
                # A turn that ends before naming a call goes out as text, as _message answers it.
                tool_turn = bool(turns[i].calls) or not r.finished
            if tool_turn:
                calls = turns[i].fragments()
                if not calls and not r.finished:
                    continue  # tokens and logprobs go with the next fragment
                delta = ChoiceDelta(tool_calls=calls or None)
                if r.finished:
                    finish = turns[i].finish_reason(r)
            else:
                if plan.tools and not r.finished and not r.text[:stable].strip(BLANKS):
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
