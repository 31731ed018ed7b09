"""Instructions to the engine written inside terminal regexes as regex comments.

``(?#except:HEX)`` at the start of a terminal's regex removes a finite set of words from its
language. Every other regex engine reads it as a comment (so other Lark tools see the wider
language); the engine subtracts the words from the terminal's byte automaton, which a regex
could only say with a large, slow-to-compile complement construction.
"""

from __future__ import annotations

import json
import re

_EXCEPT = re.compile(r"\(\?#except:([0-9a-f]*)\)")


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
