"""Masks inside counted terminals (string lengths, counted patterns, formats) and words excluded
from a terminal: string lengths are a counter beside the uncounted string's automaton, checked
against the automaton with a state per position; other positions are each their own state, so
these exercise the per-state vocabulary pass and the crossing walks that fill automaton rows a
few bytes at a time."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from onrails import GrammarCompiler, Matcher, Vocabulary
from onrails.constrain._bytedfa import ByteDFA, _regex_to_byte_dfa, regex_to_byte_dfa
from onrails.grammars._ecma_regex import GENERIC_CHAR
from onrails.grammars.regex_notes import except_words, intersected, subtracted
from onrails.constrain.compiled import _trie_for
from onrails.grammars.schema import schema_to_grammar

from ..reference import ReferenceGrammar
from .small_vocab import TRICKY
from .test_oracle import assert_mask_matches_reference

# Tokens that end a counted string at various lengths and continue past it, or cross a date.
COUNTED = [
    b'ab', b'abc', b'abcd', b'abcde', b'"ab', b'ab"', b'abc",', b'a", "', b'"}', b'x"}', b'2024',
    b'-01', b'-12-', b'T1', b'12:', b':00', b'Z"', b'+01:00"', b'\xc3\xa9', b'\xc3\xa9"', b'\\u00',
    b'e9"', b'\\n"', b'name', b'"n', b'ame"', b'": ', b'": "', b'"x"', b'xy', b'1234', b'5678"',
]


def _vocabulary() -> Vocabulary:
    tokens: list[bytes | None] = [bytes([b]) for b in range(256)]
    tokens += list(dict.fromkeys(t for t in TRICKY + COUNTED if len(t) > 1))
    tokens.append(None)
    return Vocabulary(tokens, [len(tokens) - 1], size=len(tokens) + 3, name="counted")


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 5},
        "code": {"type": "string", "pattern": "^[0-9]{4}$"},
        "when": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 3},
    },
    "required": ["name"],
    "additionalProperties": False,
}

EXAMPLES = [
    b'{"name": "abcd", "code": "1234", "when": "2024-01-12T10:00:00Z", "tags": ["ab", "\\u00e9"]}',
    b'{"name": "\xc3\xa9\\n", "tags": []}',
    b'{"name": "ab", "when": "2024-12-31T23:59:59+01:00"}',
    b'{"name": "abcdef"}',
    b'{"name": "a", "code": "12345"}',
]


def test_counted_schema_masks_equal_the_reference() -> None:
    converted = schema_to_grammar(SCHEMA, whitespace="flexible")
    assert "(?#" not in converted.lark  # the reference reads regex comments as nothing
    vocab = _vocabulary()
    grammar = GrammarCompiler(vocab).compile_lark(converted.lark, converted.start)
    reference = ReferenceGrammar(converted.lark, converted.start)
    for data in EXAMPLES:
        matcher = Matcher(grammar)
        for i in range(len(data) + 1):
            assert_mask_matches_reference(matcher, reference, data[:i])
            if i == len(data) or not matcher.advance_bytes(data[i : i + 1]):
                break
    rng = np.random.default_rng(7)
    for _ in range(12):
        matcher = Matcher(grammar)
        prefix = b""
        for _step in range(30):
            assert_mask_matches_reference(matcher, reference, prefix)
            token = int(rng.choice(matcher.allowed_token_ids()))
            assert matcher.advance(token)
            if token in vocab.eos_token_ids:
                break
            prefix += vocab.token_bytes[token]  # type: ignore[operator]


@pytest.mark.parametrize(
    "pattern",
    [
        r'"(?:[^"\\\x00-\x1f]|\\["\\bfnrt]|\\u[0-9a-fA-F]{4}){2,5}"',
        f'"{GENERIC_CHAR}{{0,3}}"',
        f'"{GENERIC_CHAR}{{4}}"',
        f'"{GENERIC_CHAR}{{2,}}"',
        r'"[0-9]{4}-[0-9]{2}-[0-9]{2}"',
        r"2024(?:\.0+)?",  # an enum's integer: forced bytes, then a shared tail
        r'"abc[a-z]*"',
        except_words(['"name"', '"nam"', '"x"']) + r'"[^"\\\x00-\x1f]*"',
        intersected(r'"[^"\\\x00-\x1f]*e[^"\\\x00-\x1f]*"', f'"{GENERIC_CHAR}{{2,4}}"'),
        subtracted(r'"[^"\\\x00-\x1f]+"', r'"(?:na.*|x)"'),
    ],
)
def test_pure_parts_equal_a_run_of_every_token(pattern: str) -> None:
    """For every DFA state: the tokens that stay inside the terminal, and the trie nodes where it
    may end with more bytes below, against running each token's bytes through the DFA."""
    vocab = _vocabulary()
    dfa = regex_to_byte_dfa(pattern)
    grammar = GrammarCompiler(vocab).compile_lark(f"start: T\nT: /{pattern}/\n")
    trie = _trie_for(vocab)
    for state in range(dfa.n_states):
        stay, pure_exits = grammar._pure_part(0, state)
        allowed = np.unpackbits(stay.view(np.uint8), bitorder="little")[: vocab.size]
        exits = set()
        for token, data in enumerate(vocab.token_bytes):
            if not data:
                assert not allowed[token]
                continue
            d = state
            node = 0
            alive = True
            for byte in data:
                d = dfa.step(d, byte)
                node = next(
                    c for c in range(trie.child_start[node], trie.child_start[node] + trie.child_count[node])
                    if trie.node_byte[c] == byte
                )
                if d < 0:
                    alive = False
                    break
                if dfa.accepts(d) and trie.child_count[node] > 0:
                    exits.add(node)
            assert bool(allowed[token]) == alive, (state, data)
        assert set(pure_exits.tolist()) == exits, state


