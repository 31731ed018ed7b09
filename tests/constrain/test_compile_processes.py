"""Compiles in worker processes: killed at their deadline, bounded, and exactly the grammars an
in-thread compile gives."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from onrails import CompileBudgetError, GrammarCompiler, GrammarError, Matcher, QueueFullError, SchemaError
from onrails.constrain._compile_processes import CompileProcesses

from .small_vocab import small_vocabulary


# Jobs get their deadline as a last argument.
def _pid(deadline: float) -> int:
    return os.getpid()


def _sleep(seconds: float, deadline: float) -> None:
    time.sleep(seconds)


def _length(text: str, deadline: float) -> int:
    return len(text)


def _affinity(deadline: float) -> set[int]:
    return os.sched_getaffinity(0)


@pytest.fixture
def one_process() -> CompileProcesses:
    pool = CompileProcesses(1, 1, warm=int)
    yield pool
    pool.close()


def test_a_job_past_its_deadline_is_killed_at_it_and_the_next_runs_in_a_new_process(one_process: CompileProcesses) -> None:
    first = one_process.run(_pid, (), 30)
    assert first != os.getpid()
    start = time.monotonic()
    with pytest.raises(CompileBudgetError):
        one_process.run(_sleep, (30,), 1.0)
    assert time.monotonic() - start < 1.2
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # killed and reaped, not left running
    second = one_process.run(_pid, (), 30)
    assert second not in (first, os.getpid())


def test_jobs_beyond_the_running_and_waiting_ones_are_refused_at_once(one_process: CompileProcesses) -> None:
    one_process.run(_pid, (), 30)  # the worker is up
    jobs = [threading.Thread(target=one_process.run, args=(_sleep, (1.5,), 4)) for _ in range(2)]
    for job in jobs:
        job.start()
        time.sleep(0.2)
    start = time.monotonic()
    with pytest.raises(QueueFullError) as refused:
        one_process.run(_pid, (), 30)
    assert time.monotonic() - start < 0.1
    # Retry after the running job's deadline, about 4 s away.
    assert 1 <= refused.value.retry_after_s <= 4
    for job in jobs:
        job.join()
    assert one_process.run(_length, ("abc",), 30) == 3


def test_a_job_that_waits_its_whole_budget_for_a_worker_is_refused_as_a_busy_server(one_process: CompileProcesses) -> None:
    one_process.run(_pid, (), 30)
    busy = threading.Thread(target=one_process.run, args=(_sleep, (2.0,), 5))
    busy.start()
    time.sleep(0.2)
    start = time.monotonic()
    with pytest.raises(QueueFullError, match="no compile process became free"):
        one_process.run(_pid, (), 0.5)
    assert 0.5 <= time.monotonic() - start < 0.8
    busy.join()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_workers_of_a_caller_pinned_to_one_cpu_run_on_every_cpu() -> None:
    everywhere = os.sched_getaffinity(0)
    pools: list[CompileProcesses] = []

    def start_pinned() -> None:
        os.sched_setaffinity(0, {min(everywhere)})  # this thread only, as vLLM pins its worker
        pools.append(CompileProcesses(1, 0, warm=int))

    pinned = threading.Thread(target=start_pinned)
    pinned.start()
    pinned.join()
    try:
        assert pools[0].run(_affinity, (), 30) == everywhere
    finally:
        pools[0].close()


SCHEMAS = [
    {"type": "object", "properties": {"id": {"type": "integer", "minimum": 3}, "tags": {"type": "array", "items": {"enum": ["a", "bc"]}}}, "required": ["id"]},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date"}, "x": {"type": "number"}}, "required": ["when", "x"]},
]


def _masks_along_walks(grammar: object, seed: int) -> list[bytes]:
    assert hasattr(grammar, "vocabulary")
    rng = np.random.default_rng(seed)
    seen = []
    for _ in range(20):
        matcher = Matcher(grammar)  # type: ignore[arg-type]
        for _ in range(40):
            allowed = matcher.allowed_token_ids()
            seen.append(allowed.tobytes())
            token = int(rng.choice(allowed))
            matcher.advance(token)
            if matcher.is_terminated():
                break
    return seen


def test_grammars_compiled_in_processes_give_the_masks_of_in_thread_compiles() -> None:
    vocab = small_vocabulary()
    in_thread = GrammarCompiler(vocab)
    mixed = GrammarCompiler(vocab)
    # Automata built here first, then more from a worker: work keyed by automaton must not mix.
    mixed.compile_json_schema(SCHEMAS[0])
    mixed.use_processes(1)
    try:
        for i, schema in enumerate(SCHEMAS):
            expected = _masks_along_walks(in_thread.compile_json_schema(schema, whitespace="compact"), i)
            assert _masks_along_walks(mixed.compile_json_schema(schema, whitespace="compact"), i) == expected
        grammar = 'start: WORD (" " WORD)*\nWORD: /[a-z]+/'
        assert _masks_along_walks(mixed.compile_lark(grammar), 7) == _masks_along_walks(in_thread.compile_lark(grammar), 7)
    finally:
        mixed.close()


def test_errors_from_a_compile_process_keep_their_type_and_location() -> None:
    compiler = GrammarCompiler(small_vocabulary(), processes=1)
    try:
        with pytest.raises(SchemaError) as bad_schema:
            compiler.compile_json_schema({"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=a)b"}}})
        assert (bad_schema.value.pointer, bad_schema.value.keyword) == ("/properties/a", "pattern")
        with pytest.raises(GrammarError) as bad_grammar:
            compiler.compile_lark("start: x")
        assert bad_grammar.value.rule == "x" and bad_grammar.value.line == 1
        with pytest.raises(SchemaError) as bad_tools:
            compiler.compile_tools([{"type": "function", "function": {"name": ""}}])
        assert bad_tools.value.pointer == "/0/function/name"
    finally:
        compiler.close()


def test_concurrent_compiles_of_one_grammar_compile_it_once() -> None:
    compiler = GrammarCompiler(small_vocabulary())
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(compiler.compile_json_schema(SCHEMAS[1]))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r is results[0] for r in results)
