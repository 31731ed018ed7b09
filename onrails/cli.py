"""The ``onrails`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit status."""
    parser = argparse.ArgumentParser(prog="onrails", description="Grammar-constrained decoding.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the demo on the default model (offline)")
    demo.add_argument("--model", default=None, help="a model name or a tokenizer folder / .gguf path")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from onrails import demo as demo_module

        if args.model is None:
            demo_module.run()
        else:
            demo_module.run(args.model)
        return 0
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse rejects it
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
