"""Grammar compiles in separate processes, so that one cannot hold the caller's interpreter lock
(a compile is pure Python: in a thread it slows every other thread of the process, decoding
included), and one past its deadline is killed there instead of running on.

Workers are new interpreters (never forked: the caller may hold threads and locks), run at a lower CPU
priority than the caller, on any CPU (whatever cores the caller is pinned to), and keep what they
built (terminal automata by regex) across compiles.
A job is a module-level function and its arguments; it returns a picklable result or raises an
``OnRailsError``, which comes back as it was raised.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from onrails.errors import CompileBudgetError, OnRailsError, QueueFullError

# Past its deadline a job gets this long (plus a fiftieth of its budget) to report its own budget
# error, which names what it was building, before it is killed.
_GRACE_S = 0.02
_NICENESS = 10


def _serve(conn: Connection) -> None:
    try:
        os.nice(_NICENESS)
    except OSError:
        pass
    if hasattr(os, "sched_setaffinity"):
        # A caller pinned to some cores (vLLM's CPU worker is, to its forward pass's) would pass
        # them on: there, at a lower priority, a compile would wait for the model's every step.
        try:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
        except OSError:
            pass
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        try:
            reply: tuple[str, object] = ("ok", fn(*args))
        except OnRailsError as exc:
            reply = ("error", exc)
        except BaseException:
            reply = ("crash", traceback.format_exc())
        try:
            conn.send(reply)
        except Exception:
            conn.send(("crash", traceback.format_exc()))


class _Worker:
    """A worker process and our end of its socket. A new interpreter running this module, not a
    multiprocessing process: a spawned one would import the caller's main script again."""

    def __init__(self, warm: Callable[[], object]) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"import {__name__} as w; w.serve_socket({theirs.fileno()})"],
            pass_fds=(theirs.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send((warm, ()))
        status, value = self.conn.recv()
        if status != "ok":
            self.kill()
            raise RuntimeError(f"a compile process failed to start: {value}")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)
        self.conn.close()


class CompileProcesses:
    """Up to ``processes`` jobs run at once, each in a worker process; up to ``max_waiting``
    more wait for a worker. Beyond that ``run`` raises ``QueueFullError`` at once. Returns once
    the workers are up (they start in parallel, about half a second); a worker killed later is
    replaced in the background."""

    def __init__(self, processes: int, max_waiting: int, warm: Callable[[], object]) -> None:
        self.processes = processes
        self.max_waiting = max_waiting
        self._warm = warm
        self._idle: list[_Worker] = []
        self._running: dict[int, float] = {}  # id of the job -> its deadline
        self._waiting = 0
        self._closed = False
        self._cond = threading.Condition()
        starting = [self._start_spare() for _ in range(processes)]
        for thread in starting:
            thread.join()

    def _start_spare(self) -> threading.Thread:
        # A worker takes about half a second to import the engine: all start at once, and one
        # replacing a killed worker starts while the caller that lost it goes on.
        def start() -> None:
            worker = _Worker(self._warm)
            with self._cond:
                if self._closed or len(self._idle) + len(self._running) >= self.processes:
                    worker.kill()
                    return
                self._idle.append(worker)
                self._cond.notify()

        thread = threading.Thread(target=start, daemon=True, name="onrails-compile-start")
        thread.start()
        return thread

    def run(self, fn: Callable[..., Any], args: tuple[object, ...], budget_s: float) -> Any:
        """``fn(*args, deadline)`` in a worker, ``deadline`` (``time.monotonic()``) ``budget_s``
        after a worker takes the job; ``CompileBudgetError`` when it is not done by then.
        Waiting for a worker takes at most ``budget_s`` too, then ``QueueFullError``: a busy
        server is no fault of the grammar."""
        job = object()
        with self._cond:
            if len(self._running) + self._waiting >= self.processes + self.max_waiting:
                raise QueueFullError(
                    f"{len(self._running)} grammar compiles are running and {self._waiting} waiting; try again later",
                    retry_after_s=self._retry_after_s(),
                )
            self._waiting += 1
            give_up = time.monotonic() + budget_s
            try:
                while not self._idle:
                    if self._closed:
                        raise QueueFullError("the compile processes were stopped; try again")
                    left = give_up - time.monotonic()
                    if left <= 0:
                        raise QueueFullError(
                            f"no compile process became free within {budget_s:g} s; try again later",
                            retry_after_s=self._retry_after_s(),
                        )
                    self._cond.wait(left)
            finally:
                self._waiting -= 1
            worker = self._idle.pop()
            deadline = time.monotonic() + budget_s
            self._running[id(job)] = deadline
        healthy = False
        try:
            worker.conn.send((fn, (*args, deadline)))
            if not worker.conn.poll(budget_s + _GRACE_S + budget_s / 50):
                raise CompileBudgetError("the grammar did not compile within its time budget")
            status, value = worker.conn.recv()
            healthy = True
        except (EOFError, OSError) as exc:
            raise RuntimeError(f"a compile process died: {exc!r}") from None
        finally:
            with self._cond:
                del self._running[id(job)]
                keep = healthy and not self._closed
                if keep:
                    self._idle.append(worker)
                    self._cond.notify()
            if not keep:
                worker.kill()
                if not healthy:
                    self._start_spare()
        if status == "error":
            assert isinstance(value, BaseException)
            raise value
        if status == "crash":
            raise RuntimeError(f"a grammar compile failed in its process:\n{value}")
        return value

    def _retry_after_s(self) -> float:
        # By the soonest deadline of a running job, a worker is free again.
        soonest = min(self._running.values(), default=time.monotonic() + 1.0)
        return float(max(1, math.ceil(soonest - time.monotonic())))

    def close(self) -> None:
        """Stop the idle workers; running jobs end as their callers return."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for worker in idle:
            worker.kill()


def serve_socket(fd: int) -> None:
    """A worker's main loop on its end of the socket (the entry of ``_Worker``'s process)."""
    _serve(Connection(fd))
