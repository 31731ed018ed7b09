"""Continuous batching for the server: one decoding thread, requests joining and leaving a
running batch between steps.

The step itself is ``onrails.runtime.generation``'s (masks, forward pass, sampling, jump-forward,
steering); this module owns the batch. Requests waiting when a step ends are admitted together:
their prompts get one prefill pass of their own (which also picks their first tokens), then their
KV-cache rows are merged into the running batch's, the shorter side left-padded with columns
no row attends to. Prefilling them beside the running rows would make every row pay for the
longest prompt. Rows leave as soon as they finish, are cancelled or pass their deadline; leading
cache columns that no row attends to any more are cut.

Results flow out as snapshots (each ``SequenceResult`` is cumulative), so a slow consumer skips
intermediate ones instead of queueing them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from onrails.constrain import allocate_token_bitmask
from onrails.errors import OnRailsError, QueueFullError
from onrails.runtime.generation import (
    SequenceRequest,
    SequenceResult,
    SequenceState,
    Timing,
    decode_step,
    eos_row,
    left_padded,
    open_row,
    per_token_layers,
    token_budget,
)

if TYPE_CHECKING:
    from onrails.runtime.models import Model

__all__ = ["Job", "Scheduler"]

_log = logging.getLogger("onrails.server")


class Job:
    """One request's sequences in the scheduler; its results are read from the event loop.

    ``result()`` awaits the final results; ``snapshots()`` yields cumulative results after
    every step (blocking: call it from a worker thread). ``cancel()`` drops the sequences at
    the next step boundary.
    """

    def __init__(self, requests: list[SequenceRequest], timing: Timing, deadline: float | None, stream: bool) -> None:
        self.requests = requests
        self.timing = timing
        self.deadline = deadline
        self.stream = stream
        self.seqs: list[SequenceState] = []
        self.error: BaseException | None = None
        self._cancelled = threading.Event()
        self._cond = threading.Condition()
        self._latest: list[SequenceResult] | None = None
        self._version = 0
        self._done = False
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[list[SequenceResult]] = self._loop.create_future()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop this request's sequences (its client left); idempotent, any thread."""
        self._cancelled.set()
        with self._cond:
            self._cond.notify_all()

    async def result(self) -> list[SequenceResult]:
        """The final results, in request order; raises the step's error if decoding failed."""
        return await asyncio.shield(self._future)

    def snapshots(self, poll_s: float = 1.0) -> Iterator[list[SequenceResult]]:
        """Every new cumulative snapshot until the last (all finished); blocks between steps.

        Ends early, without the last snapshot, when the job is cancelled; raises the decoding
        error if there was one.
        """
        seen = 0
        while True:
            with self._cond:
                while self._version == seen and not self._done and not self.cancelled:
                    self._cond.wait(poll_s)
                if self.error is not None:
                    raise self.error
                if self._version == seen and (self._done or self.cancelled):
                    return
                seen = self._version
                latest, done = self._latest, self._done
            assert latest is not None
            yield latest
            if done:
                return

    # -- called by the decoding thread ------------------------------------------------------------

    def _publish(self, done: bool) -> None:
        if not (self.stream or done):
            return
        results = [s.result() for s in self.seqs]
        with self._cond:
            self._latest = results
            self._version += 1
            self._done = done
            self._cond.notify_all()
        if done:
            self._loop.call_soon_threadsafe(_resolve, self._future, results, None)

    def _fail(self, error: BaseException) -> None:
        with self._cond:
            self.error = error
            self._done = True
            self._cond.notify_all()
        self._loop.call_soon_threadsafe(_resolve, self._future, None, error)


