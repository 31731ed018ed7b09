"""Lark's standard library (``%import common.X``) compiles, ESCAPED_STRING included."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import lark
import pytest

from onrails import GrammarCompiler, GrammarError, Matcher

from .small_vocab import small_vocabulary

COMMON = (Path(lark.__file__).parent / "grammars" / "common.lark").read_text()
NAMES = re.findall(r"^([A-Z_]+)\s*:", COMMON, re.MULTILINE)


@pytest.fixture(scope="module")
def compiler() -> GrammarCompiler:
    return GrammarCompiler(small_vocabulary())


@pytest.mark.parametrize("name", NAMES)
def test_every_common_terminal_compiles(compiler: GrammarCompiler, name: str) -> None:
    grammar = f"start: {name}\n%import common.{name}\n"
    if name in ("_STRING_INNER", "_STRING_ESC_INNER"):  # match the empty string: refused by name
        with pytest.raises(GrammarError, match=f"empty string.*{name}"):
            compiler.compile_lark(grammar)
        return
    assert Matcher(compiler.compile_lark(grammar)).allowed_token_ids().size


def test_escaped_string_accepts_what_lark_regex_fully_matches(compiler: GrammarCompiler) -> None:
    """Lark writes ESCAPED_STRING with a lookbehind (no odd run of backslashes before the closing
    quote); the engine reads it without one. Every string of up to 7 characters over quote,
    backslash, line break, a letter and a two-byte letter is decided as Python's ``re`` decides
    the original regex."""
    grammar = compiler.compile_lark("start: ESCAPED_STRING\n%import common.ESCAPED_STRING\n")
    original = re.compile(r'".*?(?<!\\)(\\\\)*?"')
    checked = accepted = 0
    for length in range(8):
        for chars in itertools.product('"\\\na\u00e9', repeat=length):
            text = "".join(chars)
            matcher = Matcher(grammar)
            ours = matcher.advance_bytes(text.encode()) and matcher.is_accepting()
            assert ours == bool(original.fullmatch(text)), repr(text)
            checked += 1
            accepted += ours
    assert accepted > 1000 and checked - accepted > 1000
