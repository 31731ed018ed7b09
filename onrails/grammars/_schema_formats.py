"""Regexes of string ``format``s, over the canonical JSON spelling of the string's body.

Every format of draft 2020-12's format vocabulary is here. Each regex matches a subset of the
strings the format's standard allows (sound for generation), written as ``json.dumps(...,
ensure_ascii=False)`` spells them, as ``pattern`` bodies are: characters that JSON escapes
(``"``, ``\\``, controls) and non-ASCII ones go through ``_ecma_regex``'s encoder. Where the
subset is narrower than the standard, and why:

* date, date-time, time, duration (RFC 3339): exact but for second 60. A leap second is the
  UTC instant 23:59:60, which an offset moves to another local time; checking the two against
  each other costs an automaton state per local time, so ``:60`` is taken only as 23:59:60 with
  ``Z``, ``+00:00`` or ``-00:00``, and in a date-time only on the 27 dates a leap second has
  occurred (RFC 3339 section 5.7 allows one only at the end of a month that has one).
* hostname (RFC 1123; RFC 5890 reserves labels with ``--`` in the third and fourth places):
  labels of 1-63 letters, digits and hyphens, neither first nor last a hyphen, not ``--`` in
  the third and fourth places (so no ``xn--`` A-label, whose Punycode a regex cannot check); up
  to 8 labels within 253 characters: the fourth at most 61 characters when it is the last, and
  the fourth to eighth at most 11 when there are more than four (counting 253 over any number
  of labels would take a state per length).
* idn-hostname (RFC 5890-5893): names as above where the first three labels, and the fourth
  when it is the last, may also be U-labels of at most 11 code points: lowercase ASCII letters,
  digits, hyphens (placed as above) and the letters of Latin-1 (U+00DF-U+00FF but U+00F7),
  Greek (U+03AC-U+03CE) and Cyrillic (U+0430-U+045F) lowercase, Hiragana (U+3041-U+3096) and
  Katakana (U+30A1-U+30FA). All are PVALID, left-to-right, NFC-stable and without contextual
  rules, so no IDNA rule but the length can fail, and 11 code points below U+30FB take at most
  59 octets as an A-label. Larger scripts (Han, Hangul) are left out: a character class of tens
  of thousands of code points makes the automaton construction take seconds. Only ``.``
  separates labels (the other dots are IDNA2003's).
* email (RFC 5321 Mailbox): a dot-atom local part, ``@`` and hostname labels; no quoted local
  part, no address literal. idn-email (RFC 6531): the same with any non-ASCII character in the
  local part and idn-hostname labels in the domain.
* ipv4, ipv6, uuid, json-pointer (RFC 6901): exact. relative-json-pointer: exact for the draft
  2020-12 cites (draft-handrews-relative-json-pointer-01, without the later index
  manipulation ``0+1``).
* uri, uri-reference (RFC 3986), iri, iri-reference (RFC 3987): the grammar with a registered
  name or IPv4 host; no IP-literal hosts (``[...]``), whose automaton would cost more than the
  rest together. IRIs take every non-ASCII ``ucschar``; ``iprivate`` (private-use characters,
  allowed in the query only) is left out.
* uri-template (RFC 6570, with verified erratum 6937 admitting ``'`` in literals): exact but
  for the operators reserved for future extensions (``= , ! @ |``) and private-use literal
  characters (``iprivate``); other non-ASCII literals are IRIs' ``ucschar``.
* regex (ECMA-262 read in Unicode mode, where ``\\a`` and a lone ``{`` are errors): patterns
  that ECMA-262 and Python's ``re`` (which ``jsonschema`` checks with) both compile, with groups
  nested at most 3 deep (nesting is not regular) and lookaheads at the outermost level only.
  Character classes hold characters, escapes and ranges from ``0``/``a``/``A`` or to
  ``9``/``z``/``Z`` (ordering any two ends costs a state per first end), with ``-`` first or
  last; counts ``{n,m}`` have at most 4 digits, with ``m`` longer than ``n`` or both of one
  digit. Left out: literal control characters (the escapes ``\\n``, ``\\x00``... write
  them), named groups and ``\\k`` (not in ``re``), lookbehind (fixed width only in ``re``),
  backreferences, ``\\c``, ``\\0``, ``\\p{...}``, ``\\u{...}``, ``[]`` and ``[^]`` (errors
  in ``re``).
"""

from __future__ import annotations

from onrails.grammars import _ecma_regex as rx