def _resolve(future: "asyncio.Future[list[SequenceResult]]", results: list[SequenceResult] | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert results is not None
        future.set_result(results)


class Scheduler:
    """Serves every request's sequences from one decoding thread over one model.

    ``max_sequences``: rows in the running batch (a request needing more is refused by
    ``submit``); ``max_queue``: requests waiting for room, beyond which ``submit`` raises
    ``QueueFullError``. Sequences of a request past its deadline finish with "length".
    """

    def __init__(self, model: "Model", *, max_sequences: int, max_queue: int) -> None:
        self.model = model
        self.max_sequences = max_sequences
        self.max_queue = max_queue
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._batch: _Batch | None = None
        self._thread = threading.Thread(target=self._run, name="onrails-decode", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Requests waiting for room in the batch."""
        return len(self._pending)

    @property
    def running(self) -> int:
        """Sequences in the running batch."""
        batch = self._batch
        return len(batch.rows) if batch is not None else 0

    def submit(
        self, requests: list[SequenceRequest], timing: Timing, *, deadline: float | None = None, stream: bool = False
    ) -> Job:
        """Queue a request's sequences (call from the event loop); ``QueueFullError`` when full.

        ``deadline`` is a ``time.perf_counter()`` value; ``stream`` publishes every step.
        """
        if len(requests) > self.max_sequences:
            raise OnRailsError(f"{len(requests)} sequences exceed the batch limit of {self.max_sequences}")
        job = Job(requests, timing, deadline, stream)
        with self._cond:
            if self._closed:
                raise QueueFullError("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                raise QueueFullError(f"{len(self._pending)} requests are already waiting; try again later")
            self._pending.append(job)
            self._cond.notify()
        return job

    def close(self) -> None:
        """Stop the decoding thread after the current step; every request is cancelled."""
        with self._cond:
            self._closed = True
            for job in self._pending:
                job.cancel()
            self._pending.clear()
            self._cond.notify()
        batch = self._batch
        for job in list(batch.jobs) if batch is not None else []:
            job.cancel()
        self._thread.join(timeout=30)

    # -- the decoding thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            # Held while a batch runs, so in-process Client calls on the same model wait.
            with self.model._generate_lock:
                try:
                    self._batch = _Batch(self)
                    self._batch.run()
                except Exception:  # never lose the decoding thread
                    _log.exception("batch failed")
                finally:
                    self._batch = None

    def _admit(self, room: int) -> list[Job]:
        """Pending jobs that fit in ``room`` rows, first come first served (cancelled ones dropped)."""
        taken: list[Job] = []
        with self._cond:
            while self._pending and not self._closed:
                job = self._pending[0]
                if job.cancelled:
                    self._pending.popleft()
                    continue
                if len(job.requests) > room:
                    break
                self._pending.popleft()
                taken.append(job)
                room -= len(job.requests)
        return taken


class _Batch:
    """The running batch: rows (sequences), their KV cache and attention mask."""

    def __init__(self, scheduler: Scheduler) -> None:
        model = scheduler.model
        self.scheduler = scheduler
        self.model = model
        vocab = model.vocabulary
        self.eos_ids = sorted(vocab.eos_token_ids)
        self.eos_tensor = torch.tensor(self.eos_ids, dtype=torch.long, device=model.device)
        self.bitmask = torch.from_numpy(allocate_token_bitmask(scheduler.max_sequences, vocab.size))
        self.open_words = open_row(vocab)
        self.eos_words = eos_row(vocab.size, self.eos_ids)
        self.rows: list[SequenceState] = []
        self.owners: list[Job] = []
        self.jobs: list[Job] = []
        self.cache: Any = None
        self.attention: torch.Tensor | None = None

    @torch.inference_mode()
    def run(self) -> None:
        """Step until no row is left and nobody waits."""
        while True:
            try:
                self._retire()
                self._finish_jobs()
                self._join()
                self._finish_jobs()
                if not self.rows:
                    return
                self._step()
            except Exception as exc:  # a failed step fails its requests, not the server
                _log.exception("decoding step failed")
                for job in self.jobs:
                    job._fail(OnRailsError(f"decoding failed: {exc}"))
                return
            self._publish()

    def _join(self) -> None:
        """Admit waiting requests: prefill their prompts together, then merge their rows."""
        if self.rows and not per_token_layers(self.cache):
            return  # e.g. sliding-window caches: new requests wait for the batch to drain
        jobs: list[Job] = []
        new_rows: list[SequenceState] = []
        owners: list[Job] = []
        now = time.perf_counter()
        for job in self.scheduler._admit(self.scheduler.max_sequences - len(self.rows)):
            job.timing.acquired = now
            try:
                job.seqs = [SequenceState(self.model, r, token_budget(self.model, r)) for r in job.requests]
            except Exception as exc:  # this request alone is unusable
                _log.exception("request refused by the decoder")
                job._fail(OnRailsError(f"decoding failed: {exc}"))
                continue
            jobs.append(job)
            for s in job.seqs:
                if s.max_tokens <= 0:
                    s.close("length")
                    continue
                new_rows.append(s)
                owners.append(job)
        self.jobs.extend(jobs)
        if not new_rows:
            return
        # The prompts get their own pass: fed beside the running rows, every row would pay for
        # the longest prompt. A failure here fails the newcomers only: the batch is untouched.
        try:
            attention, cache = self._pass(new_rows, None, None, first=True)
        except Exception as exc:
            _log.exception("prefill failed")
            for job in jobs:
                job._fail(OnRailsError(f"decoding failed: {exc}"))
            self.jobs = [job for job in self.jobs if job not in jobs]
            return
        now = time.perf_counter()
        for job in jobs:
            job.timing.first_token = now
        if self.cache is None or self.attention is None:
            self.cache, self.attention = cache, attention
        else:
            self.attention = _merge(self.cache, self.attention, cache, attention)
        self.rows.extend(new_rows)
        self.owners.extend(owners)

    def _step(self) -> None:
        self.attention, self.cache = self._pass(self.rows, self.attention, self.cache, first=False)

    def _pass(
        self, rows: list[SequenceState], attention: torch.Tensor | None, cache: Any, *, first: bool
    ) -> tuple[torch.Tensor, Any]:
        return decode_step(
            self.model, rows, self.bitmask, self.open_words, self.eos_tensor, self.eos_words, attention, cache, first=first
        )

    def _retire(self) -> None:
        """Close finished, cancelled and late rows; drop them and the columns nobody needs."""
        now = time.perf_counter()
        keep: list[int] = []
        for i, (s, job) in enumerate(zip(self.rows, self.owners)):
            late = job.deadline is not None and now >= job.deadline
            if job.cancelled or late:
                s.finish = s.finish or "length"
                s.unscored = []  # nobody will read the scores of its forced tokens
            if s.finish is None or (s.unscored and s.scored):
                keep.append(i)
            else:
                s.close(s.finish)
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        self.owners = [self.owners[i] for i in keep]
        if not keep:
            self.cache = self.attention = None
            return
        assert self.attention is not None
        index = torch.tensor(keep, dtype=torch.long, device=self.model.device)
        self.cache.batch_select_indices(index)
        self.attention = self.attention.index_select(0, index)
        used = torch.nonzero(self.attention.any(dim=0))
        start = int(used[0]) if used.numel() else self.attention.shape[1]
        if start > 0 and per_token_layers(self.cache):
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, start:, :]
                layer.values = layer.values[:, :, start:, :]
            self.attention = self.attention[:, start:]

    def _publish(self) -> None:
        for job in self.jobs:
            if not job.cancelled and any(s.finish is None for s in job.seqs):
                job._publish(done=False)

    def _finish_jobs(self) -> None:
        now = time.perf_counter()
        running = []
        for job in self.jobs:
            if not job.cancelled and not all(s._closed for s in job.seqs):
                running.append(job)
                continue
            job.timing.finished = now
            if not job.cancelled:
                job._publish(done=True)
        self.jobs = running


def _merge(cache: Any, attention: torch.Tensor, other: Any, other_attention: torch.Tensor) -> torch.Tensor:
    """Append ``other``'s rows to ``cache`` (in place), left-padding the shorter to a common
    length; returns the merged attention mask."""
    width = max(attention.shape[1], other_attention.shape[1])
    for layer, extra in zip(cache.layers, other.layers):
        layer.keys = torch.cat([left_padded(layer.keys, width, 2), left_padded(extra.keys, width, 2)])
        layer.values = torch.cat([left_padded(layer.values, width, 2), left_padded(extra.values, width, 2)])
    return torch.cat([left_padded(attention, width, 1), left_padded(other_attention, width, 1)])
