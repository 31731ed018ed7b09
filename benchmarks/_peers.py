"""Shared pieces of the benchmarks: one-thread settings, engine adapters, percentiles, formatting.

Every engine (onrails and the peers xgrammar, llguidance, outlines-core) is wrapped in the same
small adapter so that the benchmarks feed them identical tokens the same way:

    engine = ADAPTERS["xgrammar"](tokenizer, vocab)   # one-time setup (tokenizer info, compiler)
    grammar = engine.compile_json_schema(schema)         # CompileError when the engine refuses it
    matcher = engine.matcher(grammar)                    # a fresh sequence
    engine.fill(matcher)                                 # the next-token mask, into engine.bitmask
    engine.allowed(token)                                # that token's bit in the last mask
    engine.advance(matcher, token) -> bool

The peers are imported lazily: a missing package raises ImportError from the constructor.
Import this module before numpy or torch so that the thread settings take effect.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from typing import Any

THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "RAYON_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _key, _value in THREAD_ENV.items():
    os.environ.setdefault(_key, _value)

import numpy as np  # noqa: E402


class CompileError(Exception):
    """The engine refused the grammar cleanly (an unsupported or invalid schema)."""


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "(source)"


def percentiles(values_s: "list[float] | np.ndarray", points: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
    """n, mean, the given percentiles and max of durations in seconds, reported in microseconds."""
    arr = np.asarray(values_s, dtype=np.float64) * 1e6
    if not arr.size:
        return {}
    out: dict[str, float] = {"n": int(arr.size), "mean": float(arr.mean())}
    for p, value in zip(points, np.percentile(arr, points)):
        out[f"p{p:g}"] = float(value)
    out["max"] = float(arr.max())
    return out


def fmt(value: object, digits: int = 1, *, thousands: bool = False) -> str:
    if value is None or value == "":
        return "–"
    sep = "," if thousands else ""
    if isinstance(value, float):
        return f"{value:{sep}.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:{sep}}"
    return str(value)


def limit_torch_threads() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


class Engine:
    """Adapter base: subclasses set ``name``, ``bitmask`` (int32 [1, words]) and the methods."""

    key = ""
    package = ""
    label = ""  # configuration shown next to the name

    def __init__(self, tokenizer: Any, vocab: Any) -> None:
        self.tokenizer = tokenizer
        self.vocab_size: int = vocab.size
        self.eos: int = min(vocab.eos_token_ids)
        self.bitmask: Any = None
        self._words: np.ndarray = np.zeros(0, dtype=np.int32)

    @property
    def name(self) -> str:
        return f"{self.key} {version(self.package)}"

    def _set_bitmask(self, bitmask: Any, words: np.ndarray) -> None:
        self.bitmask = bitmask
        self._words = words.reshape(-1)

    def allowed(self, token: int) -> bool:
        return bool((int(self._words[token >> 5]) >> (token & 31)) & 1)

    def compile_json_schema(self, schema: Any) -> Any:
        raise NotImplementedError

    def compile_any_json(self) -> Any:
        raise NotImplementedError

    def matcher(self, grammar: Any) -> Any:
        raise NotImplementedError

    def fill(self, matcher: Any) -> None:
        raise NotImplementedError

    def advance(self, matcher: Any, token: int) -> bool:
        raise NotImplementedError


class OnrailsEngine(Engine):
    """onrails: ``compile_json_schema(schema, whitespace="flexible", strict=True)``."""

    key = "onrails"
    package = "onrails"

    def __init__(self, tokenizer: Any, vocab: Any) -> None:
        super().__init__(tokenizer, vocab)
        import onrails

        self._onrails = onrails
        self.vocab = vocab
        self.compiler = onrails.GrammarCompiler(vocab)
        self.root: str | None = None
        bitmask = onrails.allocate_token_bitmask(1, vocab.size)
        self._set_bitmask(bitmask, bitmask)

    def compile_json_schema(self, schema: Any) -> Any:
        try:
            return self.compiler.compile_json_schema(schema, whitespace="flexible", strict=True)
        except self._onrails.GrammarError as exc:  # SchemaError, CompileBudgetError
            raise CompileError(f"{type(exc).__name__}: {exc}") from exc

    def compile_any_json(self) -> Any:
        self.root = "value"
        return self.compiler.compile_builtin("flexible")

    def compile_lark(self, text: str, start: str) -> Any:
        """A Lark grammar, compiled by a new compiler (the vocabulary's trie is shared)."""
        self.root = None
        return self._onrails.GrammarCompiler(self.vocab).compile_lark(text, start)

    def matcher(self, grammar: Any) -> Any:
        return self._onrails.Matcher(grammar, self.root)

    def fill(self, matcher: Any) -> None:
        matcher.fill_next_token_bitmask(self.bitmask, 0)

    def advance(self, matcher: Any, token: int) -> bool:
        return bool(matcher.advance(token))


class XGrammarEngine(Engine):
    """xgrammar: ``compile_json_schema`` with its defaults (any_whitespace=True, strict_mode=True).

    strict_mode forbids properties and items the schema does not list (unlike JSON Schema's
    default); ``compliant=True`` turns it off, as upstream MaskBench's "XGrammar (compliant)".
    """

    key = "xgrammar"
    package = "xgrammar"

    def __init__(self, tokenizer: Any, vocab: Any, *, compliant: bool = False, cache: bool = True) -> None:
        super().__init__(tokenizer, vocab)
        import xgrammar as xgr

        limit_torch_threads()
        self._xgr = xgr
        self.compliant = compliant
        if compliant:
            self.key = "xgrammar-compliant"
            self.label = "strict_mode=False"
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab.size, stop_token_ids=[self.eos])
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=cache)
        bitmask = xgr.allocate_token_bitmask(1, vocab.size)
        self._set_bitmask(bitmask, bitmask.numpy())

    @property
    def name(self) -> str:
        return f"xgrammar {version('xgrammar')}" + (" (compliant)" if self.compliant else "")

    def compile_json_schema(self, schema: Any) -> Any:
        try:
            return self.compiler.compile_json_schema(
                json.dumps(schema), any_whitespace=True, strict_mode=not self.compliant
            )
        except Exception as exc:  # upstream MaskBench: any compile exception is a compile error
            raise CompileError(f"{type(exc).__name__}: {exc}") from exc

    def compile_any_json(self) -> Any:
        return self.compiler.compile_builtin_json_grammar()

    def matcher(self, grammar: Any) -> Any:
        return self._xgr.GrammarMatcher(grammar)

    def fill(self, matcher: Any) -> None:
        matcher.fill_next_token_bitmask(self.bitmask)

    def advance(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))


