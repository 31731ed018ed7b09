"""``onrails.generate`` and the request plumbing shared with the clients: prompts, constraints,
sampling parameters, all validated up front into ``BadRequestError``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onrails.constrain import BUILTIN_ROOTS, WHITESPACE_MODES
from onrails.errors import BadRequestError, ContextLengthError, GrammarError
from onrails.runtime.generation import SequenceRequest, generate_sequences
from onrails.runtime.models import Model, load_model
from onrails.runtime.sampling import REQUEST_FIELDS, SamplingParams

if TYPE_CHECKING:
    from onrails.constrain import CompiledGrammar

__all__ = ["Constraint", "generate", "resolve_constraint", "resolve_model"]

#: ``generate`` keyword arguments that become ``SamplingParams`` fields.
_SAMPLING_FIELDS = (*REQUEST_FIELDS, "max_tokens")


@dataclass(frozen=True)
class Constraint:
    """A compiled grammar and start rule, and how its output is parsed (``json`` / pydantic)."""

    grammar: "CompiledGrammar | None" = None
    root: str | None = None
    json_output: bool = False
    pydantic_model: Any = None

    def parse(self, text: str) -> Any:
        """The parsed output: a pydantic instance, a JSON value, or the text itself."""
        if self.pydantic_model is not None:
            return self.pydantic_model.model_validate_json(text)
        if self.json_output:
            return json.loads(text)
        return text


_JSON_ROOTS = {"value", "object", "array", "string", "number", "func", "funcarray", "fcall"}


def resolve_model(model: "Model | str | None") -> Model:
    """A loaded model: ``model`` itself, or ``load_model(model)`` (the default when None)."""
    if isinstance(model, Model):
        return model
    if model is None:
        return load_model()
    if not isinstance(model, str):
        raise BadRequestError(f"must be a model name, a path or a loaded Model, not {type(model).__name__}", param="model")
    try:
        return load_model(model)
    except LookupError as exc:
        raise BadRequestError(str(exc), param="model") from exc


def resolve_constraint(
    model: Model,
    *,
    grammar_root: str | None = None,
    grammar: str | None = None,
    grammar_start: str = "start",
    response_format: Any = None,
    whitespace: str = "bounded",
) -> Constraint:
    """Compile the one constraint a request names (none: unconstrained). Cached per model.

    ``grammar_root``: a built-in rule; ``grammar``: Lark text started at ``grammar_start``;
    ``response_format``: ``{"type": "text" | "json_object" | "json_schema", ...}`` or a
    pydantic model class. Naming two is a ``BadRequestError``, as is anything invalid.
    """
    if whitespace not in WHITESPACE_MODES:
        raise BadRequestError(f"must be one of {WHITESPACE_MODES}, got {whitespace!r}", param="whitespace")
    named = [n for n, v in (("grammar_root", grammar_root), ("grammar", grammar)) if v is not None]
    format_constraint = _response_format(model, response_format, whitespace)
    if format_constraint is not None:
        named.append("response_format")
    if len(named) > 1:
        raise BadRequestError(f"give only one of {' / '.join(named)}", param=named[1])
    if format_constraint is not None:
        return format_constraint
    if grammar_root is not None:
        if not isinstance(grammar_root, str) or grammar_root not in BUILTIN_ROOTS:
            raise BadRequestError(f"unknown rule {grammar_root!r}; built-in rules: {', '.join(BUILTIN_ROOTS)}", param="grammar_root")
        return Constraint(model.builtin_grammar(whitespace), grammar_root, json_output=grammar_root in _JSON_ROOTS)
    if grammar is not None:
        if not isinstance(grammar, str) or not grammar.strip():
            raise BadRequestError("must be Lark grammar text", param="grammar")
        if not isinstance(grammar_start, str) or not grammar_start:
            raise BadRequestError("must name a rule of the grammar", param="grammar_start")
        try:
            compiled = model.compiler.compile_lark(grammar, grammar_start)
        except GrammarError as exc:
            raise BadRequestError(str(exc), param="grammar") from exc
        return Constraint(compiled, grammar_start)
    return Constraint()


def _response_format(model: Model, response_format: Any, whitespace: str) -> Constraint | None:
    if response_format is None:
        return None
    if isinstance(response_format, type):
        if not hasattr(response_format, "model_json_schema"):
            raise BadRequestError("a class given as response_format must be a pydantic model", param="response_format")
        try:
            compiled = model.compiler.compile_pydantic(response_format, whitespace=whitespace)
        except GrammarError as exc:
            raise BadRequestError(str(exc), param="response_format") from exc
        return Constraint(compiled, None, json_output=True, pydantic_model=response_format)
    if not isinstance(response_format, Mapping):
        raise BadRequestError("must be a dict with a 'type' or a pydantic model class", param="response_format")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return Constraint(model.builtin_grammar(whitespace), "object", json_output=True)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
            raise BadRequestError("json_schema must be {'name': ..., 'schema': {...}, 'strict': ...}", param="response_format.json_schema")
        strict = spec.get("strict", True)
        if not isinstance(strict, bool):
            raise BadRequestError("must be a bool", param="response_format.json_schema.strict")
        try:
            compiled = model.compiler.compile_json_schema(dict(spec["schema"]), whitespace=whitespace, strict=strict)
        except GrammarError as exc:
            raise BadRequestError(str(exc), param="response_format.json_schema.schema") from exc
        return Constraint(compiled, None, json_output=True)
    raise BadRequestError(f"type must be 'text', 'json_object' or 'json_schema', got {kind!r}", param="response_format.type")


# Fill-in-the-middle tokens (prefix, suffix, middle) as the model families spell them.
_FIM_SPELLINGS = (
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder, SantaCoder, Granite code
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),  # DeepSeek-Coder
    ("▁<PRE>", "▁<SUF>", "▁<MID>"),  # Code Llama
)


def fim_token_ids(tokenizer: Any) -> tuple[int, int, int] | None:
    """The tokenizer's fill-in-the-middle token ids (prefix, suffix, middle), or None."""
    for spelling in _FIM_SPELLINGS:
        ids = tokenizer.convert_tokens_to_ids(list(spelling))
        if all(isinstance(i, int) and i != tokenizer.unk_token_id for i in ids):
            if tokenizer.convert_ids_to_tokens(ids) == list(spelling):
                return ids[0], ids[1], ids[2]
    return None


