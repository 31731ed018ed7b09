"""``onrails.generate`` and the clients on the real default model: constraints, prompts,
response objects, streaming, tools, and every invalid parameter raising BadRequestError."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

import onrails
from onrails import BadRequestError
from onrails.runtime.chat import Turn
from onrails.runtime.client import AsyncClient, Client

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


class Pet(BaseModel):
    name: str
    legs: int


@pytest.fixture(scope="module")
def client(smollm2_model: Any) -> Client:
    return Client(smollm2_model)


def test_generate_returns_text_of_the_default_object_rule(smollm2_model: Any) -> None:
    text = onrails.generate("Describe a cat.", model=smollm2_model, max_tokens=24, seed=1)
    assert isinstance(json.loads(text), dict)
    value = onrails.generate("List two colours.", "array", model=smollm2_model, max_tokens=16, temperature=0, parse=True)
    assert isinstance(value, list)


def test_generate_follows_a_lark_grammar(smollm2_model: Any) -> None:
    grammar = 'start: "Answer: " ("yes" | "no") "."\n'
    text = onrails.generate("Is the sky blue?", model=smollm2_model, grammar=grammar, max_tokens=10, temperature=0)
    assert re.fullmatch(r"Answer: (yes|no)\.", text)


def test_generate_chat_flag_picks_the_template(smollm2_model: Any, client: Client) -> None:
    common = dict(model=smollm2_model, grammar_root=None, max_tokens=8, temperature=0)
    chat = onrails.generate("Name a fruit.", **common)
    plain = onrails.generate("Name a fruit.", chat=False, **common)
    via_chat = client.chat.completions.create(messages=[{"role": "user", "content": "Name a fruit."}], max_tokens=8, temperature=0)
    via_completion = client.completions.create(prompt="Name a fruit.", max_tokens=8, temperature=0)
    assert chat == via_chat.choices[0].message.content
    assert plain == via_completion.choices[0].text
    assert chat != plain


def test_json_schema_samples_validate(smollm2_model: Any, client: Client) -> None:
    result = client.chat.completions.create(
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
        n=6,
        seed=3,
        max_tokens=24,
    )
    assert len(result.choices) == 6
    for choice in result.choices:
        jsonschema.validate(json.loads(choice.message.content or ""), PERSON)


def test_pydantic_response_format_parses(smollm2_model: Any, client: Client) -> None:
    pet = onrails.generate("Invent a pet.", model=smollm2_model, response_format=Pet, max_tokens=24, seed=1, parse=True)
    assert isinstance(pet, Pet)
    result = client.chat.completions.create(
        messages=[{"role": "user", "content": "Invent a pet."}], response_format=Pet, max_tokens=24, seed=2
    )
    assert isinstance(result.choices[0].message.parsed, Pet)


def test_completion_response_objects(client: Client) -> None:
    r = client.completions.create(prompt=["Once upon a time", [504, 3213, 314]], n=2, max_tokens=6, seed=5)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and r.system_fingerprint.startswith("fp_")
    assert r.usage is not None and r.usage.prompt_tokens == len(client.model.encode("Once upon a time")) + 3
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    t = r.time_info
    assert t is not None and t.total_time is not None and t.prompt_time is not None and t.completion_time is not None
    assert t.total_time >= t.prompt_time + t.completion_time - 1e-6
    assert r.choices[0].text != r.choices[1].text  # the choices of one prompt sample apart


def test_token_id_prompts_equal_text_prompts(client: Client) -> None:
    ids = client.model.encode("The capital of France is")
    r = client.completions.create(prompt=["The capital of France is", ids], max_tokens=6, temperature=0)
    assert r.choices[0].text == r.choices[1].text


def test_echo_prepends_the_prompt_and_scores_it(client: Client) -> None:
    prompt = "The capital of France is"
    plain = client.completions.create(prompt=prompt, max_tokens=5, temperature=0)
    echo = client.completions.create(prompt=prompt, max_tokens=5, temperature=0, echo=True, logprobs=1)
    choice = echo.choices[0]
    assert choice.text == prompt + (plain.choices[0].text or "")
    lp = choice.logprobs
    assert lp is not None and lp.tokens is not None and lp.text_offset is not None and lp.token_logprobs is not None
    n_prompt = len(client.model.encode(prompt))
    assert lp.token_logprobs[0] is None and all(v is not None for v in lp.token_logprobs[1:])
    assert len(lp.tokens) == n_prompt + 5
    for token, offset in zip(lp.tokens, lp.text_offset):
        assert (choice.text or "")[offset : offset + len(token)] == token


def test_raw_tokens_round_trip_through_the_tokenizer(client: Client) -> None:
    text = client.completions.create(prompt="Once upon a time, in a land", max_tokens=8, temperature=0)
    raw = client.completions.create(prompt="Once upon a time, in a land", max_tokens=8, temperature=0, return_raw_tokens=True)
    choice = raw.choices[0]
    assert choice.text == "" and choice.tokens
    assert client.model.tokenizer.decode(choice.tokens) == text.choices[0].text


def test_best_of_returns_the_most_likely_sample(client: Client) -> None:
    prompt = "My favourite animal is"
    all_three = client.completions.create(prompt=prompt, n=3, max_tokens=5, seed=11, logprobs=0)
    best = client.completions.create(prompt=prompt, best_of=3, max_tokens=5, seed=11)
    totals = [sum(c.logprobs.token_logprobs or []) for c in all_three.choices if c.logprobs]  # type: ignore[arg-type]
    assert best.choices[0].text == all_three.choices[totals.index(max(totals))].text
    assert best.usage is not None and best.usage.completion_tokens == all_three.usage.completion_tokens  # type: ignore[union-attr]


def test_streaming_concatenates_to_the_non_streamed_text(client: Client) -> None:
    common: dict[str, Any] = dict(prompt="Describe a dog as JSON.", max_tokens=16, temperature=0, grammar_root="object")
    whole = client.completions.create(**common)
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **common))
    assert "".join(c.choices[0].text or "" for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    # stop strings are held back while they may still be completing
    stopped = dict(common, stop=['"', "}"], grammar_root=None)
    whole = client.completions.create(**stopped)
    streamed = "".join(c.choices[0].text or "" for c in client.completions.create(stream=True, **stopped) if c.choices)
    assert streamed == whole.choices[0].text


def test_chat_streaming_matches_and_logprobs_cover_the_text(client: Client) -> None:
    messages = [{"role": "user", "content": "Say something nice."}]
    whole = client.chat.completions.create(messages=messages, max_tokens=10, temperature=0, logprobs=True, top_logprobs=2)
    chunks = list(client.chat.completions.create(messages=messages, max_tokens=10, temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    content = whole.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None
    assert bytes(b for t in content for b in t.bytes or []).decode() == whole.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token for t in content)  # greedy


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_time"}}, "auto", "none"])
def test_tool_calls_validate_for_every_tool_choice(smollm2_model: Any, client: Client, tool_choice: Any) -> None:
    result = client.chat.completions.create(
        messages=[{"role": "user", "content": "What is the weather in Paris, in celsius?"}],
        tools=[WEATHER, TIME],
        tool_choice=tool_choice,
        n=2,
        seed=1,
        max_tokens=40,
    )
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}
    for choice in result.choices:
        message = choice.message
        if tool_choice == "none":
            assert message.tool_calls is None and message.content is not None
            continue
        if tool_choice == "auto" and message.tool_calls is None:
            assert choice.finish_reason in ("stop", "length") and not (message.content or "").lstrip().startswith("[")
            continue
        assert choice.finish_reason == "tool_calls" and message.content is None
        assert message.tool_calls
        for call in message.tool_calls:
            assert call.id.startswith("call_") and call.type == "function"
            jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
            if isinstance(tool_choice, dict):
                assert call.function.name == "get_time"


def test_parallel_tool_calls_false_gives_one_call(smollm2_model: Any, client: Client) -> None:
    result = client.chat.completions.create(
        messages=[{"role": "user", "content": "Weather in Paris and in Rome?"}],
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        n=2,
        seed=4,
        max_tokens=40,
    )
    for choice in result.choices:
        assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1


def test_streamed_tool_calls_arrive_in_fragments_that_add_up_to_the_whole_calls(client: Client) -> None:
    # seed 1 makes both choices call two tools in parallel
    common: dict[str, Any] = dict(
        messages=[{"role": "user", "content": "What is the weather in Paris and in Rome, in celsius?"}],
        tools=[WEATHER, TIME],
        tool_choice="required",
        n=2,
        seed=1,
        max_tokens=60,
    )
    whole = client.chat.completions.create(**common)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **common))
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}
    assert any(len(choice.message.tool_calls or []) >= 2 for choice in whole.choices)
    for choice in whole.choices:
        mine = [c for chunk in chunks for c in chunk.choices if c.index == choice.index]
        assert all(c.delta.content is None for c in mine if c.delta.tool_calls)
        assert [c.finish_reason for c in mine if c.finish_reason] == ["tool_calls"] == [choice.finish_reason]
        fragments: dict[int, list[Any]] = {}
        for c in mine:
            for fragment in c.delta.tool_calls or []:
                fragments.setdefault(fragment.index, []).append(fragment)
        calls = choice.message.tool_calls
        assert calls is not None and sorted(fragments) == list(range(len(calls)))
        for call, (first, *rest) in zip(calls, (fragments[j] for j in range(len(calls)))):
            assert first.id.startswith("call_") and first.type == "function" and first.function.name == call.function.name
            assert all(f.id is None and f.type == "function" and f.function.name is None for f in rest)
            arguments = "".join(f.function.arguments for f in (first, *rest))
            assert arguments == call.function.arguments
            jsonschema.validate(json.loads(arguments), schemas[call.function.name])
        # the arguments grow a piece at a time, not in one fragment at the end
        assert max(len(parts) for parts in fragments.values()) > 2


def test_a_tool_call_turn_read_a_character_at_a_time_gives_each_calls_raw_arguments() -> None:
    arguments = ['{"a": "}\\"{[", "b": [1, {"c": {}}]}', "{}"]
    text = f' [{{"name": "f\\u00e9", "arguments": {arguments[0]}}},\n {{"name": "g", "arguments": {arguments[1]} }}]'
    turn = Turn()
    pieces: dict[int, str] = {}
    for end in range(len(text) + 1):
        turn.feed(text[:end])
        for fragment in turn.fragments():
            assert fragment.function is not None
            pieces[fragment.index] = pieces.get(fragment.index, "") + (fragment.function.arguments or "")
        assert turn.closed == (end == len(text))
    assert [(c.name, c.arguments) for c in turn.calls] == [("f\u00e9", arguments[0]), ("g", arguments[1])]
    assert pieces == {0: arguments[0], 1: arguments[1]}
    assert [json.loads(a) for a in arguments] == [c["arguments"] for c in json.loads(text)]


def test_a_text_answer_with_tool_choice_auto_streams_as_content(client: Client) -> None:
    common: dict[str, Any] = dict(messages=[{"role": "user", "content": "Say hello."}], tools=[WEATHER], tool_choice="auto", max_tokens=8, temperature=0)
    whole = client.chat.completions.create(**common)
    chunks = list(client.chat.completions.create(stream=True, **common))
    assert whole.choices[0].message.content and whole.choices[0].message.tool_calls is None
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert all(c.choices[0].delta.tool_calls is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_async_client_creates_and_streams(smollm2_model: Any) -> None:
    client = AsyncClient(smollm2_model)

    async def main() -> tuple[str, str]:
        whole = await client.completions.create(prompt="Hello, my name is", max_tokens=6, temperature=0)
        stream = await client.completions.create(prompt="Hello, my name is", max_tokens=6, temperature=0, stream=True)
        parts = [c.choices[0].text async for c in stream if c.choices]  # type: ignore[union-attr]
        return whole.choices[0].text, "".join(p or "" for p in parts)  # type: ignore[union-attr,return-value]

    whole, streamed = asyncio.run(main())
    assert whole == streamed and whole


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"min_p": -0.1}, "min_p"),
        ({"min_p": 1.5}, "min_p"),
        ({"min_p": "0.1"}, "min_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10_000}, "max_tokens"),
        ({"min_tokens": 5, "max_tokens": 2}, "min_tokens"),
        ({"n": 0}, "n"),
        ({"best_of": 1, "n": 2}, "best_of"),
        ({"logprobs": 21}, "logprobs"),
        ({"logprobs_mode": "cooked"}, "logprobs_mode"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"logit_bias": {"10": 200}}, "logit_bias['10']"),
        ({"logit_bias": {"999999": 1}}, "logit_bias"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"seed": 1.5}, "seed"),
        ({"grammar_root": "nope"}, "grammar_root"),
        ({"grammar": "start: undefined_rule\n"}, "grammar"),
        ({"grammar_root": "object", "grammar": 'start: "a"\n'}, "grammar"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"echo": True, "return_raw_tokens": True}, "return_raw_tokens"),
        ({"stream": True, "best_of": 2}, "best_of"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"suffix": "end"}, "suffix"),
        ({"suffix": "end", "echo": True}, "suffix"),
        ({"whitespace": "lots"}, "whitespace"),
        ({"prompt": "x " * 9000}, "prompt"),
        ({"prompt": [10**7]}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
def test_invalid_completion_parameters_are_bad_requests(client: Client, kwargs: dict[str, Any], param: str) -> None:
    params = {"prompt": "Hi", **kwargs}
    with pytest.raises(BadRequestError) as info:
        client.completions.create(**params)
    assert info.value.param == param
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}}}, "response_format.json_schema.schema"),
        ({"max_tokens": 5, "max_completion_tokens": 5}, "max_tokens"),
        ({"min_tokens": 2, "min_completion_tokens": 2}, "min_tokens"),
        ({"min_completion_tokens": "two"}, "min_tokens"),
        ({"min_p": 1.5}, "min_p"),
    ],
)
def test_invalid_chat_parameters_are_bad_requests(client: Client, kwargs: dict[str, Any], param: str) -> None:
    params = {"messages": [{"role": "user", "content": "Hi"}], **kwargs}
    with pytest.raises(BadRequestError) as info:
        client.chat.completions.create(**params)
    assert info.value.param == param


def test_min_completion_tokens_holds_the_end_back_like_min_tokens(client: Client) -> None:
    """The Cerebras chat signature's min_completion_tokens: "yes" may end after one token, and
    with the minimum at 4 it cannot end before 4."""
    chat = {"messages": [{"role": "user", "content": "Yes?"}], "grammar": 'start: "yes" (" yes")*', "temperature": 0, "max_tokens": 8}
    short = client.chat.completions.create(**chat)
    held = client.chat.completions.create(**chat, min_completion_tokens=4)
    assert short.usage.completion_tokens < 4, short.choices[0].message.content
    assert held.usage.completion_tokens >= 4 and held.choices[0].message.content.startswith("yes yes")


def test_min_p_1_keeps_only_the_top_token_even_at_temperature_2(client: Client) -> None:
    """min_p 1 leaves the top token alone, so hot sampling gives the greedy text, on both
    endpoints; without it the same seeds wander off."""
    completion = {"prompt": "Three fruits are", "max_tokens": 8}
    greedy = client.completions.create(**completion, temperature=0).choices[0].text
    hot = dict(completion, temperature=2, n=3, seed=5)
    assert {c.text for c in client.completions.create(**hot, min_p=1.0).choices} == {greedy}
    assert any(c.text != greedy for c in client.completions.create(**hot, min_p=0.0).choices)
    chat = {"messages": [{"role": "user", "content": "Name a fruit."}], "max_tokens": 8}
    greedy = client.chat.completions.create(**chat, temperature=0).choices[0].message.content
    replies = client.chat.completions.create(**chat, temperature=2, n=2, seed=5, min_p=1.0).choices
    assert {r.message.content for r in replies} == {greedy}


def test_sdk_fields_without_an_effect_here_are_accepted_and_change_nothing(client: Client) -> None:
    plain = {"prompt": "Hi", "max_tokens": 4, "temperature": 0}
    ignored = {"user": "u1", "prompt_cache_key": "k", "service_tier": "auto", "reasoning_effort": "low"}
    assert client.completions.create(**plain, **ignored).choices[0].text == client.completions.create(**plain).choices[0].text
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}
    reply = client.chat.completions.create(**chat, **ignored).choices[0].message.content
    assert reply == client.chat.completions.create(**chat).choices[0].message.content


def test_a_bad_request_leaves_the_model_usable(client: Client) -> None:
    with pytest.raises(BadRequestError):
        client.completions.create(prompt="Hi", grammar="start: (")
    r = client.completions.create(prompt="Hi", max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length")


def test_responses_load_as_the_cerebras_sdk_types(client: Client) -> None:
    sdk = pytest.importorskip("cerebras.cloud.sdk.types")
    from cerebras.cloud.sdk.types.chat.chat_completion import ChatChunkResponse, ChatCompletionResponse
    from cerebras.cloud.sdk.types.completion import CompletionResponse

    assert sdk is not None
    # (echo is left out: its first prompt token has a null logprob, as in OpenAI's API, where
    # the SDK's type declares floats only)
    completion = client.completions.create(prompt="Hi", max_tokens=3, temperature=0, logprobs=1)
    CompletionResponse.model_validate(completion.model_dump())
    chat = client.chat.completions.create(
        messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0, logprobs=True, top_logprobs=1
    )
    parsed = ChatCompletionResponse.model_validate(chat.model_dump())
    assert parsed.choices[0].message.content == chat.choices[0].message.content
    for chunk in client.chat.completions.create(messages=[{"role": "user", "content": "Hi"}], max_tokens=3, stream=True):
        ChatChunkResponse.model_validate(chunk.model_dump())
