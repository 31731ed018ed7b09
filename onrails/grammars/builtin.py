"""The built-in JSON / function-calling grammar (``json.lark``) and its whitespace modes."""

from __future__ import annotations

import functools
import json
from importlib import resources

from onrails.errors import GrammarError

BUILTIN_ROOTS = (
    "root",
    "fcall",
    "nofcall",
    "insidevalue",
    "value",
    "object",
    "array",
    "string",
    "number",
    "funcarray",
    "func",
    "ws",
)
WHITESPACE_MODES = ("flexible", "bounded", "compact")
# Whitespace between JSON tokens per mode: the built-in grammar's WS, and what schema grammars
# put beside their punctuation (tools embed schemas in the built-in grammar: blanks must read
# alike in both). json.lark's own WS is the flexible one.
WHITESPACE_REGEXES = {"flexible": r"[ \t\n\r]+", "bounded": r"\r?\n[ \t]{0,32}|[ \t]{1,32}"}
# Outside flexible mode the JSON roots are the bare value (no blanks to loop on before or after).
_BARE_ROOTS = "".join(f"%override {root}: json_{root}\n" for root in ("value", "object", "array", "string", "number"))
_WS_OVERRIDES = {
    "flexible": "",
    "bounded": f"\n%override WS: /{WHITESPACE_REGEXES['bounded']}/\n{_BARE_ROOTS}",
    "compact": f"\n%override ws: \n{_BARE_ROOTS}",
}


def builtin_grammar_text(whitespace: str = "bounded") -> str:
    """The built-in JSON / function-calling grammar as Lark text, for a whitespace mode."""
    if whitespace not in WHITESPACE_MODES:
        raise GrammarError(f"whitespace must be one of {WHITESPACE_MODES}, not {whitespace!r}")
    return _json_lark() + _WS_OVERRIDES[whitespace]


@functools.cache
def _json_lark() -> str:
    # Read once: every compile_builtin call keys its cache entry by this text.
    return resources.files("onrails.grammars").joinpath("json.lark").read_text(encoding="utf-8")


BuiltinRules = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, tuple[str, ...]], ...], tuple[str, ...]]


@functools.cache
def builtin_rules(whitespace: str = "bounded") -> BuiltinRules:
    """The built-in grammar as Lark's front end reads ``builtin_grammar_text(whitespace)``:
    terminals (name, Python regex), rules with EBNF expanded (name, symbols) and the ignored
    terminals. Shipped as ``builtin_rules.json``, which a test keeps equal to Lark's reading, so
    a process's first compile skips Lark's grammar parser (about half a second)."""
    if whitespace not in WHITESPACE_MODES:
        raise GrammarError(f"whitespace must be one of {WHITESPACE_MODES}, not {whitespace!r}")
    data = json.loads(resources.files("onrails.grammars").joinpath("builtin_rules.json").read_text(encoding="utf-8"))
    mode = data[whitespace]
    return (
        tuple((name, regex) for name, regex in mode["terminals"]),
        tuple((lhs, tuple(rhs)) for lhs, rhs in mode["rules"]),
        tuple(mode["ignore"]),
    )