class LLGuidanceEngine(Engine):
    """llguidance: ``LLMatcher.grammar_from_json_schema`` with flexible whitespace."""

    key = "llguidance"
    package = "llguidance"

    def __init__(self, tokenizer: Any, vocab: Any) -> None:
        super().__init__(tokenizer, vocab)
        import llguidance
        import llguidance.hf
        import llguidance.numpy as llnp

        self._llg = llguidance
        self._llnp = llnp
        self.lltok = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab.size, eos_token=self.eos)
        bitmask = llnp.allocate_token_bitmask(1, vocab.size)
        self._set_bitmask(bitmask, bitmask)

    def _compile(self, build: Any, source: Any, defaults: Any = None) -> Any:
        try:
            grammar = build(source) if defaults is None else build(source, defaults=defaults)
        except Exception as exc:
            raise CompileError(f"{type(exc).__name__}: {exc}") from exc
        # The constructor never raises: a refused grammar leaves the matcher in an error state.
        template = self._llg.LLMatcher(self.lltok, grammar, log_level=0)
        if template.is_error():
            raise CompileError(template.get_error())
        return template

    def compile_json_schema(self, schema: Any) -> Any:
        return self._compile(self._llg.LLMatcher.grammar_from_json_schema, schema, {"whitespace_flexible": True})

    def compile_any_json(self) -> Any:
        return self.compile_json_schema({})

    def compile_lark(self, text: str, start: str) -> Any:
        """A Lark grammar in llguidance's dialect (which starts at ``start``; its lexer is greedy)."""
        return self._compile(self._llg.LLMatcher.grammar_from_lark, text if start == "start" else f"start: {start}\n{text}")

    def matcher(self, grammar: Any) -> Any:
        return grammar.deep_copy()

    def fill(self, matcher: Any) -> None:
        self._llnp.fill_next_token_bitmask(matcher, self.bitmask, 0)

    def advance(self, matcher: Any, token: int) -> bool:
        return bool(matcher.consume_token(token)) and not matcher.is_error()


