"""Generation speed on the default model: unconstrained vs constrained, jump-forward, TTFT.

For each constraint (none, ``grammar_root="object"``, a JSON Schema, a MaskBench schema, tools)
at batch 1 and 8, samples (fixed seeds) up to ``--tokens`` tokens per sequence: unconstrained
rows generate exactly that many, constrained rows stop where their grammar ends. Reports
generated tokens per second (best of ``--repeat`` round-robin runs), the share of tokens
appended without sampling (jump-forward, and the completion steered in at the limit), and the
same without jump-forward. Time to first token is measured with a cold grammar cache (a fresh
compiler: compile + first masks) and a warm one. Prints a markdown table.

    python benchmarks/generation.py [--tokens 128] [--repeat 2] [--threads N] [--model NAME] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from onrails.constrain import GrammarCompiler
from onrails.runtime.api import chat_prompt
from onrails.runtime.generation import SequenceRequest, Timing, generate_sequences
from onrails.runtime.models import Model, load_model
from onrails.runtime.sampling import SamplingParams

ROOT = Path(__file__).resolve().parent.parent
MASKBENCH = ROOT.parent / "shared" / "maskbench" / "dev"
PERSON = {
    "type": "object",
    "properties": {
        "first_name": {"type": "string", "maxLength": 16},
        "last_name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "email_address": {"type": "string", "maxLength": 32},
        "is_member": {"type": "boolean"},
        "favourite_colours": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 3},
    },
    "required": ["first_name", "last_name", "age", "email_address", "is_member", "favourite_colours"],
    "additionalProperties": False,
}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"],
            },
        },
    }
]


def maskbench_schema() -> tuple[str, dict[str, Any]] | None:
    """The first MaskBench dev schema with several required properties (deterministic)."""
    for path in sorted(MASKBENCH.glob("Github_easy*.json")):
        schema = json.loads(path.read_text())["schema"]
        if isinstance(schema, dict) and len(schema.get("required", [])) >= 3:
            return path.stem, schema
    return None


def constraints(model: Model) -> list[tuple[str, Any, str | None]]:
    compiler = model.compiler
    rows: list[tuple[str, Any, str | None]] = [("unconstrained", None, None), ("grammar_root=object", model.builtin_grammar(), "object")]
    rows.append(("schema (person)", compiler.compile_json_schema(PERSON, whitespace="bounded"), None))
    found = maskbench_schema()
    if found is not None:
        name, schema = found
        try:
            rows.append((f"maskbench {name}", compiler.compile_json_schema(schema, whitespace="bounded", strict=False), None))
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"skipping MaskBench schema {name}: {exc}")
    rows.append(("tools (required)", compiler.compile_tools(TOOLS, tool_choice="required"), None))
    return rows


def run(model: Model, prompt: list[int], grammar: Any, root: str | None, batch: int, tokens: int, jump: bool) -> dict[str, Any]:
    requests = [
        SequenceRequest(
            prompt,
            # Unconstrained rows must not stop early: min_tokens keeps them going to the limit.
            SamplingParams(temperature=1.0, seed=i, max_tokens=tokens, min_tokens=-1 if grammar is None else 0),
            grammar,
            root,
            jump_forward=jump,
        )
        for i in range(batch)
    ]
    timing = Timing()
    results = generate_sequences(model, requests, timing)
    assert timing.finished is not None and timing.first_token is not None
    generated = sum(len(r.token_ids) for r in results)
    forced = sum(r.forced_tokens for r in results)
    wall = timing.finished - timing.started
    return {
        "tokens": generated,
        "seconds": wall,
        "tokens_per_s": generated / wall,
        "forced_share": forced / max(1, generated),
        "ttft_s": timing.first_token - timing.started,
    }


def ttft(model: Model, prompt: list[int]) -> dict[str, float]:
    """Time to first token for the person schema: a fresh compiler, then the same one again."""
    cold_model = dataclasses.replace(model, compiler=GrammarCompiler(model.vocabulary), _builtin={})
    out = {}
    for label in ("cold", "warm"):
        start = time.perf_counter()
        grammar = cold_model.compiler.compile_json_schema(PERSON, whitespace="bounded")
        timing = Timing(started=start)
        generate_sequences(cold_model, [SequenceRequest(prompt, SamplingParams(seed=1, max_tokens=1), grammar)], timing)
        assert timing.first_token is not None
        out[label] = timing.first_token - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per sequence (unconstrained rows generate exactly this many)")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeat", type=int, default=2, help="runs per cell; the fastest is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also save the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = load_model(args.model)
    load_s = time.perf_counter() - start
    prompt = model.encode(chat_prompt(model, [{"role": "user", "content": "Invent a person and describe them as JSON."}]))
    batches = [int(b) for b in args.batches.split(",")]
    rows = constraints(model)
    run(model, prompt, None, None, 1, 4, True)  # warm up the forward pass
    cells = [
        (name, grammar, root, batch, jump)
        for batch in batches
        for name, grammar, root in rows
        for jump in ((True,) if grammar is None else (True, False))
    ]
    # Round-robin repeats, best run per cell: other load on the machine drifts over time, and
    # interleaving spreads it over every cell instead of biasing some. The first round also
    # warms each grammar's mask cache (the same seeds are used every round).
    measured: dict[tuple[str, int, bool], dict[str, Any]] = {}
    for round_ in range(args.repeat):
        for name, grammar, root, batch, jump in cells:
            result = run(model, prompt, grammar, root, batch, args.tokens, jump)
            key = (name, batch, jump)
            if key not in measured or result["tokens_per_s"] > measured[key]["tokens_per_s"]:
                measured[key] = result
        print(f"round {round_ + 1}/{args.repeat} done", flush=True)
    table = []
    for name, grammar, root, batch, jump in cells:
        if not jump:
            continue
        entry = {"constraint": name, "batch": batch, **measured[(name, batch, True)]}
        if grammar is not None:
            entry["no_jump_tokens_per_s"] = measured[(name, batch, False)]["tokens_per_s"]
        table.append(entry)
    first = ttft(model, prompt)

    base = {e["batch"]: e["tokens_per_s"] for e in table if e["constraint"] == "unconstrained"}
    print(f"\nmodel {model.name} on {model.device} ({model.dtype}), {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}; load {load_s:.1f} s; {args.tokens} tokens per sequence\n")
    print("| constraint | batch | tokens/seq | tok/s | × unconstrained | appended without sampling | tok/s without jump-forward |")
    print("|---|---|---|---|---|---|---|")
    for e in table:
        ratio = e["tokens_per_s"] / base[e["batch"]]
        nojump = f"{e['no_jump_tokens_per_s']:.1f}" if "no_jump_tokens_per_s" in e else "-"
        forced = f"{100 * e['forced_share']:.0f}%" if e["constraint"] != "unconstrained" else "-"
        per_seq = e["tokens"] / e["batch"]
        print(f"| {e['constraint']} | {e['batch']} | {per_seq:.0f} | {e['tokens_per_s']:.1f} | {ratio:.2f} | {forced} | {nojump} |")
    print(f"\ntime to first token (person schema, batch 1): cold grammar cache {first['cold'] * 1000:.0f} ms, "
          f"warm {first['warm'] * 1000:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps({"rows": table, "ttft": first, "load_s": load_s}, indent=1))


if __name__ == "__main__":
    main()
