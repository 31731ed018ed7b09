"""onrails: grammar-constrained structured output for language models.

The engine (``Vocabulary`` → ``GrammarCompiler`` → ``CompiledGrammar`` → ``Matcher``) imports no
torch; ``apply_token_bitmask_inplace`` loads the torch adapter on first use.
"""

from typing import Any

from onrails.constrain import (
    BUILTIN_ROOTS,
    WHITESPACE_MODES,
    CompiledGrammar,
    Explanation,
    GrammarCompiler,
    Matcher,
    MatcherError,
    Vocabulary,
    allocate_token_bitmask,
    builtin_grammar_text,
)
from onrails.errors import CompileBudgetError, GrammarError, OnRailsError, TokenizerError

__all__ = [
    "BUILTIN_ROOTS",
    "WHITESPACE_MODES",
    "CompileBudgetError",
    "CompiledGrammar",
    "Explanation",
    "GrammarCompiler",
    "GrammarError",
    "Matcher",
    "MatcherError",
    "OnRailsError",
    "TokenizerError",
    "Vocabulary",
    "allocate_token_bitmask",
    "apply_token_bitmask_inplace",
    "builtin_grammar_text",
]


def __getattr__(name: str) -> Any:
    if name == "apply_token_bitmask_inplace":
        from onrails.constrain.torch_ops import apply_token_bitmask_inplace

        return apply_token_bitmask_inplace
    raise AttributeError(f"module 'onrails' has no attribute {name!r}")
