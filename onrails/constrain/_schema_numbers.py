"""Regexes for JSON numbers within bounds and multiples, built digit by digit.

Integers are exact: ``int_regex(lo, hi)`` matches the canonical decimal spellings (no leading
zeros, ``-0`` for zero) of exactly the integers in range. Decimals with bounds are exact over
spellings without an exponent: the integer part is ranged like an integer and the fraction is
compared digit by digit as a decimal expansion; exponents are simply not offered when a number
is bounded (a narrower but sound language).
"""

from __future__ import annotations

from fractions import Fraction

_DIGITS = "0123456789"
NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+\-]?[0-9]+)?"
INTEGER = r"-?(?:0|[1-9][0-9]*)"
ZERO_FRACTION = r"(?:\.0+)?"


def _digit_class(lo: int, hi: int) -> str:
    if lo == hi:
        return str(lo)
    if lo == 0 and hi == 9:
        return "[0-9]"
    return f"[{lo}-{hi}]"


def _alts(parts: list[str]) -> str:
    parts = list(dict.fromkeys(parts))
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _same_length(a: str, b: str) -> str:
    """Digit strings of equal length n between a and b (inclusive, a <= b)."""
    if not a:
        return ""
    k = len(a) - 1
    if a[0] == b[0]:
        return a[0] + _same_length(a[1:], b[1:])
    if a[1:] == "0" * k and b[1:] == "9" * k:
        return _digit_class(int(a[0]), int(b[0])) + ("[0-9]{%d}" % k if k > 1 else "[0-9]" * k)
    parts = [a[0] + _same_length(a[1:], "9" * k)]
    if int(b[0]) - int(a[0]) > 1:
        parts.append(_digit_class(int(a[0]) + 1, int(b[0]) - 1) + ("[0-9]{%d}" % k if k > 1 else "[0-9]" * k))
    parts.append(b[0] + _same_length("0" * k, b[1:]))
    return _alts(parts)


def nonneg_int_regex(lo: int, hi: int | None) -> str | None:
    """Canonical spellings of the integers in [lo, hi] (lo >= 0; hi None: unbounded)."""
    if hi is not None and hi < lo:
        return None
    parts = []
    a = str(lo)
    if hi is None:
        parts.append(_same_length(a, "9" * len(a)))
        parts.append("[1-9][0-9]{%d,}" % len(a))
    else:
        b = str(hi)
        if len(a) == len(b):
            parts.append(_same_length(a, b))
        else:
            parts.append(_same_length(a, "9" * len(a)))
            if len(b) - len(a) > 1:
                parts.append("[1-9][0-9]{%d,%d}" % (len(a), len(b) - 2))
            parts.append(_same_length("1" + "0" * (len(b) - 1), b))
    return _alts(parts)


def int_regex(lo: int | None, hi: int | None) -> str | None:
    """Canonical spellings (``-0`` included for zero) of the integers in [lo, hi]."""
    if lo is not None and hi is not None and hi < lo:
        return None
    parts = []
    if lo is None or lo <= 0:
        # negative side, and -0 when zero is in range
        mag_lo = 0 if hi is None or hi >= 0 else -hi
        neg = nonneg_int_regex(mag_lo, None if lo is None else -lo)
        if neg is not None:
            parts.append("-" + neg)
    if hi is None or hi >= 0:
        pos = nonneg_int_regex(max(lo, 0) if lo is not None else 0, hi)
        if pos is not None:
            parts.append(pos)
    if not parts:
        return None
    return _alts(parts)


# -- fractions: digit strings s compared as the decimal 0.s -------------------------------------
# Each function returns (matches the empty string, regex of the non-empty strings or None).

_Frac = tuple[bool, "str | None"]
_ANY = (True, "[0-9]+")


def _prefix(d: str, rest: _Frac) -> str | None:
    empty, nonempty = rest
    if empty and nonempty:
        return d + "(?:" + nonempty + ")?"
    if empty:
        return d
    if nonempty:
        return d + nonempty
    return None


def _join(empty: bool, parts: list["str | None"]) -> _Frac:
    real = [p for p in parts if p]
    return empty, (_alts(real) if real else None)


def _frac_ge(b: str, inclusive: bool) -> _Frac:
    """0.s >= 0.b (or >); b has no trailing zeros."""
    if not b:
        return _ANY if inclusive else (False, "0*[1-9][0-9]*")
    d = int(b[0])
    parts = [_prefix(b[0], _frac_ge(b[1:], inclusive))]
    if d < 9:
        parts.append(_digit_class(d + 1, 9) + "[0-9]*")
    return _join(False, parts)


def _frac_le(b: str, inclusive: bool) -> _Frac:
    """0.s <= 0.b (or <); b has no trailing zeros."""
    if not b:
        return (True, "0+") if inclusive else (False, None)
    d = int(b[0])
    parts = [_prefix(b[0], _frac_le(b[1:], inclusive))]
    if d > 0:
        parts.append(_digit_class(0, d - 1) + "[0-9]*")
    return _join(True, parts)


def _frac_between(a: str, a_incl: bool, b: str, b_incl: bool) -> _Frac:
    """0.a <(=) 0.s <(=) 0.b, digit by digit; a and b have no trailing zeros."""
    if not b:
        return (True, "0+") if not a and a_incl and b_incl else (False, None)
    a_first, a_rest = (int(a[0]), a[1:]) if a else (0, "")
    b_first = int(b[0])
    parts: list[str | None] = []
    if a_first == b_first:
        parts.append(_prefix(str(a_first), _frac_between(a_rest, a_incl, b[1:], b_incl)))
    else:
        parts.append(_prefix(str(a_first), _frac_ge(a_rest, a_incl)))
        if b_first - a_first > 1:
            parts.append(_digit_class(a_first + 1, b_first - 1) + "[0-9]*")
        parts.append(_prefix(str(b_first), _frac_le(b[1:], b_incl)))
    return _join(not a and a_incl, parts)


