"""Grammar → token-mask engine. Imports nothing heavy (no torch): see ``torch_ops`` for that."""

from onrails.constrain.compiled import (
    BUILTIN_ROOTS,
    WHITESPACE_MODES,
    CompiledGrammar,
    Explanation,
    GrammarCompiler,
    builtin_grammar_text,
)
from onrails.constrain.schema import SchemaGrammar, Unenforced, pydantic_schema, schema_to_grammar
from onrails.constrain.tools import tools_to_grammar
from onrails.constrain.bitmask import allocate_token_bitmask
from onrails.constrain.matcher import Matcher, MatcherError
from onrails.constrain.vocabulary import Vocabulary

__all__ = [
    "BUILTIN_ROOTS",
    "WHITESPACE_MODES",
    "CompiledGrammar",
    "Explanation",
    "GrammarCompiler",
    "Matcher",
    "MatcherError",
    "SchemaGrammar",
    "Unenforced",
    "Vocabulary",
    "allocate_token_bitmask",
    "builtin_grammar_text",
    "pydantic_schema",
    "schema_to_grammar",
    "tools_to_grammar",
]
