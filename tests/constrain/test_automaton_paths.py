"""The engine's alternative paths give the same masks and languages: walks in compiled code or
in numpy, walks that follow terminals or step the automaton, a transition table reserved at once
or doubled, key sets cut out of a string over the key trie, and counted strings however their
group is wrapped."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onrails.constrain import _automaton, compiled
from onrails.constrain._bytedfa import regex_to_byte_dfa
from onrails.constrain.compiled import GrammarCompiler
from onrails.constrain.matcher import Matcher
from onrails.grammars.regex_notes import except_words
from tests.constrain.automata import accepts

JSON_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt])*"'
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "integer"}}},
    "required": ["name"],
}
DOCUMENT = '{"name": "a b", "tags": [1, 23], "extra": {"x": [true, null, "y"]}}'
GRAMMAR = 'start: item+\n?item: WORD | NUMBER\n%import common.WORD\n%import common.NUMBER\n%import common.WS\n%ignore WS\n'


def _masks_along(compile_one: Any, root: "str | None", text: str, tokenizer: Any) -> list[np.ndarray]:
    grammar = compile_one()
    matcher = Matcher(grammar, root)
    masks = []
    for token in tokenizer.encode(text, add_special_tokens=False):
        masks.append(np.array(matcher.allowed_token_ids()))
        assert matcher.advance(token)
    masks.append(np.array(matcher.allowed_token_ids()))
    return masks


@pytest.mark.parametrize("kind", ["schema", "lark"])
def test_walks_that_follow_terminals_and_walks_that_step_the_automaton_agree(
    kind: str, llama_vocab: Any, llama_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def compile_one() -> Any:
        compiler = GrammarCompiler(llama_vocab)
        if kind == "schema":
            return compiler.compile_json_schema(SCHEMA, strict=False)
        return compiler.compile_lark(GRAMMAR)

    text = DOCUMENT if kind == "schema" else "hello 12 world3 x"
    runs = []
    for followed in (0, 1 << 30):  # every walk steps the automaton / every walk follows terminals
        with monkeypatch.context() as patch:
            patch.setattr(compiled, "_FOLLOWED_NODES", followed)
            runs.append(_masks_along(compile_one, None, text, llama_tokenizer))
    assert len(runs[0]) == len(runs[1]) > 5
    for stepped, followed_masks in zip(*runs):
        assert np.array_equal(stepped, followed_masks)


ARITHMETIC = (Path(__file__).parent.parent / "grammars" / "arithmetic.lark").read_text()
# Nested past the truncated stacks' first cut and met twice: their walks suspend.
NESTED = '{"name": "a", "extra": [[[[[[[[[[1]]]]]]]]]], "more": [[[[[[[[[[2, [3]]]]]]]]]]]}'
IGNORED_BLANKS = 'start: "a" "b"\nWS: /[ \\t]+/\n%ignore WS\n'


def test_the_walk_kernel_is_built_where_a_c_compiler_is() -> None:
    """Without it every mask walk silently falls back to numpy, several times slower."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here: the package installs without its kernel")
    assert compiled._kernel is not None


