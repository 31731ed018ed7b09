"""Bad grammars fail at compile time with GrammarError naming the place and the reason."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from onrails import CompileBudgetError, GrammarCompiler, GrammarError, Matcher, MatcherError, OnRailsError
from onrails.constrain import compiled

from .small_vocab import small_vocabulary


@pytest.fixture(scope="module")
def compiler() -> GrammarCompiler:
    return GrammarCompiler(small_vocabulary(), budget_s=2.0)


def test_syntax_error_reports_line_and_column(compiler: GrammarCompiler) -> None:
    with pytest.raises(GrammarError) as info:
        compiler.compile_lark('start: "a"\nfoo: ( "b"\n')
    assert info.value.line == 2
    assert info.value.column is not None
    assert "line 2" in str(info.value)


def test_undefined_rule_is_named_with_its_line(compiler: GrammarCompiler) -> None:
    with pytest.raises(GrammarError) as info:
        compiler.compile_lark('start: item+\nitem: "x" missing\n')
    assert info.value.rule == "missing"
    assert info.value.line == 2


def test_unknown_start_rule(compiler: GrammarCompiler) -> None:
    with pytest.raises(GrammarError, match="nope"):
        compiler.compile_lark('start: "a"\n', start="nope")


def test_lookaround_terminal_is_refused_by_name(compiler: GrammarCompiler) -> None:
    with pytest.raises(GrammarError) as info:
        compiler.compile_lark("start: WORD\nWORD: /a(?=b)/\n")
    assert info.value.rule == "WORD"


def test_terminal_matching_the_empty_string_is_refused(compiler: GrammarCompiler) -> None:
    with pytest.raises(GrammarError, match="empty string") as info:
        compiler.compile_lark("start: OPT\nOPT: /a*/\n")
    assert info.value.rule == "OPT"


def test_hidden_left_recursion_is_refused(compiler: GrammarCompiler) -> None:
    with pytest.raises(GrammarError, match="hidden left recursion"):
        compiler.compile_lark('start: pre start "x" | "y"\npre: "p"?\n')


def test_rule_that_never_ends_is_refused(compiler: GrammarCompiler) -> None:
    with pytest.raises(GrammarError, match="derives no finite string"):
        compiler.compile_lark('start: "a" start\n')


def test_explosive_regex_hits_the_budget_quickly(compiler: GrammarCompiler) -> None:
    began = time.monotonic()
    with pytest.raises(CompileBudgetError):
        compiler.compile_lark("start: X\nX: /(a|b)*a(a|b){18}/\n")
    assert time.monotonic() - began < 10


@pytest.mark.parametrize(
    "compile_over_budget",
    [
        lambda c: c.compile_lark("start: A\nA: /(a{1,1000}){1,1000}/\n"),
        lambda c: c.compile_lark("start: A\nA: /(x|y|xy|yx|xx|yy){1,3000}z/\n"),
        lambda c: c.compile_lark("start: A\nA: /(a{1,1000}){1,1000}/i\n"),
        lambda c: c.compile_json_schema({"type": "string", "pattern": "^(a{1,1000}){1,1000}$"}),
    ],
    # Too many states; too slow on the direct automaton route; too slow on interegular's.
    ids=["lark-regex-states", "lark-regex-time", "lark-regex-ignorecase-time", "schema-pattern"],
)
def test_compile_over_budget_raises_within_the_budget_and_a_tenth(compile_over_budget: Any) -> None:
    """Each step of a regex's automaton construction is checked against the deadline, and a
    schema's conversion and compile share one budget."""
    budget = 4.0
    compiler = GrammarCompiler(small_vocabulary(), budget_s=budget)
    compiler.compile_lark('start: "warm"')  # Lark's own grammar loads once per process
    began = time.monotonic()
    with pytest.raises(CompileBudgetError):
        compile_over_budget(compiler)
    assert time.monotonic() - began <= budget * 1.1


