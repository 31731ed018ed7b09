"""The compiled kernel (``_walk.c``, built by ``setup.py``), or None where the package was built
without a C compiler: each of its users then takes a numpy or Python route with the same results."""

from __future__ import annotations

from types import ModuleType

kernel: "ModuleType | None"
try:
    import onrails.constrain._walk as kernel
except ImportError:
    kernel = None
