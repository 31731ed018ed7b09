"""A model's vocabulary as bytes: what each token id contributes to the output, or None.

The constraint engine works on bytes, never on token strings. A ``Vocabulary`` holds, for every
id of the model's logits row, the exact bytes that token adds when it is decoded in the middle of
a sequence, or ``None`` when the token is never content (special and control tokens, ids past the
tokenizer's end up to the logits width).

``Vocabulary.from_tokenizer`` reads any Hugging Face fast tokenizer. How token strings become
bytes follows the tokenizer's own decoder (``backend_tokenizer.to_str()``), not a guess:

* byte-level BPE (GPT-2, Llama 3, SmolLM2, Qwen: a ``ByteLevel`` decoder): every character of a
  token string stands for one byte in GPT-2's ``bytes_to_unicode`` alphabet. A string with a
  character outside that alphabet is taken as its own UTF-8, as the ``ByteLevel`` decoder does.
* SentencePiece-style (Gemma, Llama 2, Mistral: ``Metaspace`` or ``Replace`` decoders): the
  replacement character (``▁``, U+2581) is a space, and with ``ByteFallback`` the pieces
  ``<0xNN>`` are the single byte NN. Decoders that strip the leading space of the *first* token
  (``Strip``, ``Metaspace`` with ``prepend_scheme``) are deliberately not applied: the bytes are
  those a token adds mid-sequence, which is what a grammar constrains. For Gemma 3 (decoder
  ``Replace ▁→' '``, ``ByteFallback``, ``Fuse``; no ``Strip``, no dummy prefix) this is exact.
* a tokenizer without a decoder: the token strings as UTF-8 (plus ``<0xNN>`` byte fallback when
  the model declares it).

Special tokens are ``None``: ``tokenizer.all_special_ids`` and every added token flagged
``special`` (``<|eot_id|>``, ``<unused12>``, ``<mask>``, ``<start_of_turn>``, reserved ids...).
Added tokens *not* flagged special are ordinary text that ``encode`` emits (Gemma's ``"\\n"``,
``"\\n\\n"``, tab runs, ``<table>``...): they keep their text as bytes, because banning them would
forbid a model's usual newline token. The end-of-sequence ids are always ``None``: they end the
output, they never add to it. Tokens whose bytes would be empty are ``None`` as well.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
import functools
from functools import cached_property
from typing import Any

from onrails.errors import TokenizerError

__all__ = ["EOS_TOKEN_NAMES", "Vocabulary"]

#: Token names that end a turn or a document in common chat models; each counts as an
#: end-of-sequence id when the tokenizer has it as a *special* token (Gemma's ``</s>`` is an
#: ordinary HTML tag and is not one).
EOS_TOKEN_NAMES: tuple[str, ...] = (
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<eos>",
    "</s>",
    "<|eom_id|>",
)


class Vocabulary:
    """Per-token bytes of a model's vocabulary, with its end-of-sequence ids.

    Immutable by convention: treat every attribute as read-only. Instances hash by identity (the
    engine caches per-vocabulary data in weak dictionaries); compare ``fingerprint`` for content.
    """

    size: int
    token_bytes: tuple[bytes | None, ...]
    eos_token_ids: frozenset[int]
    special_token_ids: frozenset[int]
    name: str

    def __init__(
        self,
        token_bytes: Sequence[bytes | None],
        eos_token_ids: Iterable[int],
        *,
        size: int | None = None,
        name: str = "",
    ) -> None:
        """Build from per-id bytes; ids from ``len(token_bytes)`` up to ``size`` are ``None``.

        ``b""`` is stored as ``None``. Raises ``TokenizerError`` when an entry is not bytes or
        None, ``size`` is smaller than ``token_bytes``, or an end id is out of range or has
        content bytes. O(size).
        """
        n = len(token_bytes)
        if size is None:
            size = n
        if isinstance(size, bool) or not isinstance(size, int):
            raise TokenizerError(f"vocabulary size must be an int, got {size!r}")
        if size < 1:
            raise TokenizerError(f"vocabulary size must be at least 1, got {size}")
        if size < n:
            raise TokenizerError(f"vocabulary size {size} is smaller than the {n} token entries given")
        table: list[bytes | None] = [None] * size
        for i, data in enumerate(token_bytes):
            if data is None:
                continue
            if type(data) is not bytes:
                if isinstance(data, (bytearray, memoryview)):
                    data = bytes(data)
                elif isinstance(data, bytes):  # a bytes subclass
                    data = bytes(data)
                else:
                    raise TokenizerError(
                        f"token {i}: expected bytes or None, got {type(data).__name__} {data!r}"
                    )
            if data:
                table[i] = data
        eos: set[int] = set()
        for t in eos_token_ids:
            if isinstance(t, bool) or not isinstance(t, int):
                raise TokenizerError(f"end-of-sequence id {t!r} is not an int")
            if not 0 <= t < size:
                raise TokenizerError(f"end-of-sequence id {t} is outside the vocabulary (size {size})")
            if table[t] is not None:
                raise TokenizerError(
                    f"end-of-sequence id {t} has content bytes {table[t]!r}; end ids must be None"
                )
            eos.add(t)
        self.size = size
        self.token_bytes = tuple(table)
        self.eos_token_ids = frozenset(eos)
        self.special_token_ids = frozenset(i for i, b in enumerate(table) if b is None)
        self.name = name

    @cached_property
    def fingerprint(self) -> str:
        """Stable SHA-256 hex digest of (size, end ids, every token's bytes); computed once, O(size)."""
        h = hashlib.sha256()
        h.update(b"onrails-vocabulary-v1\0")
        h.update(f"{self.size}\0{sorted(self.eos_token_ids)}\0".encode())
        lengths = bytearray()
        for b in self.token_bytes:
            n = -1 if b is None else len(b)
            lengths += n.to_bytes(4, "little", signed=True)
        h.update(bytes(lengths))
        h.update(b"".join(b for b in self.token_bytes if b is not None))
        return h.hexdigest()

    def __len__(self) -> int:
        """The logits width, ``size``. O(1)."""
        return self.size

    def spell(self, data: bytes, encode: Callable[[str], list[int]]) -> list[int]:
        """Token ids spelling ``data`` exactly: ``encode``'s (the tokenizer's canonical split)
        as far as its tokens match the bytes, then greedy longest matches (for text that ends
        inside a character, or that the tokenizer normalises). May come short of ``data`` only
        where no token has the next byte. O(len(data)) after a first O(size) call."""
        token_bytes = self.token_bytes
        end = len(data)
        text = None
        while end > 0 and end > len(data) - 4:
            try:
                text = data[:end].decode("utf-8")
                break
            except UnicodeDecodeError:
                end -= 1
        out: list[int] = []
        pos = 0
        if text:
            for t in encode(text):
                piece = token_bytes[t] if 0 <= t < len(token_bytes) else None
                if not piece or not data.startswith(piece, pos):
                    break
                out.append(t)
                pos += len(piece)
        by_bytes, longest = self._by_bytes
        while pos < len(data):
            size = next((n for n in range(min(len(data) - pos, longest), 0, -1) if data[pos : pos + n] in by_bytes), 0)
            if not size:
                break
            out.append(by_bytes[data[pos : pos + size]])
            pos += size
        return out

    @cached_property
    def _by_bytes(self) -> tuple[dict[bytes, int], int]:
        # The lowest id of each byte string, and the longest token's length.
        mapping: dict[bytes, int] = {}
        for t, b in enumerate(self.token_bytes):
            if b and b not in mapping:
                mapping[b] = t
        return mapping, max((len(b) for b in mapping), default=1)

    def __repr__(self) -> str:
        return (
            f"Vocabulary(name={self.name!r}, size={self.size}, "
            f"special={len(self.special_token_ids)}, eos={sorted(self.eos_token_ids)})"
        )

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        *,
        size: int | None = None,
        eos_token_ids: Iterable[int] | None = None,
    ) -> Vocabulary:
        """Read a Hugging Face fast tokenizer into a ``Vocabulary`` (see the module docstring).

        ``size`` is the model's logits width (default: the tokenizer's length); ids past the
        tokenizer are None, and a ``size`` below it may only cut off special ids.
        ``eos_token_ids`` defaults to ``tokenizer.eos_token_id`` plus the special tokens named
        in ``EOS_TOKEN_NAMES``; end ids are always None. Cached per tokenizer object (and
        arguments): the first call costs about 0.1-0.5 s for 50k-262k tokens, later calls O(1).
        Raises ``TokenizerError`` for tokenizers it cannot read exactly.
        """
        eos_key = None if eos_token_ids is None else frozenset(eos_token_ids)
        key = (size, eos_key, _tokenizer_length(tokenizer))
        with _cache_lock:
            cached = _cache_get(tokenizer, key)
        if cached is not None:
            return cached
        vocab = _build_from_tokenizer(cls, tokenizer, size=size, eos_token_ids=eos_key)
        with _cache_lock:
            _cache_put(tokenizer, key, vocab)
        return vocab


