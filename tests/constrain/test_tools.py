"""OpenAI-style tools specialise the built-in function-calling rules."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import jsonschema
import pytest

from onrails import GrammarCompiler, Matcher, SchemaError, tools_to_grammar
from onrails.constrain.compiled import CompiledGrammar
from tests.constrain.small_vocab import small_vocabulary
from tests.constrain.walks import random_walk

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
NOARGS = {"type": "function", "function": {"name": "now"}}
TOOLS = [WEATHER, NOARGS]
CALL = '[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]'
TWO_CALLS = '[{"name": "now", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]'


@pytest.fixture(scope="module")
def compiler() -> GrammarCompiler:
    return GrammarCompiler(small_vocabulary())


def _accepts(compiled: CompiledGrammar, text: str) -> bool:
    m = Matcher(compiled)
    return m.advance_bytes(text.encode()) and m.is_accepting()


def test_auto_allows_a_call_or_a_text_answer(compiler: GrammarCompiler) -> None:
    compiled = compiler.compile_tools(TOOLS)
    assert compiled.roots == ("root",)
    assert _accepts(compiled, CALL)
    assert _accepts(compiled, TWO_CALLS)
    assert _accepts(compiled, "It is sunny.")


def test_required_allows_only_calls(compiler: GrammarCompiler) -> None:
    compiled = compiler.compile_tools(TOOLS, tool_choice="required")
    assert _accepts(compiled, CALL)
    assert not _accepts(compiled, "It is sunny.")


def test_none_allows_only_text(compiler: GrammarCompiler) -> None:
    compiled = compiler.compile_tools(TOOLS, tool_choice="none")
    assert _accepts(compiled, "It is sunny.")
    assert not _accepts(compiled, CALL)


def test_a_named_tool_choice_allows_calls_of_that_tool_only(compiler: GrammarCompiler) -> None:
    compiled = compiler.compile_tools(TOOLS, tool_choice={"type": "function", "function": {"name": "now"}})
    assert _accepts(compiled, '[{"name": "now", "arguments": {}}]')
    assert not _accepts(compiled, CALL)


def test_without_parallel_calls_the_turn_is_a_one_element_array(compiler: GrammarCompiler) -> None:
    compiled = compiler.compile_tools(TOOLS, tool_choice="required", parallel_tool_calls=False)
    assert _accepts(compiled, CALL)
    assert not _accepts(compiled, TWO_CALLS)


def test_names_outside_the_tools_and_invalid_arguments_are_rejected(compiler: GrammarCompiler) -> None:
    compiled = compiler.compile_tools(TOOLS, tool_choice="required")
    assert not _accepts(compiled, '[{"name": "get_time", "arguments": {}}]')
    assert not _accepts(compiled, '[{"name": "get_weather", "arguments": {"unit": "c"}}]')
    assert not _accepts(compiled, '[{"name": "get_weather", "arguments": {"city": "Paris", "x": 1}}]')
    assert not _accepts(compiled, '[{"name": "get_weather", "arguments": {"city": "a very long city name"}}]')


def test_compact_whitespace_leaves_no_blank_between_tokens(compiler: GrammarCompiler) -> None:
    compiled = compiler.compile_tools(TOOLS, tool_choice="required", whitespace="compact")
    assert _accepts(compiled, json.dumps(json.loads(CALL), separators=(",", ":")))
    assert not _accepts(compiled, CALL)


@pytest.mark.parametrize(
    ("mode", "allowed", "refused"),
    [("flexible", ["\n\n\r  ", " " * 40], []), ("bounded", ["\n" + " " * 32, "\t "], [" " * 33, "\n\n", " \n"])],
)
def test_arguments_take_the_same_whitespace_as_the_call_around_them(
    compiler: GrammarCompiler, mode: str, allowed: list[str], refused: list[str]
) -> None:
    # The call's own punctuation comes from the built-in grammar, the arguments' from the
    # tool's schema: a blank run reads alike in both, per mode.
    compiled = compiler.compile_tools(TOOLS, tool_choice="required", whitespace=mode)
    for blank in allowed + refused:
        outside = CALL.replace('"arguments":', f'"arguments"{blank}:')
        inside = CALL.replace('"city":', f'"city"{blank}:')
        assert _accepts(compiled, outside) == (blank in allowed), (mode, outside)
        assert _accepts(compiled, inside) == (blank in allowed), (mode, inside)


def test_random_calls_name_a_tool_and_validate_its_parameters(compiler: GrammarCompiler) -> None:
    compiled = compiler.compile_tools(TOOLS, tool_choice="required", whitespace="compact")
    by_name = {t["function"]["name"]: t["function"].get("parameters", {"type": "object"}) for t in TOOLS}
    rng = np.random.default_rng(3)
    finished = 0
    for _ in range(40):
        out, done = random_walk(Matcher(compiled), rng, max_steps=200, end_bias=0.5)
        if not done:
            continue
        finished += 1
        for call in json.loads(out):
            assert list(call) == ["name", "arguments"]
            jsonschema.validate(call["arguments"], by_name[call["name"]])
    assert finished >= 5


@pytest.mark.parametrize(
    ("tools", "choice", "pointer"),
    [
        ([{"type": "function"}], "auto", "/0"),
        ([NOARGS, NOARGS], "auto", "/1/function/name"),
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "minProperties": -1}}}], "auto", "/0/function/parameters/minProperties"),
    ],
)
def test_malformed_tools_raise_schema_error_with_a_pointer(tools: Any, choice: Any, pointer: str) -> None:
    with pytest.raises(SchemaError) as info:
        tools_to_grammar(tools, tool_choice=choice)
    assert info.value.pointer == pointer


@pytest.mark.parametrize("choice", ["sometimes", {"type": "function", "function": {"name": "missing"}}, {"name": "now"}])
def test_unknown_tool_choices_raise_schema_error(choice: Any) -> None:
    with pytest.raises(SchemaError):
        tools_to_grammar(TOOLS, tool_choice=choice)


def test_parameters_with_definitions_and_no_type_still_resolve_their_refs(compiler: GrammarCompiler) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"$defs": {"n": {"type": "integer"}}, "properties": {"n": {"$ref": "#/$defs/n"}}}}}
    compiled = compiler.compile_tools([tool], tool_choice="required")
    assert _accepts(compiled, '[{"name": "f", "arguments": {"n": 3}}]')
    assert not _accepts(compiled, '[{"name": "f", "arguments": {"n": "3"}}]')
    assert not _accepts(compiled, '[{"name": "f", "arguments": 3}]')
