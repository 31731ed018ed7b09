"""Tracked lists (``// %items``): object members in any order, no tracked member twice, the
required ones there, the count within bounds, enforced by the parser instead of 2^n grammar
states.

The oracle is the same language written out as a plain grammar, a rule per (members written,
count) state, checked by the independent Earley reference: masks along random walks (nested
lists included, so truncated stacks and their resumption are exercised) must equal it.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest

from onrails import GrammarCompiler, GrammarError, Matcher, schema_to_grammar
from onrails.grammars.item_sets import ItemSet, parse_pragma

from ..reference import ReferenceGrammar
from .small_vocab import small_vocabulary
from .test_oracle import check_walks

# Members: three declared keys, one of them longer, and "undeclared" keys d and e that may repeat.
_MEMBERS = {
    "a": r'"\"a\":" value',
    "b": r'"\"b\":" value',
    "c": r'"\"cc\":" value',
    "x": r'/"[de]"/ ":" value',
}
_VALUE = 'value: DIGIT | obj\nDIGIT: /[0-9]/\n'


def _tracked_grammar(required: str, untracked: bool, lo: int, hi: "int | None") -> str:
    """The object grammar with its member list tracked by the parser."""
    items = ["a", "b", "c"] + (["x"] if untracked else [])
    lines = [
        'obj: "{" members "}"' + (' | "{" "}"' if not required and lo == 0 else ""),
        "members: " + " | ".join(items) + " | " + " | ".join(f'members "," {i}' for i in items),
        *(f"{i}: {_MEMBERS[i]}" for i in items),
        _VALUE,
        ItemSet(
            rule="members",
            tracked=("a", "b", "c"),
            required=tuple(required),
            untracked=("x",) if untracked else (),
            min_items=lo,
            max_items=hi,
        ).pragma(),
    ]
    return "\n".join(lines) + "\n"


def _expanded_grammar(required: str, untracked: bool, lo: int, hi: "int | None") -> str:
    """The same language as a plain grammar: a rule per (members written, count) after a member."""
    cap = max(lo, hi or 0)
    lines = []
    after: dict[tuple[frozenset[str], int], str] = {}

    def name(done: frozenset[str], count: int) -> str:
        key = (done, min(count, cap))
        if key not in after:
            after[key] = f"s{len(after)}"
        return after[key]

    todo = []
    first = []
    for item in ["a", "b", "c"] + (["x"] if untracked else []):
        done = frozenset(item) - {"x"}
        first.append(f"{item} {name(done, 1)}")
        todo.append((done, 1))
    seen = set()
    while todo:
        done, count = todo.pop()
        key = (done, min(count, cap))
        if key in seen:
            continue
        seen.add(key)
        alts = []
        if set(required) <= done and count >= lo:
            alts.append('"}"')
        if hi is None or count < hi:
            for item in ["a", "b", "c"] + (["x"] if untracked else []):
                if item in done:
                    continue
                nxt = done | ({item} - {"x"})
                alts.append(f'"," {item} {name(nxt, count + 1)}')
                todo.append((nxt, count + 1))
        # a state with no way on derives nothing: the reference drops it like any dead rule
        lines.append(f"{name(done, count)}: " + (" | ".join(alts) if alts else "never"))
    lines.append('never: never "x"')
    lines.insert(0, 'obj: "{" (' + " | ".join(first) + ")" + (' | "{" "}"' if not required and lo == 0 else ""))
    lines += [f"{i}: {_MEMBERS[i]}" for i in ["a", "b", "c", "x"]]
    lines.append(_VALUE)
    return "\n".join(lines) + "\n"


CASES = [
    ("", False, 0, None),
    ("a", True, 0, None),
    ("ac", False, 0, None),
    ("", True, 2, None),
    ("a", True, 2, 3),
    ("ab", True, 0, 2),
    ("", False, 0, 2),
]


@pytest.mark.parametrize(("required", "untracked", "lo", "hi"), CASES)
def test_tracked_list_masks_equal_the_written_out_grammar(required: str, untracked: bool, lo: int, hi: "int | None") -> None:
    check_walks(
        _tracked_grammar(required, untracked, lo, hi),
        "obj",
        walks=6,
        seed=len(required) * 7 + lo * 3 + (hi or 0),
        steps=40,
        reference_text=_expanded_grammar(required, untracked, lo, hi),
    )


def test_tracked_list_decides_each_document_like_the_written_out_grammar() -> None:
    """Every ordering of members, with repeats and nesting, byte by byte."""
    for required, untracked, lo, hi in CASES:
        grammar = GrammarCompiler(small_vocabulary()).compile_lark(_tracked_grammar(required, untracked, lo, hi), "obj")
        reference = ReferenceGrammar(_expanded_grammar(required, untracked, lo, hi), "obj")
        members = ['"a":1', '"b":2', '"cc":3', '"d":4', '"e":{"a":5}', '"a":{"b":1,"a":2}']
        for n in range(0, 5):
            for chosen in itertools.permutations(members, n):
                text = ("{" + ",".join(chosen) + "}").encode()
                matcher = Matcher(grammar, "obj")
                ours = matcher.advance_bytes(text) and matcher.is_accepting()
                assert ours == reference.accepts(text), (required, untracked, lo, hi, text)


def test_schema_objects_reject_every_repeat_of_a_declared_key_with_a_real_vocabulary(llama_tokenizer: Any, llama_vocab: Any) -> None:
    names = [f"field_{i}" for i in range(30)]
    schema: dict[str, Any] = {"type": "object", "properties": {k: {"type": "integer"} for k in names}, "required": names[:3]}
    grammar = GrammarCompiler(llama_vocab).compile_json_schema(schema, whitespace="flexible")
    document = json.dumps({k: i for i, k in enumerate(reversed(names))})
    matcher = Matcher(grammar)
    for token in llama_tokenizer.encode(document, add_special_tokens=False):
        assert matcher.advance(token)
    assert matcher.is_accepting()
    # the key itself is refused, not the object once its value is written
    written = json.dumps({k: 1 for k in names[5:]})[:-1] + ", "
    matcher = Matcher(grammar)
    for token in llama_tokenizer.encode(written, add_special_tokens=False):
        assert matcher.advance(token)
    assert not matcher.advance_bytes(b'"field_9"')
    assert Matcher(grammar).advance_bytes(written.encode() + b'"field_99"')


def test_many_declared_members_compile_to_one_list_rule() -> None:
    """Forty optional members in any order cost a rule, not 2^40 states: the compile and the
    first mask take well under the time a subset construction of even 12 members took."""
    schema: dict[str, Any] = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(40)}, "required": ["p0", "p39"]}
    compiler = GrammarCompiler(small_vocabulary())
    started = time.perf_counter()
    grammar = compiler.compile_json_schema(schema)
    Matcher(grammar).allowed_token_ids()
    assert time.perf_counter() - started < 5
    converted = schema_to_grammar(schema)
    assert len(converted.item_sets) == 1 and len(converted.item_sets[0].tracked) == 40


def test_the_schema_lark_text_carries_its_lists_and_compiles_to_the_same_language() -> None:
    schema = {"properties": {"a": {}, "b": {}}, "required": ["b"], "additionalProperties": {"type": "integer"}, "maxProperties": 3}
    converted = schema_to_grammar(schema, whitespace="compact")
    assert [parse_pragma(line) for line in converted.lark.splitlines() if "%items" in line] == list(converted.item_sets)
    compiler = GrammarCompiler(small_vocabulary())
    from_text = compiler.compile_lark(converted.lark, converted.start)
    direct = compiler.compile_json_schema(schema, whitespace="compact")
    for text in ['{"b":1}', '{"a":1,"b":2}', '{"b":1,"b":2}', '{"a":1}', '{"x":1,"b":1,"y":2}', '{"x":1,"b":1,"y":2,"z":3}']:
        verdicts = []
        for grammar in (from_text, direct):
            matcher = Matcher(grammar)
            verdicts.append(matcher.advance_bytes(text.encode()) and matcher.is_accepting())
        assert verdicts[0] == verdicts[1], text
        assert verdicts[0] == (text in ('{"b":1}', '{"a":1,"b":2}', '{"x":1,"b":1,"y":2}')), text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("// %items", "rule name"),
        ("// %items members tracked=a colour=red", "unknown field"),
        ("// %items members tracked=a required=b", "must be tracked"),
        ("// %items members tracked=a min=two", "takes a count"),
        ("// %items members tracked=a,nothere", "not a rule"),
    ],
)
def test_a_malformed_items_line_is_a_grammar_error_naming_its_line(line: str, message: str) -> None:
    text = 'start: "{" members "}"\nmembers: a | members "," a\na: "1"\n' + line + "\n"
    with pytest.raises(GrammarError, match=message) as info:
        GrammarCompiler(small_vocabulary()).compile_lark(text)
    assert info.value.line == 4


def test_a_list_of_another_shape_is_a_grammar_error() -> None:
    text = 'start: "{" members "}"\nmembers: a | a "," members\na: "1"\n// %items members tracked=a\n'
    with pytest.raises(GrammarError, match="members"):
        GrammarCompiler(small_vocabulary()).compile_lark(text)