@pytest.mark.parametrize("both", [True, False])
def test_a_product_reads_exactly_the_intersection_or_the_difference(both: bool) -> None:
    """Every string of up to 5 characters (one of them two bytes long) against Python's ``re``
    on each side."""
    left, right = r'"[^"]*b[^"]*"', r'"[^"]{1,3}"'
    dfa = regex_to_byte_dfa((intersected if both else subtracted)(left, right))
    for n in range(6):
        for chars in itertools.product('ab"\u00e9', repeat=n):
            text = '"' + "".join(chars) + '"'
            expected = bool(re.fullmatch(left, text)) and bool(re.fullmatch(right, text)) == both
            assert dfa.matches(text.encode()) == expected, text


def _plain_bfs_form(dfa: ByteDFA, state: int) -> bytes:
    """The automaton seen from ``state``, states renumbered breadth-first, full rows."""
    order = {state: 0}
    queue = [state]
    for s in queue:
        for target in dict.fromkeys(dfa.table[s].tolist()):
            if target >= 0 and target not in order:
                order[target] = len(order)
                queue.append(target)
    remap = np.full(dfa.n_states + 1, -1, dtype=np.int32)
    remap[queue] = np.arange(len(queue), dtype=np.int32)
    return remap[dfa.table[queue]].tobytes() + dfa.accepting[queue].tobytes()


def test_digests_are_equal_exactly_when_the_automata_read_alike() -> None:
    """Pure masks are shared by digest: equal digests must mean the same automaton up to
    renumbering (soundness), and the same automaton must get the same digest whatever else the
    automata around it read (the byte classes hashed are those of the states seen from there)."""
    any_char = r'(?:[^"\\\x00-\x1f]|\\["\\bfnrt]|\\u[0-9a-fA-F]{4})'
    patterns = [
        f'"{any_char}{{2,5}}"',
        f'"{any_char}{{0,7}}"',
        f'"{any_char}*"',
        f'"{any_char}*ID-[0-9]+{any_char}*"',
        r'"[0-9]{4}-[0-9]{2}-[0-9]{2}"',
        r'"[0-9a-f]{2,6}"',
        r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?",
    ]
    forms: dict[bytes, set[bytes]] = {}
    digests: dict[bytes, set[bytes]] = {}
    for pattern in patterns:
        dfa = _plain(pattern)
        for state in range(dfa.n_states):
            digest, form = dfa.digest(state), _plain_bfs_form(dfa, state)
            assert digest is not None
            forms.setdefault(digest, set()).add(form)
            digests.setdefault(form, set()).add(digest)
    assert all(len(same) == 1 for same in forms.values())
    assert all(len(same) == 1 for same in digests.values())
    # The patterns share states (the rest of a string, the last digits), so sharing is tested.
    assert len(digests) < sum(_plain(p).n_states for p in patterns)


