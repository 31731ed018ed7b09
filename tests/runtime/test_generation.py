"""The decoding loop on the real default model: each sampling parameter tested by its effect.

Generations are short and batched together: the test machine has two shared CPU cores.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections import Counter
from typing import Any

import pytest
import torch

from onrails.runtime.api import chat_prompt
from onrails.runtime.generation import SequenceRequest, SequenceResult, generate_sequences, stream_sequences
from onrails.runtime.sampling import SamplingParams
from tests.schemas import REQUIRED_BESIDE_OPTIONAL


def _prompt(model: Any, text: str) -> list[int]:
    return model.encode(chat_prompt(model, [{"role": "user", "content": text}]))


def _run(model: Any, prompt: str, root: str | None = None, *, chat: bool = True, **params: Any) -> SequenceResult:
    ids = _prompt(model, prompt) if chat else model.encode(prompt)
    grammar = model.builtin_grammar() if root else None
    return generate_sequences(model, [SequenceRequest(ids, SamplingParams(**params), grammar, root)])[0]


def _batch(model: Any, prompt: str, root: str | None, params: list[dict[str, Any]]) -> list[SequenceResult]:
    ids = _prompt(model, prompt)
    grammar = model.builtin_grammar() if root else None
    return generate_sequences(model, [SequenceRequest(ids, SamplingParams(**p), grammar, root) for p in params])


def test_thirty_samples_at_temperature_1_are_all_json_objects(smollm2_model: Any) -> None:
    results = _batch(
        smollm2_model, "Describe a pet as JSON.", "object", [dict(temperature=1.0, seed=i, max_tokens=24) for i in range(30)]
    )
    for r in results:
        assert isinstance(json.loads(r.text), dict), r.text
        assert len(r.token_ids) <= 24
    assert len({r.text for r in results}) > 20  # really sampled


def _check_rule(root: str, text: str) -> None:
    if root in ("value", "object", "array", "string", "number", "func", "funcarray", "fcall"):
        value = json.loads(text)
        expected = {"object": dict, "array": list, "string": str, "number": (int, float), "func": dict, "funcarray": list}
        if root in expected:
            assert isinstance(value, expected[root]), text
        if root == "func":
            assert list(value) == ["name", "arguments"] and isinstance(value["arguments"], dict)
        if root in ("funcarray", "fcall"):
            assert value and all(list(call) == ["name", "arguments"] for call in value)
    elif root == "insidevalue":
        assert isinstance(json.loads('"' + text + '"'), str)
    elif root == "ws":
        assert text.strip(" \t\r\n") == ""
    elif root == "nofcall":
        assert text.lstrip(" \t\r\n")[:1] not in ("[", "{")
    elif root == "root":
        stripped = text.strip(" \t\r\n")
        if stripped[:1] == "[":
            _check_rule("fcall", text)


def test_every_builtin_rule_yields_its_kind_of_output(smollm2_model: Any) -> None:
    from onrails.constrain import BUILTIN_ROOTS

    ids = _prompt(smollm2_model, "Call a weather tool for Paris, as JSON.")
    grammar = smollm2_model.builtin_grammar()
    requests = [
        SequenceRequest(ids, SamplingParams(temperature=1.0, seed=s, max_tokens=16), grammar, root)
        for root in BUILTIN_ROOTS
        for s in (1, 2)
    ]
    for request, result in zip(requests, generate_sequences(smollm2_model, requests)):
        _check_rule(str(request.root), result.text)


def test_greedy_matches_transformers_generate_alone_and_in_a_padded_batch(smollm2_model: Any) -> None:
    ids = smollm2_model.encode("The capital of France is")
    with torch.inference_mode():
        expected = smollm2_model.model.generate(
            torch.tensor([ids]), max_new_tokens=12, min_new_tokens=12, do_sample=False
        )[0, len(ids) :].tolist()
    long_prompt = smollm2_model.encode("A much longer prompt, so that the first one is left-padded: once upon a time")
    results = generate_sequences(
        smollm2_model,
        [
            SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=12, min_tokens=-1)),
            SequenceRequest(long_prompt, SamplingParams(temperature=0, max_tokens=5)),
        ],
    )
    assert results[0].token_ids == expected
    alone = generate_sequences(smollm2_model, [SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=12, min_tokens=-1))])
    assert alone[0].token_ids == expected


def test_same_seed_same_text_whatever_the_batch_and_other_seeds_differ(smollm2_model: Any) -> None:
    ids = _prompt(smollm2_model, "Invent a name for a dragon.")
    alone = generate_sequences(smollm2_model, [SequenceRequest(ids, SamplingParams(seed=7, max_tokens=16))])[0]
    batch = generate_sequences(
        smollm2_model,
        [SequenceRequest(ids, SamplingParams(seed=s, max_tokens=16)) for s in (3, 7, 11)]
        + [SequenceRequest(smollm2_model.encode("Other prompt"), SamplingParams(seed=7, max_tokens=4))],
    )
    assert batch[1].text == alone.text
    assert len({batch[0].text, batch[1].text, batch[2].text}) == 3


def test_top_k_1_and_tiny_top_p_are_greedy(smollm2_model: Any) -> None:
    ids = _prompt(smollm2_model, "Name three fruits.")
    requests = [
        SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=12)),
        SequenceRequest(ids, SamplingParams(temperature=1.5, top_k=1, seed=1, max_tokens=12)),
        SequenceRequest(ids, SamplingParams(temperature=1.5, top_p=1e-6, seed=2, max_tokens=12)),
        SequenceRequest(ids, SamplingParams(temperature=1.5, seed=3, max_tokens=12)),
    ]
    greedy, top_k, top_p, free = generate_sequences(smollm2_model, requests)
    assert top_k.token_ids == greedy.token_ids == top_p.token_ids
    assert free.token_ids != greedy.token_ids


def test_penalties_reduce_repetition(smollm2_model: Any) -> None:
    ids = smollm2_model.encode("1, 1, 1, 1, 1, 1, 1, 1,")
    variants = [{}, {"repetition_penalty": 3.0}, {"frequency_penalty": 2.0}]
    results = generate_sequences(
        smollm2_model, [SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=16, min_tokens=-1, **v)) for v in variants]
    )

    def top_count(r: SequenceResult) -> int:
        return Counter(r.token_ids).most_common(1)[0][1]

    base = top_count(results[0])
    assert base >= 5, results[0].text  # without penalties the model keeps repeating
    for variant, r in zip(variants[1:], results[1:]):
        assert top_count(r) < base, (variant, r.text)
    assert not results[1].text.startswith(" 1")  # the prompt's tokens are penalised at once


def test_frequency_and_presence_penalties_follow_the_openai_formula() -> None:
    from onrails.runtime.sampling import apply_penalties

    logits = torch.tensor([[1.0, 2.0, -1.0, 0.5]] * 2)
    counts = torch.tensor([0.0, 3.0, 1.0, 0.0])
    params = [SamplingParams(frequency_penalty=0.5), SamplingParams(presence_penalty=1.5)]
    apply_penalties(logits, params, [None, None], [counts, counts])
    assert logits[0].tolist() == [1.0, 0.5, -1.5, 0.5]  # minus 0.5 per occurrence
    assert logits[1].tolist() == [1.0, 0.5, -2.5, 0.5]  # minus 1.5 once present


def test_logit_bias_bans_and_forces(smollm2_model: Any) -> None:
    ids = _prompt(smollm2_model, "Say hello.")
    greedy = generate_sequences(smollm2_model, [SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=3))])[0]
    first = greedy.token_ids[0]
    forced = smollm2_model.encode(" zebra")[0]
    banned, pushed = generate_sequences(
        smollm2_model,
        [
            SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=3, logit_bias={first: -100})),
            SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=3, logit_bias={str(forced): 100})),  # type: ignore[dict-item]
        ],
    )
    assert first not in banned.token_ids
    assert pushed.token_ids[0] == forced


def test_min_tokens_holds_back_the_end(smollm2_model: Any) -> None:
    ids = smollm2_model.encode("Write a poem about the sea.")  # greedy ends at once on this prompt
    free, held, full = generate_sequences(
        smollm2_model,
        [
            SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=10)),
            SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=10, min_tokens=4)),
            SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=6, min_tokens=-1)),
        ],
    )
    assert free.token_ids == [] and free.finish_reason == "stop"
    assert len(held.token_ids) >= 4
    assert len(full.token_ids) == 6 and full.finish_reason == "length"


def test_stop_strings_truncate_the_text(smollm2_model: Any) -> None:
    ids = _prompt(smollm2_model, "Count from one to ten in words.")
    plain = generate_sequences(smollm2_model, [SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=24))])[0]
    stop = plain.text[8:11]
    assert len(stop) == 3 and stop in plain.text
    cut = generate_sequences(
        smollm2_model, [SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=24, stop=["@@never@@", stop]))]
    )[0]
    assert cut.text == plain.text[: plain.text.index(stop)]
    assert cut.finish_reason == "stop"
    assert len(cut.token_ids) < len(plain.token_ids)


def test_logprobs_are_consistent_with_tokens_and_text(smollm2_model: Any) -> None:
    r = _run(smollm2_model, "Describe a cat as JSON.", "object", temperature=0, max_tokens=20, logprobs=3)
    assert r.token_logprobs is not None and r.top_logprobs is not None
    assert len(r.token_logprobs) == len(r.token_ids) == len(r.text_offsets) == len(r.top_logprobs)
    vocab = smollm2_model.vocabulary
    pieces = [(vocab.token_bytes[t] or b"").decode("utf-8", "replace") for t in r.token_ids]
    for i, offset in enumerate(r.text_offsets):
        assert r.text[offset : offset + len(pieces[i])] == pieces[i]
    for token, lp, top in zip(r.token_ids, r.token_logprobs, r.top_logprobs):
        assert len(top) == 3 and lp <= 0.0
        assert top[0][1] >= top[1][1] >= top[2][1]
        # raw logprobs: the greedy pick under the mask may not be the raw top-1, but when it
        # is among the reported alternatives its value matches.
        if token in dict(top):
            assert dict(top)[token] == pytest.approx(lp, abs=1e-5)
    free = _run(smollm2_model, "Say hi.", None, temperature=0, max_tokens=8, logprobs=2)
    assert free.top_logprobs is not None and free.token_logprobs is not None
    for token, lp, top in zip(free.token_ids, free.token_logprobs, free.top_logprobs):
        assert top[0] == (token, pytest.approx(lp, abs=1e-5))  # greedy: the chosen token is top-1
    assert r.cumulative_logprob == pytest.approx(sum(r.token_logprobs))


def test_masked_logprobs_are_renormalised_over_allowed_tokens(smollm2_model: Any) -> None:
    common = dict(temperature=0, max_tokens=12, logprobs=5, seed=1)
    ids = _prompt(smollm2_model, "Describe a cat as JSON.")
    grammar = smollm2_model.builtin_grammar()
    raw, masked = generate_sequences(
        smollm2_model,
        [
            SequenceRequest(ids, SamplingParams(**common), grammar, "object", jump_forward=False),
            SequenceRequest(ids, SamplingParams(logprobs_mode="masked", **common), grammar, "object", jump_forward=False),
        ],
    )
    assert raw.token_ids == masked.token_ids
    assert masked.token_logprobs is not None and raw.token_logprobs is not None and masked.top_logprobs is not None
    from onrails.constrain import Matcher

    start = Matcher(grammar, "object")
    assert all(start.is_allowed(t) for t, _ in masked.top_logprobs[0])  # alternatives obey the grammar
    assert masked.token_logprobs[0] > raw.token_logprobs[0] + 0.01
    for m, r, top in zip(masked.token_logprobs, raw.token_logprobs, masked.top_logprobs):
        assert m >= r - 1e-5
        assert float(torch.tensor([v for _, v in top]).exp().sum()) <= 1.0 + 1e-4


def test_output_cut_by_max_tokens_still_parses(smollm2_model: Any) -> None:
    limits = [6, 9, 12, 15]
    params = [dict(temperature=1.0, seed=s, max_tokens=n) for s in range(3) for n in limits]
    steered = _batch(smollm2_model, "Describe a big nested JSON document about a city.", "object", params)
    for r, p in zip(steered, params):
        assert len(r.token_ids) <= p["max_tokens"]
        assert isinstance(json.loads(r.text), dict), r.text
        assert r.finish_reason == "stop"
    assert any(r.steered for r in steered)
    unsteered = _batch(
        smollm2_model, "Describe a big nested JSON document about a city.", "object",
        [dict(p, ensure_parsable=False) for p in params],
    )
    assert any(r.finish_reason == "length" for r in unsteered)


def test_a_schema_with_required_keys_cut_by_max_tokens_still_validates(smollm2_model: Any) -> None:
    """Required keys still to spell beside optional ones: the exact shortest completion finds them
    (the old bounded search found no ending here, leaving "length" and unparsable text)."""
    import jsonschema

    schema = REQUIRED_BESIDE_OPTIONAL
    grammar = smollm2_model.compiler.compile_json_schema(schema, whitespace="bounded")
    ids = _prompt(smollm2_model, "Describe a user account with lots of metadata as JSON.")
    params = [SamplingParams(temperature=1.0, seed=s, max_tokens=n) for s in range(2) for n in (24, 32)]
    results = generate_sequences(smollm2_model, [SequenceRequest(ids, p, grammar) for p in params])
    for r, p in zip(results, params):
        assert len(r.token_ids) <= p.max_tokens
        jsonschema.validate(json.loads(r.text), schema)
        assert r.finish_reason == "stop", r.text
    assert any(r.steered for r in results)


def test_jump_forward_appends_forced_text_without_sampling(smollm2_model: Any) -> None:
    grammar = smollm2_model.compiler.compile_lark(
        'start: "My favourite colour, after much thought, is " COLOR "."\nCOLOR: "red" | "green" | "blue"\n'
    )
    ids = _prompt(smollm2_model, "What is your favourite colour?")
    fast, slow = generate_sequences(
        smollm2_model,
        [
            SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=30, logprobs=1), grammar),
            SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=30, logprobs=1), grammar, jump_forward=False),
        ],
    )
    for r in (fast, slow):
        assert re.fullmatch(r"My favourite colour, after much thought, is (red|green|blue)\.", r.text), r.text
    assert fast.forced_tokens >= 5 and slow.forced_tokens == 0
    assert fast.token_logprobs is not None and all(lp <= 0.0 for lp in fast.token_logprobs)


def test_stream_results_grow_to_the_final_result(smollm2_model: Any) -> None:
    ids = _prompt(smollm2_model, "Describe a cat as JSON.")
    request = SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=16), smollm2_model.builtin_grammar(), "object")
    snapshots = [states[0] for states in stream_sequences(smollm2_model, [request])]
    texts = [s.text for s in snapshots]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    final = generate_sequences(smollm2_model, [request])[0]
    assert snapshots[-1].finished and snapshots[-1].text == final.text
    assert not snapshots[0].finished


def test_constrained_generation_raises_no_deprecation_warning_and_logs_no_deprecation(smollm2_model: Any) -> None:
    # transformers warns of a deprecated argument both ways: a FutureWarning, and a message on its
    # "transformers" logger (which does not propagate to the root logger, so caplog misses it).
    from transformers.utils import logging as hf_logging

    once = getattr(hf_logging.warning_once, "cache_clear", None)
    if once is not None:
        once()  # a message transformers logged "once" earlier in this process must show again
    records: list[logging.LogRecord] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Recorder(logging.DEBUG)
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    ids = _prompt(smollm2_model, "Describe a dog as JSON.")
    grammar = smollm2_model.builtin_grammar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("error", DeprecationWarning)
            # A batch from scratch, then the same prompt again: its KV comes from the prefix cache.
            first = generate_sequences(
                smollm2_model, [SequenceRequest(ids, SamplingParams(seed=s, max_tokens=4), grammar, "object") for s in (1, 2)]
            )
            again = generate_sequences(smollm2_model, [SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=4), grammar, "object")])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert all(r.text.lstrip().startswith("{") for r in first + again)
    messages = [r.getMessage() for r in records]
    assert not [m for m in messages if "deprecated" in m.lower()], messages


def test_the_end_of_the_context_is_steered_like_max_tokens(smollm2_model: Any) -> None:
    import dataclasses

    ids = _prompt(smollm2_model, "Describe a big nested JSON document about a city.")
    short = dataclasses.replace(smollm2_model, context_length=len(ids) + 10)
    grammar = short.builtin_grammar()
    results = generate_sequences(
        short, [SequenceRequest(ids, SamplingParams(seed=s), grammar, "object") for s in range(4)]
    )
    for r in results:
        assert len(r.token_ids) <= 10 and isinstance(json.loads(r.text), dict), r.text


def _spy_forward(monkeypatch: pytest.MonkeyPatch) -> list[list[list[int]]]:
    """Record the feeds of every forward pass (rows × fed token ids)."""
    import onrails.runtime.generation as generation

    calls: list[list[list[int]]] = []
    real = generation._forward

    def spy(model: Any, feeds: list[list[int]], *args: Any) -> Any:
        calls.append([list(f) for f in feeds])
        return real(model, feeds, *args)

    monkeypatch.setattr(generation, "_forward", spy)
    return calls


def test_one_rows_jump_forward_does_not_pad_the_whole_batch(smollm2_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced tokens are fed a few per step in a big batch (each row's output and scores are
    those it gets alone, where it may feed them all at once)."""
    grammar = smollm2_model.compiler.compile_lark(
        'start: "The answer, after a long and careful deliberation by the committee, is " WORD "."\n'
        "WORD: /[a-z]{1,8}/\n"
    )
    prompts = [_prompt(smollm2_model, f"Question number {i}: what is the answer?") for i in range(8)]
    params = SamplingParams(temperature=0, max_tokens=30, logprobs=1)
    alone = [generate_sequences(smollm2_model, [SequenceRequest(p, params, grammar)])[0] for p in prompts[:2]]
    calls = _spy_forward(monkeypatch)
    together = generate_sequences(smollm2_model, [SequenceRequest(p, params, grammar) for p in prompts])
    assert all(r.forced_tokens >= 10 for r in together)
    # 8 rows share a step: 16 positions allow 2 tokens per row (the prompts' pass aside).
    assert max(len(f) for call in calls[1:] for f in call) <= 2
    for a, b in zip(alone, together):
        assert a.text == b.text and a.token_ids == b.token_ids
        assert a.token_logprobs is not None and b.token_logprobs is not None
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-3)