@pytest.mark.skipif(compiled._kernel is None, reason="built without the walk kernel")
@pytest.mark.parametrize(
    "kind, text",
    [
        ("schema", DOCUMENT),
        ("schema", NESTED),
        ("lark", "hello 12 world3 x"),
        ("arithmetic", "(1 + 2.5) * -(3 / 4) - 7"),
        ("ignored blanks", "a \t b"),
    ],
)
def test_the_compiled_walk_and_the_numpy_walk_give_the_same_masks(
    kind: str, text: str, llama_vocab: Any, llama_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every walk along the text runs in both; the masks and the suspended nodes must agree. No
    state takes the root pass instead: words next to words walk from thousands of nodes."""
    grammars = {"lark": GRAMMAR, "arithmetic": ARITHMETIC, "ignored blanks": IGNORED_BLANKS}

    def compile_one() -> Any:
        compiler = GrammarCompiler(llama_vocab)
        if kind == "schema":
            return compiler.compile_json_schema(SCHEMA, strict=False)
        return compiler.compile_lark(grammars[kind])

    kernel_walk = compiled._Generation._walk
    walks = []

    def both(self: Any, starts: list[tuple[np.ndarray, int]], words: np.ndarray) -> Any:
        before = words.copy()
        suspended = kernel_walk(self, starts, words)
        # The numpy walk reads below nodes itself, not from what the kernel put in the cache.
        shared = self.grammar._shared
        kept = shared.below, shared.below_bytes
        shared.below, shared.below_bytes = {}, 0
        with monkeypatch.context() as patch:
            patch.setattr(compiled, "_kernel", None)
            numpy_words, numpy_suspended = self._walk_numpy(*compiled._starts(starts))
        shared.below, shared.below_bytes = kept
        assert np.array_equal(words, before | numpy_words)

        def by_state(found: Any) -> list[tuple[int, list[int]]]:
            return sorted((state, sorted(set(nodes.tolist()))) for state, nodes in found)

        assert by_state(suspended) == by_state(numpy_suspended)
        walks.append(len(suspended))
        return suspended

    monkeypatch.setattr(compiled._Generation, "_walk", both)
    monkeypatch.setattr(compiled, "_FOLLOWED_NODES", 1 << 30)
    _masks_along(compile_one, None, text, llama_tokenizer)
    assert len(walks) >= 3
    if text == NESTED:
        assert any(walks), "no walk met a truncated stack's suspension"


# ``p`` and ``q`` read alike: past the ``x`` every state holds each position on two stacks that
# differ only at their bottom, nested past the first cut.
TWO_WAYS = 'start: p item | q item\np: "x"\nq: "x"\n?item: "[" item "]" | WORD\n%import common.WORD\n'
TWO_WAYS_TEXT = "x" + "[" * 12 + "ab" + "]" * 12


def test_configurations_sharing_a_cut_are_walked_on_it_once_with_the_same_masks(
    llama_vocab: Any, llama_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state's configurations on stacks with the same top take their mask from it at the first
    meeting, not from the first one's real stack and then the top; the masks do not change."""
    counted = compiled._Generation._gather

    def masks_and_real_walks() -> tuple[list[np.ndarray], int]:
        real = [0]

        def counting(self: Any, config: Any, *rest: Any) -> None:
            automaton = self.automaton
            node = config[0]
            while node > _automaton.OPAQUE:
                node = automaton.stack_parent[node]
            if node != _automaton.OPAQUE:
                real[0] += 1
            counted(self, config, *rest)

        with monkeypatch.context() as patch:
            patch.setattr(compiled._Generation, "_gather", counting)
            masks = _masks_along(
                lambda: GrammarCompiler(llama_vocab).compile_lark(TWO_WAYS), None, TWO_WAYS_TEXT, llama_tokenizer
            )
        return masks, real[0]

    shared, shared_real = masks_and_real_walks()
    with monkeypatch.context() as patch:
        patch.setattr(compiled._Generation, "_meet_cuts", lambda self, configs: None)
        apart, apart_real = masks_and_real_walks()
    assert len(shared) == len(apart) > 10
    for one, other in zip(shared, apart):
        assert np.array_equal(one, other)
    assert shared_real < apart_real


def test_a_state_walks_the_trie_once_on_real_stacks(
    llama_vocab: Any, llama_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state's configurations, and the boundaries where their terminals may end, go into one
    union and one walk: a number that may end or go on is walked once, not once for its own ends
    and again for what may follow it."""
    grammar = GrammarCompiler(llama_vocab).compile_json_schema({"type": "array", "items": {"type": "number"}})
    walks: list[int] = []
    walk, state_mask = compiled._Generation._walk, compiled._Generation.state_mask

    def counted_walk(self: Any, *args: Any) -> Any:
        walks[-1] += 1
        return walk(self, *args)

    def counted_state_mask(self: Any, state: int) -> Any:
        if state not in self._state_masks:
            walks.append(0)
        return state_mask(self, state)

    monkeypatch.setattr(compiled._Generation, "_walk", counted_walk)
    monkeypatch.setattr(compiled._Generation, "state_mask", counted_state_mask)
    matcher = Matcher(grammar)
    for token in llama_tokenizer.encode("[12, 3456, 7.5, 1e3]", add_special_tokens=False):
        matcher.allowed_token_ids()
        assert matcher.advance(token)
    assert sum(walks) >= 3 and max(walks) == 1


def test_toggled_keeps_the_nodes_in_exactly_one_of_the_two() -> None:
    rng = np.random.default_rng(0)
    for size, flips, shared in ((0, 1, 0), (91, 1, 1), (91, 5, 2), (500, 40, 20), (3, 0, 0)):
        nodes = np.sort(rng.choice(10_000, size, replace=False)).astype(np.int64)
        fresh = np.setdiff1d(rng.choice(10_000, flips, replace=False), nodes)[: flips - shared]
        flip = rng.permutation(np.concatenate([fresh, rng.choice(nodes, shared, replace=False)])).astype(np.int64)
        assert np.array_equal(compiled._toggled(nodes, flip), np.setxor1d(nodes, flip))


def test_flipped_pure_parts_toggle_the_tokens_at_the_nodes(llama_vocab: Any) -> None:
    grammar = GrammarCompiler(llama_vocab).compile_lark('start: "x"')
    trie = grammar._trie
    rng = np.random.default_rng(1)
    stay = grammar._packed_of(rng.choice(llama_vocab.size, 300, replace=False).astype(np.int64))
    exits = np.sort(rng.choice(trie.n_nodes, 50, replace=False)).astype(np.int64)
    with_tokens = np.flatnonzero(trie.node_token_count > 0)
    for count in (1, 2, compiled._FEW_FLIPS, compiled._FEW_FLIPS + 1, 500):
        nodes = rng.choice(with_tokens, count, replace=False).astype(np.int64)
        flipped, same_exits = grammar._flipped((stay, exits), nodes.tobytes(), b"")
        expected = np.unpackbits(stay.view(np.uint8), bitorder="little").astype(bool)
        expected[trie.tokens_at(nodes)] ^= True
        assert np.array_equal(np.unpackbits(flipped.view(np.uint8), bitorder="little").astype(bool), expected)
        assert same_exits is exits and flipped is not stay


# Sparse and dense passes: a string's content keeps nearly every node alive, a phone number a
# few dozen, words and URLs tens of thousands.
PURE_PATTERNS = (
    JSON_STRING,
    r"[0-9]{3}-[0-9]{4}",
    r"[a-z]+",
    r"(https?://)?[a-zA-Z0-9.-]+(/[a-zA-Z0-9._~-]*)*",
    r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?",
    r"[ \t\n]+",
    # Inside the string, its states read as one another after a byte or two (``_near_pass``).
    r'"[^"\\]*ab[^"\\]*(?:cd|ef)[^"\\]*"',
)


@pytest.mark.skipif(compiled._kernel is None, reason="built without the walk kernel")
@pytest.mark.parametrize("vocab_name", ["smollm2_vocab", "llama_vocab", "gemma_vocab"])
def test_the_compiled_trie_pass_gives_the_numpy_passes_pure_parts(
    vocab_name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pure parts of every state of patterns whose passes stay sparse or fill whole levels: the
    same tokens and the same ends, in the same order, from the compiled pass and from numpy."""
    grammar = GrammarCompiler(request.getfixturevalue(vocab_name)).compile_lark('start: "a"')
    near_pass = compiled.CompiledGrammar._near_pass
    near: list[int] = []

    def counted(self: Any, dfa: Any, state: int) -> Any:
        found = near_pass(self, dfa, state)
        near.append(found is not None)
        return found

    monkeypatch.setattr(compiled.CompiledGrammar, "_near_pass", counted)
    for pattern in PURE_PATTERNS:
        dfa = regex_to_byte_dfa(pattern)
        for state in range(dfa.n_states):
            kernel_stay, kernel_exits = grammar._trie_pass(dfa, state)
            # Pure parts are shared by signature: a state read beside a dense one finds it there.
            grammar._shared.pure.keep(dfa.signature(state), (kernel_stay, kernel_exits))
            with monkeypatch.context() as patch:
                patch.setattr(compiled, "_kernel", None)
                numpy_stay, numpy_exits = grammar._trie_pass(dfa, state)
            assert np.array_equal(kernel_stay, numpy_stay), (pattern, state)
            assert kernel_exits.tolist() == numpy_exits.tolist(), (pattern, state)
        assert np.count_nonzero(grammar._trie_pass(dfa, 0)[0]), pattern
    assert any(near) and not all(near), "no state was read beside a dense one, or none took a whole pass"


@pytest.mark.skipif(compiled._kernel is None, reason="built without the walk kernel")
@pytest.mark.parametrize("vocab_name", ["smollm2_vocab", "llama_vocab", "gemma_vocab"])
def test_the_compiled_pass_beside_the_words_gives_the_python_passes_pure_parts(
    vocab_name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A string minus a schema's keys: at every state, the pure part made from the string's by the
    compiled pass along the keys equals the one the Python pass makes, and the one a pass over the
    whole trie makes in the cut automaton."""
    grammar = GrammarCompiler(request.getfixturevalue(vocab_name)).compile_lark('start: "a"')
    keys = ['"name"', '"names"', '"id"', '"type"', '"a b"', '"\\u00e9"', '"caf\u00e9"']
    dfa = regex_to_byte_dfa(except_words(keys) + JSON_STRING)
    shadow = dfa.shadow
    assert shadow is not None
    flipped = 0
    for state in np.flatnonzero(shadow.in_words).tolist():
        base = grammar._trie_pass(shadow.base, int(shadow.base_state[state]))
        kernel_stay, kernel_exits = grammar._shadow_pure(dfa, state, base)
        with monkeypatch.context() as patch:
            patch.setattr(compiled, "_kernel", None)
            python_stay, python_exits = grammar._shadow_pure(dfa, state, base)
        whole_stay, whole_exits = grammar._trie_pass(dfa, state)
        assert np.array_equal(kernel_stay, python_stay) and np.array_equal(kernel_stay, whole_stay), state
        assert kernel_exits.tolist() == python_exits.tolist() == whole_exits.tolist(), state
        flipped += not np.array_equal(kernel_stay, base[0])
    assert flipped, "no state read differently from the string"


@pytest.mark.skipif(compiled._kernel is None, reason="built without the walk kernel")
@pytest.mark.parametrize("vocab_name", ["smollm2_vocab", "llama_vocab", "gemma_vocab"])
def test_the_compiled_reading_below_nodes_gives_the_numpy_readings_tokens_and_ends(
    vocab_name: str, request: pytest.FixtureRequest
) -> None:
    """Below where a pattern's states may end (the starts of a walk), below nodes one under
    another (a run of letters), and below the root: the compiled reading finds the tokens and the
    ends the numpy one finds, whether the start state accepts or not."""
    grammar = GrammarCompiler(request.getfixturevalue(vocab_name)).compile_lark('start: "a"')
    trie = grammar._trie
    nested = trie.path(b"abcdef")
    assert nested.size >= 3
    checked = 0
    for pattern in PURE_PATTERNS:
        dfa = regex_to_byte_dfa(pattern)
        table, accepting = dfa.flat_table(), dfa.accepting
        for state in range(dfa.n_states):
            exits = grammar._trie_pass(dfa, state)[1]
            for nodes in (exits, nested, np.zeros(1, np.int64)) if exits.size else (nested, np.zeros(1, np.int64)):
                words = np.zeros(grammar._words, dtype=np.int32)
                kernel_arrays = trie.kernel_arrays
                ends = compiled._kernel.below_pass(kernel_arrays, table, accepting, 256 * state, nodes, words, 1 << 30)
                assert ends is not None
                alive, numpy_ends = trie.below(table, dfa.n_states, accepting, nodes, state)
                assert np.array_equal(words, grammar._words_at([alive])), (pattern, state)
                assert set(np.frombuffer(ends, np.int64).tolist()) == set(numpy_ends.tolist()), (pattern, state)
                checked += bool(numpy_ends.size) and np.count_nonzero(words) > 0
    assert checked > 20


@pytest.mark.skipif(compiled._kernel is None, reason="built without the walk kernel")
def test_or_at_sets_the_words_numpy_sets_and_refuses_what_does_not_fit() -> None:
    rng = np.random.default_rng(7)
    words = rng.integers(-(2**31), 2**31, 300, dtype=np.int64).astype(np.int32)
    at = np.sort(rng.choice(300, 40, replace=False)).astype(np.int64)
    bits = rng.integers(-(2**31), 2**31, 40, dtype=np.int64).astype(np.int32)
    expected = words.copy()
    expected[at] |= bits
    compiled._kernel.or_at(words, at, bits)
    assert np.array_equal(words, expected)
    before = words.copy()
    with pytest.raises(IndexError):
        compiled._kernel.or_at(words, np.array([3, 300], np.int64), np.array([1, 1], np.int32))
    with pytest.raises(ValueError):
        compiled._kernel.or_at(words, np.array([3], np.int64), np.array([1, 1], np.int32))
    assert np.array_equal(words, before), "a refused call changes nothing"


@pytest.mark.skipif(compiled._kernel is None, reason="built without the walk kernel")
@pytest.mark.parametrize("vocab_name", ["smollm2_vocab", "llama_vocab", "gemma_vocab"])
def test_the_compiled_literal_pass_gives_the_python_literals_pure_parts(
    vocab_name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a fixed string (a key, a keyword), at every position: the tokens that are prefixes of
    what is left and the node that spells all of it, from the compiled pass and from Python, for
    strings the trie spells to their end, strings it stops inside, and the empty rest."""
    grammar = GrammarCompiler(request.getfixturevalue(vocab_name)).compile_lark('start: "a"')
    ended = 0
    for literal in (b'"name"', b'"remoteGatewayId"', b'"caf\xc3\xa9"', b"null", b'"\xff\xfe"', b"\n\n  "):
        for at in range(len(literal) + 1):
            kernel_stay, kernel_exits = grammar._literal_pure(literal[at:])
            with monkeypatch.context() as patch:
                patch.setattr(compiled, "_kernel", None)
                python_stay, python_exits = grammar._literal_pure(literal[at:])
            assert np.array_equal(kernel_stay, python_stay), (literal, at)
            assert kernel_exits.tolist() == python_exits.tolist(), (literal, at)
            ended += bool(kernel_exits.size)
    assert ended, "no rest was spelled to its end with bytes below"


@pytest.mark.skipif(compiled._kernel is None, reason="built without the walk kernel")
def test_the_compiled_trie_pass_refuses_tables_it_cannot_read(llama_vocab: Any) -> None:
    """A table cut mid-row or with entries that are no state, a start that is no state, levels
    that do not span the trie, nodes outside it, or words too short for the token ids raise before
    anything is read out of bounds."""
    trie = GrammarCompiler(llama_vocab).compile_lark('start: "a"')._trie
    arrays, levels = trie.kernel_arrays, trie.kernel_levels
    dfa = regex_to_byte_dfa("[a-z]+")
    table, accepting = dfa.flat_table(), dfa.accepting
    words = np.zeros(llama_vocab.size // 32 + 1, dtype=np.int32)
    with pytest.raises(ValueError, match="whole rows"):
        compiled._kernel.dfa_pass(arrays, levels, table[:-1], accepting, 0, words)
    with pytest.raises(ValueError, match="not a live state"):
        compiled._kernel.dfa_pass(arrays, levels, table, accepting, 256 * dfa.n_states, words)
    with pytest.raises(ValueError, match="outside words"):
        compiled._kernel.dfa_pass(arrays, levels, table, accepting, 0, words[:10])
    with pytest.raises(TypeError, match="table: items of 4 bytes"):
        compiled._kernel.dfa_pass(arrays, levels, table.astype(np.int64), accepting, 0, words)
    # Letters and blanks fill the trie's third level: the corrupt last row is met in whole levels.
    for pattern in ("[a-z]{3}[a-z]*", "[a-z ]{3}[a-z ]*"):
        deep = regex_to_byte_dfa(pattern)
        corrupt = deep.flat_table().copy()
        last_row = corrupt[-512:-256]
        last_row[last_row != deep.n_states * 256] = 7
        with pytest.raises(ValueError, match="not a state times 256"):
            compiled._kernel.dfa_pass(arrays, levels, corrupt, deep.accepting, 0, words)
    cut = regex_to_byte_dfa(except_words(['"ab"']) + JSON_STRING)
    assert cut.shadow is not None
    base_table = cut.shadow.base.flat_table()
    cut_table, base_accepting, in_words = cut.flat_table(), cut.shadow.base.accepting, cut.shadow.in_words
    with pytest.raises(ValueError, match="one flag per state"):
        compiled._kernel.pair_pass(arrays, cut_table, cut.accepting, base_table, base_accepting, 0, 0, in_words[:1], 0)
    with pytest.raises(ValueError, match="one table given twice"):
        compiled._kernel.pair_pass(arrays, cut_table, cut.accepting, base_table, base_accepting, 0, 0, None, 0)
    with pytest.raises(ValueError, match="not live states"):
        compiled._kernel.pair_pass(arrays, cut_table, cut.accepting, base_table, base_accepting, -256, 0, in_words, 0)
    corrupt = cut.flat_table().copy()
    corrupt[corrupt != cut.n_states * 256] = 7
    with pytest.raises(ValueError, match="not a state times 256"):
        compiled._kernel.pair_pass(arrays, corrupt, cut.accepting, base_table, base_accepting, 0, 0, in_words, 0)
    with pytest.raises(ValueError, match="level bounds"):
        compiled._kernel.dfa_pass(arrays, (levels[0], levels[1][:-1], levels[2]), table, accepting, 0, words)
    nodes = trie.path(b"ab")
    with pytest.raises(IndexError, match="outside the trie"):
        compiled._kernel.below_pass(arrays, table, accepting, 0, np.array([trie.n_nodes], np.int64), words, 9)
    with pytest.raises(ValueError, match="not a live state"):
        compiled._kernel.below_pass(arrays, table, accepting, 3, nodes, words, 9)
    with pytest.raises(ValueError, match="outside words"):
        compiled._kernel.below_pass(arrays, table, accepting, 0, nodes, words[:1], 9)
    with pytest.raises(TypeError, match="nodes: items of 8 bytes"):
        compiled._kernel.below_pass(arrays, table, accepting, 0, nodes.astype(np.int32), words, 9)
    corrupt = table.copy()
    corrupt[corrupt != dfa.n_states * 256] = 7
    with pytest.raises(ValueError, match="not a state times 256"):
        compiled._kernel.below_pass(arrays, corrupt, accepting, 0, nodes, words, 9)
    with pytest.raises(ValueError, match="outside words"):
        compiled._kernel.literal_pass(arrays, b"the", words[:1])
    # Past its budget of pairs read on from, the reading stops and says so.
    assert compiled._kernel.below_pass(arrays, table, accepting, 0, np.zeros(1, np.int64), words, 5) is None
    assert compiled._kernel.below_pass(arrays, table, accepting, 0, np.zeros(1, np.int64), words, 1 << 30) is not None


def test_words_next_to_words_take_the_root_pass_before_the_words_pure_part_is_made(
    llama_vocab: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arithmetic's first mask: an identifier may end at 47,000 trie nodes, which the trie's
    first three levels tell, so the mask is one root pass and the identifier's pure part (a pass
    over the whole trie) is not made; the mask is the one made the long way, pure parts first."""
    grammar = GrammarCompiler(llama_vocab).compile_lark(ARITHMETIC)
    name = grammar._dfas[grammar.terminal_names.index("NAME")]
    first = np.array(Matcher(grammar).allowed_token_ids())
    assert name.signature(0) not in grammar._shared.pure
    assert grammar._shared.ends_near_root[name.signature(0)] * 2 > compiled._FOLLOWED_NODES

    monkeypatch.setattr(compiled.CompiledGrammar, "_opens_wide", lambda *args: False)
    long_way = GrammarCompiler(llama_vocab).compile_lark(ARITHMETIC)
    assert np.array_equal(first, np.array(Matcher(long_way).allowed_token_ids()))
    assert name.signature(0) in long_way._shared.pure


@pytest.mark.skipif(compiled._kernel is None, reason="built without the walk kernel")
@pytest.mark.parametrize("vocab_name", ["smollm2_vocab", "llama_vocab", "gemma_vocab"])
@pytest.mark.parametrize(
    "grammar_text, text",
    [(ARITHMETIC, "f(x1, 2.5) * -(3 / y_2) ^ 4 -\tz"), (GRAMMAR, "hello 12 world3 x  yz 7")],
    ids=["arithmetic", "words"],
)
def test_the_compiled_root_pass_gives_the_numpy_root_pass_masks(
    vocab_name: str, grammar_text: str, text: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every mask that walks is a root pass here, along the text's tokens; each runs in both from
    the same automaton state (the numpy pass after the compiled one, so it also reads the
    transitions that one asked for), and the masks must agree."""
    tokenizer = request.getfixturevalue(vocab_name.replace("_vocab", "_tokenizer"))
    vocab = request.getfixturevalue(vocab_name)
    compiled_pass = compiled._Generation._root_pass
    passes = []

    def both(self: Any, state: int) -> np.ndarray:
        words = compiled_pass(self, state)
        with monkeypatch.context() as patch:
            patch.setattr(compiled, "_kernel", None)
            assert np.array_equal(words, compiled_pass(self, state))
        passes.append(int(np.count_nonzero(words)))
        return words

    monkeypatch.setattr(compiled._Generation, "_root_pass", both)
    monkeypatch.setattr(compiled, "_FOLLOWED_NODES", 0)
    _masks_along(lambda: GrammarCompiler(vocab).compile_lark(grammar_text), None, text, tokenizer)
    assert len(passes) >= 5 and min(passes) > 0


@pytest.mark.skipif(compiled._kernel is None, reason="built without the walk kernel")
def test_the_compiled_column_groups_give_the_python_groups() -> None:
    """A state's missing transitions grouped by the DFA states they lead its sources to, for no
    source, one or several, bytes repeated or already known: the same bytes, groups and columns."""
    assert compiled._kernel is not None
    rng = np.random.default_rng(3)
    for sources in (0, 1, 2, 7):
        for _ in range(40):
            rows = rng.integers(-1, 3, size=(sources, 256)).astype(np.int32)
            row = np.where(rng.random(256) < 0.3, 5, _automaton.UNKNOWN).astype(np.int32)
            byts = rng.integers(0, 256, size=int(rng.integers(0, 300))).astype(np.uint8)
            found = compiled._kernel.column_groups(rows, row, byts)
            assert found == _automaton._column_groups(rows, row, byts.tobytes())
            cols, groups, columns = found
            assert list(cols) == sorted(set(byts.tolist()) - set(np.flatnonzero(row != _automaton.UNKNOWN).tolist()))
            assert all(columns[g] == tuple(rows[:, c].tolist()) for c, g in zip(cols, groups))


def test_a_transition_table_reserved_at_once_answers_as_a_doubled_one(
    llama_vocab: Any, llama_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    grammars = []

    def compile_one() -> Any:
        grammars.append(GrammarCompiler(llama_vocab).compile_json_schema(SCHEMA, strict=False))
        return grammars[-1]

    doubled = _masks_along(compile_one, None, DOCUMENT, llama_tokenizer)
    with monkeypatch.context() as patch:
        patch.setattr(_automaton, "_RESERVE_FROM", 64)
        patch.setattr(_automaton, "_RESERVED_ROWS", 4096)
        reserved = _masks_along(compile_one, None, DOCUMENT, llama_tokenizer)
    rows = [grammar._generation.automaton.trans.shape[0] for grammar in grammars]
    assert rows[0] < 4096 and rows[1] == 4096, rows  # the second walk passed 64 states and jumped
    assert all(np.array_equal(a, b) for a, b in zip(doubled, reserved))


def test_a_string_minus_its_keys_reads_as_the_string_without_those_words() -> None:
    words = ['"a"', '"ab"', '"abc"', '"b\\"c"', '"\\u0041"']
    dfa = regex_to_byte_dfa(except_words(words) + JSON_STRING)
    plain = re.compile(JSON_STRING)
    rng = np.random.default_rng(0)
    samples = [w.encode() for w in words] + [b'"', b'""', b'"abcd"', b'"a', b'"ab"x', b'"b"', b'"\\"']
    alphabet = list(b'ab"\\cu0A41 ')
    samples += [bytes(rng.choice(alphabet, size=int(rng.integers(1, 8))).tolist()) for _ in range(3000)]
    for data in samples:
        expected = plain.fullmatch(data.decode("latin-1")) is not None and data.decode("latin-1") not in words
        assert accepts(dfa, data) == expected, data
    # Where no key can be completed any more, a state reads as the string's state it shadows.
    shadow = dfa.shadow
    assert shadow is not None
    for state in np.flatnonzero(~shadow.in_words).tolist():
        row, base_row = dfa.table[state], shadow.base.table[shadow.base_state[state]]
        assert np.array_equal(row >= 0, base_row >= 0)


def test_a_counted_string_in_one_more_group_is_counted() -> None:
    unit = r'[^"\\\x00-\x1f]|\\["\\/bfnrt]'
    wrapped = regex_to_byte_dfa(f'"(?:(?:{unit}){{1,300}})"')
    bare = regex_to_byte_dfa(f'"(?:{unit}){{1,300}}"')
    assert wrapped.counter is not None and bare.counter is not None
    # The same counter over the same uncounted string: the bare form's automaton, whose
    # exactness the counted-string oracle tests prove.
    assert (wrapped.counter.lo, wrapped.counter.hi) == (bare.counter.lo, bare.counter.hi) == (1, 300)
    assert np.array_equal(wrapped.counter.base.table, bare.counter.base.table)
    # A group that holds more than the counted one is not peeled.
    assert regex_to_byte_dfa('"(?:(?:a){1,2}b)"').counter is None
