"""OpenAI-style tools → the built-in function-calling rules, specialised to those tools.

The built-in grammar's ``func`` becomes a choice of one rule per tool: ``{"name": "<tool>",
"arguments": <value valid under the tool's parameters>}``, keys in that order. The other rules
keep their built-in meaning (see ``onrails/grammars/json.lark``) and whitespace mode.

The grammar's root depends on ``tool_choice``:

==================  ===========  ================================================================
tool_choice         root         the output must be
==================  ===========  ================================================================
"none"              nofcall      a text answer (no tool call)
"auto"              root         a tool call turn or a text answer
"required"          fcall        a tool call turn
{"type": "function", "function": {"name": N}}
                    fcall        a tool call turn calling only N
==================  ===========  ================================================================

A tool call turn is always a JSON array of calls (``fcall``): with ``parallel_tool_calls`` one or
more calls, without it exactly one, still written as a one-element array ``[{...}]`` so that the
output has the same shape either way.
"""

from __future__ import annotations

from typing import Any

from onrails.grammars import _ecma_regex as rx
from onrails.grammars.builtin import builtin_grammar_text
from onrails.grammars.schema import SchemaGrammar, Unenforced, load_schema, schema_to_grammar
from onrails.errors import SchemaError

TOOL_CHOICES = ("none", "auto", "required")
_ROOTS = {"none": "nofcall", "auto": "root", "required": "fcall"}


def tool_names(tools: "list[dict[str, Any]]") -> list[str]:
    """The function names of OpenAI-style tools, checking the list's shape."""
    if not isinstance(tools, list):
        raise SchemaError(f"tools must be a list, not {type(tools).__name__}", pointer="")
    names: list[str] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise SchemaError(
                'a tool must be {"type": "function", "function": {...}}', pointer=f"/{i}", keyword="type"
            )
        name = tool["function"].get("name")
        if not isinstance(name, str) or not name:
            raise SchemaError("a tool needs a non-empty string name", pointer=f"/{i}/function/name", keyword="name")
        if name in names:
            raise SchemaError(f"two tools are named {name!r}", pointer=f"/{i}/function/name", keyword="name")
        names.append(name)
    return names


def _chosen(tool_choice: "str | dict[str, Any]", names: list[str]) -> tuple[str, str | None]:
    """(root rule, the one tool's name or None)."""
    if isinstance(tool_choice, str):
        if tool_choice not in TOOL_CHOICES:
            raise SchemaError(f"tool_choice must be one of {TOOL_CHOICES} or a named function, not {tool_choice!r}")
        if tool_choice != "none" and not names:
            raise SchemaError(f"tool_choice {tool_choice!r} needs at least one tool")
        return _ROOTS[tool_choice], None
    function = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(tool_choice, dict) or tool_choice.get("type") != "function" or not isinstance(name, str):
        raise SchemaError('a named tool_choice must be {"type": "function", "function": {"name": ...}}')
    if name not in names:
        raise SchemaError(f"tool_choice names {name!r}, which is not among the tools {names}")
    return "fcall", name


def tools_to_grammar(
    tools: "list[dict[str, Any]]",
    *,
    tool_choice: "str | dict[str, Any]" = "auto",
    parallel_tool_calls: bool = True,
    whitespace: str = "bounded",
    strict: bool = True,
    budget_s: float = 30.0,
) -> SchemaGrammar:
    """The built-in grammar with ``func`` specialised to ``tools``; ``start`` is the root to use.

    Each tool's ``parameters`` (default: any object) is converted like ``schema_to_grammar``;
    ``unenforced`` pointers are prefixed with the tool's index (``/0/function/parameters/...``).
    """
    names = tool_names(tools)
    root, only = _chosen(tool_choice, names)
    text = builtin_grammar_text(whitespace)
    if root == "nofcall":
        return SchemaGrammar(lark=text, start=root)
    calls = []
    extra = []
    unenforced: list[Unenforced] = []
    ignored: list[tuple[str, str]] = []
    for i, tool in enumerate(tools):
        name = names[i]
        if only is not None and name != only:
            continue
        params = tool["function"].get("parameters", {"type": "object"})
        load_schema(params)
        if params is True:
            params = {"type": "object"}
        elif isinstance(params, dict) and params.get("type") != "object":
            # arguments are an object; added at the top so that root-relative $refs still resolve
            params = {**params, "allOf": [*params.get("allOf", []), {"type": "object"}]}
        where = f"/{i}/function/parameters"
        try:
            converted = schema_to_grammar(
                params,
                whitespace=whitespace,
                strict=strict,
                prefix=f"tool{i}_",
                budget_s=budget_s,
            )
        except SchemaError as exc:
            pointer = where + (exc.pointer or "") if exc.pointer is not None else where
            raise SchemaError(f"tool {name!r}: {exc}", pointer=pointer, keyword=exc.keyword) from exc
        unenforced += [Unenforced(where + u.pointer, u.keyword, u.reason) for u in converted.unenforced]
        ignored += [(where + p, f) for p, f in converted.ignored_formats]
        call = f"tool{i}_call"
        name_terminal = f"TOOL{i}_NAME"
        calls.append(call)
        extra.append(
            f'{call}: "{{" ws "\\"name\\"" ws ":" ws {name_terminal} ws "," ws "\\"arguments\\"" ws ":" ws '
            f'{converted.start} ws "}}"'
        )
        extra.append(f'{name_terminal}: /"{rx.literal(rx.canonical(name))}"/')
        extra.append(converted.lark)
    overrides = [f"%override func: {' | '.join(calls)}"]
    if not parallel_tool_calls:
        overrides.append('%override funcarray: "[" ws func ws "]"')
    text = text + "\n" + "\n".join(overrides) + "\n" + "\n".join(extra)
    return SchemaGrammar(lark=text, start=root, unenforced=tuple(unenforced), ignored_formats=tuple(ignored))
