"""Masks equal a brute-force reference: nothing invalid allowed, nothing viable forbidden.

States are sampled along random walks (so they are reachable) and along example documents;
in each, every content token of the vocabulary is checked against the independent Earley
reference in ``tests/reference.py``, and the end token against its ``accepts``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onrails import GrammarCompiler, Matcher, builtin_grammar_text
from onrails.constrain import compiled

from ..reference import ReferenceGrammar
from .grammar_limits import stress_grammars
from .small_vocab import small_vocabulary

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
EXAMPLES = json.loads((GRAMMARS / "examples.json").read_text())


def assert_mask_matches_reference(matcher: Matcher, reference: ReferenceGrammar, prefix: bytes) -> None:
    vocab = matcher.grammar.vocabulary
    checker = reference.prefix_checker(prefix)
    allowed = set(matcher.allowed_token_ids().tolist())
    for token, data in enumerate(vocab.token_bytes):
        if data is None:
            continue
        expected = checker.viable(data)
        assert (token in allowed) == expected, (
            f"after {prefix!r}: token {data!r} is {'allowed' if token in allowed else 'forbidden'} "
            f"but the reference says {'viable' if expected else 'not viable'}"
        )
    eos = min(vocab.eos_token_ids)
    assert (eos in allowed) == checker.accepts(b""), f"end token after {prefix!r}"
    assert allowed, f"empty mask after {prefix!r}"


def check_walks(grammar_text: str, start: str, walks: int, seed: int, steps: int = 25, reference_text: str = "") -> None:
    """Masks along random walks equal the reference's (of ``reference_text`` if given: the
    same language written another way)."""
    vocab = small_vocabulary()
    grammar = GrammarCompiler(vocab).compile_lark(grammar_text, start)
    reference = ReferenceGrammar(reference_text or grammar_text, start)
    rng = np.random.default_rng(seed)
    for _ in range(walks):
        matcher = Matcher(grammar, start)
        prefix = b""
        for _step in range(steps):
            assert_mask_matches_reference(matcher, reference, prefix)
            allowed = matcher.allowed_token_ids()
            token = int(rng.choice(allowed))
            assert matcher.advance(token)
            if token in vocab.eos_token_ids:
                assert reference.accepts(prefix)
                break
            prefix += vocab.token_bytes[token]  # type: ignore[operator]


@pytest.mark.parametrize("mode", ["flexible", "bounded", "compact"])
@pytest.mark.parametrize("root", ["value", "root", "func", "insidevalue", "number"])
def test_builtin_masks_equal_the_reference(mode: str, root: str) -> None:
    check_walks(builtin_grammar_text(mode), root, walks=6, seed=len(root))


@pytest.mark.parametrize("name", ["arithmetic", "csv", "sql"])
def test_user_grammar_masks_equal_the_reference(name: str) -> None:
    check_walks((GRAMMARS / f"{name}.lark").read_text(), "start", walks=8, seed=3)


@pytest.mark.parametrize("name", list(stress_grammars()))
def test_stress_grammar_masks_equal_the_reference(name: str) -> None:
    """Grammars where a run of bytes splits into terminals in many ways (letters next to
    letters, ignored blank runs): random walks and the masks after each listed prefix."""
    entry = stress_grammars()[name]
    check_walks(entry["text"], entry["start"], walks=6, seed=7)
    grammar = GrammarCompiler(small_vocabulary()).compile_lark(entry["text"], entry["start"])
    reference = ReferenceGrammar(entry["text"], entry["start"])
    for prefix in entry["prefixes"]:
        matcher = Matcher(grammar, entry["start"])
        assert matcher.advance_bytes(prefix.encode())
        assert_mask_matches_reference(matcher, reference, prefix.encode())


def test_masks_where_terminals_share_prefixes_equal_the_reference() -> None:
    check_walks(SHARED_PREFIXES, "start", walks=8, seed=5)


@pytest.mark.parametrize("name", ["arithmetic", "csv", "sql"])
def test_user_grammar_examples_along_the_way(name: str) -> None:
    """Byte by byte through each example: the mask agrees with the reference wherever it is defined."""
    text = (GRAMMARS / f"{name}.lark").read_text()
    grammar = GrammarCompiler(small_vocabulary()).compile_lark(text)
    reference = ReferenceGrammar(text, "start")
    for kind in ("valid", "invalid"):
        for example in EXAMPLES[name][kind]:
            data = example.encode()
            matcher = Matcher(grammar)
            for i in range(len(data) + 1):
                if i % 3 == 0 or i == len(data):
                    assert_mask_matches_reference(matcher, reference, data[:i])
                if i == len(data) or not matcher.advance_bytes(data[i : i + 1]):
                    break
            complete = matcher.num_steps == len(data) and matcher.is_accepting()
            assert complete == (kind == "valid"), example


DEEP_LIST = r"""
start: "[" items END "]"
items: "a" | "a" items
END: " "
%ignore END
"""


# Blanks that may open both a separator and a closing bracket, keys and words that two
# terminals read alike at first: walks meet states with several configurations inside terminals.
SHARED_PREFIXES = r"""
start: OPEN items CLOSE | OPEN "]"
items: item | items SEP item
item: KEY COLON value | NAMED COLON value
value: WORD | NAME | start
OPEN: /\[ */
SEP: / *, */
CLOSE: / *\]/
COLON: / *: */
KEY: /"[a-z]+"/
NAMED: /"ab"/
NAME: /[a-z]+/
WORD: "abc"
"""


@pytest.mark.parametrize(
    ("grammar_text", "start", "document"),
    [
        (SHARED_PREFIXES, "start", b'[ "ab" : abc , "b":' * 5 + b'["x":ab ,"ab" :ab ]' + b" ]" * 5),
        (builtin_grammar_text("flexible"), "value", b'{"k": [[[[{"a": [[[1, {"b": "x y", "c": [true, "z"]}]]]}]]]], "d": 2}'),
        # A right-recursive list far deeper than the first cut of a stack: whether the ignored
        # END may close it there needs the whole stack.
        (DEEP_LIST, "start", b"[" + b"a" * 40 + b" ]"),
    ],
    ids=["terminals-sharing-prefixes", "nested-json", "ignored-terminal-reducing-a-deep-list"],
)
def test_masks_on_stacks_deeper_than_their_cut_equal_the_reference(grammar_text: str, start: str, document: bytes) -> None:
    """Masks are computed on the top of the stack and finished on the real one where the top
    does not decide; on deep stacks they still agree with the reference at every byte."""
    grammar = GrammarCompiler(small_vocabulary()).compile_lark(grammar_text, start)
    reference = ReferenceGrammar(grammar_text, start)
    matcher = Matcher(grammar, start)
    for i in range(len(document)):
        assert_mask_matches_reference(matcher, reference, document[:i])
        assert matcher.advance_bytes(document[i : i + 1])
    assert_mask_matches_reference(matcher, reference, document)
    assert matcher.is_accepting()


def test_masks_stay_exact_when_the_shared_walk_cache_forgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Walks in numpy (a package built without its C kernel) read string content from a cache
    shared by grammars; past its byte budget it drops its oldest entries, and masks computed
    after that still agree with the reference."""
    monkeypatch.setattr(compiled, "_kernel", None)
    budget = 96  # a few entries with the small vocabulary (these documents make ~300 bytes)
    # Walks get an eighth of the caches (the shared masks and automata forget too).
    compiler = GrammarCompiler(small_vocabulary(), cache_bytes=8 * budget)
    text = builtin_grammar_text("flexible")
    reference = ReferenceGrammar(text, "value")
    shared = compiler._shared
    seen: set[object] = set()
    for document in (b'{"a": "b c", "d": [1, "e"]}', b'["x", {"y": "z", "w": "vv"}, "u t"]'):
        # A new grammar each time: its automaton starts empty, the shared cache does not.
        grammar = compiler.compile_lark(text + f"\n// {document!r}\n", "value")
        matcher = Matcher(grammar, "value")
        for i in range(len(document)):
            assert_mask_matches_reference(matcher, reference, document[:i])
            seen.update(shared.below)
            assert 0 < shared.below_bytes <= budget
            assert matcher.advance_bytes(document[i : i + 1])
    assert len(seen) > len(shared.below), "the budget never made the cache forget"