def test_prompts_sharing_a_prefix_prefill_only_what_differs(smollm2_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = smollm2_model._prefix_cache
    first, second = (_prompt(smollm2_model, f"Name a {animal} as JSON.") for animal in ("cat", "horse"))
    shared = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
    request = SequenceRequest(second, SamplingParams(temperature=0, max_tokens=12, logprobs=2), smollm2_model.builtin_grammar(), "object")
    cache.clear()
    fresh = generate_sequences(smollm2_model, [request])[0]
    cache.clear()
    generate_sequences(smollm2_model, [SequenceRequest(first, SamplingParams(max_tokens=1))])
    calls = _spy_forward(monkeypatch)
    reused = generate_sequences(smollm2_model, [request])[0]
    assert calls[0] == [second[shared:]]  # the prompt pass fed only the tokens after the shared part
    assert reused.text == fresh.text and reused.token_ids == fresh.token_ids
    assert reused.token_logprobs == pytest.approx(fresh.token_logprobs, abs=1e-3)


def test_identical_prompts_of_a_batch_are_prefilled_once(smollm2_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    smollm2_model._prefix_cache.clear()
    ids = _prompt(smollm2_model, "Invent a city as JSON.")
    calls = _spy_forward(monkeypatch)
    results = generate_sequences(
        smollm2_model, [SequenceRequest(ids, SamplingParams(temperature=1.0, seed=s, max_tokens=8)) for s in range(4)]
    )
    assert calls[0] == [ids]
    assert all(len(f) <= 4 for f in calls[1]) and len(calls[1]) == 4
    assert len({r.text for r in results}) > 1


def test_a_value_already_complete_at_the_limit_stops_instead_of_taking_a_token_that_cannot_be_finished(
    smollm2_model: Any,
) -> None:
    # These seeds sample a number, then "." as the 4th and last token: the number parsed before
    # the "." and cannot be finished after it; the output used to end "117." with "length".
    ids = smollm2_model.encode("After the storm:")
    grammar = smollm2_model.builtin_grammar()
    requests = [SequenceRequest(ids, SamplingParams(seed=s, max_tokens=4), grammar, "value") for s in (101, 112, 160, 179)]
    for result in generate_sequences(smollm2_model, requests):
        json.loads(result.text)
        assert result.finish_reason == "stop", result.text
