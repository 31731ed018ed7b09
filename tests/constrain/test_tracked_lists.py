"""Tracked lists' guards (``_item_sets.TrackedList``): what may come next after a tag, every item
answered at once, against the rule read item by item."""

from __future__ import annotations

import itertools

import pytest

from onrails.constrain._item_sets import ADD, CLOSE, CONTINUE, TrackedList


def _may_add(lst: TrackedList, bits: int, count: int, bit: int) -> bool:
    """The rule: an item may come next when it is not held yet and, once it is in, the list can
    still take every missing required item without passing its maximum."""
    if bit >= 0:
        if bits >> bit & 1:
            return False
        bits |= 1 << bit
    missing = (lst.required & ~bits).bit_count()
    return lst.max_items < 0 or count + 1 + missing <= lst.max_items


def _lists() -> list[TrackedList]:
    out = []
    for width, required, min_items, max_items, untracked in itertools.product(
        (1, 3, 5), (0, 0b1, 0b101, 0b11111), (0, 2), (-1, 1, 2, 3, 4, 6), (False, True)
    ):
        required &= (1 << width) - 1
        if max_items >= 0 and (max_items < min_items or max_items < required.bit_count()):
            continue
        cap = (max_items if max_items >= 0 else max(min_items, 1)) + 1
        out.append(TrackedList(width, required, min_items, max_items, cap, untracked))
    return out


@pytest.mark.parametrize("lst", _lists(), ids=repr)
def test_every_items_answer_at_once_equals_the_rule_item_by_item(lst: TrackedList) -> None:
    everything = range(-1, lst.width)
    for bits in range(1 << lst.width):
        for count in range(bits.bit_count(), lst.cap + 1):
            tag = bits | count << lst.width
            expected = {bit for bit in everything if _may_add(lst, bits, count, bit)}
            assert {bit for bit in everything if lst.can_add(tag, bit)} == expected, (bits, count)
            passed = lst.passed(ADD, tag)
            assert {bit for bit in everything if passed >> (lst.width if bit < 0 else bit) & 1} == expected
            untracked_may = lst.untracked and -1 in expected
            assert lst.can_continue(tag) == (bool(expected - {-1}) or untracked_may), (bits, count)
            assert lst.passed(CONTINUE, tag) == (-1 if lst.can_continue(tag) else 0)
            assert lst.passed(CLOSE, tag) == (-1 if lst.can_close(tag) else 0)


def test_a_full_list_takes_only_its_missing_required_items() -> None:
    lst = TrackedList(width=4, required=0b0011, min_items=0, max_items=3, cap=4, untracked=True)
    # One optional item held: the two required ones fill the list.
    tag = 0b0100 | 1 << 4
    assert lst.passed(ADD, tag) == 0b0011
    assert not lst.can_add(tag, -1) and not lst.can_add(tag, 3)
    assert lst.can_add(tag, 0) and lst.can_add(tag, 1)
