"""onrails: grammar-constrained structured output for language models.

The engine (``Vocabulary`` → ``GrammarCompiler`` → ``CompiledGrammar`` → ``Matcher``) imports no
torch; ``apply_token_bitmask_inplace`` loads the torch adapter on first use, and the runtime
(``load_model``, ``generate``, ``Client``...) loads torch and transformers on first use.
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
    SchemaGrammar,
    Unenforced,
    Vocabulary,
    allocate_token_bitmask,
    builtin_grammar_text,
    pydantic_schema,
    schema_to_grammar,
    tools_to_grammar,
)
from onrails.errors import (
    BadRequestError,
    CompileBudgetError,
    GrammarError,
    OnRailsError,
    QueueFullError,
    SchemaError,
    TokenizerError,
)

# Names served lazily by __getattr__ (they import torch / transformers): module, attribute.
_LAZY = {
    "apply_token_bitmask_inplace": ("onrails.constrain.torch_ops", "apply_token_bitmask_inplace"),
    "load_model": ("onrails.runtime.models", "load_model"),
    "Model": ("onrails.runtime.models", "Model"),
    "SamplingParams": ("onrails.runtime.sampling", "SamplingParams"),
    "generate": ("onrails.runtime.api", "generate"),
    "Client": ("onrails.runtime.client", "Client"),
    "AsyncClient": ("onrails.runtime.client", "AsyncClient"),
    "create_app": ("onrails.runtime.server", "create_app"),
    "ServerLimits": ("onrails.runtime.server", "ServerLimits"),
}

__all__ = [
    "AsyncClient",
    "BUILTIN_ROOTS",
    "BadRequestError",
    "WHITESPACE_MODES",
    "CompileBudgetError",
    "CompiledGrammar",
    "Explanation",
    "GrammarCompiler",
    "GrammarError",
    "Matcher",
    "MatcherError",
    "Model",
    "OnRailsError",
    "QueueFullError",
    "SchemaError",
    "SchemaGrammar",
    "SamplingParams",
    "ServerLimits",
    "TokenizerError",
    "Unenforced",
    "Vocabulary",
    "allocate_token_bitmask",
    "apply_token_bitmask_inplace",
    "builtin_grammar_text",
    "create_app",
    "generate",
    "load_model",
    "pydantic_schema",
    "schema_to_grammar",
    "tools_to_grammar",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'onrails' has no attribute {name!r}")
