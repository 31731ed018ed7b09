"""Run user grammars on a real vocabulary, each in a child process under an address-space limit.

``python -m tests.constrain.grammar_limits VOCAB [--walks N] [--grammars a,b]`` loads the
vocabulary once, builds its trie, then forks one child per grammar of ``tests/grammars/stress.json``.
Each child caps its address space at what it holds plus ``--headroom-mb`` and its time at
``--timeout-s``, compiles the grammar, computes the mask after each listed prefix, and runs random
walks finished by the matcher's shortest completion; every output must parse with Lark's Earley
parser. A grammar whose masks blow up fails with MemoryError or a signal instead of taking the
machine down. Prints one JSON object per grammar (``name``, ``ok``, ``error``, times, peak growth).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


def stress_grammars() -> dict[str, dict[str, Any]]:
    """The stress set: name -> {"text", "start", "prefixes", "about"}."""
    out = {}
    for name, entry in json.loads((GRAMMARS / "stress.json").read_text()).items():
        text = entry["grammar"] if "grammar" in entry else (GRAMMARS / entry["file"]).read_text()
        out[name] = {"text": text, "start": entry["start"], "prefixes": entry["prefixes"], "about": entry.get("about", "")}
    return out


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS, VmHWM, VmSize...)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _run_one(vocab: Any, entry: dict[str, Any], walks: int, seed: int) -> dict[str, Any]:
    import lark
    import numpy as np

    from onrails import GrammarCompiler, Matcher

    from ..reference import ReferenceGrammar
    from .walks import random_walk

    rss0 = status_kb("VmRSS")
    t0 = time.perf_counter()
    grammar = GrammarCompiler(vocab).compile_lark(entry["text"], entry["start"])
    t1 = time.perf_counter()
    first = Matcher(grammar).allowed_token_ids()
    t2 = time.perf_counter()
    assert first.size, "empty first mask"
    prefix_masks_s = []
    for prefix in entry["prefixes"]:
        matcher = Matcher(grammar)
        assert matcher.advance_bytes(prefix.encode()), f"prefix {prefix!r} refused"
        start = time.perf_counter()
        assert matcher.allowed_token_ids().size, f"empty mask after {prefix!r}"
        prefix_masks_s.append(time.perf_counter() - start)
    peak_after_masks_mb = (status_kb("VmHWM") - rss0) / 1024
    parser = lark.Lark(entry["text"], start=entry["start"], parser="earley", lexer="dynamic_complete")
    # Lark reads a tracked list (``// %items``) as a comment: the reference checks what it adds
    tracked = ReferenceGrammar(entry["text"], entry["start"]) if "%items" in entry["text"] else None
    if tracked is not None:
        tracked._CACHE_SIZE = 4  # its charts of blank runs, kept by the thousand, would pass the cap
    rng = np.random.default_rng(seed)
    ended = 0
    for walk in range(walks):
        matcher = Matcher(grammar)
        out, finished = random_walk(matcher, rng, max_steps=12, end_bias=0.3)
        if finished:
            ended += 1
        else:
            rest = matcher.shortest_completion()
            assert rest is not None, f"no completion after {out!r}"
            assert matcher.advance_bytes(rest) and matcher.is_accepting(), f"completion {rest!r} after {out!r}"
            out += rest
        try:
            parser.parse(out.decode("utf-8"))
        except (lark.exceptions.LarkError, UnicodeDecodeError) as exc:
            raise AssertionError(f"walk output {out!r} does not parse: {str(exc).splitlines()[0]}") from exc
        # (the first walks only: the reference takes ~0.1 s for a walk's blank runs)
        assert tracked is None or walk >= 40 or tracked.accepts(out), f"walk output {out!r} breaks its tracked list"
    return {
        "compile_s": t1 - t0,
        "first_mask_s": t2 - t1,
        "prefix_mask_s": max(prefix_masks_s),
        "peak_mb": peak_after_masks_mb,
        "peak_with_walks_mb": (status_kb("VmHWM") - rss0) / 1024,
        "walks": walks,
        "walks_ended": ended,
    }


def in_child(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn()``'s JSON result, computed in a forked child: whatever ``fn`` allocates or limits
    is the child's. An exception becomes ``{"ok": False, "error", "trace"}``, a child that died
    (a signal, the kernel) ``{"ok": False, "error": "child died (...)"}``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            result = {"ok": True, "error": None, **fn()}
        except BaseException as exc:  # noqa: BLE001 - a child reports whatever stopped it
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000], "trace": traceback.format_exc()[-3000:]}
        with os.fdopen(write_fd, "w") as out:
            json.dump(result, out)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    if text:
        return dict(json.loads(text))
    how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
    return {"ok": False, "error": f"child died ({how})"}


def _limited(vocab: Any, entry: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    limit = status_kb("VmSize") * 1024 + (args.headroom_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.alarm(args.timeout_s)
    return _run_one(vocab, entry, args.walks, args.seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("vocab", help="tokenizer name, as for onrails.runtime.tokenizers.load_tokenizer")
    parser.add_argument("--grammars", default="", help="comma-separated names (default: all)")
    parser.add_argument("--walks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--headroom-mb", type=int, default=1024)
    parser.add_argument("--timeout-s", type=int, default=120)
    args = parser.parse_args()

    from onrails import GrammarCompiler, Vocabulary
    from onrails.runtime.tokenizers import load_tokenizer

    vocab = Vocabulary.from_tokenizer(load_tokenizer(args.vocab))
    GrammarCompiler(vocab).compile_lark('start: "x"', "start")  # the vocabulary's trie, shared by the children
    grammars = stress_grammars()
    names = args.grammars.split(",") if args.grammars else list(grammars)
    for name in names:
        result = in_child(lambda: _limited(vocab, grammars[name], args))
        print(json.dumps({"name": name, "vocab": args.vocab, **result}), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
