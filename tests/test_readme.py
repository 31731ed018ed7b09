"""The README's Python examples run as written."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _blocks() -> list[str]:
    return _BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8"))


def test_readme_has_python_examples() -> None:
    assert _blocks()


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_python_example_runs(index: int, smollm2_vocab: object) -> None:
    # smollm2_vocab: skip cleanly when the default model's package is missing.
    block = _blocks()[index]
    if "from vllm import" in block:
        pytest.importorskip("vllm")
    exec(compile(block, f"README.md[python block {index}]", "exec"), {})
