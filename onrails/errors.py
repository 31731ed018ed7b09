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