def test_signatures_share_work_only_between_states_that_read_alike() -> None:
    """Pure masks are cached by signature: equal keys must mean equal languages from there."""
    abc, xbc = regex_to_byte_dfa('"abc"'), regex_to_byte_dfa('"xbc"')
    assert abc.signature(2) == xbc.signature(2)  # both have 'bc"' left to read
    assert abc.signature(1) != xbc.signature(1)
    string = r'"(?:[^"\\\x00-\x1f]|\\["\\bfnrt])*"'
    assert regex_to_byte_dfa(string).signature(1) == regex_to_byte_dfa(string).signature(1)
    # States deep inside counted automata are keyed by identity: never shared, never confused;
    # near the end the rest is shallow again and keyed by its digest.
    deep, same_language = regex_to_byte_dfa("a{0,100}b"), regex_to_byte_dfa("(?:a{0,100})b")
    assert deep is not same_language and deep.n_states > 100
    keys = [deep.signature(s) for s in range(deep.n_states)]
    assert len(set(keys)) == deep.n_states
    own = {k for k in keys if k[0] == "own"}
    assert deep.signature(0) in own
    others = {same_language.signature(s) for s in range(same_language.n_states)}
    assert own.isdisjoint(others)
    assert {k for k in keys if k[0] == "digest"} == {k for k in others if k[0] == "digest"}


def _plain(pattern: str) -> ByteDFA:
    """The automaton of ``pattern`` with a state per position, counted strings included."""
    return _regex_to_byte_dfa(pattern, "", None, 20000)


def _paired_states(counted: ByteDFA, plain: ByteDFA) -> list[tuple[int, int]]:
    """The (counted, plain) state pairs both reach on the same bytes, checking on each that both
    automata accept and go on alike (then they read the same language), and that a step reads
    as the row."""
    seen = {(0, 0)}
    queue = [(0, 0)]
    for a, b in queue:
        assert counted.accepts(a) == bool(plain.accepting[b]), (a, b)
        row, plain_row = counted.row(a), plain.table[b]
        assert np.array_equal(row >= 0, plain_row >= 0), (a, b)
        assert [counted.step(a, byte) for byte in range(256)] == row.tolist(), a
        for byte in np.flatnonzero(row >= 0).tolist():
            pair = (int(row[byte]), int(plain_row[byte]))
            if pair not in seen:
                seen.add(pair)
                queue.append(pair)
    return queue


@pytest.mark.parametrize("bounds", ["{0,3}", "{4}", "{2,}", "{1,40}", "{0}", "{3,130}"])
def test_counted_strings_read_exactly_as_the_automaton_with_a_state_per_length(bounds: str) -> None:
    """A length is a counter beside the uncounted string's state (``Counted``): the counted
    automaton reads the same language as the one built with a state per position."""
    pattern = f'"{GENERIC_CHAR}{bounds}"'
    counted = regex_to_byte_dfa(pattern)
    assert counted.counter is not None
    assert len(_paired_states(counted, _plain(pattern))) > 2


@pytest.mark.parametrize("bounds", ["{0,3}", "{4}", "{2,}", "{1,40}", "{0}", "{3,30}", "{12,14}"])
def test_a_window_reads_as_its_counted_string_for_a_tokens_length(bounds: str) -> None:
    """From every state, the window a walk reads a counted string in (``Counted.window_of``)
    takes exactly the bytes the counted automaton takes, for up to ``reach`` bytes, and ends where
    it may end; its flat table is the one ``flat_table`` makes; strings of other bounds with the
    same units read in the same windows."""
    reach = 9
    counted = regex_to_byte_dfa(f'"{GENERIC_CHAR}{bounds}"')
    counter = counted.counter
    assert counter is not None
    states = sorted({a for a, _ in _paired_states(counted, _plain(f'"{GENERIC_CHAR}{bounds}"'))})
    keys = set()
    for state in states:
        key, start = counter.window_of(state, reach)
        keys.add(key)
        window = counter.window(key)
        assert np.array_equal(window.flat_table(), ByteDFA(window.table, window.accepting).flat_table())
        seen = {(state, start)}
        frontier = [(state, start)]
        for _ in range(reach):
            deeper = []
            for a, w in frontier:
                row, window_row = counted.row(a), window.table[w]
                assert np.array_equal(row >= 0, window_row >= 0), (bounds, state, a, w)
                for byte in np.flatnonzero(row >= 0).tolist():
                    pair = (int(row[byte]), int(window_row[byte]))
                    assert counted.accepts(pair[0]) == bool(window.accepting[pair[1]]), (bounds, state, pair)
                    if pair not in seen:
                        seen.add(pair)
                        deeper.append(pair)
            frontier = deeper
    # One window where nothing is needed, one per level the closing quote waits for.
    assert len(keys) <= 1 + counter.lo
    other = regex_to_byte_dfa(f'"{GENERIC_CHAR}{{0,500}}"')
    assert other.counter is not None
    key = other.counter.window_of(other.step(0, ord('"')), reach)[0]
    assert key == ("window", counter.base._serial, reach + 1, 0)
    assert key in keys or counter.lo > 0


