"""Holding Python's cycle collector off while a grammar compiles.

A compile makes hundreds of thousands of short-lived containers (a schema's rules, their specs,
FIRST and FOLLOW sets). Those alive at a young collection are promoted, and each time promotions
reach a quarter of the process's long-lived objects a full collection scans all of them: in a
process that loaded transformers and torch, 120-150 ms each, twice in the compile of a schema of
13,516 rules (240 of its 770 ms). Held off, the temporaries are freed by reference counting
before any collection sees them; only what the compiled grammar keeps is promoted afterwards.
Compiles nest and run in several threads: the collector comes back when the last one ends, and
only if it was on when the first began.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")

_lock = threading.Lock()
_holders = 0
_was_enabled = False


def collector_held(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """``function`` with the cycle collector held off while it runs (see the module doc)."""

    @functools.wraps(function)
    def held(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        global _holders, _was_enabled
        with _lock:
            if not _holders:
                _was_enabled = gc.isenabled()
                gc.disable()
            _holders += 1
        try:
            return function(*args, **kwargs)
        finally:
            with _lock:
                _holders -= 1
                if not _holders and _was_enabled:
                    gc.enable()

    return held