# -- the per-tokenizer cache ---------------------------------------------------------------------

_cache_lock = threading.Lock()
# id(tokenizer) -> (a weak or strong reference to it, {arguments: Vocabulary})
_cache: dict[int, tuple[Any, dict[Any, Vocabulary]]] = {}


def _cache_get(tokenizer: Any, key: Any) -> Vocabulary | None:
    entry = _cache.get(id(tokenizer))
    if entry is None:
        return None
    ref, by_key = entry
    held = ref() if isinstance(ref, weakref.ref) else ref
    if held is not tokenizer:  # a dead object's id was reused
        del _cache[id(tokenizer)]
        return None
    return by_key.get(key)


def _cache_put(tokenizer: Any, key: Any, vocab: Vocabulary) -> None:
    tid = id(tokenizer)
    entry = _cache.get(tid)
    if entry is None:
        try:
            ref: Any = weakref.ref(tokenizer, functools.partial(_forget, tid))
        except TypeError:  # not weak-referenceable: keep it alive so its id stays unique
            ref = tokenizer
        entry = (ref, {})
        _cache[tid] = entry
    entry[1][key] = vocab


def _forget(tid: int, ref: weakref.ref[Any]) -> None:
    with _cache_lock:
        entry = _cache.get(tid)
        if entry is not None and entry[0] is ref:
            del _cache[tid]


