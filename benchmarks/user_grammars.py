"""User (Lark) grammars: compile, first mask, masks along walks, peak memory, per grammar.

    python benchmarks/user_grammars.py [--tokenizer llama-3.2] [--engines onrails,llguidance]
                                       [--walks 20] [--steps 30] [--grammars a,b]

The grammars are ``tests/grammars/stress.json`` (the ones whose first masks once blew up:
ignored blank runs, letters next to letters, s-expressions, Lark's ``common`` terminals, the
test grammars). Each (engine, grammar) runs in a forked child, so its peak memory growth
(VmHWM over the RSS it started with, the vocabulary already loaded) is its own. Walks sample
uniformly among onrails' allowed tokens (seeded, one end token when allowed with chance 0.2)
and every engine is fed the same tokens; a peer that refuses a token (its Lark dialect lexes
greedily, onrails' reads every split) stops that walk. One thread per engine.
"""

from __future__ import annotations

import _peers  # noqa: F401  (thread settings first)

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from _peers import fmt, make_engine, percentiles

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.constrain.grammar_limits import in_child, status_kb, stress_grammars  # noqa: E402


def _walk_tokens(vocab: Any, entry: dict[str, Any], walks: int, steps: int, seed: int) -> list[list[int]]:
    """Token sequences of seeded random walks through onrails' masks (shared by every engine)."""
    import onrails

    grammar = onrails.GrammarCompiler(vocab).compile_lark(entry["text"], entry["start"])
    rng = np.random.default_rng(seed)
    ends = sorted(vocab.eos_token_ids)
    out = []
    for _ in range(walks):
        matcher = onrails.Matcher(grammar)
        tokens: list[int] = []
        for _ in range(steps):
            allowed = matcher.allowed_token_ids()
            end = [t for t in ends if matcher.is_allowed(t)]
            token = end[0] if end and rng.random() < 0.2 else int(rng.choice(allowed))
            matcher.advance(token)
            tokens.append(token)
            if token in ends:
                break
        out.append(tokens)
    return out


def _measure(engine: Any, entry: dict[str, Any], walks: list[list[int]]) -> dict[str, Any]:
    rss0 = status_kb("VmRSS")
    t0 = time.perf_counter()
    grammar = engine.compile_lark(entry["text"], entry["start"])
    t1 = time.perf_counter()
    matcher = engine.matcher(grammar)
    engine.fill(matcher)
    t2 = time.perf_counter()
    masks: list[float] = []
    refused = 0
    for tokens in walks:
        matcher = engine.matcher(grammar)
        for token in tokens:
            start = time.perf_counter()
            engine.fill(matcher)
            masks.append(time.perf_counter() - start)
            if not engine.advance(matcher, token):
                refused += 1
                break
    hwm = status_kb("VmHWM")
    return {
        "compile_ms": (t1 - t0) * 1e3,
        "first_mask_ms": (t2 - t1) * 1e3,
        "masks": percentiles(masks),
        "peak_mb": (hwm - rss0) / 1024,
        "refused_walks": refused,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="llama-3.2")
    parser.add_argument("--engines", default="onrails,llguidance")
    parser.add_argument("--walks", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grammars", default="")
    args = parser.parse_args()

    import onrails
    from onrails.runtime.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    vocab = onrails.Vocabulary.from_tokenizer(tokenizer)
    onrails.GrammarCompiler(vocab).compile_lark('start: "x"')  # the vocabulary trie, built once per process
    grammars = stress_grammars()
    names = args.grammars.split(",") if args.grammars else list(grammars)
    engines = {}
    for key in args.engines.split(","):
        try:
            engine = make_engine(key, tokenizer, vocab)
        except ImportError as exc:
            print(f"skipping {key}: {exc}")
            continue
        if hasattr(engine, "compile_lark"):
            engines[key] = (engine, engine.name)
    print(f"# User grammars, {args.tokenizer} ({vocab.size:,} ids), {args.walks} walks of up to {args.steps} tokens each")
    print()
    print("| grammar | engine | compile ms | first mask ms | mask p50 us | p99 us | max us | peak MB | walks refused |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        entry = grammars[name]
        walks = in_child(lambda: {"walks": _walk_tokens(vocab, entry, args.walks, args.steps, args.seed)})
        for key, (engine, label) in engines.items():
            result = in_child(lambda: _measure(engine, entry, walks.get("walks", [])))
            if not result["ok"]:
                print(f"| {name} | {label} | {result['error'][:120]} | | | | | | |")
                continue
            m = result["masks"]
            print(
                f"| {name} | {label} | {fmt(result['compile_ms'])} | {fmt(result['first_mask_ms'])} | "
                f"{fmt(m.get('p50'))} | {fmt(m.get('p99'))} | {fmt(m.get('max'))} | {fmt(result['peak_mb'])} | "
                f"{result['refused_walks']} |"
            )


if __name__ == "__main__":
    main()
