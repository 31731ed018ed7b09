"""The Matcher's contract: masks, advancing, end tokens, rollback, forced bytes, explanations."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from onrails import GrammarCompiler, Matcher, MatcherError, allocate_token_bitmask, apply_token_bitmask_inplace

from .small_vocab import small_vocabulary


@pytest.fixture(scope="module")
def compiler() -> GrammarCompiler:
    return GrammarCompiler(small_vocabulary())


def tid(matcher: Matcher, data: bytes) -> int:
    return matcher.grammar.vocabulary.token_bytes.index(data)


def eos(matcher: Matcher) -> int:
    return min(matcher.grammar.vocabulary.eos_token_ids)


def test_end_token_is_allowed_exactly_when_the_output_is_complete(compiler: GrammarCompiler) -> None:
    matcher = Matcher(compiler.compile_builtin(), "number")
    assert not matcher.is_allowed(eos(matcher))
    assert not matcher.advance(eos(matcher))
    assert matcher.advance(tid(matcher, b"12"))
    assert matcher.is_allowed(eos(matcher)) and matcher.is_accepting()
    assert matcher.advance(tid(matcher, b"."))
    assert not matcher.is_allowed(eos(matcher))
    assert matcher.advance(tid(matcher, b"5"))
    assert matcher.advance(eos(matcher))
    assert matcher.is_terminated()
    assert matcher.allowed_token_ids().tolist() == [eos(matcher)]
    assert not matcher.advance(tid(matcher, b"5"))


def test_special_and_padding_tokens_are_never_allowed(compiler: GrammarCompiler) -> None:
    matcher = Matcher(compiler.compile_builtin(), "insidevalue")
    vocab = matcher.grammar.vocabulary
    special = [i for i, b in enumerate(vocab.token_bytes) if b is None and i not in vocab.eos_token_ids]
    assert special, "the test vocabulary has special and padding ids"
    allowed = set(matcher.allowed_token_ids().tolist())
    assert not allowed & set(special)
    assert all(not matcher.advance(i) for i in special)
    assert not matcher.advance(vocab.size + 3)


def test_a_rejected_token_changes_nothing(compiler: GrammarCompiler) -> None:
    matcher = Matcher(compiler.compile_builtin(), "object")
    before = matcher.allowed_token_ids()
    assert not matcher.advance(tid(matcher, b"true"))
    assert np.array_equal(matcher.allowed_token_ids(), before)
    assert matcher.num_steps == 0


def test_raw_bytes_advance_from_any_bytes_like_object(compiler: GrammarCompiler) -> None:
    """``advance_bytes`` takes bytearray and memoryview as it takes bytes (the parser core,
    compiled, reads bytes only), and a numpy integer token id advances as an int does."""
    expected = Matcher(compiler.compile_builtin(), "object")
    assert expected.advance_bytes(b'{"a')
    for data in (bytearray(b'{"a'), memoryview(b'{"a')):
        matcher = Matcher(compiler.compile_builtin(), "object")
        assert matcher.advance_bytes(data)
        assert not matcher.advance_bytes(type(data)(b"\x01"))  # a control byte inside the key
        assert np.array_equal(matcher.allowed_token_ids(), expected.allowed_token_ids())
        assert matcher.advance(np.int64(tid(matcher, b'"')))


def test_rollback_restores_earlier_masks(compiler: GrammarCompiler) -> None:
    matcher = Matcher(compiler.compile_builtin(), "value")
    masks = [matcher.allowed_token_ids()]
    for data in [b'{"', b"a", b'":', b"[", b"1"]:
        assert matcher.advance(tid(matcher, data))
        masks.append(matcher.allowed_token_ids())
    matcher.rollback(2)
    assert np.array_equal(matcher.allowed_token_ids(), masks[3])
    matcher.rollback(3)
    assert np.array_equal(matcher.allowed_token_ids(), masks[0])
    with pytest.raises(MatcherError):
        matcher.rollback(1)


def test_rollback_undoes_termination(compiler: GrammarCompiler) -> None:
    matcher = Matcher(compiler.compile_builtin(), "number")
    matcher.advance(tid(matcher, b"12"))
    matcher.advance(eos(matcher))
    matcher.rollback(1)
    assert not matcher.is_terminated()
    assert matcher.advance(tid(matcher, b"3.5"))


def test_forced_continuation_follows_the_only_way_forward(compiler: GrammarCompiler) -> None:
    grammar = compiler.compile_builtin("compact")
    matcher = Matcher(grammar, "func")
    assert matcher.forced_continuation() == b'{"name":"'
    assert matcher.advance_bytes(b'{"name":"f"')
    assert matcher.forced_continuation() == b',"arguments":{'
    value = Matcher(grammar, "value")
    assert value.forced_continuation() == b""
    assert value.advance_bytes(b"tr")
    assert value.forced_continuation() == b"ue"


def test_forced_continuation_can_stop_inside_a_utf8_character(compiler: GrammarCompiler) -> None:
    grammar = compiler.compile_lark('start: "\u65e5" "!"\n')
    matcher = Matcher(grammar)
    assert matcher.forced_continuation() == "\u65e5!".encode()
    assert matcher.forced_continuation(max_bytes=2) == "\u65e5".encode()[:2]


def test_explain_names_the_failing_byte_and_what_was_expected(compiler: GrammarCompiler) -> None:
    matcher = Matcher(compiler.compile_builtin("compact"), "object")
    matcher.advance_bytes(b'{"a":1')
    why = matcher.explain(tid(matcher, b"]}"))
    assert not why.allowed
    assert why.failing_offset == 0 and why.failing_byte == ord("]")
    assert set(why.expected_bytes) >= {ord(","), ord("}"), ord("0"), ord(".")}
    assert "NUMBER" in why.in_terminal
    assert "RBRACE" in why.expected_terminals and "COMMA" in why.expected_terminals
    assert "fails at byte 0" in why.message
    assert any("object" in rule for rule in why.rule_context)
    ok = matcher.explain(tid(matcher, b"}"))
    assert ok.allowed


def test_explain_an_early_end_token(compiler: GrammarCompiler) -> None:
    matcher = Matcher(compiler.compile_builtin(), "array")
    matcher.advance_bytes(b"[1")
    why = matcher.explain(eos(matcher))
    assert not why.allowed and "not a complete sentence" in why.message


def test_explain_a_token_that_fails_in_its_middle(compiler: GrammarCompiler) -> None:
    matcher = Matcher(compiler.compile_builtin(), "value")
    why = matcher.explain(tid(matcher, b"null,"))
    assert why.failing_offset == 4 and why.failing_byte == ord(",")


def test_bitmask_rows_fill_numpy_and_torch_batches(compiler: GrammarCompiler) -> None:
    grammar = compiler.compile_builtin()
    size = grammar.vocabulary.size
    a, b = Matcher(grammar, "string"), Matcher(grammar, "number")
    numpy_mask = allocate_token_bitmask(2, size)
    a.fill_next_token_bitmask(numpy_mask, 0)
    b.fill_next_token_bitmask(numpy_mask, 1)
    torch_mask = torch.zeros(2, numpy_mask.shape[1], dtype=torch.int32)
    a.fill_next_token_bitmask(torch_mask, 0)
    b.fill_next_token_bitmask(torch_mask, 1)
    assert np.array_equal(torch_mask.numpy(), numpy_mask)
    logits = torch.randn(2, size + 7)
    apply_token_bitmask_inplace(logits, torch_mask)
    for row, matcher in enumerate([a, b]):
        finite = torch.isfinite(logits[row]).nonzero().flatten().tolist()
        assert finite == matcher.allowed_token_ids().tolist()
    with pytest.raises(MatcherError):
        a.fill_next_token_bitmask(np.zeros((1, 3), dtype=np.int32))


def test_apply_bitmask_to_selected_rows(compiler: GrammarCompiler) -> None:
    grammar = compiler.compile_builtin()
    matcher = Matcher(grammar, "number")
    mask = allocate_token_bitmask(3, grammar.vocabulary.size)
    matcher.fill_next_token_bitmask(mask, 2)
    logits = torch.zeros(3, grammar.vocabulary.size)
    apply_token_bitmask_inplace(logits, mask, indices=[2])
    assert torch.isfinite(logits[:2]).all()
    assert torch.isfinite(logits[2]).nonzero().flatten().tolist() == matcher.allowed_token_ids().tolist()


def test_matchers_on_one_grammar_agree_across_threads() -> None:
    text = 'start: "[" item ("," item)* "]"\nitem: NUMBER | "\\"" WORD "\\""\nNUMBER: /[0-9]+/\nWORD: /[a-z]+/\n'
    vocab = small_vocabulary()
    reference = Matcher(GrammarCompiler(vocab).compile_lark(text))
    grammar = GrammarCompiler(vocab).compile_lark(text)  # cold caches, filled by the threads
    single = [bytes([c]) for c in b'[12,"abc",7,"x",123]']
    expected: list[list[int]] = []
    for piece in single:
        expected.append(reference.allowed_token_ids().tolist())
        reference.advance(vocab.token_bytes.index(piece))
    failures: list[str] = []

    def run() -> None:
        for _ in range(20):
            matcher = Matcher(grammar)
            for step, piece in enumerate(single):
                if matcher.allowed_token_ids().tolist() != expected[step]:
                    failures.append(f"step {step}")
                matcher.advance(vocab.token_bytes.index(piece))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_bitmask_unpacking_on_cpu_and_on_accelerators_agree() -> None:
    from onrails.constrain.torch_ops import _unpack_on_device, unpack_bitmask

    rng = np.random.default_rng(0)
    words = rng.integers(-(2**31), 2**31 - 1, size=(3, 40), dtype=np.int64).astype(np.int32)
    for vocab in (1280, 1250):
        on_cpu = unpack_bitmask(words, vocab)
        elsewhere = _unpack_on_device(torch.from_numpy(words), vocab)
        assert on_cpu.shape == (3, vocab) and torch.equal(on_cpu, elsewhere)
        assert torch.equal(unpack_bitmask(words[1], vocab), elsewhere[1])
    token = 37
    single = np.zeros(40, dtype=np.int32)
    single[token >> 5] = 1 << (token & 31)
    assert torch.nonzero(unpack_bitmask(single, 1280)).flatten().tolist() == [token]