def _tokenizer_length(tokenizer: Any) -> int:
    try:
        return len(tokenizer)
    except TypeError:
        return -1


# -- reading a tokenizer -------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_BYTE_ALPHABET = _bytes_to_unicode()
# str.translate table: alphabet char -> the Latin-1 char of its byte; any other char below 256 ->
# a char Latin-1 cannot encode, so that strings outside the alphabet fall back to their UTF-8.
_BYTE_LEVEL_TABLE: dict[int, str] = {c: "\U0010ffff" for c in range(256)}
_BYTE_LEVEL_TABLE.update({ord(ch): chr(b) for b, ch in _BYTE_ALPHABET.items()})


def _byte_level_bytes(token: str) -> bytes:
    try:
        return token.translate(_BYTE_LEVEL_TABLE).encode("latin-1")
    except UnicodeEncodeError:
        return token.encode("utf-8")


def _decoder_config(backend: Any) -> tuple[Any, bool]:
    """The decoder's JSON configuration and the model's ``byte_fallback`` flag.

    Serialises only the decoder (microseconds); the whole ``to_str()`` (vocabulary and merges,
    about a second for 262k tokens) is the fallback for bindings without ``__getstate__``.
    """
    try:
        decoder = backend.decoder
        config = None if decoder is None else json.loads(decoder.__getstate__())
        fallback = getattr(backend.model, "byte_fallback", False)
        return config, bool(fallback)
    except Exception:
        pass
    try:
        spec = json.loads(backend.to_str())
    except Exception as exc:  # pragma: no cover - every fast tokenizer serialises
        raise TokenizerError(f"cannot read the tokenizer's configuration: {exc}") from exc
    return spec.get("decoder"), bool((spec.get("model") or {}).get("byte_fallback"))


def _decoder_steps(node: Any) -> list[dict[str, Any]]:
    """The decoder's steps in order, ``Sequence`` decoders flattened."""
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        out: list[dict[str, Any]] = []
        for sub in node.get("decoders") or []:
            out.extend(_decoder_steps(sub))
        return out
    return [node]


_SUPPORTED_TEXT_STEPS = {"Replace", "Metaspace", "ByteFallback", "Fuse", "Strip"}


