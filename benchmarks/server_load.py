"""Load on the HTTP server: requests/s, generated tokens/s and latency at several concurrencies.

Every request is constrained (a JSON Schema, a built-in root or tools, in turn) and asks for
``--max-tokens`` tokens. Without ``--url`` the server runs in this process on a free port, on the
default model, with ``--threads`` torch threads. Prints a markdown table.

    .venv/bin/python benchmarks/server_load.py --concurrency 1 4 16 --max-tokens 32

``--soak 500`` instead sends that many chat requests at ``--concurrency`` (the first level), each
with one of ``--schemas`` distinct MaskBench schemas in turn (``--data``), and reports the
server's memory every 50 requests (this process's RSS, its compile processes' and what the
grammar caches hold; with ``--url``, the RSS columns are this client's), latency
percentiles and tokens/s. Schemas the converter refuses get a 400 and count as such.

    .venv/bin/python benchmarks/server_load.py --soak 500 --schemas 200 --concurrency 16 --max-tokens 24
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx

DATA = Path(__file__).resolve().parents[2] / "shared" / "maskbench" / "dev"

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}, "city": {"type": "string"}},
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _body(i: int, max_tokens: int) -> tuple[str, dict[str, Any]]:
    common = {"max_tokens": max_tokens, "temperature": 0.8, "seed": i, "ensure_parsable": True}
    kind = i % 3
    if kind == 0:
        messages = [{"role": "user", "content": f"Invent person number {i} as JSON."}]
        schema = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
        return "/v1/chat/completions", {"messages": messages, "response_format": schema, **common}
    if kind == 1:
        return "/v1/completions", {"prompt": f"A JSON list of {i} fruits:", "grammar_root": "array", **common}
    messages = [{"role": "user", "content": f"Weather in city {i}?"}]
    return "/v1/chat/completions", {"messages": messages, "tools": [WEATHER], "tool_choice": "required", **common}


async def _level(url: str, key: str | None, concurrency: int, count: int, max_tokens: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    latencies: list[float] = []
    tokens = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:

        async def worker() -> None:
            nonlocal tokens
            while not queue.empty():
                i = queue.get_nowait()
                path, body = _body(i, max_tokens)
                started = time.perf_counter()
                response = await client.post(path, json=body)
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)
                tokens += response.json()["usage"]["completion_tokens"]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests_s": count / wall,
        "tokens_s": tokens / wall,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "wall": wall,
        "count": count,
    }


def _rss_mb(pid: int | str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(entry)
    return found


def _soak_schemas(folder: Path, count: int) -> list[dict[str, Any]]:
    schemas = []
    for path in sorted(folder.glob("*.json"))[:count]:
        schemas.append(json.loads(path.read_text())["schema"])
    if len(schemas) < count:
        raise SystemExit(f"{folder} has {len(schemas)} schemas, not {count}")
    return schemas


async def _soak(
    url: str, key: str | None, schemas: list[dict[str, Any]], total: int, concurrency: int, max_tokens: int, app: Any
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    retries = 0
    tokens = 0
    done = 0

    def sample(n: int) -> tuple[int, float, float, float]:
        children = sum(_rss_mb(c) for c in _children(os.getpid()))
        caches = app.state.server.model.compiler.memory_bytes() / 2**20 if app is not None else float("nan")
        return n, _rss_mb("self"), children, caches

    samples = [sample(0)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:

        async def worker() -> None:
            nonlocal tokens, done
            while not queue.empty():
                i = queue.get_nowait()
                fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schemas[i % len(schemas)]}}
                body = {"messages": [{"role": "user", "content": f"Fill in record {i} as JSON."}],
                        "response_format": fmt, "max_tokens": max_tokens, "temperature": 0.8, "seed": i}
                started = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body)
                while response.status_code == 429:  # as the SDKs do: wait as told, then again
                    retries += 1
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    response = await client.post("/v1/chat/completions", json=body)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                    tokens += response.json()["usage"]["completion_tokens"]
                done += 1
                if done % 50 == 0:
                    samples.append(sample(done))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    print(f"\nsoak: {total} chat requests, {len(schemas)} distinct MaskBench schemas, concurrency {concurrency}, max_tokens {max_tokens}\n")
    print("| requests done | server RSS MB | compile processes RSS MB | grammar caches MB |")
    print("|---:|---:|---:|---:|")
    for n, rss, children, caches in samples:
        print(f"| {n} | {rss:.0f} | {children:.0f} | {caches:.0f} |")
    warm = [rss for n, rss, _, _ in samples if n >= total // 2]
    if warm:
        print(f"\nsecond half: server RSS {min(warm):.0f}-{max(warm):.0f} MB ({(max(warm) / min(warm) - 1) * 100:.1f}% spread)")
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))] if latencies else float("nan")
    print(f"statuses {dict(sorted(statuses.items()))}, {retries} retries after a 429; p50 {statistics.median(latencies) if latencies else float('nan'):.2f} s, "
          f"p99 {p99:.2f} s, {tokens / wall:.1f} tokens/s, {wall:.0f} s wall")


def _local_server(model: str, threads: int, max_sequences: int) -> tuple[str, Any, Any]:
    import torch
    import uvicorn

    from onrails.runtime.server import ServerLimits, create_app

    torch.set_num_threads(threads)
    app = create_app(model, limits=ServerLimits(max_sequences=max_sequences, max_tokens=4096))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="a running server (default: start one here)")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the local server")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=None, help="requests per level (default: 2 × concurrency, at least 6)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--soak", type=int, default=None, help="requests of a soak run (instead of the levels)")
    parser.add_argument("--schemas", type=int, default=200, help="distinct schemas of the soak")
    parser.add_argument("--data", type=Path, default=DATA, help="MaskBench dev folder (for --soak)")
    args = parser.parse_args()

    server = app = None
    url = args.url
    if url is None:
        url, server, app = _local_server(args.model, args.threads, max(args.concurrency))
    if args.soak:
        schemas = _soak_schemas(args.data, args.schemas)
        asyncio.run(_soak(url, args.api_key, schemas, args.soak, args.concurrency[0], args.max_tokens, app))
        if server is not None:
            server.should_exit = True
        return
    # Warm up: compile the three grammars and touch the first automaton states.
    asyncio.run(_level(url, args.api_key, 3, 3, args.max_tokens))
    rows = []
    for c in args.concurrency:
        count = args.requests or max(6, 2 * c)
        rows.append((c, asyncio.run(_level(url, args.api_key, c, count, args.max_tokens))))
    base = rows[0][1]["tokens_s"]
    print(f"\nmax_tokens={args.max_tokens}, constrained requests (JSON Schema / array root / tools)\n")
    print("| concurrency | requests | requests/s | tokens/s | p50 latency s | p99 latency s | tokens/s vs first |")
    print("|------------:|---------:|-----------:|---------:|--------------:|--------------:|------------------:|")
    for c, r in rows:
        print(
            f"| {c} | {r['count']:.0f} | {r['requests_s']:.2f} | {r['tokens_s']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} | "
            f"{r['tokens_s'] / base:.2f}× |"
        )
    if server is not None:
        server.should_exit = True


if __name__ == "__main__":
    main()
