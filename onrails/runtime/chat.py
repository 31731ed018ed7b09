"""Chat templating and tool-call turns: shaping ``messages`` for a chat template, the tools
system prompt, and reading a tool-call turn as its text grows.

Tools: the model sees them through its chat template when the template handles tools, else
through a system message (``TOOLS_SYSTEM_PROMPT``). The tools grammar makes the reply either a
JSON array of calls ``[{"name": ..., "arguments": {...}}]`` or plain text (``tool_choice="auto"``),
never ambiguous; ``Turn`` finds the calls in that array, whole or cut short.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from onrails.errors import BadRequestError
from onrails.runtime.generation import SequenceResult
from onrails.runtime.types import ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction

__all__ = ["BLANKS", "TOOLS_SYSTEM_PROMPT", "Call", "Turn", "calling", "template_messages", "with_tools_prompt"]

#: How tools are shown to a model whose chat template has no tool support ({tools}: their JSON).
TOOLS_SYSTEM_PROMPT = (
    "You can call these tools (JSON Schema of each tool's arguments):\n{tools}\n"
    "To call tools, reply with only a JSON array of calls, each "
    '{{"name": "<tool name>", "arguments": {{...}}}}. Otherwise reply in plain text.'
)
#: The whitespace a tool-call turn may start with.
BLANKS = " \t\r\n"
_ROLES = ("system", "user", "assistant", "tool", "developer")


def template_messages(messages: Any, template_has_tools: bool) -> list[dict[str, Any]]:
    """``messages`` (the SDK's form) checked and shaped for a chat template: text parts joined,
    ``developer`` as ``system``; past tool calls kept for a template that handles tools, else
    written as the tools grammar's JSON. Raises ``BadRequestError`` naming the bad field.
    Cost: linear in the messages."""
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


def with_tools_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with ``TOOLS_SYSTEM_PROMPT`` describing ``tools`` (appended to a leading
    system message, else one put first); a new list, ``messages`` untouched. Cost: the tools' JSON."""
    described = json.dumps([t["function"] for t in tools], indent=1)
    text = TOOLS_SYSTEM_PROMPT.format(tools=described)
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0], content=messages[0]["content"] + "\n\n" + text)
        return [first] + messages[1:]
    return [{"role": "system", "content": text}] + messages


@dataclass
class Call:
    """One call of a tool-call turn as far as it is written; ``arguments`` is the raw text of its
    arguments object, whole or cut where the text ends."""

    name: str
    id: str = field(default_factory=lambda: "call_" + secrets.token_hex(12))
    arguments: str = ""
    sent: int | None = None  # how much of ``arguments`` a stream has sent; None: not announced yet


class Turn:
    """A tool-call turn ``[{"name": ..., "arguments": {...}}, ...]`` read as its text grows.

    The tools grammar only lets the model write a prefix of such a turn, so following strings and
    bracket depth finds each call's name and the slice of text holding its arguments. Whole and
    streamed responses both take ``arguments`` from that raw slice (not a re-serialisation), so a
    stream's fragments concatenate to exactly the non-streamed string.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.closed = False  # the turn's final "]" has been read
        self._read = 0
        self._depth = 0  # 1: in the array, 2: in a call, 3 and more: in its arguments
        self._string: int | None = None  # where the string being read starts
        self._escaped = False
        self._strings = 0  # strings closed at the current call's level: "name", the name, "arguments"
        self._arguments: int | None = None  # where the open arguments object starts

    def feed(self, text: str) -> None:
        """Read ``text``, the turn so far: it extends the text of the previous call.
        Cost: linear in what ``text`` adds."""
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
                            self.calls.append(Call(json.loads(text[self._string : pos + 1])))
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
        """``tool_calls`` once the turn's array is closed, else ``r``'s own reason. O(1)."""
        return "tool_calls" if self.closed else r.finish_reason

    def fragments(self) -> list[ChoiceDeltaToolCall]:
        """What the calls gained since the last fragments: a call's first fragment carries its id
        and name (OpenAI's stream helper concatenates repeats), later ones arguments pieces only.
        Cost: linear in the calls and the new arguments text."""
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


def calling(text: str) -> bool:
    """Whether ``text`` begins a tool-call turn (the tools grammar's other branch is plain
    text); only meaningful for a reply under the tools grammar. Cost: O(leading blanks)."""
    return text.lstrip(BLANKS).startswith("[")