def test_counters_are_used_only_where_units_are_a_prefix_code() -> None:
    """Units started are units written only when no unit is a prefix of another and none starts
    with the closing quote; other patterns get a state per position."""
    for pattern in ('"(?:[a-z]|ab){0,4}"', '"(?:"a|b){0,4}"', '"[a-z]{0,4}"', '"(?:a)(?:b){0,4}"'):
        dfa = regex_to_byte_dfa(pattern)
        assert dfa.counter is None, pattern
        assert dfa.matches(b'"ab"') == (re.fullmatch(pattern, '"ab"') is not None)
    for pattern in ('"(?:ab){0,4}"', '"(?:a|bc){2,3}"'):
        dfa = regex_to_byte_dfa(pattern)
        assert dfa.counter is not None, pattern
        _paired_states(dfa, _plain(pattern))


def test_lengths_in_the_billions_keep_exact_states() -> None:
    """``maxLength: 2147483647`` (common in generated schemas) needs states past int32."""
    dfa = regex_to_byte_dfa(f'"{GENERIC_CHAR}{{0,2147483647}}"')
    assert dfa.counter is not None and dfa.n_states > 1 << 31
    state = dfa.step(dfa.step(0, ord('"')), ord("a"))
    assert dfa.counter.remaining(state) == 2147483646
    assert dfa.matches(b'"ab"') and not dfa.matches(b'"ab')


def test_counted_pure_parts_equal_the_plain_automaton_on_a_real_vocabulary(llama_vocab: Vocabulary) -> None:
    """With Llama-3.2's 128k tokens (strings of spaces and dashes up to 128 bytes long), every
    position of a counted string gets the pure part the plain automaton's own vocabulary pass
    gives, and so do crossing walks below nodes (``_below``, read in a window of counts)."""
    grammar = GrammarCompiler(llama_vocab).compile_lark('start: "x"')
    trie = _trie_for(llama_vocab)
    quote = trie.path(b'"')
    for bounds in ("{0,45}", "{3,130}", "{36}", "{200,}"):
        pattern = f'"{GENERIC_CHAR}{bounds}"'
        counted, plain = regex_to_byte_dfa(pattern), _plain(pattern)
        pairs = _paired_states(counted, plain)
        for a, b in pairs[:: max(1, len(pairs) // 40)] + pairs[-20:]:
            fast_stay, fast_exits = grammar._pure_of(counted, a)
            slow_stay, slow_exits = grammar._pure_of(plain, b)
            assert np.array_equal(fast_stay, slow_stay), (bounds, a)
            assert np.array_equal(np.sort(fast_exits), np.sort(slow_exits)), (bounds, a)
            if a:
                fast_below = grammar._below(counted, a, quote)
                slow_below = grammar._below(plain, b, quote)
                for x, y in zip(fast_below, slow_below):
                    assert np.array_equal(np.sort(x), np.sort(y)), (bounds, a)


def test_memory_counts_the_shared_parts_of_counted_strings() -> None:
    """``memory_bytes`` includes the per-token unit counts and pure parts counted strings use."""
    vocab = _vocabulary()
    grammar = GrammarCompiler(vocab).compile_lark(f'start: T\nT: /"{GENERIC_CHAR}{{0,40}}"/\n')
    before = grammar.memory_bytes()
    matcher = Matcher(grammar)
    assert matcher.advance_bytes(b'"ab')
    assert len(matcher.allowed_token_ids())
    # Per token: alive, closed (1 byte each), units started (2 bytes), and the packed pure part.
    assert grammar.memory_bytes() - before >= 4 * vocab.size
