"""The transformers LogitsProcessor: grammars inside ``model.generate``."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from onrails.errors import BadRequestError
from onrails.runtime.api import chat_prompt
from onrails.runtime.generation import SequenceRequest, generate_sequences
from onrails.runtime.hf import OnRailsLogitsProcessor
from onrails.runtime.sampling import SamplingParams


def _ids(model: Any, text: str) -> list[int]:
    return model.encode(chat_prompt(model, [{"role": "user", "content": text}]))


def test_sampled_rows_all_parse(smollm2_model: Any) -> None:
    ids = torch.tensor([_ids(smollm2_model, "Describe a bird as JSON.")])
    processor = OnRailsLogitsProcessor.from_model(smollm2_model, grammar_root="object")
    torch.manual_seed(0)
    with torch.inference_mode():
        out = smollm2_model.model.generate(
            ids, logits_processor=[processor], do_sample=True, num_return_sequences=4, max_new_tokens=32
        )
    from onrails.constrain import Matcher

    eos = smollm2_model.vocabulary.eos_token_ids
    for row in out[:, ids.shape[1] :].tolist():
        matcher = Matcher(processor.grammar, "object")
        for token in row:
            if matcher.is_terminated():
                break
            assert matcher.advance(token)  # every sampled token obeyed the grammar
        if any(t in eos for t in row):
            text = smollm2_model.tokenizer.decode(row, skip_special_tokens=True)
            assert isinstance(json.loads(text), dict), text


def test_greedy_equals_the_onrails_loop_without_jump_forward(smollm2_model: Any) -> None:
    ids = _ids(smollm2_model, "Describe a fish as JSON.")
    processor = OnRailsLogitsProcessor.from_model(smollm2_model, grammar_root="object")
    with torch.inference_mode():
        out = smollm2_model.model.generate(
            torch.tensor([ids]), logits_processor=[processor], do_sample=False, max_new_tokens=16
        )
    ours = generate_sequences(
        smollm2_model,
        [
            SequenceRequest(
                ids,
                SamplingParams(temperature=0, max_tokens=16, ensure_parsable=False),
                smollm2_model.builtin_grammar(),
                "object",
                jump_forward=False,
            )
        ],
    )[0]
    assert out[0, len(ids) :].tolist()[: len(ours.token_ids)] == ours.token_ids


def test_beam_search_rows_follow_their_own_history(smollm2_model: Any) -> None:
    ids = torch.tensor([_ids(smollm2_model, "Give a JSON array of numbers.")])
    processor = OnRailsLogitsProcessor.from_model(smollm2_model, grammar_root="array")
    with torch.inference_mode():
        out = smollm2_model.model.generate(
            ids, logits_processor=[processor], num_beams=3, num_return_sequences=3, do_sample=False, max_new_tokens=12
        )
    assert out.shape[0] == 3
    for row in out[:, ids.shape[1] :].tolist():
        text = smollm2_model.tokenizer.decode(row, skip_special_tokens=True)
        assert text.startswith("[")


def test_a_processor_needs_a_constraint(smollm2_model: Any) -> None:
    with pytest.raises(BadRequestError):
        OnRailsLogitsProcessor.from_model(smollm2_model)
    with pytest.raises(BadRequestError) as info:
        OnRailsLogitsProcessor.from_model(smollm2_model, grammar_root="nope")
    assert info.value.param == "grammar_root"
