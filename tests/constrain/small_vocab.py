"""A small vocabulary with every single byte and multi-byte tokens that cross JSON terminals."""

from __future__ import annotations

from onrails import Vocabulary

TRICKY = [
    b'{"', b'"}', b'":', b'":"', b'", "', b'","', b'},{', b'}]', b']}', b'}}', b'"}}]', b' "', b'\n  ',
    b'  ', b'true', b'false', b'null', b'null,', b'tru', b'12', b'3.5', b'e+', b'-0', b'0.',
    b'"a', b'abc', b'\\u', b'\\n', b'\\"', b'00', b'\xe6\x97', b'\xa5', b'\xf0\x9f\x98', b'\x80',
    b'[{"name": "', b'"arguments"', b'"name"', b'[]', b'{}', b', ', b': ', b'\t', b'\r\n',
    b'SELECT', b'select', b' FROM', b' WHERE', b"'", b"''", b'""', b'",', b'\n', b'1,2', b'(x',
    b'+', b'*', b'sin(', b'),', b' AND ', b'LIMIT 1', b'a"b',
]


def small_vocabulary() -> Vocabulary:
    """256 single bytes, the tricky tokens, one special token (None) and an end token."""
    tokens: list[bytes | None] = [bytes([b]) for b in range(256)] + list(TRICKY)
    tokens.append(None)  # a special token that is never content
    tokens.append(None)  # the end token
    return Vocabulary(tokens, [len(tokens) - 1], size=len(tokens) + 5, name="small")