def test_errors_share_one_hierarchy() -> None:
    assert issubclass(GrammarError, OnRailsError) and issubclass(GrammarError, ValueError)
    assert issubclass(CompileBudgetError, GrammarError)
    assert issubclass(MatcherError, OnRailsError)


def test_unknown_root_for_a_matcher(compiler: GrammarCompiler) -> None:
    grammar = compiler.compile_builtin()
    with pytest.raises(MatcherError, match="unknown root"):
        Matcher(grammar, "objekt")


def test_whitespace_mode_is_checked(compiler: GrammarCompiler) -> None:
    with pytest.raises(GrammarError, match="whitespace"):
        compiler.compile_builtin("loose")


def test_a_mask_walk_past_its_memory_budget_fails_the_request_not_the_process() -> None:
    """Walk steps are bounded in size: past it, the mask raises CompileBudgetError (which a
    server answers with a 4xx), the process keeps its memory, and other masks still work."""
    vocab = small_vocabulary()
    compiler = GrammarCompiler(vocab)
    grammar = compiler.compile_lark("start: A*\nA: /[a-z]+/\n")
    trie = grammar._trie
    budget = trie.max_step_nodes
    trie.max_step_nodes = 4
    try:
        with pytest.raises(CompileBudgetError, match="a token mask would"):
            Matcher(grammar).allowed_token_ids()
    finally:
        trie.max_step_nodes = budget
    matcher = Matcher(compiler.compile_lark("start: A*\nA: /[a-z]+/\n// again\n"))
    assert matcher.advance_bytes(b"ab") and matcher.is_allowed(vocab.token_bytes.index(b"abc"))


@pytest.mark.skipif(compiled._kernel is None, reason="built without the walk kernel")
@pytest.mark.parametrize("first_terminals", ["read below the starts", "followed by the walker"])
def test_a_compiled_walk_past_its_budget_fails_the_mask_and_the_grammar_still_works(
    first_terminals: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled readings count the (trie node, state) pairs they read on from, whether the
    terminals a walk starts in are read below its starts (``_enter_terminals``) or followed by
    the walker: past the trie's budget the mask raises CompileBudgetError, the walker is left
    ready for the next walk, and the same state's mask computed again within the budget is the
    one a fresh grammar gives."""
    vocab = small_vocabulary()
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    compiler = GrammarCompiler(vocab)
    fresh = Matcher(compiler.compile_json_schema(schema))
    assert fresh.advance_bytes(b'{"a": "x')
    expected = fresh.allowed_token_ids()
    # The same grammar again: the masks inside terminals are shared, its automaton and walks new,
    # and so are the readings below the starts, or the walker does without them.
    shared = compiler._shared
    shared.below.clear()
    shared.below_bytes = 0
    if first_terminals == "followed by the walker":
        monkeypatch.setattr(compiled._Generation, "_enter_terminals", lambda self, starts, words: starts)
    matcher = Matcher(compiler.compile_json_schema({**schema, "title": "again"}))
    assert matcher.advance_bytes(b'{"a": "x')
    trie = matcher.grammar._trie
    budget = trie.max_step_nodes
    trie.max_step_nodes = 2
    try:
        with pytest.raises(CompileBudgetError, match="walk more than 2"):
            matcher.allowed_token_ids()
    finally:
        trie.max_step_nodes = budget
    assert np.array_equal(matcher.allowed_token_ids(), expected)


def test_grammar_nested_past_python_recursion_is_refused_cleanly(compiler: GrammarCompiler) -> None:
    """Lark's grammar parser recurses per parenthesis: 500 nested groups raise a GrammarError,
    not a RecursionError, and 300 still compile."""
    with pytest.raises(GrammarError, match="nests too deeply"):
        compiler.compile_lark("start: " + "(" * 500 + '"a"' + ")" * 500 + "\n")
    matcher = Matcher(compiler.compile_lark("start: " + "(" * 300 + '"a"' + ")" * 300 + "\n"))
    assert matcher.advance_bytes(b"a") and matcher.is_accepting()
