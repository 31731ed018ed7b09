"""MaskBench side by side: onrails and the peer engines on real JSON Schemas, one thread each.

Runs onrails and, when installed (``pip install -e '.[bench]'``), llguidance, xgrammar and
outlines-core on the schemas of ../shared/maskbench/dev with the Llama-3.2 tokenizer, following
the upstream MaskBench protocol (guidance-ai/jsonschemabench, ``maskbench/maskbench/runner.py``):

* compile each schema; time to first mask (TTFM) = compile + new matcher + first mask;
* feed each test instance token by token on a fresh matcher, timing every mask computation
  (TBM here is the mask alone; the advance is timed apart, upstream's TBM is their sum);
* instances are serialised as upstream does, ``json.dumps(data, ensure_ascii=False)`` (a space
  after ``,`` and ``:``; ``--compact`` drops them), and tokenised without special tokens.

Counting, per engine and schema (each schema lands in exactly one row):

* compile error: the engine refused the schema (for onrails a ``GrammarError``: SchemaError,
  CompileBudgetError; for the peers, as upstream, any exception while compiling);
* crash: onrails raised anything else, any engine raised while matching, or the worker process
  died (segfault, abort, out of memory under ``--mem-limit``);
* timeout: compile plus all the schema's instances took longer than ``--timeout`` seconds; the
  worker is killed and restarted;
* invalidation error: some invalid instance was accepted (a clear bug);
* validation error: otherwise, some valid instance was rejected;
* passing: compiled, every valid instance accepted and every invalid one rejected.

A token is accepted when its bit is set in the mask just computed and the matcher advances on it.
After the last token the end-of-sequence token is fed the same way (one more timed mask), so an
instance is accepted only if the grammar is complete there. Upstream feeds no end token (an
invalid instance that is a prefix of a valid one counts as accepted there) and, when one schema
has both kinds of failure, reports the last failing instance's kind; here an invalidation error
wins. Upstream also counts an exception while matching as a validation error; here it is a crash.
A mask that forbids a token on which ``advance`` succeeds (or the reverse) is counted apart as a
mask/advance disagreement.

Engines run interleaved: each schema goes to every engine before the next one (which goes first
alternates), so a shared machine's drift falls on all alike. Each runs in a worker subprocess on one
thread (RAYON/OMP/MKL threads 1, torch.set_num_threads(1), xgrammar max_threads=1). Configurations: onrails
``compile_json_schema(schema, whitespace="flexible", strict=True)``; llguidance
``grammar_from_json_schema`` with flexible whitespace; xgrammar ``compile_json_schema`` with its
defaults (any_whitespace, strict_mode: no properties or items beyond those listed);
outlines-core ``build_regex_from_schema`` (whitespace ``[ ]?``) and ``Index``. The extra engine
``xgrammar-compliant`` runs xgrammar with strict_mode off.

Prints one markdown table, saves JSON (per-engine summary and per-schema outcomes) and a PNG of the
time distributions under benchmarks/results/.

    python benchmarks/maskbench.py [--limit N] [--every K] [--engines onrails,llguidance,...]
                                   [--timeout S] [--tokenizer llama-3.2] [--compact]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import (  # noqa: E402  (sets the one-thread environment before numpy is imported)
    ADAPTERS,
    THREAD_ENV,
    CompileError,
    fmt,
    make_engine,
    percentiles,
    version,
)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "maskbench" / "dev"
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_ENGINES = "onrails,llguidance,xgrammar,outlines-core"
POINTS = (50, 75, 90, 99)
OUTCOMES = ("passing", "compile_error", "timeout", "crash", "validation_error", "invalidation_error")
MAX_FAILURES = 3  # failing instances recorded per schema


# -- the worker: one engine, one schema at a time ----------------------------------------------


def _snippet(tokenizer: Any, tokens: list[int], index: int) -> dict[str, str]:
    """Where an instance failed: the text before the token, and the token."""
    before = tokenizer.decode(tokens[:index])
    token = tokenizer.decode(tokens[index : index + 1]) if index < len(tokens) else "<end>"
    return {"before": before[-80:], "token": token}


def run_case(engine: Any, tokenizer: Any, case: dict[str, Any]) -> dict[str, Any]:
    """Compile one schema and feed its instances; returns the outcome and the timings."""
    clock = time.perf_counter
    mask_s: list[float] = []
    advance_s: list[float] = []
    res: dict[str, Any] = {"id": case["id"], "mask_s": mask_s, "advance_s": advance_s}
    stage = "compile"
    try:
        t0 = clock()
        try:
            grammar = engine.compile_json_schema(case["schema"])
        except CompileError as exc:
            res.update(status="compile_error", error=str(exc)[:400])
            return res
        engine.fill(engine.matcher(grammar))
        res["ttfm_s"] = clock() - t0

        stage = "match"
        valid_rejected = invalid_accepted = disagreements = 0
        failures: list[dict[str, Any]] = []
        eos = engine.eos
        for i, test in enumerate(case["tests"]):
            tokens = test["tokens"]
            matcher = engine.matcher(grammar)
            accepted = True
            k = 0
            for k, token in enumerate([*tokens, eos]):
                a = clock()
                engine.fill(matcher)
                b = clock()
                mask_s.append(b - a)
                if engine.allowed(token):
                    c = clock()
                    ok = engine.advance(matcher, token)
                    advance_s.append(clock() - c)
                    if not ok:
                        disagreements += 1
                else:
                    ok = False
                    if engine.advance(matcher, token):  # untimed check: the mask is too narrow
                        disagreements += 1
                if not ok:
                    accepted = False
                    break
            if accepted != test["valid"]:
                if test["valid"]:
                    valid_rejected += 1
                else:
                    invalid_accepted += 1
                if len(failures) < MAX_FAILURES:
                    where = _snippet(tokenizer, tokens, k) if not accepted else {}
                    failures.append({"test": i, "valid": test["valid"], **where})
        res.update(
            valid_rejected=valid_rejected,
            invalid_accepted=invalid_accepted,
            disagreements=disagreements,
            failures=failures,
            status="invalidation_error" if invalid_accepted else "validation_error" if valid_rejected else "passing",
        )
    except Exception as exc:  # onrails outside GrammarError, or any engine while matching
        res.update(status="crash", error=f"{stage}: {type(exc).__name__}: {exc}"[:400])
    return res


def worker_main(key: str, tokenizer_name: str, mem_limit_gb: float) -> None:
    """Serve schemas read as JSON lines on stdin; answer JSON lines on the original stdout."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the engines print goes to the log, not into the protocol

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    if mem_limit_gb > 0:
        import resource

        limit = int(mem_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    import onrails
    from onrails.runtime.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_name)
    vocab = onrails.Vocabulary.from_tokenizer(tokenizer)
    options: dict[str, Any] = {}
    if key.startswith("xgrammar"):
        options["cache"] = False  # every schema is new; keep its compile cache out of the timings
    try:
        engine = make_engine(key, tokenizer, vocab, **options)
    except ImportError as exc:
        send({"unavailable": f"not installed ({exc})"})
        return
    send({"ready": True, "name": engine.name, "label": engine.label})
    for line in sys.stdin:
        case = json.loads(line)
        res = run_case(engine, tokenizer, case)
        del case
        gc.collect()
        send(res)


