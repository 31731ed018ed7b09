"""onrails inside vLLM's engine (skipped without vLLM): `make test-vllm` runs it in its own venv."""

from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("vllm")

import jsonschema  # noqa: E402
import numpy as np  # noqa: E402
from lark import Lark  # noqa: E402

from onrails.constrain import builtin_grammar_text  # noqa: E402

PROCESSOR = "onrails.runtime.vllm:OnRailsLogitsProcessor"
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "enum": ["Paris", "Oslo", "Lima"]},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
ARITHMETIC = Path(__file__).resolve().parent.parent / "grammars" / "arithmetic.lark"


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    from vllm import LLM

    from onrails.runtime.models import weights_folder

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    engine = LLM(
        model=str(weights_folder("smollm2-135m-instruct")),
        dtype="bfloat16",
        max_model_len=2048,
        seed=0,
        logits_processors=[PROCESSOR],
    )
    yield engine
    # Shut the engine's processes down while pytest's streams are still open.
    engine.llm_engine.engine_core.shutdown()


def _params(constraint: dict[str, Any] | None, **kwargs: Any) -> Any:
    from vllm import SamplingParams

    kwargs.setdefault("max_tokens", 96)
    extra = {"onrails": constraint} if constraint is not None else None
    return SamplingParams(extra_args=extra, **kwargs)


def _texts(llm: Any, prompts: list[str], params: Any) -> list[str]:
    return [out.outputs[0].text for out in llm.generate(prompts, params, use_tqdm=False)]


def test_grammar_root_object_outputs_are_json_objects(llm: Any) -> None:
    texts = _texts(llm, ["A JSON object describing a cat:"] * 8, _params({"grammar_root": "object"}, temperature=1.0, seed=3))
    for text in texts:
        assert isinstance(json.loads(text), dict), text


def test_lark_grammar_with_start_rule_constrains_output(llm: Any) -> None:
    grammar = ARITHMETIC.read_text()
    parser = Lark(grammar, start="start")
    texts = _texts(llm, ["Write a sum:"] * 4, _params({"grammar": grammar, "start": "start"}, temperature=0.8, seed=1))
    for text in texts:
        parser.parse(text)


def test_json_schema_outputs_validate(llm: Any) -> None:
    texts = _texts(llm, ["A person as JSON:"] * 6, _params({"json_schema": PERSON}, temperature=1.0, seed=5))
    for text in texts:
        jsonschema.validate(json.loads(text), PERSON)


def test_maskbench_schema_outputs_validate(llm: Any, shared_dir: Path) -> None:
    path = shared_dir / "maskbench" / "dev" / "BFCL_simple_0.json"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    schema = json.loads(path.read_text())["schema"]
    params = _params({"json_schema": schema}, temperature=0.7, seed=11, max_tokens=128)
    outputs = llm.generate(["Call the function, as JSON:"] * 6, params, use_tqdm=False)
    for out in outputs:
        assert out.outputs[0].finish_reason == "stop", out.outputs[0].text
        jsonschema.validate(json.loads(out.outputs[0].text), schema)


def test_mixed_batch_of_sixteen_requests_all_valid(llm: Any) -> None:
    from tests.reference import ReferenceGrammar

    roots = ["object", "array", "value", "number", "string", "func", "funcarray", "fcall", "nofcall"]
    requests: list[tuple[str, dict[str, Any] | None]] = [(r, {"grammar_root": r}) for r in roots]
    requests += [("schema", {"json_schema": PERSON})] * 3
    requests += [("tools", {"tools": [WEATHER_TOOL], "tool_choice": "required", "parallel_tool_calls": False})] * 2
    requests += [("grammar", {"grammar": ARITHMETIC.read_text()}), ("free", None)]
    assert len(requests) == 16
    params = [_params(c, temperature=0.9, seed=i, max_tokens=160) for i, (_, c) in enumerate(requests)]
    outputs = llm.generate(["Answer in the requested format:"] * 16, params, use_tqdm=False)
    builtin = builtin_grammar_text("bounded")
    for (kind, _), out in zip(requests, outputs):
        text, finished = out.outputs[0].text, out.outputs[0].finish_reason == "stop"
        if kind in roots:
            reference = ReferenceGrammar(builtin, kind)
            # A root such as "string" may still be going at max_tokens: then it must be a prefix.
            check = reference.accepts if finished else reference.is_viable_prefix
            assert check(text.encode()), (kind, text)
        elif kind == "schema":
            assert finished, text
            jsonschema.validate(json.loads(text), PERSON)
        elif kind == "tools":
            assert finished, text
            calls = json.loads(text)
            assert [c["name"] for c in calls] == ["get_weather"], text
            jsonschema.validate(calls[0]["arguments"], WEATHER_TOOL["function"]["parameters"])
        elif kind == "grammar":
            reference = ReferenceGrammar(ARITHMETIC.read_text(), "start")
            assert (reference.accepts if finished else reference.is_viable_prefix)(text.encode()), text
        else:
            assert out.outputs[0].token_ids, "the unconstrained request generated nothing"