class _Reader:
    """Turns one tokenizer's token strings into bytes, following its decoder's configuration."""

    def __init__(self, tokenizer: Any) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TokenizerError(
                f"{type(tokenizer).__name__} has no backend_tokenizer: onrails reads Hugging Face "
                "*fast* tokenizers (load with AutoTokenizer.from_pretrained(..., use_fast=True))"
            )
        self.backend = backend
        decoder, model_byte_fallback = _decoder_config(backend)
        steps = _decoder_steps(decoder)
        kinds = [s.get("type") for s in steps]
        self.byte_level = "ByteLevel" in kinds
        self.replacements: list[tuple[str, str]] = []
        self.byte_fallback = False
        if self.byte_level:
            others = {str(k) for k in kinds} - {"ByteLevel"}
            if others:
                raise TokenizerError(f"unsupported decoder mix with ByteLevel: {sorted(others)}")
            return
        unsupported = [k for k in kinds if k not in _SUPPORTED_TEXT_STEPS]
        if unsupported:
            raise TokenizerError(
                f"unsupported tokenizer decoder {unsupported}: onrails reads byte-level BPE and "
                "SentencePiece-style (Metaspace / Replace / ByteFallback) tokenizers"
            )
        for step in steps:
            kind = step.get("type")
            if kind == "Replace":
                pattern = step.get("pattern") or {}
                if "String" not in pattern:
                    raise TokenizerError(f"unsupported Replace decoder with a regex: {step}")
                self.replacements.append((pattern["String"], step.get("content", "")))
            elif kind == "Metaspace":
                self.replacements.append((step.get("replacement", "\u2581"), " "))
            elif kind == "ByteFallback":
                self.byte_fallback = True
        if not steps and model_byte_fallback:
            self.byte_fallback = True

    def vocab_token(self, token: str) -> bytes:
        """Bytes of a model-vocabulary token string."""
        if self.byte_level:
            return _byte_level_bytes(token)
        if self.byte_fallback and len(token) == 6 and token.startswith("<0x") and token[5] == ">":
            try:
                return bytes([int(token[3:5], 16)])
            except ValueError:
                pass
        for old, new in self.replacements:
            token = token.replace(old, new)
        return token.encode("utf-8")

    def added_token(self, content: str, normalized: bool) -> bytes:
        """Bytes of a non-special added token: the text it matches in ``encode``."""
        if normalized and not self.byte_level:
            for old, new in self.replacements:
                content = content.replace(old, new)
        return content.encode("utf-8")


def _build_from_tokenizer(
    cls: type[Vocabulary],
    tokenizer: Any,
    *,
    size: int | None,
    eos_token_ids: frozenset[int] | None,
) -> Vocabulary:
    reader = _Reader(tokenizer)
    strings = reader.backend.get_vocab(with_added_tokens=True)
    added = dict(getattr(tokenizer, "added_tokens_decoder", None) or {})
    n = max(_tokenizer_length(tokenizer), max(strings.values(), default=-1) + 1, max(added, default=-1) + 1)
    table: list[bytes | None] = [None] * n
    for token, i in strings.items():
        if i not in added:
            data = reader.vocab_token(token)
            table[i] = data or None
    special: set[int] = set(getattr(tokenizer, "all_special_ids", None) or ())
    for i, tok in added.items():
        if getattr(tok, "special", True):
            special.add(i)
        else:
            content = str(getattr(tok, "content", tok))
            table[i] = reader.added_token(content, bool(getattr(tok, "normalized", False))) or None
    for i in special:
        if 0 <= i < n:
            table[i] = None

    if eos_token_ids is None:
        eos: set[int] = set()
        main_eos = getattr(tokenizer, "eos_token_id", None)
        if isinstance(main_eos, int):
            eos.add(main_eos)
        for name in EOS_TOKEN_NAMES:
            i = strings.get(name)
            if i is not None and i in special:
                eos.add(i)
    else:
        eos = set(eos_token_ids)
    for i in eos:
        if isinstance(i, int) and 0 <= i < n:
            table[i] = None  # an end id ends the output; it never adds to it

    if size is not None:
        if size < n:
            cut = [i for i in range(size, n) if table[i] is not None]
            if cut:
                raise TokenizerError(
                    f"size {size} is below the tokenizer's {n} ids and would drop content "
                    f"tokens (first: id {cut[0]} = {table[cut[0]]!r})"
                )
            if eos_token_ids is None:
                eos = {i for i in eos if i < size}
            table = table[:size]
    given = getattr(tokenizer, "onrails_name", None)  # set by onrails.runtime.load_tokenizer
    if isinstance(given, str) and given:
        name = given
    else:
        name = str(getattr(tokenizer, "name_or_path", "") or "")
        name = name.rstrip("/").rsplit("/", 1)[-1] or type(tokenizer).__name__
    return cls(table, eos, size=size if size is not None else n, name=name)
