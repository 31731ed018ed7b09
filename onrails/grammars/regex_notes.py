"""Instructions to the engine written inside terminal regexes as regex comments.

``(?#except:HEX)`` at the start of a terminal's regex removes a finite set of words from its
language. Every other regex engine reads it as a comment (so other Lark tools see the wider
language); the engine subtracts the words from the terminal's byte automaton, which a regex
could only say with a large, slow-to-compile complement construction.

``(?#and:HEX)`` and ``(?#minus:HEX)`` at the start of a terminal's regex intersect its language
with another regex's, or remove another regex's language from it (a JSON Schema ``pattern`` next
to a length, a ``format`` or a negated ``pattern``). Python regexes have neither operation; the
engine builds the product of the two byte automata. Prefixes stack: each applies to the regex
after it.
"""

from __future__ import annotations

import json
import re

_EXCEPT = re.compile(r"\(\?#except:([0-9a-f]*)\)")
_OPERATION = re.compile(r"\(\?#(and|minus):([0-9a-f]*)\)")


def except_words(words: list[str]) -> str:
    """The regex prefix that removes exactly ``words`` (lexemes, not regexes) from the
    terminal's language."""
    return f"(?#except:{json.dumps(sorted(set(words))).encode('utf-8').hex()})"


def split_except(pattern: str) -> tuple[list[bytes], str] | None:
    """``(words, rest of the pattern)`` when ``pattern`` starts with an except prefix, else None.

    Raises ValueError for a malformed word list.
    """
    found = _EXCEPT.match(pattern)
    if not found:
        return None
    words = [str(w).encode("utf-8") for w in json.loads(bytes.fromhex(found.group(1)))]
    return words, pattern[found.end() :]


def intersected(regex: str, other: str) -> str:
    """A regex for the words both ``regex`` and ``other`` match."""
    return f"(?#and:{other.encode('utf-8').hex()})" + regex


def subtracted(regex: str, other: str) -> str:
    """A regex for the words ``regex`` matches and ``other`` does not."""
    return f"(?#minus:{other.encode('utf-8').hex()})" + regex


def split_operation(pattern: str) -> tuple[str, str, str] | None:
    """``(operation, other regex, rest of the pattern)`` when ``pattern`` starts with an
    ``and``/``minus`` prefix, else None. Raises ValueError for a malformed prefix."""
    found = _OPERATION.match(pattern)
    if not found:
        return None
    return found.group(1), bytes.fromhex(found.group(2)).decode("utf-8"), pattern[found.end() :]


def has_notes(pattern: str) -> bool:
    """Whether the engine reads a terminal's regex differently from other regex engines."""
    return bool(_EXCEPT.match(pattern) or _OPERATION.match(pattern))