def _text(text: str) -> str:
    """The regex of ``text``'s canonical JSON spelling."""
    return rx.literal(rx.canonical(text))


def _chars(ranges: "list[tuple[int, int]]", but: str = "") -> str:
    """The regex of one code point of ``ranges`` other than those in ``but``, JSON-spelled."""
    keep = rx.normalize(ranges)
    if but:
        keep = rx.intersect(keep, rx.complement(rx.normalize(_of(but))))
    found = rx.char_regex(keep)
    assert found is not None
    return found


def _of(text: str) -> "list[tuple[int, int]]":
    return [(ord(c), ord(c)) for c in text]


_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
DATE = f"(?:[0-9]{{4}}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_HOUR = "(?:[01][0-9]|2[0-3])"
_MINUTE = "[0-5][0-9]"
_FRACTION = "(?:\\.[0-9]+)?"
_PLAIN_TIME = f"{_HOUR}:{_MINUTE}:{_MINUTE}{_FRACTION}(?:[Zz]|[+\\-]{_HOUR}:{_MINUTE})"

# The years of every leap second so far (IERS), each at 23:59:60 UTC on June 30 or December 31;
# none is scheduled. Years first, so that the automaton shares the dates' tails.
_LEAP_JUNE = "1972 1981 1982 1983 1985 1992 1993 1994 1997 2012 2015".split()
_LEAP_DECEMBER = "1972 1973 1974 1975 1976 1977 1978 1979 1987 1989 1990 1995 1998 2005 2008 2016".split()
_LEAP_DATE = f"(?:(?:{'|'.join(_LEAP_JUNE)})-06-30|(?:{'|'.join(_LEAP_DECEMBER)})-12-31)"
# Second 60 only at 23:59:60 UTC: with another offset it falls at another local time, and
# checking one against the other costs an automaton state per local time (hundreds).
_LEAP_TIME = f"23:59:60{_FRACTION}(?:[Zz]|[+\\-]00:00)"
TIME = f"(?:{_PLAIN_TIME}|{_LEAP_TIME})"
DATE_TIME = f"(?:{DATE}[Tt]{_PLAIN_TIME}|{_LEAP_DATE}[Tt]{_LEAP_TIME})"

_N = "[0-9]+"
# RFC 3339 appendix A: a unit is followed only by the next smaller one (no "P1Y2D")
_TIME_PART = f"T(?:{_N}H(?:{_N}M(?:{_N}S)?)?|{_N}M(?:{_N}S)?|{_N}S)"
_DATE_PART = f"(?:{_N}Y(?:{_N}M(?:{_N}D)?)?|{_N}M(?:{_N}D)?|{_N}D)"
DURATION = f"P(?:{_DATE_PART}(?:{_TIME_PART})?|{_TIME_PART}|{_N}W)"


def _label(alnum: str, longest: int) -> str:
    """Labels of 1 to ``longest`` (at least 5) characters of ``alnum`` and hyphens, starting and
    ending with ``alnum``, without hyphens in both the third and the fourth place."""
    # Written by length 1, 2, 3, 4 and more, so that the automaton stays near its minimal size
    a, ah = alnum, f"(?:{alnum}|-)"
    return f"{a}(?:{a}|{ah}(?:{a}|{ah}{a}|(?:{a}{a}|{a}-|-{a}){ah}{{0,{longest - 5}}}{a}))?"


def _name(label63: str, label61: str, label11: str) -> str:
    """Up to 4 labels within 253 characters, or up to 8 with short labels past the third."""
    return f"{label63}(?:\\.{label63}(?:\\.{label63}(?:\\.{label61}|(?:\\.{label11}){{2,5}})?)?)?"


_ALNUM = "[A-Za-z0-9]"
_LABEL = _label(_ALNUM, 63)
_LABEL11 = _label(_ALNUM, 11)
HOSTNAME = _name(_LABEL, _label(_ALNUM, 61), _LABEL11)
_ATEXT = "[A-Za-z0-9!#$%&'*+\\/=?^_`{|}~\\-]"
_ATOM = f"{_ATEXT}+"
EMAIL = f"{_ATOM}(?:\\.{_ATOM})*@{_LABEL}(?:\\.{_LABEL})*"