def encode_prompt(model: Model, prompt: Any, param: str = "prompt", suffix: str | None = None) -> list[int]:
    """Token ids of one prompt: text (encoded without special tokens) or a list of token ids.

    With ``suffix``, a fill-in-the-middle prompt in prefix-suffix-middle order: the model
    writes what goes between ``prompt`` and ``suffix``. ``BadRequestError`` when the tokenizer
    has no FIM tokens.
    """
    if isinstance(prompt, str):
        ids = model.encode(prompt)
    elif isinstance(prompt, Sequence) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        ids = list(prompt)
        bad = [t for t in ids if not 0 <= t < model.vocabulary.size]
        if bad:
            raise BadRequestError(f"token id {bad[0]} is outside the vocabulary (size {model.vocabulary.size})", param=param)
    else:
        raise BadRequestError("must be a string or a list of token ids", param=param)
    if suffix is not None:
        if not isinstance(suffix, str):
            raise BadRequestError("must be a string", param="suffix")
        fim = fim_token_ids(model.tokenizer)
        if fim is None:
            raise BadRequestError(
                f"fill-in-the-middle needs FIM tokens, which the tokenizer of {model.name!r} does not have", param="suffix"
            )
        ids = [fim[0], *ids, fim[1], *model.encode(suffix), fim[2]]
    if not ids:
        raise BadRequestError("is empty", param=param)
    if len(ids) >= model.context_length:
        raise ContextLengthError(
            f"is {len(ids)} tokens; the model's context is {model.context_length} tokens", param=param
        )
    return ids


