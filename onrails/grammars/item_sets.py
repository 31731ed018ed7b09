"""Lists whose items the parser tracks: what a context-free grammar cannot say in polynomial size.

Object members in any order with no key twice need a grammar state per subset of the keys
written (2^n); the engine instead keeps, on the parser stack entry of the list, which tracked
items the list holds and how many items it has, and refuses a token that would write a tracked
item twice, close the list without a required one, or pass a count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# How an ItemSet travels in Lark text: a comment line, so Lark itself (and any other reader of
# the text) sees plain rules, while onrails' front end reads it back, e.g.
#   // %items js_5 tracked=js_1,js_2 required=js_1 untracked=js_4 min=0 max=5
PRAGMA = "%items"
_PRAGMA_LINE = re.compile(r"\s*//\s*%items\b(.*)")
_NAME = re.compile(r"[A-Za-z_][\w.]*")


@dataclass(frozen=True)
class ItemSet:
    """A list rule whose items are tracked by the parser.

    ``rule`` derives exactly ``item`` and ``rule separator item`` for every item of ``tracked``
    and ``untracked`` (the separator one terminal, the same in every alternative), and is
    followed by a terminal wherever it is used. ``tracked`` items appear at most once each,
    ``required`` ones (a subset of ``tracked``) at least once; ``untracked`` items may repeat;
    the list holds ``min_items`` to ``max_items`` (None: any number) items in all. Items start
    with terminals of their own (an object member with its key), never with the empty string.

    In Lark text the set is a comment line (``pragma``) beside its rules: onrails reads it back,
    other readers of the text see a list whose items may repeat, be missing or be counted wrong.
    """

    rule: str
    tracked: tuple[str, ...]
    required: tuple[str, ...] = ()
    untracked: tuple[str, ...] = ()
    min_items: int = 0
    max_items: int | None = None

    def feasible(self, productive: "set[str] | dict[str, object]") -> bool:
        """Whether the list can be written at all when only the rules in ``productive`` derive
        something: every required item among them, enough items for the minimum, a maximum
        that fits both."""
        if any(s not in productive for s in self.required):
            return False
        if self.max_items is not None and self.max_items < max(self.min_items, len(self.required), 1):
            return False
        if any(s in productive for s in self.untracked):
            return True
        return sum(1 for s in self.tracked if s in productive) >= max(self.min_items, 1)

    def renamed(self, name: "dict[str, str]") -> "ItemSet":
        """The same set with its symbols renamed (``name`` maps old names, others kept)."""

        def rename(symbols: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(name.get(s, s) for s in symbols)

        return ItemSet(
            rule=name.get(self.rule, self.rule),
            tracked=rename(self.tracked),
            required=rename(self.required),
            untracked=rename(self.untracked),
            min_items=self.min_items,
            max_items=self.max_items,
        )

    def pragma(self) -> str:
        """The comment line that carries the set in Lark text."""
        fields = [f"// {PRAGMA} {self.rule}", "tracked=" + ",".join(self.tracked)]
        if self.required:
            fields.append("required=" + ",".join(self.required))
        if self.untracked:
            fields.append("untracked=" + ",".join(self.untracked))
        fields.append(f"min={self.min_items}")
        if self.max_items is not None:
            fields.append(f"max={self.max_items}")
        return " ".join(fields)


def parse_pragma(line: str) -> "ItemSet | None":
    """The set a ``pragma`` line carries; None for any other line; ValueError (with what is
    wrong) for a malformed one."""
    m = _PRAGMA_LINE.fullmatch(line.rstrip())
    if m is None:
        return None
    words = m.group(1).split()
    if not words or not _NAME.fullmatch(words[0]):
        raise ValueError(f"{PRAGMA} needs a rule name first")
    lists: dict[str, tuple[str, ...]] = {"tracked": (), "required": (), "untracked": ()}
    counts: dict[str, int | None] = {"min": 0, "max": None}
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if not eq or key not in lists and key not in counts:
            raise ValueError(f"{PRAGMA}: unknown field {word!r} (tracked=, required=, untracked=, min=, max=)")
        if key in lists:
            names = tuple(value.split(",")) if value else ()
            bad = [n for n in names if not _NAME.fullmatch(n)]
            if bad:
                raise ValueError(f"{PRAGMA}: {bad[0]!r} is not a rule name")
            lists[key] = names
        elif not value.isdigit():
            raise ValueError(f"{PRAGMA}: {key}= takes a count, not {value!r}")
        else:
            counts[key] = int(value)
    if not set(lists["required"]) <= set(lists["tracked"]):
        raise ValueError(f"{PRAGMA}: required items must be tracked ones")
    return ItemSet(
        rule=words[0],
        tracked=lists["tracked"],
        required=lists["required"],
        untracked=lists["untracked"],
        min_items=counts["min"] or 0,
        max_items=counts["max"],
    )
