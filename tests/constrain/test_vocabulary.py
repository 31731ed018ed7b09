"""Vocabulary: per-token bytes must be exact for the three reference tokenizers."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onrails.constrain.vocabulary import Vocabulary
from onrails.errors import TokenizerError

NAMES = ["smollm2", "llama", "gemma"]

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    '{"a":[1,2.5e-3,-0,true,false,null],"b":{"c":"d\\"e\\\\f\\/g\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00"}}',
    '[\n  {\n    "id": 1,\n\t"tags": ["x", "y"]\n  }\n]',
    "café naïve façade résumé Ångström ñandú",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "emoji: 😀👍🏽👨‍👩‍👧‍👦 🇫🇷 ❤️ ✓",
    "    leading spaces, trailing spaces    ",
    "tabs\t\t\tand\nnewlines\n\n\n\nand\r\nCRLF\r\n",
    " ",
    "\n",
    "  \n\t \u00a0 \u3000 end",
    "def f(x: int) -> int:\n    return x ** 2  # square\n\nprint(f(3))\n",
    "SELECT name, COUNT(*) FROM users WHERE age > 21 GROUP BY name;",
    "<table><tr><td>html</td></tr></table> </s> <s> [multimodal]",
    "Math: ∑_{i=1}^{n} i² = n(n+1)/2, π ≈ 3.14159, ∞, √2",
    "Ελληνικά, русский текст, עברית, العربية, हिन्दी",
    "zero\u200bwidth\ufeffbom and control \x01\x02\x7f chars",
    "a" * 100 + " " * 40 + "b" * 33,
    "1234567890 3.14159265358979 -42 1e10 0x1F",
    "~!@#$%^&*()_+`-=[]\\{}|;':\",./<>?",
]


@pytest.fixture(params=NAMES)
def pair(request: pytest.FixtureRequest) -> tuple[Any, Vocabulary]:
    name = request.param
    return request.getfixturevalue(f"{name}_tokenizer"), request.getfixturevalue(f"{name}_vocab")


def joined(vocab: Vocabulary, ids: list[int]) -> bytes:
    parts = [vocab.token_bytes[i] for i in ids]
    assert None not in parts, [i for i in ids if vocab.token_bytes[i] is None]
    return b"".join(parts)  # type: ignore[arg-type]


# -- exactness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_encode_then_join_gives_the_text(pair: tuple[Any, Vocabulary], text: str) -> None:
    tokenizer, vocab = pair
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert joined(vocab, ids) == text.encode("utf-8")


@pytest.mark.parametrize("text", ['", "job": ""}', "\u00e9t\u00e9\"}"])
def test_spell_of_whole_text_is_the_tokenizers_split(pair: tuple[Any, Vocabulary], text: str) -> None:
    tokenizer, vocab = pair
    encode = lambda t: tokenizer.encode(t, add_special_tokens=False)  # noqa: E731
    assert vocab.spell(text.encode(), encode) == encode(text)


def test_spell_of_bytes_ending_inside_a_character_is_exact(pair: tuple[Any, Vocabulary]) -> None:
    tokenizer, vocab = pair
    data = "\u65e5\u672c".encode()[:-1]
    assert joined(vocab, vocab.spell(data, lambda t: tokenizer.encode(t, add_special_tokens=False))) == data


@pytest.mark.parametrize("text", TEXTS)
def test_join_matches_the_tokenizers_own_decoder(pair: tuple[Any, Vocabulary], text: str) -> None:
    tokenizer, vocab = pair
    ids = tokenizer.encode(text, add_special_tokens=False)
    # The backend's decode, without transformers' clean_up_tokenization_spaces.
    assert joined(vocab, ids).decode("utf-8") == tokenizer.backend_tokenizer.decode(ids, skip_special_tokens=False)


# Surrogates cannot be encoded; U+2581 is SentencePiece's own space marker (Gemma reads a literal
# one as a space, a property of the tokenizer, not of the vocabulary).
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581"),
    max_size=60,
)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_TEXT)
def test_random_text_round_trips(request: pytest.FixtureRequest, name: str, text: str) -> None:
    tokenizer = request.getfixturevalue(f"{name}_tokenizer")
    vocab = request.getfixturevalue(f"{name}_vocab")
    # split_special_tokens: the text "<end_of_turn>" is text here, not the special token.
    ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    data = joined(vocab, ids)
    decoded = tokenizer.backend_tokenizer.decode(ids, skip_special_tokens=False)
    assert data.decode("utf-8", errors="replace") == decoded
    if decoded == text:  # SmolLM2 has no token for 21 bytes (0xF1, 0xF2...): it drops them
        assert data == text.encode("utf-8")


def test_single_tokens_match_convert_tokens_to_string(pair: tuple[Any, Vocabulary]) -> None:
    tokenizer, vocab = pair
    rng = random.Random(1234)
    n = len(tokenizer)
    sample = sorted(set(rng.sample(range(n), min(n, 6000))) | set(range(min(n, 600))))
    checked = 0
    for i in sample:
        data = vocab.token_bytes[i]
        if data is None:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a partial UTF-8 sequence: the tokenizer's string would hold U+FFFD
        token = tokenizer.convert_ids_to_tokens(i)
        assert tokenizer.convert_tokens_to_string([token]) == text, (i, token, data)
        checked += 1
    assert checked > len(sample) // 2


def test_every_content_token_is_nonempty_bytes(pair: tuple[Any, Vocabulary]) -> None:
    _, vocab = pair
    assert len(vocab.token_bytes) == vocab.size == len(vocab)
    assert all(b is None or (type(b) is bytes and b) for b in vocab.token_bytes)
    assert vocab.special_token_ids == {i for i, b in enumerate(vocab.token_bytes) if b is None}


@pytest.mark.parametrize("name, missing", [("llama", []), ("gemma", []), ("smollm2", [
    0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    0xFB, 0xFC, 0xFD, 0xFE, 0xFF,
])])
def test_single_byte_tokens(request: pytest.FixtureRequest, name: str, missing: list[int]) -> None:
    """Llama 3 has a token for every byte, Gemma through byte fallback; SmolLM2 lacks 21 bytes."""
    vocab = request.getfixturevalue(f"{name}_vocab")
    singles = {b[0] for b in vocab.token_bytes if b is not None and len(b) == 1}
    assert sorted(set(range(256)) - singles) == missing


# -- special tokens and end ids ----------------------------------------------------------------


def test_special_and_added_special_tokens_are_none(pair: tuple[Any, Vocabulary]) -> None:
    tokenizer, vocab = pair
    for i in tokenizer.all_special_ids:
        assert vocab.token_bytes[i] is None, i
    for i, added in tokenizer.added_tokens_decoder.items():
        if added.special:
            assert vocab.token_bytes[i] is None, (i, added.content)
        else:
            assert vocab.token_bytes[i] == added.content.encode("utf-8"), (i, added.content)


def ids_of(tokenizer: Any, *names: str) -> set[int]:
    vocab = tokenizer.get_vocab()
    return {vocab[n] for n in names}


def test_smollm2_specials_and_eos(smollm2_tokenizer: Any, smollm2_vocab: Vocabulary) -> None:
    tok, vocab = smollm2_tokenizer, smollm2_vocab
    print("smollm2 eos", {i: tok.convert_ids_to_tokens(i) for i in sorted(vocab.eos_token_ids)})
    assert vocab.size == 49152
    assert vocab.eos_token_ids == ids_of(tok, "<|im_end|>", "<|endoftext|>") == {0, 2}
    assert tok.convert_ids_to_tokens(2) == "<|im_end|>"
    assert vocab.token_bytes[ids_of(tok, "<|im_start|>").pop()] is None
    assert len(vocab.special_token_ids) == 17


def test_llama_specials_and_eos(llama_tokenizer: Any, llama_vocab: Vocabulary) -> None:
    tok, vocab = llama_tokenizer, llama_vocab
    print("llama eos", {i: tok.convert_ids_to_tokens(i) for i in sorted(vocab.eos_token_ids)})
    assert vocab.eos_token_ids == ids_of(tok, "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>")
    assert vocab.eos_token_ids == {128001, 128008, 128009}
    assert all(vocab.token_bytes[i] is None for i in range(128000, len(tok)))
    assert vocab.token_bytes[ids_of(tok, "<|begin_of_text|>").pop()] is None
    assert all(vocab.token_bytes[i] is not None for i in range(128000))


def test_gemma_specials_and_eos(gemma_tokenizer: Any, gemma_vocab: Vocabulary) -> None:
    tok, vocab = gemma_tokenizer, gemma_vocab
    print("gemma eos", {i: tok.convert_ids_to_tokens(i) for i in sorted(vocab.eos_token_ids)})
    assert vocab.size == 262144
    assert vocab.eos_token_ids == ids_of(tok, "<eos>", "<end_of_turn>") == {1, 106}
    for name in ("<pad>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<unused12>", "<unused6241>"):
        assert vocab.token_bytes[ids_of(tok, name).pop()] is None, name
    # Non-special added tokens are text that encode emits: Gemma's newline and tab runs, HTML tags.
    assert vocab.token_bytes[107] == b"\n" and vocab.token_bytes[108] == b"\n\n"
    assert vocab.token_bytes[ids_of(tok, "</s>").pop()] == b"</s>"  # an HTML tag here, not an end
    assert vocab.token_bytes[ids_of(tok, "<0x41>").pop()] == b"A"  # byte fallback
    assert vocab.token_bytes[ids_of(tok, "<0xE6>").pop()] == b"\xe6"
    assert vocab.token_bytes[ids_of(tok, "\u2581hello").pop()] == b" hello"  # no leading strip
    assert vocab.token_bytes[ids_of(tok, "\u2581\u2581").pop()] == b"  "


# -- size ----------------------------------------------------------------------------------------


def test_size_larger_than_tokenizer_pads_with_none(smollm2_tokenizer: Any, smollm2_vocab: Vocabulary) -> None:
    wide = Vocabulary.from_tokenizer(smollm2_tokenizer, size=smollm2_vocab.size + 64)
    assert wide.size == len(wide) == len(wide.token_bytes) == smollm2_vocab.size + 64
    assert wide.token_bytes[: smollm2_vocab.size] == smollm2_vocab.token_bytes
    assert all(b is None for b in wide.token_bytes[smollm2_vocab.size :])
    assert set(range(smollm2_vocab.size, wide.size)) <= wide.special_token_ids
    assert wide.eos_token_ids == smollm2_vocab.eos_token_ids
    assert wide.fingerprint != smollm2_vocab.fingerprint


def test_size_may_cut_trailing_special_ids_only(llama_tokenizer: Any, llama_vocab: Vocabulary) -> None:
    # Llama 3.2 text models have 128,256 logits; this tokenizer also has <|image|> at 128,256.
    cut = Vocabulary.from_tokenizer(llama_tokenizer, size=128256)
    assert cut.size == 128256 and cut.token_bytes == llama_vocab.token_bytes[:128256]
    with pytest.raises(TokenizerError):
        Vocabulary.from_tokenizer(llama_tokenizer, size=1000)


def test_from_tokenizer_is_cached(gemma_tokenizer: Any, gemma_vocab: Vocabulary) -> None:
    start = time.perf_counter()
    again = Vocabulary.from_tokenizer(gemma_tokenizer)
    assert again is gemma_vocab
    assert time.perf_counter() - start < 0.05
    other = Vocabulary.from_tokenizer(gemma_tokenizer, eos_token_ids=[1])
    assert other is not gemma_vocab and other.eos_token_ids == {1}
    assert other.token_bytes[106] is None  # <end_of_turn> is special anyway


def test_eos_override_makes_those_ids_none(smollm2_tokenizer: Any) -> None:
    newline = smollm2_tokenizer.encode("\n", add_special_tokens=False)[0]
    vocab = Vocabulary.from_tokenizer(smollm2_tokenizer, eos_token_ids=[2, newline])
    assert vocab.eos_token_ids == {2, newline}
    assert vocab.token_bytes[newline] is None


def test_fingerprint_is_stable(llama_tokenizer: Any, llama_vocab: Vocabulary) -> None:
    rebuilt = Vocabulary(llama_vocab.token_bytes, llama_vocab.eos_token_ids)
    assert rebuilt.fingerprint == llama_vocab.fingerprint
    assert len(llama_vocab.fingerprint) == 64


def test_build_is_fast(gemma_tokenizer: Any) -> None:
    start = time.perf_counter()
    vocab = Vocabulary.from_tokenizer(gemma_tokenizer, size=262144 + 1)  # a fresh cache key
    elapsed = time.perf_counter() - start
    print(f"gemma vocabulary ({vocab.size} ids) built in {elapsed:.3f} s")
    assert elapsed < 2.0


# -- the constructor, without a tokenizer -------------------------------------------------------


def test_constructor_pads_and_normalises() -> None:
    vocab = Vocabulary([b"a", None, b"", bytearray(b"bc"), None], [4], size=8, name="t")
    assert vocab.size == len(vocab) == 8
    assert vocab.token_bytes == (b"a", None, None, b"bc", None, None, None, None)
    assert vocab.special_token_ids == {1, 2, 4, 5, 6, 7}
    assert vocab.eos_token_ids == {4}
    assert vocab.name == "t"
    assert "size=8" in repr(vocab)


@pytest.mark.parametrize(
    "tokens, eos, size",
    [
        ([b"a", None], [2], None),  # end id out of range
        ([b"a", None], [-1], None),
        ([b"a", None], [0], None),  # end id with content bytes
        ([b"a", None], ["1"], None),
        ([b"a", "b"], [0], None),  # a str entry
        ([b"a", None, None], [1], 2),  # size below the entries
        ([], [], None),  # empty
    ],
)
def test_constructor_rejects_bad_input(tokens: list[Any], eos: list[Any], size: int | None) -> None:
    with pytest.raises(TokenizerError):
        Vocabulary(tokens, eos, size=size)


def test_fingerprint_depends_on_content() -> None:
    base = Vocabulary([b"a", b"b", None], [2]).fingerprint
    assert base == Vocabulary([b"a", b"b", None], [2]).fingerprint
    assert base != Vocabulary([b"a", b"c", None], [2]).fingerprint
    assert base != Vocabulary([b"ab", None, None], [2]).fingerprint
    assert base != Vocabulary([b"a", b"b", None], []).fingerprint
    assert base != Vocabulary([b"a", b"b", None], [2], size=4).fingerprint


def test_vocabularies_hash_by_identity() -> None:
    a = Vocabulary([b"a", None], [1])
    b = Vocabulary([b"a", None], [1])
    assert a != b and len({a, b}) == 2


def test_rejects_a_slow_tokenizer() -> None:
    with pytest.raises(TokenizerError):
        Vocabulary.from_tokenizer(object())


# -- decoder configurations, on small in-memory tokenizers ---------------------------------------


def _fast(model: Any, decoder: Any, **kwargs: Any) -> Any:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(model)
    backend.decoder = decoder
    return PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)


def test_metaspace_decoder_with_byte_fallback() -> None:
    from tokenizers import decoders, models

    vocab = {"<unk>": 0, "</s>": 1, "\u2581hi": 2, "there": 3, "<0x0A>": 4, "<0xC3>": 5, "\u2581": 6}
    tok = _fast(
        models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True),
        decoders.Sequence([decoders.Metaspace(replacement="\u2581", prepend_scheme="first"), decoders.ByteFallback()]),
        unk_token="<unk>",
        eos_token="</s>",
    )
    v = Vocabulary.from_tokenizer(tok)
    assert v.token_bytes == (None, None, b" hi", b"there", b"\n", b"\xc3", b" ")
    assert v.eos_token_ids == {1}


def test_unsupported_decoder_is_an_error() -> None:
    from tokenizers import decoders, models

    tok = _fast(models.WordPiece(vocab={"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"), decoders.WordPiece())
    with pytest.raises(TokenizerError, match="unsupported"):
        Vocabulary.from_tokenizer(tok)