def check_budget(model: Model, prompt_ids: list[int], params: SamplingParams) -> None:
    """``BadRequestError`` when prompt plus ``max_tokens`` exceeds the model's context."""
    if params.max_tokens is not None and len(prompt_ids) + params.max_tokens > model.context_length:
        raise ContextLengthError(
            f"{params.max_tokens} plus the prompt's {len(prompt_ids)} tokens exceeds the model's "
            f"context of {model.context_length} tokens",
            param="max_tokens",
        )
    params.check_vocabulary(model.vocabulary.size)


def chat_prompt(model: Model, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    """The prompt text of a conversation, from the tokenizer's chat template (generation turn open)."""
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        # No template: a plain transcript, which base models continue well enough.
        lines = [f"{m['role']}: {m.get('content') or ''}" for m in messages]
        return "\n".join(lines) + "\nassistant:"
    return str(tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True))


def sampling_params(values: Mapping[str, Any], **extra: Any) -> SamplingParams:
    """``SamplingParams`` from keyword arguments; unknown names are a ``BadRequestError``."""
    unknown = [k for k in values if k not in _SAMPLING_FIELDS]
    if unknown:
        raise BadRequestError(f"unknown parameter; accepted: {', '.join(_SAMPLING_FIELDS)}", param=unknown[0])
    return SamplingParams(**{k: v for k, v in values.items() if v is not None}, **extra)


def generate(
    prompt: "str | list[int]",
    grammar_root: str | None = "object",
    *,
    model: "Model | str | None" = None,
    grammar: str | None = None,
    grammar_start: str = "start",
    response_format: Any = None,
    whitespace: str = "bounded",
    chat: bool = True,
    parse: bool = False,
    jump_forward: bool = True,
    **params: Any,
) -> Any:
    """Generate one completion of ``prompt`` that follows a grammar; return its text.

    The constraint is ``grammar_root`` (a built-in rule, default ``"object"``; None for free
    text) unless ``grammar`` (Lark text, start rule ``grammar_start``) or ``response_format``
    (``{"type": "json_object" | "json_schema", ...}`` or a pydantic class) is given. ``chat``
    wraps a text prompt as a user message in the model's chat template. ``parse=True`` returns
    the parsed value (``json.loads`` of JSON output, a pydantic instance) instead of the text.
    ``params``: ``temperature``, ``top_p``, ``top_k``, ``min_p``, ``repetition_penalty``,
    ``frequency_penalty``, ``presence_penalty``, ``logit_bias``, ``seed``, ``min_tokens``,
    ``max_tokens``, ``stop``, ``ensure_parsable`` (see ``SamplingParams``). ``model`` defaults
    to the default model (loaded once). Raises ``BadRequestError`` for invalid input.
    Cost: one forward pass per generated token, fewer with ``jump_forward``.
    """
    loaded = resolve_model(model)
    if grammar is not None or response_format is not None:
        grammar_root = None
    constraint = resolve_constraint(
        loaded,
        grammar_root=grammar_root,
        grammar=grammar,
        grammar_start=grammar_start,
        response_format=response_format,
        whitespace=whitespace,
    )
    if not isinstance(chat, bool):
        raise BadRequestError("must be a bool", param="chat")
    if chat and isinstance(prompt, str):
        prompt = chat_prompt(loaded, [{"role": "user", "content": prompt}])
    ids = encode_prompt(loaded, prompt)
    sampling = sampling_params(params)
    check_budget(loaded, ids, sampling)
    request = SequenceRequest(ids, sampling, constraint.grammar, constraint.root, jump_forward=jump_forward)
    result = generate_sequences(loaded, [request])[0]
    if not parse:
        return result.text
    if constraint.grammar is None or (not constraint.json_output and constraint.pydantic_model is None):
        raise BadRequestError("parse=True needs a JSON constraint (a JSON grammar_root or response_format)", param="parse")
    return constraint.parse(result.text)
