"""The onrails exception hierarchy: every error the library raises derives from OnRailsError."""

from __future__ import annotations


class OnRailsError(Exception):
    """Base class of every error onrails raises."""


class GrammarError(OnRailsError, ValueError):
    """A grammar does not parse, names an undefined rule, or uses what the engine cannot support.

    ``line`` and ``column`` locate the problem in the grammar text when known; ``rule`` names the
    rule or terminal involved when known.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        rule: str | None = None,
    ) -> None:
        self.line = line
        self.column = column
        self.rule = rule
        where = []
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column}")
        if rule is not None:
            where.append(f"rule {rule!r}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class CompileBudgetError(GrammarError):
    """Compiling a grammar exceeded its time or size budget."""


class TokenizerError(OnRailsError, ValueError):
    """A tokenizer's vocabulary could not be read into bytes."""


class BadRequestError(OnRailsError, ValueError):
    """A request parameter is invalid (out of range, wrong type, unknown name, bad grammar...).

    ``param`` names the offending parameter (``"temperature"``, ``"messages[1].content"``...).
    Raised before any work starts, so the loaded model and other requests are unaffected.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(f"{param}: {message}" if param else message)


class SchemaError(GrammarError):
    """A JSON Schema is invalid, unsatisfiable, or uses a keyword that cannot be enforced exactly.

    ``pointer`` is the JSON pointer of the schema location involved ("" for the root) and
    ``keyword`` the keyword concerned, when known.
    """

    def __init__(self, message: str, *, pointer: str | None = None, keyword: str | None = None) -> None:
        self.pointer = pointer
        self.keyword = keyword
        where = []
        if pointer is not None:
            where.append(f"at #{pointer}")
        if keyword is not None:
            where.append(f"keyword {keyword!r}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class ContextLengthError(BadRequestError):
    """The prompt, or the prompt plus ``max_tokens``, does not fit in the model's context."""


class QueueFullError(OnRailsError):
    """A queue is full (requests waiting for room in the batch, or grammar compiles waiting for
    a compile process): the work was not accepted; retry in about ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)