# -- the parent: engines interleaved schema by schema, a timeout per schema ----------------------


class Worker:
    """A worker subprocess for one engine; ``ask`` returns its answer, "timeout" or "died"."""

    def __init__(self, key: str, args: argparse.Namespace, log: Path) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", key, "--tokenizer", args.tokenizer,
               "--mem-limit", str(args.mem_limit)]
        env = {**os.environ, **THREAD_ENV}
        self.log = open(log, "a")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env)
        self.buf = b""

    def _read_line(self, timeout: float) -> "bytes | str":
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return "timeout"
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return "died"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def hello(self, timeout: float = 600) -> dict[str, Any]:
        line = self._read_line(timeout)
        if isinstance(line, str):
            self.kill()
            return {"unavailable": f"worker failed to start ({line}, exit code {self.proc.poll()})"}
        return json.loads(line)

    def ask(self, case_line: bytes, timeout: float) -> "dict[str, Any] | str":
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(case_line)
            self.proc.stdin.flush()
        except BrokenPipeError:
            return "died"
        line = self._read_line(timeout)
        return json.loads(line) if isinstance(line, bytes) else line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def close(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            pass
        self.kill()


def load_cases(paths: list[Path], tokenizer: Any, compact: bool) -> list[dict[str, Any]]:
    separators = (",", ":") if compact else None
    cases = []
    for path in paths:
        data = json.loads(path.read_text())
        tests = []
        for test in data["tests"]:
            text = json.dumps(test["data"], ensure_ascii=False, separators=separators)
            tests.append({"valid": bool(test["valid"]), "tokens": tokenizer.encode(text, add_special_tokens=False)})
        cases.append({"id": path.name, "schema": data["schema"], "tests": tests})
    return cases


class EngineRun:
    """One engine's worker and tallies: ``run`` feeds it a schema (restarting a worker that timed
    out or died), ``result`` sums it up."""

    def __init__(self, key: str, args: argparse.Namespace) -> None:
        self.key, self.args = key, args
        self.log = args.json.with_name(f"maskbench-{key}.log")
        self.log.write_text("")
        self.started = time.monotonic()
        self.worker: Worker | None = Worker(key, args, self.log)
        hello = self.worker.hello()
        self.unavailable: str | None = hello.get("unavailable")
        if self.unavailable:
            print(f"{key}: {self.unavailable}", file=sys.stderr)
            self.worker.close()
            self.worker = None
            self.name, self.label = key, ""
            return
        self.name, self.label = hello["name"], hello.get("label", "")
        print(f"{self.name}: worker ready in {time.monotonic() - self.started:.1f} s", file=sys.stderr)
        self.busy_s = 0.0  # time spent on this engine's schemas
        self.mask_s: list[np.ndarray] = []
        self.advance_s: list[np.ndarray] = []
        self.ttfm_s: list[float] = []
        self.schemas: list[dict[str, Any]] = []
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.tokens = self.valid_rejected = self.invalid_accepted = self.disagreements = self.restarts = 0

    def run(self, case: dict[str, Any]) -> None:
        args = self.args
        t = time.monotonic()
        if self.worker is None:
            self.worker = Worker(self.key, args, self.log)
            self.restarts += 1
            hello = self.worker.hello()
            if "unavailable" in hello:
                sys.exit(f"{self.key}: worker restart failed: {hello['unavailable']}")
        line = (json.dumps(case) + "\n").encode()
        asked = time.monotonic()
        res = self.worker.ask(line, args.timeout)
        wall = time.monotonic() - asked
        if isinstance(res, str):
            try:
                rc = self.worker.proc.wait(timeout=0 if res == "timeout" else 10)
            except subprocess.TimeoutExpired:
                rc = None
            self.worker.kill()
            self.worker = None
            if res == "timeout":
                res = {"id": case["id"], "status": "timeout", "error": f"no answer after {args.timeout:g} s"}
            else:
                res = {"id": case["id"], "status": "crash",
                       "error": f"worker died (exit code {rc}); see {self.log.name} for the engine's last words"}
        status = res["status"]
        self.counts[status] += 1
        record = {"id": res["id"], "status": status, "wall_s": round(wall, 4)}
        if "ttfm_s" in res:
            self.ttfm_s.append(res["ttfm_s"])
            record["ttfm_ms"] = round(res["ttfm_s"] * 1e3, 3)
        if res.get("mask_s"):
            m = np.asarray(res["mask_s"])
            self.mask_s.append(m)
            self.advance_s.append(np.asarray(res["advance_s"]))
            self.tokens += m.size
            record["masks"] = int(m.size)
            record["max_mask_us"] = round(float(m.max()) * 1e6, 1)
            # The schema's share of the mean: engines compared schema by schema from one run.
            record["mask_ms"] = round(float(m.sum()) * 1e3, 3)
        for k in ("valid_rejected", "invalid_accepted", "disagreements"):
            if res.get(k):
                record[k] = res[k]
        self.valid_rejected += res.get("valid_rejected", 0)
        self.invalid_accepted += res.get("invalid_accepted", 0)
        self.disagreements += res.get("disagreements", 0)
        for k in ("error", "failures"):
            if res.get(k):
                record[k] = res[k]
        self.schemas.append(record)
        self.busy_s += time.monotonic() - t

    def progress(self, n: int, total: int) -> str:
        done = ", ".join(f"{k} {v}" for k, v in self.counts.items() if v)
        return f"  {self.name}: {n}/{total} schemas, {self.busy_s:.0f} s, {done}"

    def result(self) -> dict[str, Any]:
        if self.unavailable:
            return {"key": self.key, "name": self.key, "unavailable": self.unavailable}
        if self.worker is not None:
            self.worker.close()
        all_mask = np.concatenate(self.mask_s) if self.mask_s else np.zeros(0)
        all_adv = np.concatenate(self.advance_s) if self.advance_s else np.zeros(0)
        return {
            "key": self.key,
            "name": self.name,
            "config": self.label,
            "schemas": len(self.schemas),
            **self.counts,
            "valid_instances_rejected": self.valid_rejected,
            "invalid_instances_accepted": self.invalid_accepted,
            "mask_advance_disagreements": self.disagreements,
            "worker_restarts": self.restarts,
            "masks": int(self.tokens),
            "mask_us": percentiles(all_mask, POINTS),
            # The share of first visits' cost (cached states take a few µs).
            "masks_over_100us": float((all_mask > 100e-6).mean()) if all_mask.size else None,
            "advance_us": percentiles(all_adv, POINTS),
            "ttfm_ms": {k: (v / 1e3 if k != "n" else v) for k, v in percentiles(self.ttfm_s, POINTS).items()},
            "wall_s": round(self.busy_s, 1),
            "per_schema": self.schemas,
            "_mask_s": all_mask,
            "_ttfm_s": np.asarray(self.ttfm_s),
        }


def run_engines(keys: list[str], cases: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every engine on every schema, interleaved: each schema goes to every engine before the next
    one, in turn first, so the drift of a shared machine (25% between runs ten minutes apart)
    falls on all engines alike instead of on whichever ran in the slower minutes."""
    runs = [EngineRun(key, args) for key in keys]
    live = [run for run in runs if not run.unavailable]
    for n, case in enumerate(cases, 1):
        for run in live if n % 2 else live[::-1]:
            run.run(case)
        if n % args.progress == 0 or n == len(cases):
            for run in live:
                print(run.progress(n, len(cases)), file=sys.stderr)
    return [run.result() for run in runs]


def table(results: list[dict[str, Any]]) -> str:
    head = "| metric | " + " | ".join(r["name"] for r in results) + " |"
    lines = [head, "|:---|" + "---:|" * len(results)]

    def row(label: str, cell) -> None:  # type: ignore[no-untyped-def]
        lines.append(f"| {label} | " + " | ".join("–" if "unavailable" in r else cell(r) for r in results) + " |")

    if any("unavailable" in r for r in results):
        lines.append("| available | " + " | ".join(r.get("unavailable", "yes") for r in results) + " |")
    row("schemas", lambda r: fmt(r["schemas"], thousands=True))
    for key, label in [
        ("passing", "passing"),
        ("compile_error", "compile error"),
        ("timeout", "timeout"),
        ("crash", "crash"),
        ("validation_error", "validation error (valid rejected)"),
        ("invalidation_error", "invalidation error (invalid accepted)"),
    ]:
        row(label, lambda r, k=key: fmt(r[k], thousands=True))
    row("instances: valid rejected / invalid accepted",
        lambda r: f"{r['valid_instances_rejected']} / {r['invalid_instances_accepted']}")
    row("mask/advance disagreements", lambda r: fmt(r["mask_advance_disagreements"]))
    row("masks computed", lambda r: fmt(r["masks"], thousands=True))
    for stat in ("mean", *(f"p{p}" for p in POINTS), "max"):
        label = "avg" if stat == "mean" else stat
        row(f"time per mask {label} (µs)", lambda r, s=stat: fmt(r["mask_us"].get(s), 1, thousands=True))
    row("masks over 100 µs (%)", lambda r: fmt(None if r["masks_over_100us"] is None else 100 * r["masks_over_100us"], 2))
    for stat in ("p50", "p99"):
        row(f"advance {stat} (µs)", lambda r, s=stat: fmt(r["advance_us"].get(s), 1, thousands=True))
    for stat in ("mean", *(f"p{p}" for p in POINTS), "max"):
        label = "avg" if stat == "mean" else stat
        row(f"time to first mask {label} (ms)", lambda r, s=stat: fmt(r["ttfm_ms"].get(s), 2, thousands=True))
    row("engine wall time (s)", lambda r: fmt(r["wall_s"]))
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    panels = [("_mask_s", 1e6, "time per mask (µs)", "fraction of masks slower than x"),
              ("_ttfm_s", 1e3, "time to first mask (ms)", "fraction of compiled schemas slower than x")]
    for ax, (field, scale, xlabel, ylabel) in zip(axes, panels):
        for r in results:
            values = r.get(field)
            if values is None or not len(values):
                continue
            xs = np.sort(values * scale)
            frac = 1.0 - np.arange(len(xs)) / len(xs)
            ax.step(xs, frac, where="post", label=f"{r['name']} (n={len(xs):,})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default=DEFAULT_ENGINES,
                        help="comma-separated: onrails, llguidance, xgrammar, xgrammar-compliant, outlines-core")
    parser.add_argument("--limit", type=int, default=None, help="only the first N schemas (sorted by file name)")
    parser.add_argument("--every", type=int, default=1, help="only every K-th schema (a deterministic subset)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per engine and schema")
    parser.add_argument("--mem-limit", type=float, default=8.0, help="address-space limit per worker, GiB (0: none)")
    parser.add_argument("--tokenizer", default="llama-3.2")
    parser.add_argument("--compact", action="store_true", help="serialise instances without spaces")
    parser.add_argument("--data", type=Path, default=SHARED, help="folder of MaskBench files")
    parser.add_argument("--json", type=Path, default=RESULTS / "maskbench.json")
    parser.add_argument("--plot", type=Path, default=None, help="PNG path (default: beside --json)")
    parser.add_argument("--progress", type=int, default=100, help="report every N schemas")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        worker_main(args.worker, args.tokenizer, args.mem_limit)
        return
    if not args.data.is_dir():
        sys.exit(f"MaskBench files not found at {args.data}")
    paths = sorted(args.data.glob("*.json"))[:: max(1, args.every)]
    if args.limit is not None:
        paths = paths[: args.limit]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in (*ADAPTERS, "xgrammar-compliant")]
    if unknown:
        parser.error(f"unknown engine(s) {', '.join(unknown)}; known: {', '.join([*ADAPTERS, 'xgrammar-compliant'])}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    plot_path = args.plot or args.json.with_suffix(".png")

    from onrails.runtime.tokenizers import load_tokenizer

    started = time.monotonic()
    tokenizer = load_tokenizer(args.tokenizer)
    cases = load_cases(paths, tokenizer, args.compact)
    n_valid = sum(t["valid"] for c in cases for t in c["tests"])
    n_invalid = sum(not t["valid"] for c in cases for t in c["tests"])
    n_tokens = sum(len(t["tokens"]) + 1 for c in cases for t in c["tests"])
    subset = f"every {args.every}th of " if args.every > 1 else ""
    print(f"{len(cases)} schemas ({subset}{args.data.name}{'' if args.limit is None else f', first {args.limit}'}), "
          f"{n_valid} valid + {n_invalid} invalid instances, {n_tokens} tokens with the end token; "
          f"tokenizer {args.tokenizer}; timeout {args.timeout:g} s; engines {', '.join(engines)}", file=sys.stderr)

    results = run_engines(engines, cases, args)
    wall = time.monotonic() - started

    machine = (f"{platform.machine()} {_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"numpy {version('numpy')}")
    print()
    print(table(results))
    print(f"\n{len(cases)} schemas, {n_valid} valid + {n_invalid} invalid instances; one thread per engine; "
          f"instances {'compact' if args.compact else 'json.dumps default separators'}; timeout {args.timeout:g} s")
    print(f"machine: {machine}; total wall time {wall / 60:.1f} min")

    title = (f"MaskBench dev, {len(cases)} schemas, tokenizer {args.tokenizer}, one thread "
             f"(curves: fraction of events slower than x)")
    try:
        plot(results, plot_path, title)
        print(f"saved {plot_path}")
    except ImportError as exc:
        print(f"no plot: {exc}")
    saved = {
        "machine": machine,
        "tokenizer": args.tokenizer,
        "data": str(args.data),
        "schemas": len(cases),
        "subset": {"every": args.every, "limit": args.limit},
        "valid_instances": n_valid,
        "invalid_instances": n_invalid,
        "tokens": n_tokens,
        "timeout_s": args.timeout,
        "compact": args.compact,
        "wall_s": round(wall, 1),
        "results": [{k: v for k, v in r.items() if not k.startswith("_")} for r in results],
    }
    args.json.write_text(json.dumps(saved, indent=1, ensure_ascii=False))
    print(f"saved {args.json}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
