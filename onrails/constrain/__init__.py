"""Grammar → token-mask engine. Imports nothing heavy (no torch): see ``torch_ops`` for that.

The grammar writers (built-in grammar, JSON Schema, tools) live in ``onrails.grammars``; their
public names are re-exported here, where they were before.
"""

from onrails.constrain.bitmask import allocate_token_bitmask
from onrails.constrain.compiled import CompiledGrammar, Explanation, GrammarCompiler
from onrails.constrain.matcher import Matcher, MatcherError
from onrails.constrain.vocabulary import Vocabulary
from onrails.grammars import (
    BUILTIN_ROOTS,
    WHITESPACE_MODES,
    SchemaGrammar,
    Unenforced,
    builtin_grammar_text,
    pydantic_schema,
    schema_to_grammar,
    tools_to_grammar,
)

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
