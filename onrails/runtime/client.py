"""``onrails.Client`` / ``onrails.AsyncClient``: the Cerebras SDK's surface over a local model.

``client.completions.create(...)`` and ``client.chat.completions.create(...)`` take the SDK's
parameters (plus onrails' constraint and sampling extras) and return the typed objects of
:mod:`onrails.runtime.types`; ``stream=True`` returns an iterator of chunks. Every parameter is
checked before any work starts (:mod:`onrails.runtime.planning`): an invalid one raises
``BadRequestError`` naming it. The responses are built by :mod:`onrails.runtime.responses`.

Tools: the model sees them through its chat template when the template handles tools, else
through a system message (``TOOLS_SYSTEM_PROMPT``). The tools grammar makes the reply either a
JSON array of calls ``[{"name": ..., "arguments": {...}}]`` or plain text (``tool_choice="auto"``),
never ambiguous; calls come back as ``message.tool_calls`` with arguments valid under each
tool's ``parameters`` (:mod:`onrails.runtime.chat`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, overload

from onrails.runtime.chat import TOOLS_SYSTEM_PROMPT
from onrails.runtime.generation import generate_sequences
from onrails.runtime.models import Model
from onrails.runtime.planning import plan_chat, plan_completion
from onrails.runtime.responses import chat_completion, completion, stream_chat, stream_completion
from onrails.runtime.types import ChatCompletion, ChatCompletionChunk, Completion

__all__ = ["TOOLS_SYSTEM_PROMPT", "AsyncClient", "Client"]


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
        ``top_k``, ``min_p``, ``repetition_penalty``, ``logprobs_mode``, ``ensure_parsable``,
        ``jump_forward``. Raises ``BadRequestError`` (naming the parameter) before any work.
        """
        plan, streaming = plan_completion(self._client.model, {**params, "stream": stream})
        if streaming:
            return stream_completion(plan)
        return completion(plan, generate_sequences(plan.model, plan.requests, plan.timing))


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
        plan, streaming = plan_chat(self._client.model, {**params, "stream": stream})
        if streaming:
            return stream_chat(plan)
        return chat_completion(plan, generate_sequences(plan.model, plan.requests, plan.timing))


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
        plan, streaming = plan_completion(self._sync._client.model, {**params, "stream": stream})
        if streaming:
            return _aiter(stream_completion(plan))
        results = await asyncio.to_thread(generate_sequences, plan.model, plan.requests, plan.timing)
        return completion(plan, results)


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
        plan, streaming = plan_chat(self._sync._client.model, {**params, "stream": stream})
        if streaming:
            return _aiter(stream_chat(plan))
        results = await asyncio.to_thread(generate_sequences, plan.model, plan.requests, plan.timing)
        return chat_completion(plan, results)


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
