"""Where mask time goes, by the JSON context of the mask: onrails and its peers side by side.

Feeds MaskBench instances token by token (as ``maskbench.py`` does) and files every mask under
the lexical context of the text before it: inside a key, inside a string value, after a colon,
after a comma, inside a number or literal, after a closing bracket, and so on. Prints, per
context and engine, the masks, their total time and share, the mean, and the masks over 40 us
(mostly states met for the first time) with their mean; for onrails also the minor page faults
taken inside masks. The engines run in this one process, interleaved schema by schema (which goes
first alternates), so a shared machine's drift falls on all alike.

    python benchmarks/mask_contexts.py [--every 10] [--offset 0] [--engines onrails,llguidance]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import CompileError, engines_in_process  # noqa: E402  (sets the one-thread environment first)

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "maskbench" / "dev"
SLOW_S = 40e-6
_AFTER = {"{": "after {", "[": "after [", ",": "after comma", ":": "after colon", "}": "after close",
          "]": "after close", "string end": "after string", "literal": "in number/literal", "": "start"}


def context(text: str) -> str:
    """The lexical context at the end of JSON text ``text`` (a prefix of a document)."""
    brackets: list[str] = []
    in_string = escaped = is_key = False
    last = ""
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string, last = False, "string end"
            continue
        if ch == '"':
            in_string = True
            is_key = last in ("{", ",") and bool(brackets) and brackets[-1] == "{"
            continue
        if ch in " \t\r\n":
            continue
        if ch in "{[":
            brackets.append(ch)
        elif ch in "}]" and brackets:
            brackets.pop()
        last = ch if ch in "{[,:}]" else "literal"
    if in_string:
        return "in key" if is_key else "in string"
    return _AFTER[last]


class Tally:
    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self.slow: dict[str, float] = defaultdict(float)
        self.n_slow: dict[str, int] = defaultdict(int)
        self.faults: dict[str, int] = defaultdict(int)

    def add(self, where: str, seconds: float, faults: int) -> None:
        self.total[where] += seconds
        self.count[where] += 1
        self.faults[where] += faults
        if seconds > SLOW_S:
            self.slow[where] += seconds
            self.n_slow[where] += 1


def run_schema(engine: Any, tokenizer: Any, data: dict[str, Any], tally: Tally, faults: bool) -> None:
    try:
        grammar = engine.compile_json_schema(data["schema"])
    except CompileError:
        return
    engine.fill(engine.matcher(grammar))
    for test in data["tests"]:
        text = json.dumps(test["data"], ensure_ascii=False)
        tokens = tokenizer.encode(text, add_special_tokens=False)
        matcher = engine.matcher(grammar)
        before = ""
        for k, token in enumerate([*tokens, engine.eos]):
            where = context(before)
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt if faults else 0
            a = time.perf_counter()
            engine.fill(matcher)
            seconds = time.perf_counter() - a
            f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt if faults else 0
            tally.add(where, seconds, f1 - f0)
            if not (engine.allowed(token) and engine.advance(matcher, token)):
                break
            if k < len(tokens):
                before += tokenizer.decode([token])


def table(tallies: dict[str, Tally]) -> str:
    first = next(iter(tallies.values()))
    contexts = sorted(first.total, key=lambda c: -first.total[c])
    lines = []
    head = "| context |"
    rule = "|---|"
    for name in tallies:
        head += f" {name} masks | ms | share | mean µs | >40 µs | their mean µs |"
        rule += "---:|---:|---:|---:|---:|---:|"
        if name == "onrails":
            head += " faults |"
            rule += "---:|"
    lines += [head, rule]
    for where in [*contexts, "all"]:
        row = f"| {where} |"
        for name, tally in tallies.items():
            if where == "all":
                total, count = sum(tally.total.values()), sum(tally.count.values())
                slow, n_slow, faults = sum(tally.slow.values()), sum(tally.n_slow.values()), sum(tally.faults.values())
            else:
                total, count = tally.total.get(where, 0.0), tally.count.get(where, 0)
                slow, n_slow, faults = tally.slow.get(where, 0.0), tally.n_slow.get(where, 0), tally.faults.get(where, 0)
            share = 100 * total / max(sum(tally.total.values()), 1e-12)
            row += (f" {count:,} | {total * 1e3:,.0f} | {share:.1f}% | {total / max(count, 1) * 1e6:.1f} |"
                    f" {n_slow:,} | {slow / max(n_slow, 1) * 1e6:.0f} |")
            if name == "onrails":
                row += f" {faults:,} |"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=10, help="every K-th schema (sorted by file name)")
    parser.add_argument("--offset", type=int, default=0, help="start at the N-th schema")
    parser.add_argument("--engines", default="onrails,llguidance", help="comma-separated, as maskbench.py")
    parser.add_argument("--tokenizer", default="llama-3.2")
    parser.add_argument("--data", type=Path, default=SHARED, help="folder of MaskBench files")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"MaskBench files not found at {args.data}")

    tokenizer, engines = engines_in_process(args.engines, args.tokenizer)
    tallies = {key: Tally() for key in engines}
    paths = sorted(args.data.glob("*.json"))[args.offset :: max(1, args.every)]
    started = time.monotonic()
    for i, path in enumerate(paths):
        data = json.loads(path.read_text())
        keys = list(engines)
        for key in keys if i % 2 == 0 else keys[::-1]:
            run_schema(engines[key], tokenizer, data, tallies[key], faults=key == "onrails")
    print(f"{len(paths)} schemas (every {args.every}th from {args.offset} of {args.data.name}), tokenizer "
          f"{args.tokenizer}, one process, engines interleaved; {time.monotonic() - started:.0f} s\n")
    print(table(tallies))


if __name__ == "__main__":
    main()
