"""Engine speed on real JSON documents: time per mask, per advance, compile and memory.

Feeds the valid instances of ../shared/maskbench/dev (serialised as upstream MaskBench does,
``json.dumps(ensure_ascii=False)``) token by token through the built-in ``value`` rule with
flexible whitespace, on one CPU thread, timing every mask and every advance. Runs the peer
engines (xgrammar's built-in JSON grammar, llguidance with the empty JSON Schema) on the same
tokens in the same run when they are installed. Prints a markdown table; ``--json`` saves it.

    python benchmarks/engine.py [--tokenizer llama-3.2] [--limit 1500] [--no-peers]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import LLGuidanceEngine, XGrammarEngine, fmt, percentiles, version  # noqa: E402  (sets one-thread env)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "maskbench" / "dev"


def load_documents(limit: int) -> list[str]:
    docs = []
    for path in sorted(SHARED.glob("*.json"))[:limit]:
        case = json.loads(path.read_text())
        for test in case["tests"]:
            if test["valid"]:
                docs.append(json.dumps(test["data"], ensure_ascii=False))
    return docs


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def feed(
    docs_tokens: list[list[int]],
    new_matcher: Callable[[], object],
    fill: Callable[[object], None],
    advance: Callable[[object, int], bool],
    eos: int,
) -> dict[str, object]:
    mask_t: list[float] = []
    adv_t: list[float] = []
    rejected = 0
    clock = time.perf_counter
    for tokens in docs_tokens:
        matcher = new_matcher()
        for token in tokens + [eos]:
            a = clock()
            fill(matcher)
            b = clock()
            ok = advance(matcher, token)
            c = clock()
            mask_t.append(b - a)
            adv_t.append(c - b)
            if not ok:
                rejected += 1
                break
    return {"mask_us": percentiles(mask_t), "advance_us": percentiles(adv_t), "rejected_docs": rejected}


def cold_compile_seconds(tokenizer_name: str) -> float:
    """Compile the built-in grammar to a first mask in a fresh process (vocabulary already built)."""
    code = (
        "import time,onrails\n"
        "from onrails.runtime.tokenizers import load_tokenizer\n"
        f"v=onrails.Vocabulary.from_tokenizer(load_tokenizer({tokenizer_name!r}))\n"
        "t=time.perf_counter();g=onrails.GrammarCompiler(v).compile_builtin('flexible')\n"
        "m=onrails.Matcher(g,'value');b=onrails.allocate_token_bitmask(1,v.size);m.fill_next_token_bitmask(b)\n"
        "print(time.perf_counter()-t)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run_onrails(tokenizer, docs_tokens, eos: int, tokenizer_name: str) -> dict[str, object]:
    import onrails

    vocab = onrails.Vocabulary.from_tokenizer(tokenizer)
    cold = cold_compile_seconds(tokenizer_name)
    compiler = onrails.GrammarCompiler(vocab)
    t = time.perf_counter()
    grammar = compiler.compile_builtin("flexible")
    bitmask = onrails.allocate_token_bitmask(1, vocab.size)
    onrails.Matcher(grammar, "value").fill_next_token_bitmask(bitmask)
    fresh = time.perf_counter() - t
    t = time.perf_counter()
    grammar = compiler.compile_builtin("flexible")
    onrails.Matcher(grammar, "value").fill_next_token_bitmask(bitmask)
    warm = time.perf_counter() - t
    result = feed(
        docs_tokens,
        lambda: onrails.Matcher(grammar, "value"),
        lambda m: m.fill_next_token_bitmask(bitmask),  # type: ignore[attr-defined]
        lambda m, tok: m.advance(tok),  # type: ignore[attr-defined]
        eos,
    )
    result.update(
        engine=f"onrails {version('onrails')}",
        compile_cold_s=cold,
        compile_new_grammar_s=fresh,
        compile_warm_s=warm,
        memory_mb=grammar.memory_bytes() / 2**20,
    )
    return result


def run_peer(engine, docs_tokens, eos: int) -> dict[str, object]:
    """A peer's any-JSON grammar (xgrammar: its built-in JSON grammar; llguidance: the empty schema)."""
    t = time.perf_counter()
    grammar = engine.compile_any_json()
    engine.fill(engine.matcher(grammar))
    cold = time.perf_counter() - t
    warm = None
    if isinstance(engine, XGrammarEngine):  # its compiler caches: the second compile is a lookup
        t = time.perf_counter()
        grammar = engine.compile_any_json()
        engine.fill(engine.matcher(grammar))
        warm = time.perf_counter() - t
    result = feed(docs_tokens, lambda: engine.matcher(grammar), engine.fill, engine.advance, eos)
    result.update(engine=engine.name, compile_cold_s=cold)
    if warm is not None:
        result["compile_warm_s"] = warm
    return result


def run_xgrammar(tokenizer, vocab, docs_tokens, eos: int) -> dict[str, object]:
    return run_peer(XGrammarEngine(tokenizer, vocab), docs_tokens, eos)


def run_llguidance(tokenizer, vocab, docs_tokens, eos: int) -> dict[str, object]:
    return run_peer(LLGuidanceEngine(tokenizer, vocab), docs_tokens, eos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="llama-3.2")
    parser.add_argument("--limit", type=int, default=1500, help="number of MaskBench files to read")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "engine.json")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"MaskBench documents not found at {SHARED}")

    from onrails.runtime.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    import onrails

    vocab = onrails.Vocabulary.from_tokenizer(tokenizer)
    eos = min(vocab.eos_token_ids)
    docs = load_documents(args.limit)
    docs_tokens = [tokenizer.encode(d, add_special_tokens=False) for d in docs]
    n_tokens = sum(len(t) + 1 for t in docs_tokens)
    print(f"{len(docs)} documents, {n_tokens} tokens, tokenizer {args.tokenizer} ({vocab.size} ids), one thread")

    results = []
    for runner in [run_onrails] + ([] if args.no_peers else [run_xgrammar, run_llguidance]):
        gc.collect()
        try:
            if runner is run_onrails:
                res = runner(tokenizer, docs_tokens, eos, args.tokenizer)
            else:
                res = runner(tokenizer, vocab, docs_tokens, eos)
        except ImportError as exc:
            print(f"skipping {runner.__name__}: {exc}")
            continue
        results.append(res)

    print()
    print("| engine | mask p50 µs | mask p90 | mask p99 | mask max | advance p50 µs | advance p99 | compile cold s | compile warm ms | docs rejected | memory MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        m, a = r["mask_us"], r["advance_us"]
        warm = r.get("compile_warm_s")
        print(
            f"| {r['engine']} | {fmt(m['p50'])} | {fmt(m['p90'])} | {fmt(m['p99'])} | {fmt(m['max'])} | "
            f"{fmt(a['p50'])} | {fmt(a['p99'])} | {fmt(r.get('compile_cold_s'), 3)} | "
            f"{fmt(warm * 1e3 if isinstance(warm, float) else None, 2)} | {r['rejected_docs']} | {fmt(r.get('memory_mb'))} |"
        )
    onr = results[0]
    if "compile_new_grammar_s" in onr:
        print(f"\nonrails: new compile of the grammar with the vocabulary's trie already built: "
              f"{onr['compile_new_grammar_s'] * 1e3:.0f} ms; peak RSS {rss_mb():.0f} MB")
    machine = f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine, "documents": len(docs), "tokens": n_tokens, "results": results}, indent=2))
    print(f"saved {args.json}")


if __name__ == "__main__":
    main()
