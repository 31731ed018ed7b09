"""Regexes for JSON numbers within bounds and multiples, built digit by digit.

Integers are exact: ``int_regex(lo, hi)`` matches the canonical decimal spellings (no leading
zeros, ``-0`` for zero) of exactly the integers in range. Decimals with bounds are exact over
spellings without an exponent: the integer part is ranged like an integer and the fraction is
compared digit by digit as a decimal expansion. Bounded numbers with an exponent are offered
where the sign and the exponent alone decide the bound (``exponent_regex``: ``1e-06`` under
``minimum: 0``, ``2.5e+20`` under ``minimum: 1``); other exponent spellings are not (a narrower
but sound language).
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


# Exponents and nonzero mantissas stay where a double does not round the value to 0 or infinity
# (validators parse JSON numbers as doubles: 1e-400 would fail exclusiveMinimum 0 there).
_MAX_EXPONENT = 300
_ANY_MANTISSA = "(?:0|[1-9][0-9]*)(?:\\.[0-9]+)?"
_NONZERO_MANTISSA = "[1-9][0-9]*(?:\\.[0-9]+)?"  # at least 1
_DIGIT_MANTISSA = "[0-9](?:\\.[0-9]+)?"  # below 10
_LEADING_MANTISSA = "[1-9](?:\\.[0-9]+)?"  # in [1, 10)


def _exponents(lo: int | None, hi: int | None) -> str | None:
    """An exponent (``e``, sign, leading zeros allowed) with a value in [lo, hi] (None: open),
    at most ``_MAX_EXPONENT`` in size; None if there is none."""
    lo = -_MAX_EXPONENT if lo is None else max(lo, -_MAX_EXPONENT)
    hi = _MAX_EXPONENT if hi is None else min(hi, _MAX_EXPONENT)
    parts = []
    pos = nonneg_int_regex(max(lo, 0), hi) if hi >= 0 else None
    if pos is not None:
        parts.append("\\+?0*" + _wrap(pos))
    neg = nonneg_int_regex(max(-hi, 0), -lo) if lo < 0 else None
    if neg is not None:
        parts.append("-0*" + _wrap(neg))
    return "[eE]" + _alts(parts) if parts else None


def _exponent_magnitude(lo: Fraction, lo_incl: bool, hi: Fraction | None) -> str | None:
    """Spellings with exponent of some magnitudes above lo (0 <= lo) and below hi, or None."""
    ten = Fraction(10)
    if hi is None and lo == 0:
        mantissa, exponents = (_ANY_MANTISSA if lo_incl else _NONZERO_MANTISSA), _exponents(None, None)
    elif hi is None:
        # d.ddd * 10**e >= 10**e, which must pass the bound
        e = 0
        while ten**e < lo:
            e += 1
        while ten ** (e - 1) >= lo:
            e -= 1
        if not lo_incl and ten**e == lo:
            e += 1
        mantissa, exponents = _LEADING_MANTISSA, _exponents(e, None)
    elif lo == 0 and hi > 0:
        # d.ddd * 10**e < 10**(e + 1), which must not pass the bound
        e = 0
        while ten ** (e + 1) > hi:
            e -= 1
        while ten ** (e + 2) <= hi:
            e += 1
        mantissa, exponents = (_DIGIT_MANTISSA if lo_incl else _LEADING_MANTISSA), _exponents(None, e)
    else:
        return None
    return None if exponents is None else mantissa + exponents


def exponent_regex(lo: Fraction | None, lo_incl: bool, hi: Fraction | None, hi_incl: bool) -> str | None:
    """Spellings with an exponent of numbers between the bounds: those whose sign and exponent
    decide the bounds (a sound subset); None if there are none."""
    parts = []
    if hi is None or hi > 0:
        below_zero = lo is None or lo < 0
        pos = _exponent_magnitude(Fraction(0) if below_zero else lo, below_zero or lo_incl, hi)  # type: ignore[arg-type]
        if pos is not None:
            parts.append(pos)
    if lo is None or lo < 0:
        zero_in = hi is None or hi > 0 or (hi == 0 and hi_incl)
        neg = _exponent_magnitude(Fraction(0) if hi is None or hi >= 0 else -hi, zero_in if hi is None or hi >= 0 else hi_incl, None if lo is None else -lo)
        if neg is not None:
            parts.append("-" + _wrap(neg))
    return _alts(parts) if parts else None
