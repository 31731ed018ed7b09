"""Typed responses of ``Client.completions`` / ``Client.chat.completions`` (pydantic models).

Names, fields and literal values follow the Cerebras Cloud SDK (itself OpenAI-compatible), so
code written against it reads onrails results unchanged. All times are in seconds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionChunkChoice",
    "ChatCompletionChoice",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "ChatCompletionTokenLogprob",
    "ChatCompletionTopLogprob",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChoiceLogprobs",
    "Completion",
    "CompletionChoice",
    "CompletionLogprobs",
    "CompletionTokensDetails",
    "CompletionUsage",
    "FinishReason",
    "Function",
    "PromptTokensDetails",
    "TimeInfo",
]

FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]


class TimeInfo(BaseModel):
    """Where a request's time went: waiting for the model, the prompt, the completion."""

    queue_time: float | None = None
    prompt_time: float | None = None
    completion_time: float | None = None
    total_time: float | None = None
    created: float | None = None


class CompletionTokensDetails(BaseModel):
    accepted_prediction_tokens: int | None = None
    reasoning_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class PromptTokensDetails(BaseModel):
    cached_tokens: int | None = None


class CompletionUsage(BaseModel):
    """Token counts: each prompt once, every generated sequence (``best_of`` included)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails | None = None
    prompt_tokens_details: PromptTokensDetails | None = None


class CompletionLogprobs(BaseModel):
    """Per token: its text, log-probability, top alternatives and character offset in ``text``.

    With ``echo`` the prompt's tokens come first; the first has no log-probability (None).
    """

    text_offset: list[int] | None = None
    token_logprobs: list[float | None] | None = None
    tokens: list[str] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str | None = None
    finish_reason: FinishReason | None = None
    logprobs: CompletionLogprobs | None = None
    tokens: list[int] | None = None


class Completion(BaseModel):
    """A text completion, or one chunk of a streamed one (same shape, partial ``choices``)."""

    id: str
    choices: list[CompletionChoice]
    created: int
    model: str
    object: Literal["text_completion"] = "text_completion"
    system_fingerprint: str
    time_info: TimeInfo | None = None
    usage: CompletionUsage | None = None


class Function(BaseModel):
    """A tool call's function: ``arguments`` is JSON text valid under the tool's parameters."""

    name: str
    arguments: str


class ChatCompletionMessageToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: Function
    index: int | None = None


class ChatCompletionMessage(BaseModel):
    """The assistant's reply: text ``content`` or ``tool_calls``; ``parsed`` holds the instance
    of a pydantic ``response_format`` (excluded from serialisation)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    role: Literal["assistant", "user", "system", "tool"] = "assistant"
    content: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None
    parsed: Any = Field(default=None, exclude=True)


class ChatCompletionTopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(BaseModel):
    token: str
    logprob: float
    top_logprobs: list[ChatCompletionTopLogprob]
    bytes: list[int] | None = None


class ChoiceLogprobs(BaseModel):
    content: list[ChatCompletionTokenLogprob] | None = None


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatCompletionMessage
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    choices: list[ChatCompletionChoice]
    created: int
    model: str
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str
    time_info: TimeInfo | None = None
    usage: CompletionUsage | None = None


class _Fragment(BaseModel):
    """A streamed tool-call fragment serialises only the fields it carries: OpenAI's stream helper
    concatenates every value it receives, and OpenAI's own fragments leave the others out."""

    @model_serializer(mode="wrap")
    def _carried(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChoiceDeltaToolCallFunction(_Fragment):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(_Fragment):
    """A call's first fragment has ``id`` and ``function.name``; later ones ``arguments`` pieces."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDelta(BaseModel):
    role: Literal["assistant", "user", "system", "tool"] | None = None
    content: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None
    tokens: list[int] | None = None


class ChatCompletionChunkChoice(BaseModel):
    index: int
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    choices: list[ChatCompletionChunkChoice]
    created: int
    model: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str
    time_info: TimeInfo | None = None
    usage: CompletionUsage | None = None