def _fraction_suffix(frac: _Frac) -> str | None:
    """The JSON fraction part (".digits", optional when 0 qualifies) for a fraction set."""
    empty, nonempty = frac
    if nonempty is None:
        return "" if empty else None
    dotted = "\\." + ("(?:" + nonempty + ")" if "|" in nonempty else nonempty)
    return "(?:" + dotted + ")?" if empty else dotted


def split_decimal(x: Fraction, max_digits: int = 40) -> tuple[int, str]:
    """Integer part and fraction digits (no trailing zeros) of a non-negative terminating decimal.

    ValueError past ``max_digits`` fraction digits (1/3 has none, 1e-50 too many).
    """
    whole = x.numerator // x.denominator
    rest = x - whole
    digits = []
    while rest:
        rest *= 10
        d = rest.numerator // rest.denominator
        digits.append(str(d))
        rest -= d
        if len(digits) > max_digits:
            raise ValueError(f"{float(x)} has no short decimal spelling")
    return whole, "".join(digits)


def _magnitude(lo: Fraction, lo_incl: bool, hi: Fraction | None, hi_incl: bool) -> str | None:
    """Spellings without sign or exponent of the values v with lo <(=) v <(=) hi, 0 <= lo."""
    li, lf = split_decimal(lo)
    if hi is not None:
        hi_i, hf = split_decimal(hi)
        if hi < lo or (hi == lo and not (lo_incl and hi_incl)):
            return None
    parts = []
    if hi is not None and li == hi_i:
        suffix = _fraction_suffix(_frac_between(lf, lo_incl, hf, hi_incl))
        if suffix is not None:
            parts.append(str(li) + suffix)
    else:
        suffix = _fraction_suffix(_frac_ge(lf, lo_incl))
        if suffix is not None:
            parts.append(str(li) + suffix)
        middle = nonneg_int_regex(li + 1, None if hi is None else hi_i - 1)
        if middle is not None:
            parts.append(_wrap(middle) + "(?:\\.[0-9]+)?")
        if hi is not None:
            suffix = _fraction_suffix(_frac_le(hf, hi_incl))
            if suffix is not None:
                parts.append(str(hi_i) + suffix)
    return _alts(parts) if parts else None


def _wrap(rx: str) -> str:
    return rx if rx.startswith("(?:") and rx.endswith(")") and rx.count("(?:") == 1 else "(?:" + rx + ")"


def decimal_regex(
    lo: Fraction | None, lo_incl: bool, hi: Fraction | None, hi_incl: bool
) -> str | None:
    """Spellings without exponent of the numbers between the bounds; None if there are none.

    Raises ValueError for bounds that are not short terminating decimals.
    """
    parts = []
    if lo is None or lo < 0 or (lo == 0 and lo_incl):
        # -m for magnitudes m with -hi <= m <= -lo ("-0" and "-0.0" are zero)
        above_zero = hi is None or hi > 0
        neg = _magnitude(
            Fraction(0) if above_zero else -hi,  # type: ignore[operator]
            True if above_zero else hi_incl,
            None if lo is None else -lo,
            lo_incl,
        )
        if neg is not None:
            parts.append("-" + _wrap(neg))
    if hi is None or hi > 0 or (hi == 0 and hi_incl):
        below_zero = lo is None or lo < 0
        pos = _magnitude(Fraction(0) if below_zero else lo, True if below_zero else lo_incl, hi, hi_incl)  # type: ignore[arg-type]
        if pos is not None:
            parts.append(pos)
    return _alts(parts) if parts else None


def multiple_regex(step: Fraction, integer: bool, integer_tail: str = ZERO_FRACTION) -> str | None:
    """Spellings without exponent of the multiples of ``step``, when expressible, else None.

    Expressible: step = p / 10**k where p divides 10**j, and the digits that decide (the last j
    of the integer part, or the first k of the fraction) do not straddle the decimal point:
    2, 5, 10, 25, 0.5, 0.25, 0.01, ... ``integer_tail`` follows integer spellings ("1.0" is an
    integer from draft 6 on).
    """
    k = 0
    scaled = step
    while scaled.denominator != 1:
        scaled *= 10
        k += 1
        if k > 12:
            return None
    p = scaled.numerator
    j = next((j for j in range(4) if (10**j) % p == 0), None)
    if j is None:
        return None
    if k:
        if j > k:
            return None
        if integer:
            return INTEGER + integer_tail
        if p == 1:
            return INTEGER + "(?:\\.[0-9]{1,%d}0*)?" % k
        if 10**k // p > _MAX_ENUMERATED:
            return None
        # the first k fraction digits (padded with zeros) must spell a multiple of p
        options = [f"{m:0{k}d}".rstrip("0") for m in range(0, 10**k, p)]
        nonzero = [s + "0*" for s in options if s]
        return INTEGER + "(?:\\.(?:" + "|".join(nonzero + ["0+"]) + "))?"
    if p == 1:
        return INTEGER + integer_tail
    if 10**j // p > _MAX_ENUMERATED:
        return None
    small = [str(m) for m in range(0, 10**j, p)]
    tails = _alts([f"{m:0{j}d}" for m in range(0, 10**j, p)])
    return "-?" + _alts(small + ["[1-9][0-9]*" + tails]) + integer_tail


_MAX_ENUMERATED = 200