@pytest.mark.parametrize(
    "constraint, message",
    [
        ({"grammar_root": "objet"}, "grammar_root"),
        ({"grammar": "start: undefined_rule"}, "undefined"),
        ({"grammar_root": "object", "json_schema": {}}, "exactly one"),
        ({"json_schema": {"type": "strin"}}, "json_schema"),
        ({"grammar_root": "object", "whitespace": "wide"}, "whitespace"),
    ],
)
def test_bad_arguments_fail_only_that_request(llm: Any, constraint: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        llm.generate(["x"], _params(constraint), use_tqdm=False)
    # The engine is still serving, constraints included.
    (text,) = _texts(llm, ["Yes or no?"], _params({"json_schema": {"enum": ["yes", "no"]}}, temperature=0))
    assert json.loads(text) in ("yes", "no")


def test_end_token_only_where_the_grammar_accepts(llm: Any) -> None:
    # Hot sampling cannot stop early ("ye") nor run on ("yes, and"): the stop id is allowed
    # exactly when the grammar accepts, and then it is the only choice.
    grammar = 'start: "yes" | "no" | "maybe not"'
    outputs = llm.generate(["Well?"] * 8, _params({"grammar": grammar}, temperature=1.5, seed=2), use_tqdm=False)
    for out in outputs:
        assert out.outputs[0].finish_reason == "stop"
        assert out.outputs[0].text in ("yes", "no", "maybe not")


def test_sequence_follows_vllm_output_list_through_take_backs() -> None:
    from onrails import GrammarCompiler, Matcher
    from onrails.runtime.vllm import _Sequence
    from tests.constrain.small_vocab import small_vocabulary

    vocab = small_vocabulary()
    grammar = GrammarCompiler(vocab).compile_builtin("compact")
    ids = {data: i for i, data in enumerate(vocab.token_bytes) if data is not None}
    output: list[int] = []
    sequence = _Sequence(Matcher(grammar, "array"), output, ends=np.zeros(1, dtype=np.int32))
    output += [ids[b"["], ids[b"1"], ids[b","]]
    sequence.sync()
    assert sequence.matcher is not None and sequence.matcher.num_steps == 3
    # vLLM took the last id back (a preempted request recomputed, a rejected draft) and chose another.
    output[2:] = [ids[b"]"], -1]  # -1: async scheduling's placeholder, filled in later
    sequence.sync()
    assert sequence.matcher.num_steps == 3 and sequence.matcher.is_accepting()
    # A token outside the grammar leaves the request able only to end.
    output[3] = ids[b"x"]
    sequence.sync()
    assert sequence.matcher is None


@pytest.mark.parametrize(
    "constraint",
    [{"json_schema": PERSON}, {"grammar_root": "object"}, {"tools": [WEATHER_TOOL], "tool_choice": "required"}],
    ids=["json_schema", "grammar_root", "tools"],
)
def test_every_kind_of_constraint_defaults_to_bounded_whitespace(constraint: dict[str, Any]) -> None:
    """As in onrails' own runtime: one blank line between JSON tokens, never two (flexible
    whitespace let a small model run on with blank lines to its token limit)."""
    from onrails import GrammarCompiler, Matcher
    from onrails.runtime.vllm import _parse_request
    from tests.constrain.small_vocab import small_vocabulary
    from vllm import SamplingParams

    request = _parse_request(SamplingParams(extra_args={"onrails": constraint}))
    assert request is not None
    grammar, root = request.compile(GrammarCompiler(small_vocabulary()))
    opening = b'[{"name": "get_weather", "arguments": {' if "tools" in constraint else b"{"
    once, twice = Matcher(grammar, root), Matcher(grammar, root)
    assert once.advance_bytes(opening + b"\n  ")
    assert not twice.advance_bytes(opening + b"\n\n")