# Letters that are PVALID, left-to-right, NFC-stable and without contextual rules (checked
# against the idna package's IDNA2008 tables); all below U+30FB, which bounds each Punycode
# delta to 5 digits in an 11-character label.
_U_LETTERS = [
    (0xDF, 0xF6), (0xF8, 0xFF), (0x3AC, 0x3CE), (0x430, 0x45F), (0x3041, 0x3096), (0x30A1, 0x30FA),
]
_U_LABEL = _label(_chars([(0x61, 0x7A), (0x30, 0x39), *_U_LETTERS]), 11)
_IDN_LABEL = f"(?:{_LABEL}|{_U_LABEL})"
_IDN_LAST = f"(?:{_label(_ALNUM, 61)}|{_U_LABEL})"
IDN_HOSTNAME = _name(_IDN_LABEL, _IDN_LAST, _LABEL11)
_IDN_ATOM = f"(?:{_ATEXT}|{_chars([(0x80, rx.MAX_CP)])})+"
IDN_EMAIL = f"{_IDN_ATOM}(?:\\.{_IDN_ATOM})*@{_IDN_LABEL}(?:\\.{_IDN_LABEL})*"

_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4 = f"{_OCTET}(?:\\.{_OCTET}){{3}}"


def _ipv6() -> str:
    h16 = "[0-9A-Fa-f]{1,4}"
    ls32 = f"(?:{h16}:{h16}|{IPV4})"

    def reps(n: int) -> str:
        return "" if n == 0 else f"(?:{h16}:){{{n}}}"

    def upto(n: int) -> str:
        # [ *n( h16 ":" ) h16 ]
        inner = f"(?:{h16}:){{0,{n}}}{h16}" if n else h16
        return f"(?:{inner})?"

    tails = [f"{reps(4)}{ls32}", f"{reps(3)}{ls32}", f"{reps(2)}{ls32}", f"{h16}:{ls32}", ls32, h16, ""]
    forms = [f"{reps(6)}{ls32}", f"::{reps(5)}{ls32}"]
    forms += [f"{upto(k)}::{tail}" for k, tail in enumerate(tails)]
    return "(?:" + "|".join(forms) + ")"


IPV6 = _ipv6()

_UNRESERVED_SUB = "A-Za-z0-9\\-._~!$&'()*+,;="
_PCT = "%[0-9A-Fa-f]{2}"
# RFC 3987 ucschar: U+00A0-D7FF, F900-FDCF, FDF0-FFEF, then each plane but its last two code points.
_UCSCHAR = _chars(
    [(0xA0, 0xD7FF), (0xF900, 0xFDCF), (0xFDF0, 0xFFEF)]
    + [(plane << 16, (plane << 16) + 0xFFFD) for plane in range(1, 14)]
    + [(0xE1000, 0xEFFFD)]
)


def _uri(extra: str) -> tuple[str, str]:
    """(absolute, reference) regexes of RFC 3986, with ``extra`` (a regex of more characters,
    or "") unreserved: RFC 3987's IRIs."""
    more = f"|{extra}" if extra else ""
    unreserved = f"(?:[{_UNRESERVED_SUB}]|{_PCT}{more})"
    pchar = f"(?:[{_UNRESERVED_SUB}:@]|{_PCT}{more})"
    authority = f"(?:(?:[{_UNRESERVED_SUB}:]|{_PCT}{more})*@)?{unreserved}*(?::[0-9]*)?"
    tail = f"(?:\\?(?:{pchar}|[\\/?])*)?(?:#(?:{pchar}|[\\/?])*)?"
    rootless = f"{pchar}+(?:\\/{pchar}*)*"
    hier = f"(?:\\/\\/{authority}(?:\\/{pchar}*)*|\\/(?:{rootless})?|{rootless})?"
    absolute = f"[A-Za-z][A-Za-z0-9+.\\-]*:{hier}{tail}"
    segment_nc = f"(?:[{_UNRESERVED_SUB}@]|{_PCT}{more})+"
    relative = f"(?:\\/\\/{authority}(?:\\/{pchar}*)*|\\/(?:{rootless})?|{segment_nc}(?:\\/{pchar}*)*)?{tail}"
    return absolute, f"(?:{absolute}|{relative})"


URI, URI_REFERENCE = _uri("")
IRI, IRI_REFERENCE = _uri(_UCSCHAR)

_HEX = "[0-9a-fA-F]"
UUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"