class OutlinesCoreEngine(Engine):
    """outlines-core: ``build_regex_from_schema`` (its default whitespace ``[ ]?``) → ``Index``."""

    key = "outlines-core"
    package = "outlines_core"

    def __init__(self, tokenizer: Any, vocab: Any) -> None:
        super().__init__(tokenizer, vocab)
        import outlines_core
        from outlines_core.json_schema import build_regex_from_schema

        self._oc = outlines_core
        self._regex = build_regex_from_schema
        by_bytes: dict[bytes, list[int]] = {}
        for i, data in enumerate(vocab.token_bytes):
            if data is not None:
                by_bytes.setdefault(data, []).append(i)
        self.vocabulary = outlines_core.Vocabulary(self.eos, by_bytes)
        bitmask = np.zeros((1, (vocab.size + 31) // 32), dtype=np.int32)
        self._set_bitmask(bitmask, bitmask)
        self._ptr = bitmask.ctypes.data
        self._numel = bitmask.size

    def compile_json_schema(self, schema: Any) -> Any:
        try:
            return self._oc.Index(self._regex(json.dumps(schema)), self.vocabulary)
        except Exception as exc:
            raise CompileError(f"{type(exc).__name__}: {exc}") from exc

    def matcher(self, grammar: Any) -> Any:
        return self._oc.Guide(grammar)

    def fill(self, matcher: Any) -> None:
        matcher.write_mask_into(self._ptr, self._numel, 4)

    def advance(self, matcher: Any, token: int) -> bool:
        if token == self.eos:  # the end token has no transition: allowed exactly in final states
            return bool(matcher.is_finished())
        try:
            matcher.advance(token, return_tokens=False)
        except Exception:
            return False
        return True


ADAPTERS: dict[str, type[Engine]] = {
    "onrails": OnrailsEngine,
    "llguidance": LLGuidanceEngine,
    "xgrammar": XGrammarEngine,
    "outlines-core": OutlinesCoreEngine,
}


def make_engine(key: str, tokenizer: Any, vocab: Any, **options: Any) -> Engine:
    """Build the adapter named ``key`` (``xgrammar-compliant`` is xgrammar with strict_mode off)."""
    if key == "xgrammar-compliant":
        return XGrammarEngine(tokenizer, vocab, compliant=True, **options)
    if key not in ADAPTERS:
        raise ValueError(f"unknown engine {key!r}; known: {', '.join([*ADAPTERS, 'xgrammar-compliant'])}")
    return ADAPTERS[key](tokenizer, vocab, **options)


def engines_in_process(keys: str, tokenizer_name: str) -> tuple[Any, dict[str, Engine]]:
    """The tokenizer and the engines named in ``keys`` (comma-separated), built in this process;
    an engine not installed is reported on stderr and left out."""
    import sys

    import onrails
    from onrails.runtime.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_name)
    vocab = onrails.Vocabulary.from_tokenizer(tokenizer)
    engines: dict[str, Engine] = {}
    for key in [k.strip() for k in keys.split(",") if k.strip()]:
        try:
            engines[key] = make_engine(key, tokenizer, vocab)
        except ImportError as exc:
            print(f"{key}: not installed ({exc})", file=sys.stderr)
    return tokenizer, engines
