"""onrails inside vLLM's engine (skipped without vLLM): `make test-vllm` runs it in its own venv."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

pytest.importorskip("vllm")

import jsonschema  # noqa: E402
import numpy as np  # noqa: E402
from lark import Lark  # noqa: E402
from vllm.v1.sample.logits_processor import BatchUpdate  # noqa: E402

from onrails.constrain import GrammarCompiler, builtin_grammar_text  # noqa: E402
from onrails.errors import QueueFullError  # noqa: E402

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


FOUR_STRINGS = {
    "type": "object",
    "properties": {key: {"type": "string"} for key in ("name", "city", "job", "hobby")},
    "required": ["name", "city", "job", "hobby"],
    "additionalProperties": False,
}
RECORD_LINES = 'start: "name: " TEXT "\\ncity: " TEXT "\\njob: " TEXT "\\n"\nTEXT: /[A-Za-z ,.]+/\n'


def _parses(case: str, text: str) -> bool:
    try:
        if case == "json_schema":
            jsonschema.validate(json.loads(text), FOUR_STRINGS)
        elif case == "array":
            assert isinstance(json.loads(text), list)
        else:
            Lark(RECORD_LINES).parse(text)
    except Exception:
        return False
    return True


@pytest.mark.parametrize(
    "case, constraint, prompt, max_tokens",
    [
        ("json_schema", {"json_schema": FOUR_STRINGS}, "Describe a person as JSON:", 24),
        ("array", {"grammar_root": "array"}, "A JSON array of twenty city names:", 16),
        ("lark", {"grammar": RECORD_LINES}, "Describe a person:", 16),
    ],
)
def test_outputs_at_max_tokens_parse_unless_ensure_parsable_is_off(
    llm: Any, case: str, constraint: dict[str, Any], prompt: str, max_tokens: int
) -> None:
    def outputs(ensure: bool) -> list[Any]:
        params = [
            _params(dict(constraint, ensure_parsable=ensure), temperature=1.0, seed=i, max_tokens=max_tokens)
            for i in range(6)
        ]
        return [out.outputs[0] for out in llm.generate([prompt] * 6, params, use_tqdm=False)]

    # Free decoding is cut off mid-sentence at this max_tokens...
    assert not all(_parses(case, o.text) for o in outputs(False))
    # ...steered, it finishes the grammar in time.
    for out in outputs(True):
        assert _parses(case, out.text) and out.finish_reason in ("length", "stop"), out.text
        assert len(out.token_ids) <= max_tokens


@pytest.mark.parametrize(
    "constraint, message",
    [
        ({"grammar_root": "objet"}, "grammar_root"),
        ({"grammar": "start: undefined_rule"}, "undefined"),
        ({"grammar_root": "object", "json_schema": {}}, "exactly one"),
        ({"json_schema": {"type": "strin"}}, "json_schema"),
        ({"grammar_root": "object", "whitespace": "wide"}, "whitespace"),
        ({"grammar_root": "object", "ensure_parsable": "yes"}, "ensure_parsable"),
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
    sequence = _Sequence(output, ends=np.zeros(1, dtype=np.int32), matcher=Matcher(grammar, "array"))
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


# -- the processor driven directly, on a small vocabulary (no model, no engine) -------------------

THREE_STRINGS = {
    "type": "object",
    "properties": {key: {"type": "string"} for key in ("name", "city", "job")},
    "required": ["name", "city", "job"],
    "additionalProperties": False,
}


class _GatedCompiler(GrammarCompiler):
    """Compiles Lark grammars (not schemas) only once ``gate`` is set."""

    def __init__(self, vocab: Any) -> None:
        super().__init__(vocab)
        self.gate = threading.Event()
        self.entered = threading.Event()  # a compile is waiting at the gate

    def compile_lark(self, grammar: str, start: Any = "start") -> Any:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return super().compile_lark(grammar, start)


class _FullQueueCompiler(GrammarCompiler):
    """Answers every Lark compile as a full compile queue does."""

    def compile_lark(self, grammar: str, start: Any = "start") -> Any:
        raise QueueFullError("64 grammar compiles are running and 0 waiting; try again later")


@pytest.fixture
def small() -> Iterator[Any]:
    """A factory of processors whose process-wide worker is a given compiler on the small
    vocabulary (its tokenizer's ``encode`` splits nothing: spelling is by longest tokens)."""
    from types import SimpleNamespace

    import torch

    from onrails.runtime.vllm import OnRailsLogitsProcessor, _Worker
    from tests.constrain.small_vocab import small_vocabulary

    vocab = small_vocabulary()
    keys = []

    def make(compiler: Any = None, threads: int = 4) -> Any:
        compiler = compiler if compiler is not None else GrammarCompiler(vocab)
        key = (f"small-{len(keys)}", compiler.vocabulary.size)
        keys.append(key)
        _Worker._workers[key] = _Worker(compiler, lambda text: [], threads=threads)
        model = SimpleNamespace(
            tokenizer=key[0], get_vocab_size=lambda: key[1], trust_remote_code=False, max_model_len=4096
        )
        config = SimpleNamespace(model_config=model, scheduler_config=SimpleNamespace(max_num_seqs=threads))
        return OnRailsLogitsProcessor(config, torch.device("cpu"), False)

    make.vocab = vocab
    make.end = max(vocab.eos_token_ids)
    yield make
    for key in keys:
        del _Worker._workers[key]


def _small_params(end: int, constraint: dict[str, Any], max_tokens: int = 64) -> Any:
    """Sampling parameters as vLLM hands them on: ``end`` is the request's one stop id."""
    from vllm import SamplingParams

    return SamplingParams(max_tokens=max_tokens, stop_token_ids=[end], extra_args={"onrails": constraint})


def _batch(added: Sequence[Any] = (), removed: Sequence[int] = (), moved: Sequence[Any] = ()) -> Any:
    return BatchUpdate(len(added), list(removed), list(added), list(moved))


def _allowed(small: Any, logits: Any, row: int) -> set[bytes | None]:
    vocab = small.vocab
    return {vocab.token_bytes[t] for t in (logits[row] != float("-inf")).nonzero().flatten().tolist()}


def test_update_state_returns_while_the_grammar_compiles(small: Any) -> None:
    import torch

    compiler = _GatedCompiler(small.vocab)
    processor = small(compiler)
    processor.update_state(_batch(added=[(0, _small_params(small.end, {"grammar": 'start: "ab"'}), [1], [])]))
    sequence = processor._sequences[0]
    assert sequence.is_compiling()
    compiler.gate.set()
    logits = torch.zeros(1, small.vocab.size)
    processor.apply(logits)
    assert _allowed(small, logits, 0) == {b"a"}


def test_ready_rows_are_masked_before_apply_waits_for_a_compiling_row(small: Any) -> None:
    import time

    import torch

    compiler = _GatedCompiler(small.vocab)
    processor = small(compiler)
    ready = _small_params(small.end, {"json_schema": {"enum": ["yes"]}})  # not through compile_lark
    output: list[int] = [small.vocab.token_bytes.index(b'"')]
    processor.update_state(_batch(added=[(0, ready, [1], output)]))
    processor._sequences[0].compiling.result(30)
    processor.update_state(_batch(added=[(1, _small_params(small.end, {"grammar": 'start: "ab"'}), [1], [])]))
    logits = torch.zeros(2, small.vocab.size)
    applying = threading.Thread(target=processor.apply, args=(logits,))
    applying.start()
    deadline = time.monotonic() + 30
    while processor._sequences[0].seen != output and time.monotonic() < deadline:
        time.sleep(0.01)
    # Row 0 has followed its output while row 1's compile still holds the step.
    assert processor._sequences[0].seen == output and applying.is_alive()
    compiler.gate.set()
    applying.join(30)
    assert _allowed(small, logits, 0) == {b"y"} and _allowed(small, logits, 1) == {b"a"}


def test_request_removed_while_compiling_is_dropped_and_its_queued_compile_cancelled(small: Any) -> None:
    import torch

    compiler = _GatedCompiler(small.vocab)
    processor = small(compiler, threads=1)
    first = _small_params(small.end, {"grammar": 'start: "a"'})
    second = _small_params(small.end, {"grammar": 'start: "b"'})
    processor.update_state(_batch(added=[(0, first, [1], []), (1, second, [1], [])]))
    running, queued = processor._sequences[0].compiling, processor._sequences[1].compiling
    assert compiler.entered.wait(30)  # the first compile runs, the second waits for the thread
    processor.update_state(_batch(removed=[0, 1]))
    assert queued.cancelled() and not processor._sequences
    compiler.gate.set()
    running.result(30)  # it finishes in its thread, and nothing is left waiting for it
    logits = torch.zeros(2, small.vocab.size)
    assert processor.apply(logits) is logits and bool((logits == 0).all())


def test_moved_rows_take_their_compiling_grammar_along(small: Any) -> None:
    import torch
    from vllm.v1.sample.logits_processor import MoveDirectionality

    compiler = _GatedCompiler(small.vocab)
    processor = small(compiler)
    a, b, c = (_small_params(small.end, {"grammar": f'start: "{x}"'}) for x in "abc")
    processor.update_state(_batch(added=[(0, a, [1], []), (1, b, [1], []), (2, c, [1], [])]))
    replaced = processor._sequences[0]
    # 0 <-> 1, then 2 -> 0 (replacing what was just swapped into 0).
    processor.update_state(_batch(moved=[(0, 1, MoveDirectionality.SWAP)]))
    processor.update_state(_batch(moved=[(2, 0, MoveDirectionality.UNIDIRECTIONAL)]))
    assert processor._sequences[1] is replaced and sorted(processor._sequences) == [0, 1]
    compiler.gate.set()
    logits = torch.zeros(2, small.vocab.size)
    processor.apply(logits)
    assert _allowed(small, logits, 0) == {b"c"} and _allowed(small, logits, 1) == {b"a"}


@pytest.mark.parametrize("failure", ["budget", "queue full"])
def test_failed_compile_leaves_that_row_only_its_stop_ids(small: Any, failure: str, caplog: Any) -> None:
    import torch

    compiler = GrammarCompiler(small.vocab) if failure == "budget" else _FullQueueCompiler(small.vocab)
    ok = {"json_schema": {"enum": ["yes"]}}
    compiler.compile_json_schema(ok["json_schema"], whitespace="bounded")  # cached: it cannot fail
    compiler.budget_s = 0.0
    processor = small(compiler)
    failing = {"grammar": 'start: "a"'}
    processor.update_state(_batch(added=[(0, _small_params(small.end, ok), [1], []), (1, _small_params(small.end, failing), [1], [])]))
    logits = torch.zeros(2, small.vocab.size)
    with caplog.at_level("ERROR", logger="onrails.runtime.vllm"):
        processor.apply(logits)
    assert _allowed(small, logits, 0) == {b'"'}
    assert (logits[1] != float("-inf")).nonzero().flatten().tolist() == [small.end]
    assert "failed to compile" in caplog.text
    assert ("time budget" if failure == "budget" else "try again later") in caplog.text


def _decode(small: Any, processor: Any, params: Any, seed: int, favour: bytes = b"") -> list[int]:
    """Greedy decoding of random logits (``favour``'s tokens far ahead) through ``processor``,
    as vLLM's engine would step it."""
    import torch

    output: list[int] = []
    processor.update_state(_batch(added=[(0, params, [1, 2, 3], output)]))
    generator = torch.Generator().manual_seed(seed)
    favoured = [t for t, data in enumerate(small.vocab.token_bytes) if data and data in favour]
    while len(output) < params.max_tokens and small.end not in output:
        logits = torch.randn(1, small.vocab.size, generator=generator) * 4
        logits[0, favoured] += 100
        processor.apply(logits)
        output.append(int(logits[0].argmax()))
        processor.update_state(None)
    processor.update_state(_batch(removed=[0]))
    return output


RECORD = 'start: "name=" WORD "; city=" WORD "; job=" WORD "."\nWORD: /[a-z]+/\n'
SMALL_CASES = {
    "json_schema": ({"json_schema": THREE_STRINGS}, 40),
    "array": ({"grammar_root": "array"}, 12),
    "lark": ({"grammar": RECORD}, 24),
}


@pytest.mark.parametrize("case", list(SMALL_CASES))
def test_ensure_parsable_finishes_the_grammar_by_max_tokens(small: Any, case: str) -> None:
    from onrails import Matcher
    from onrails.runtime.vllm import _parse_request

    constraint, max_tokens = SMALL_CASES[case]
    processor = small()
    parsed = {}
    for ensure in (False, True):
        params = _small_params(small.end, dict(constraint, ensure_parsable=ensure), max_tokens)
        request = _parse_request(params)
        assert request is not None
        grammar, root = request.compile(processor._worker().compiler)
        outcomes = []
        for seed in range(12):
            output = _decode(small, processor, params, seed)
            assert len(output) <= max_tokens
            matcher = Matcher(grammar, root)
            text = b"".join(small.vocab.token_bytes[t] or b"" for t in output)
            outcomes.append(matcher.advance_bytes(text) and matcher.is_accepting())
        parsed[ensure] = sum(outcomes)
    # Random logits run past the limit mid-sentence; steered, every output ends in time.
    assert parsed == {False: parsed[False], True: 12} and parsed[False] < 6, parsed


def test_worker_compiles_in_two_processes_with_the_servers_budget() -> None:
    from onrails.runtime.models import weights_folder
    from onrails.runtime.vllm import _Worker

    key = (str(weights_folder("smollm2-135m-instruct")), 49152)
    assert key not in _Worker._workers
    worker = _Worker.for_model(*key, trust_remote_code=False, max_num_seqs=16)
    try:
        # A full batch of new grammars waits for a process; none is refused with QueueFullError.
        assert worker.compiler.processes == (2, 16) and worker.compiler.budget_s == 10.0
        # The tokenizer's own split, without a start token: it spells completions.
        vocab = worker.compiler.vocabulary
        assert b"".join(vocab.token_bytes[t] or b"?" for t in worker.encode('{"a": 1}')) == b'{"a": 1}'
    finally:
        worker.compiler.close()
        del _Worker._workers[key]


def test_a_second_instance_for_the_same_engine_leaves_the_logits_to_the_first(small: Any) -> None:
    """The entry point and a ``logits_processors`` name give vLLM the class twice."""
    import torch

    from onrails.runtime.vllm import OnRailsLogitsProcessor

    first = small()
    second = OnRailsLogitsProcessor(first._vllm_config, torch.device("cpu"), False)
    other_engine = small()
    for processor in (first, second, other_engine):
        params = _small_params(small.end, {"grammar": 'start: "ab"'})
        processor.update_state(_batch(added=[(0, params, [1], [])]))
        logits = torch.zeros(1, small.vocab.size)
        processor.apply(logits)
        masked = bool((logits == float("-inf")).any())
        assert masked == (processor is not second)


def test_a_token_far_from_the_limit_that_would_push_the_ending_past_it_is_refused(small: Any) -> None:
    """An item of this array needs about 50 tokens of this vocabulary: with a limit of 30,
    opening one ("{" right after "[", whatever the margin left) could never be finished."""
    from onrails import Matcher

    keys = ["a" * 20, "b" * 20]
    item = {"type": "object", "properties": {k: {"type": "string"} for k in keys}, "required": keys}
    schema = {"type": "array", "items": item}
    processor = small()
    grammar = processor._worker().compiler.compile_json_schema(schema, whitespace="bounded")
    for ensure in (False, True):
        params = _small_params(small.end, {"json_schema": schema, "ensure_parsable": ensure}, 30)
        text = b"".join(small.vocab.token_bytes[t] or b"" for t in _decode(small, processor, params, 0, favour=b"[{"))
        matcher = Matcher(grammar)
        assert matcher.advance_bytes(text) and matcher.is_accepting() == ensure, text
        assert (b"{" in text) != ensure, text
