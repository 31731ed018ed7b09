"""The ``onrails`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit status."""
    parser = argparse.ArgumentParser(prog="onrails", description="Grammar-constrained decoding.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the demo on the default model (offline)")
    demo.add_argument("--model", default=None, help="a model name or a tokenizer folder / .gguf path")
    gen = sub.add_parser(
        "generate",
        help="generate a constrained answer to PROMPT on a local model (offline)",
        description="Answer PROMPT (as a user message in the model's chat template) under a grammar: "
        "a built-in rule (default: object), a JSON Schema file or a Lark grammar file.",
    )
    gen.add_argument("prompt", help="the user's message")
    gen.add_argument("--model", default=None, help="a model name, a Hugging Face folder or a .gguf path")
    constraint = gen.add_mutually_exclusive_group()
    constraint.add_argument("--grammar-root", default=None, help="a built-in rule: object (default), array, value, func...")
    constraint.add_argument("--schema", type=Path, help="a JSON Schema file the output must validate against")
    constraint.add_argument("--grammar", type=Path, help="a Lark grammar file")
    constraint.add_argument("--free", action="store_true", help="no constraint: free text")
    gen.add_argument("--grammar-start", default="start", help="the start rule of --grammar (default: start)")
    gen.add_argument("--max-tokens", type=int, default=None, help="token limit (the output still parses)")
    gen.add_argument("--temperature", type=float, default=None, help="0 is greedy (default 1)")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    srv = sub.add_parser(
        "serve",
        help="serve a local model over an OpenAI / Cerebras-compatible HTTP API",
        description="Serve MODEL at http://HOST:PORT (OpenAI clients: base_url .../v1; Cerebras: the root).",
    )
    srv.add_argument("--model", default=None, help="a model name, a Hugging Face folder or a .gguf path")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY) on /v1/")
    srv.add_argument("--max-sequences", type=int, default=16, help="sequences decoded together (default 16)")
    srv.add_argument("--max-queue", type=int, default=64, help="requests waiting before 429 (default 64)")
    srv.add_argument("--max-tokens", type=int, default=1024, help="largest max_tokens, and the default (1024)")
    srv.add_argument("--max-body-bytes", type=int, default=1 << 20, help="request body limit (default 1 MiB)")
    srv.add_argument("--request-timeout", type=float, default=300.0, help="seconds before a request's sequences end")
    srv.add_argument("--compile-budget", type=float, default=10.0, help="seconds one grammar may take to compile")
    srv.add_argument("--compile-processes", type=int, default=2, help="grammar compiles running at once, one process each (default 2)")
    srv.add_argument("--max-waiting-compiles", type=int, default=64, help="compiles waiting for a process before 429 (default 64)")
    srv.add_argument("--grammar-cache-mb", type=int, default=1024, help="MiB the grammar caches may hold (default 1024)")
    srv.add_argument("--prefix-cache-mb", type=int, default=128, help="MiB of prompt KV kept for reuse (default 128)")
    srv.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from onrails import demo as demo_module

        if args.model is None:
            demo_module.run()
        else:
            demo_module.run(args.model)
        return 0
    if args.command == "generate":
        return _generate(args)
    if args.command == "serve":
        return _serve(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse rejects it
    return 2


def _generate(args: argparse.Namespace) -> int:
    from onrails.errors import OnRailsError

    try:
        constraint: dict[str, Any] = {}
        if args.schema is not None:
            schema = json.loads(args.schema.read_text(encoding="utf-8"))
            constraint["response_format"] = {"type": "json_schema", "json_schema": {"name": args.schema.stem, "schema": schema}}
        elif args.grammar is not None:
            constraint["grammar"] = args.grammar.read_text(encoding="utf-8")
            constraint["grammar_start"] = args.grammar_start
        elif not args.free:
            constraint["grammar_root"] = args.grammar_root or "object"
        from onrails.runtime.client import Client

        client = Client(args.model)
        request: dict[str, Any] = dict(
            messages=[{"role": "user", "content": args.prompt}],
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            seed=args.seed,
            **constraint,
        )
        if args.stream:
            for chunk in client.chat.completions.create(stream=True, **request):
                if chunk.choices:
                    sys.stdout.write(chunk.choices[0].delta.content or "")
                    sys.stdout.flush()
            sys.stdout.write("\n")
        else:
            result = client.chat.completions.create(**request)
            print(result.choices[0].message.content)
    except (OSError, ValueError, OnRailsError) as exc:
        print(f"onrails generate: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve(args: argparse.Namespace) -> int:
    from onrails.errors import OnRailsError

    try:
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        from onrails.runtime.server import ServerLimits, serve

        limits = ServerLimits(
            max_sequences=args.max_sequences,
            max_queue=args.max_queue,
            max_tokens=args.max_tokens,
            max_body_bytes=args.max_body_bytes,
            request_timeout_s=args.request_timeout,
            compile_budget_s=args.compile_budget,
            compile_processes=args.compile_processes,
            max_waiting_compiles=args.max_waiting_compiles,
            grammar_cache_bytes=args.grammar_cache_mb << 20,
            prefix_cache_bytes=args.prefix_cache_mb << 20,
        )
        serve(args.model, host=args.host, port=args.port, api_key=args.api_key, limits=limits)
    except (OSError, ValueError, OnRailsError) as exc:
        print(f"onrails serve: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
