"""Regexes of string ``format``s, written over ASCII so the JSON spelling is the text itself.

Each regex matches a subset of the strings the format's standard allows (sound for generation):
dates are real calendar dates (leap years included), times are RFC 3339 ``full-time`` with
seconds 00-59, hostnames are one to four dot-separated labels of 1-63 letters, digits and single
hyphens (so within 253 characters, and no reserved ``xn--`` labels), e-mail addresses are an RFC
5322 dot-atom, "@" and such a hostname, URIs and URI references follow RFC 3986's grammar
(registered names or IPv4 hosts, ports, paths, query and fragment; no IPv6 literal hosts, whose
automaton would cost more than the rest together).
"""

from __future__ import annotations

_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
DATE = f"(?:[0-9]{{4}}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_HOUR = "(?:[01][0-9]|2[0-3])"
_MINUTE = "[0-5][0-9]"
TIME = f"{_HOUR}:{_MINUTE}:{_MINUTE}(?:\\.[0-9]+)?(?:[Zz]|[+\\-]{_HOUR}:{_MINUTE})"
DATE_TIME = f"{DATE}[Tt]{TIME}"

_N = "[0-9]+"
# RFC 3339 appendix A: a unit is followed only by the next smaller one (no "P1Y2D")
_TIME_PART = f"T(?:{_N}H(?:{_N}M(?:{_N}S)?)?|{_N}M(?:{_N}S)?|{_N}S)"
_DATE_PART = f"(?:{_N}Y(?:{_N}M(?:{_N}D)?)?|{_N}M(?:{_N}D)?|{_N}D)"
DURATION = f"P(?:{_DATE_PART}(?:{_TIME_PART})?|{_TIME_PART}|{_N}W)"

# Labels of at most 63 characters without consecutive hyphens (so no reserved "xn--" labels),
# at most four of them: the whole name stays within 253 characters.
_LABEL = "[A-Za-z0-9](?:-?[A-Za-z0-9]){0,31}"
HOSTNAME = f"{_LABEL}(?:\\.{_LABEL}){{0,3}}"
_ATOM = "[A-Za-z0-9!#$%&'*+\\/=?^_`{|}~\\-]+"
EMAIL = f"{_ATOM}(?:\\.{_ATOM})*@{_LABEL}(?:\\.{_LABEL})*"

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
_PCHAR = f"(?:[{_UNRESERVED_SUB}:@]|{_PCT})"
_AUTHORITY = (
    f"(?:(?:[{_UNRESERVED_SUB}:]|{_PCT})*@)?"
    f"(?:[{_UNRESERVED_SUB}]|{_PCT})*(?::[0-9]*)?"
)
_QUERY_FRAGMENT = f"(?:\\?(?:{_PCHAR}|[\\/?])*)?(?:#(?:{_PCHAR}|[\\/?])*)?"
_PATH_ROOTLESS = f"{_PCHAR}+(?:\\/{_PCHAR}*)*"
_HIER = f"(?:\\/\\/{_AUTHORITY}(?:\\/{_PCHAR}*)*|\\/(?:{_PATH_ROOTLESS})?|{_PATH_ROOTLESS})?"
URI = f"[A-Za-z][A-Za-z0-9+.\\-]*:{_HIER}{_QUERY_FRAGMENT}"
_SEGMENT_NC = f"(?:[{_UNRESERVED_SUB}@]|{_PCT})+"
_RELATIVE = (
    f"(?:\\/\\/{_AUTHORITY}(?:\\/{_PCHAR}*)*|\\/(?:{_PATH_ROOTLESS})?"
    f"|{_SEGMENT_NC}(?:\\/{_PCHAR}*)*)?{_QUERY_FRAGMENT}"
)
URI_REFERENCE = f"(?:{URI}|{_RELATIVE})"
_HEX = "[0-9a-fA-F]"
UUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"

# format -> (regex of the JSON string body, shortest and longest match in characters; None: unbounded)
FORMATS: dict[str, tuple[str, int, int | None]] = {
    "date-time": (DATE_TIME, 20, None),
    "date": (DATE, 10, 10),
    "time": (TIME, 9, None),
    "duration": (DURATION, 3, None),
    "email": (EMAIL, 3, None),
    "hostname": (HOSTNAME, 1, 4 * 63 + 3),
    "ipv4": (IPV4, 7, 15),
    "ipv6": (IPV6, 2, 45),
    "uri": (URI, 2, None),
    "uri-reference": (URI_REFERENCE, 0, None),
    "uuid": (UUID, 36, 36),
}
