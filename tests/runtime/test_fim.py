"""Fill-in-the-middle prompts (``suffix``): built from the tokenizer's FIM tokens, refused without."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from onrails.errors import BadRequestError
from onrails.runtime.api import encode_prompt, fim_token_ids


def _model_with(tokenizer: Any) -> Any:
    return SimpleNamespace(
        name="fim-test",
        tokenizer=tokenizer,
        encode=lambda text: list(tokenizer.encode(text, add_special_tokens=False)),
        vocabulary=SimpleNamespace(size=len(tokenizer)),
        context_length=8192,
    )


@pytest.mark.parametrize(
    "spelling",
    [("<fim_prefix>", "<fim_suffix>", "<fim_middle>"), ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")],
)
def test_suffix_makes_a_prefix_suffix_middle_prompt_from_the_tokenizers_fim_tokens(
    smollm2_tokenizer: Any, spelling: tuple[str, str, str]
) -> None:
    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": list(spelling)})
    model = _model_with(tokenizer)
    pre, suf, mid = fim_token_ids(tokenizer) or (None, None, None)
    assert [pre, suf, mid] == tokenizer.convert_tokens_to_ids(list(spelling))
    ids = encode_prompt(model, "def add(a, b):\n    ", suffix="\n\nprint(add(1, 2))")
    assert ids == [pre, *model.encode("def add(a, b):\n    "), suf, *model.encode("\n\nprint(add(1, 2))"), mid]
    from_ids = encode_prompt(model, model.encode("x = "), suffix=";")
    assert from_ids == [pre, *model.encode("x = "), suf, *model.encode(";"), mid]


def test_suffix_without_fim_tokens_is_a_bad_request_naming_suffix(smollm2_tokenizer: Any) -> None:
    assert fim_token_ids(smollm2_tokenizer) is None
    with pytest.raises(BadRequestError) as info:
        encode_prompt(_model_with(smollm2_tokenizer), "def f():", suffix="return 1")
    assert info.value.param == "suffix" and "FIM tokens" in str(info.value)
    with pytest.raises(BadRequestError, match="must be a string"):
        encode_prompt(_model_with(smollm2_tokenizer), "def f():", suffix=3)  # type: ignore[arg-type]