# RFC 6570 section 2: literals are any character but CTL, SP, DQUOTE, %, <, >, \, ^, `, {, |, }
_TEMPLATE_ASCII = _chars([(0x21, 0x7E)], but='"%<>\\^`{|}')
_TEMPLATE_LITERAL = f"(?:{_TEMPLATE_ASCII}|{_UCSCHAR})"
_VARCHAR = f"(?:[A-Za-z0-9_]|{_PCT})"
_VARSPEC = f"{_VARCHAR}(?:\\.?{_VARCHAR})*(?::[1-9][0-9]{{0,3}}|\\*)?"
URI_TEMPLATE = f"(?:{_TEMPLATE_LITERAL}|{_PCT}|\\{{[+#.\\/;?&]?{_VARSPEC}(?:,{_VARSPEC})*\\}})*"

JSON_POINTER = f"(?:\\/(?:{_chars([(0, rx.MAX_CP)], but='/~')}|~[01])*)*"
RELATIVE_JSON_POINTER = f"(?:0|[1-9][0-9]*)(?:#|{JSON_POINTER})"


def _ecma_regex(depth: int) -> str:
    """ECMA-262 patterns (Unicode mode) that Python's ``re`` also compiles, with groups nested
    at most ``depth`` deep. Lookaheads come only at the outermost level: Unicode mode refuses a
    quantified one, so the automaton would have to remember the kind of every open group."""
    syntax = "^$\\.*+?()[]{}|"
    backslash = _text("\\")
    hex_escape = "(?:x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4})"
    atom_escape = f"{backslash}(?:{_chars(_of('dDsSwWfnrtv/' + syntax))}|{hex_escape})"
    class_escape = f"{backslash}(?:{_chars(_of('dDsSwWfnrtvb/-' + syntax))}|{hex_escape})"
    # literal control characters are left out: each costs its JSON escape's states at every depth
    printable = [(0x20, rx.MAX_CP)]
    class_char = _chars(printable, but="\\]-[")
    # a literal "^" first would make "[^]", which re reads as an unterminated class
    first_char = _chars(printable, but="\\]-[^")
    ranges = "(?:0-[0-9]|a-[a-z]|A-[A-Z]|[1-9]-9|[b-z]-z|[B-Z]-Z)"
    item = f"(?:{ranges}|{class_char}|{class_escape})"
    first = f"(?:{ranges}|{first_char}|{class_escape})"
    # a "-" elsewhere than first or last makes a range: an error after an escape such as \d, and
    # one whose ends must be in order after a character
    char_class = f"\\[\\^?(?:-|-?{first}{item}*-?)\\]"
    atom = f"(?:{_chars(printable, but=syntax)}|\\.|{atom_escape}|{char_class})"
    n = "(?:0|[1-9][0-9]{0,3})"
    # n <= m: m has more digits, or both have one
    longer = "[0-9],[1-9][0-9]{1,3}|[1-9][0-9],[1-9][0-9]{2,3}|[1-9][0-9]{2},[1-9][0-9]{3}"
    ordered = "(?:" + "|".join(f"{d},[{d}-9]" for d in range(10)) + f"|{longer})"
    quantifier = f"(?:(?:[*+?]|\\{{(?:{n},?|{ordered})\\}})\\??)"
    term = f"(?:[\\^$|]|{backslash}[bB]|{atom}{quantifier}?)"
    body = f"{term}*"
    for level in range(depth):
        group = f"\\((?:\\?:)?{body}\\){quantifier}?"
        lookahead = f"|\\(\\?[=!]{body}\\)" if level == depth - 1 else ""
        body = f"(?:{term}|{group}{lookahead})*"
    return body


REGEX = _ecma_regex(3)

# format -> (regex of the JSON string body, shortest and longest match in characters; None: unbounded)
FORMATS: dict[str, tuple[str, int, int | None]] = {
    "date-time": (DATE_TIME, 20, None),
    "date": (DATE, 10, 10),
    "time": (TIME, 9, None),
    "duration": (DURATION, 3, None),
    "email": (EMAIL, 3, None),
    "idn-email": (IDN_EMAIL, 3, None),
    "hostname": (HOSTNAME, 1, 253),
    "idn-hostname": (IDN_HOSTNAME, 1, 253),
    "ipv4": (IPV4, 7, 15),
    "ipv6": (IPV6, 2, 45),
    "uri": (URI, 2, None),
    "uri-reference": (URI_REFERENCE, 0, None),
    "iri": (IRI, 2, None),
    "iri-reference": (IRI_REFERENCE, 0, None),
    "uuid": (UUID, 36, 36),
    "uri-template": (URI_TEMPLATE, 0, None),
    "json-pointer": (JSON_POINTER, 0, None),
    "relative-json-pointer": (RELATIVE_JSON_POINTER, 1, None),
    "regex": (REGEX, 0, None),
}
