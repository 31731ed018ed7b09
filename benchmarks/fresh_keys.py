"""First visits of object keys: fresh schemas of many properties, one document each, per engine.

Every schema is new (random property names), so nearly every mask inside or around a key is a
state met for the first time: the case where onrails' masks trail llguidance's most on MaskBench
(``mask_contexts.py``). Each schema is an object of ``--keys`` properties cycling through six
value schemas (string, integer, boolean, array of strings, a small object, an enum), the first
five required, no additional properties; its document holds every key. Prints, per engine, the
masks, their mean, p50, p90, p99 and the time to first mask. The engines run in this one process,
interleaved schema by schema (which goes first alternates).

    python benchmarks/fresh_keys.py [--schemas 150] [--keys 25] [--engines onrails,llguidance]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import engines_in_process, fmt, percentiles  # noqa: E402  (sets the one-thread environment first)

_WORDS = (
    "alpha beta gamma delta epsilon zeta theta iota kappa lambda sigma omega user name count items value "
    "total price state city zip code level score label title notes owner group region status mode kind "
    "flag size limit offset token client server host port path query"
).split()
_VALUES: list[tuple[dict[str, Any], Any]] = [
    ({"type": "string"}, "text"),
    ({"type": "integer"}, 42),
    ({"type": "boolean"}, True),
    ({"type": "array", "items": {"type": "string"}}, ["x", "y"]),
    ({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}}, "required": ["a"]},
     {"a": "q", "b": 1.5}),
    ({"enum": ["red", "green", "blue"]}, "green"),
]


def cases(n_schemas: int, n_keys: int, seed: int) -> list[tuple[dict[str, Any], str]]:
    """``n_schemas`` (schema, document text) pairs of ``n_keys`` random property names each."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_schemas):
        keys: list[str] = []
        while len(keys) < n_keys:
            key = "_".join(rng.sample(_WORDS, 2)) + str(rng.randint(0, 99))
            if key not in keys:
                keys.append(key)
        properties = {key: _VALUES[i % len(_VALUES)][0] for i, key in enumerate(keys)}
        schema = {"type": "object", "properties": properties, "required": keys[:5], "additionalProperties": False}
        document = {key: _VALUES[i % len(_VALUES)][1] for i, key in enumerate(keys)}
        out.append((schema, json.dumps(document)))
    return out


def run(engine: Any, tokenizer: Any, schema: dict[str, Any], text: str, masks: list[float], ttfm: list[float]) -> None:
    clock = time.perf_counter
    start = clock()
    grammar = engine.compile_json_schema(schema)
    engine.fill(engine.matcher(grammar))
    ttfm.append(clock() - start)
    matcher = engine.matcher(grammar)
    for token in [*tokenizer.encode(text, add_special_tokens=False), engine.eos]:
        start = clock()
        engine.fill(matcher)
        masks.append(clock() - start)
        if not (engine.allowed(token) and engine.advance(matcher, token)):
            raise SystemExit(f"{engine.name} refused a token of a valid document: {text[:80]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schemas", type=int, default=150)
    parser.add_argument("--keys", type=int, default=25, help="properties per schema")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--engines", default="onrails,llguidance", help="comma-separated, as maskbench.py")
    parser.add_argument("--tokenizer", default="llama-3.2")
    args = parser.parse_args()

    tokenizer, engines = engines_in_process(args.engines, args.tokenizer)
    masks: dict[str, list[float]] = {key: [] for key in engines}
    ttfm: dict[str, list[float]] = {key: [] for key in engines}
    for i, (schema, text) in enumerate(cases(args.schemas, args.keys, args.seed)):
        keys = list(engines)
        for key in keys if i % 2 == 0 else keys[::-1]:
            run(engines[key], tokenizer, schema, text, masks[key], ttfm[key])
    print(f"{args.schemas} fresh schemas of {args.keys} properties, one document each, tokenizer {args.tokenizer}, "
          "one process, engines interleaved\n")
    print("| engine | masks | mean µs | p50 µs | p90 µs | p99 µs | first mask p50 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, engine in engines.items():
        m = percentiles(masks[key], (50, 90, 99))
        t = percentiles(ttfm[key], (50,))
        print(f"| {engine.name} | {m['n']:,} | {fmt(m['mean'])} | {fmt(m['p50'])} | {fmt(m['p90'])} | "
              f"{fmt(m['p99'])} | {fmt(t['p50'] / 1e3, 2)} |")


if __name__ == "__main__":
    main()
