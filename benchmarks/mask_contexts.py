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


class JsonContext:
    """The lexical context at the end of JSON text read so far, fed a piece at a time."""

    def __init__(self) -> None:
        self.brackets: list[str] = []
        self.in_string = self.escaped = self.is_key = False
        self.last = ""

    def feed(self, text: str) -> None:
        for ch in text:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string, self.last = False, "string end"
                continue
            if ch == '"':
                self.in_string = True
                self.is_key = self.last in ("{", ",") and bool(self.brackets) and self.brackets[-1] == "{"
                continue
            if ch in " \t\r\n":
                continue
            if ch in "{[":
                self.brackets.append(ch)
            elif ch in "}]" and self.brackets:
                self.brackets.pop()
            self.last = ch if ch in "{[,:}]" else "literal"

    def where(self) -> str:
        if self.in_string:
            return "in key" if self.is_key else "in string"
        return _AFTER[self.last]


def contexts(tokenizer: Any, tokens: list[int]) -> list[str]:
    """The context before each of ``tokens`` and before the end token after them."""
    reader = JsonContext()
    out = [reader.where()]
    for token in tokens:
        reader.feed(tokenizer.decode([token]))
        out.append(reader.where())
    return out


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


def run_schema(
    engine: Any, schema: dict[str, Any], tests: list[tuple[list[int], list[str]]], tally: Tally, faults: bool
) -> None:
    """Compile ``schema`` and feed each test's tokens and end token, filing every mask under the
    context before it."""
    try:
        grammar = engine.compile_json_schema(schema)
    except CompileError:
        return
    engine.fill(engine.matcher(grammar))
    for tokens, wheres in tests:
        matcher = engine.matcher(grammar)
        for token, where in zip([*tokens, engine.eos], wheres):
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt if faults else 0
            a = time.perf_counter()
            engine.fill(matcher)
            seconds = time.perf_counter() - a
            f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt if faults else 0
            tally.add(where, seconds, f1 - f0)
            if not (engine.allowed(token) and engine.advance(matcher, token)):
                break


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
        tests = []
        for test in data["tests"]:
            tokens = tokenizer.encode(json.dumps(test["data"], ensure_ascii=False), add_special_tokens=False)
            tests.append((tokens, contexts(tokenizer, tokens)))
        keys = list(engines)
        for key in keys if i % 2 == 0 else keys[::-1]:
            run_schema(engines[key], data["schema"], tests, tallies[key], faults=key == "onrails")
    print(f"{len(paths)} schemas (every {args.every}th from {args.offset} of {args.data.name}), tokenizer "
          f"{args.tokenizer}, one process, engines interleaved; {time.monotonic() - started:.0f} s\n")
    print(table(tallies))


if __name__ == "__main__":
    main()
