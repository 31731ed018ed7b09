"""Everything that writes a grammar: the built-in JSON / function-calling grammar, JSON Schema
and pydantic models to grammars, tool lists to grammars. Imports nothing from the engine."""

from onrails.grammars.builtin import BUILTIN_ROOTS, WHITESPACE_MODES, builtin_grammar_text
from onrails.grammars.schema import SchemaGrammar, Unenforced, pydantic_schema, schema_to_grammar
from onrails.grammars.tools import tools_to_grammar

__all__ = [
    "BUILTIN_ROOTS",
    "WHITESPACE_MODES",
    "SchemaGrammar",
    "Unenforced",
    "builtin_grammar_text",
    "pydantic_schema",
    "schema_to_grammar",
    "tools_to_grammar",
]
