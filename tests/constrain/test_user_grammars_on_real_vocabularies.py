"""User grammars on the three real vocabularies: first masks within memory, walks that parse,
masks equal to the Earley reference.

The grammars (``tests/grammars/stress.json``) are those whose masks once blew up: an ignored
blank run (the regression of 19db401, where a run of blanks split into ignored terminals in every
way), letters next to letters (``A*`` with ``A: /[a-z]+/``), s-expressions, Lark's ``common``
terminals with ``%ignore``. Each runs in a child process whose address space is capped, so a
blow-up fails its test instead of passing unseen or killing the run (``grammar_limits``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from onrails import GrammarCompiler, Matcher

from ..reference import ReferenceGrammar
from .grammar_limits import stress_grammars

REPO = Path(__file__).resolve().parents[2]
GRAMMARS = stress_grammars()
# Tokenizer name for load_tokenizer, fixture that skips when its package is missing, walks.
VOCABS = {
    "llama": ("llama-3.2", "llama_tokenizer", 1000),
    "smollm2": ("smollm2-135m-instruct", "smollm2_tokenizer", 200),
    "gemma": ("gemma-3", "gemma_tokenizer", 200),
}
# Growth of the child's peak resident memory over compiling and the first masks (the issue's
# goal: 200 MB on Llama-3.2); the address-space cap is what turns a blow-up into an error.
PEAK_MB = 200
_results: dict[str, dict[str, dict[str, Any]]] = {}


def _limits(request: pytest.FixtureRequest, vocab: str) -> dict[str, dict[str, Any]]:
    name, fixture, walks = VOCABS[vocab]
    request.getfixturevalue(fixture)  # skips when the tokenizer's package is missing
    if vocab not in _results:
        run = subprocess.run(
            [sys.executable, "-m", "tests.constrain.grammar_limits", name, "--walks", str(walks)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        _results[vocab] = {r["name"]: r for r in map(json.loads, run.stdout.splitlines())}
    return _results[vocab]


@pytest.mark.parametrize("grammar", list(GRAMMARS))
@pytest.mark.parametrize("vocab", list(VOCABS))
def test_first_masks_and_walks_stay_within_memory(request: pytest.FixtureRequest, vocab: str, grammar: str) -> None:
    result = _limits(request, vocab)[grammar]
    assert result["ok"], f"{grammar} on {vocab}: {result['error']}\n{result.get('trace', '')}"
    assert result["peak_mb"] <= PEAK_MB, f"{grammar} on {vocab}: first masks grew the process by {result['peak_mb']:.0f} MB"
    assert result["walks"] == VOCABS[vocab][2]


@pytest.mark.parametrize("grammar", list(GRAMMARS))
def test_masks_on_llama_equal_the_reference(llama_vocab: Any, grammar: str) -> None:
    """Every token of the 128k vocabulary against the Earley reference, where adjacent terminals
    and ignored runs make many ways through a token."""
    entry = GRAMMARS[grammar]
    compiled = GrammarCompiler(llama_vocab).compile_lark(entry["text"], entry["start"])
    reference = ReferenceGrammar(entry["text"], entry["start"])
    prefix = entry["prefixes"][1].encode()
    matcher = Matcher(compiled)
    assert matcher.advance_bytes(prefix)
    allowed = set(matcher.allowed_token_ids().tolist())
    checker = reference.prefix_checker(prefix)
    wrong = [
        (data, token in allowed)
        for token, data in enumerate(llama_vocab.token_bytes)
        if data is not None and (token in allowed) != checker.viable(data)
    ]
    assert not wrong, f"after {prefix!r}: {len(wrong)} tokens disagree, e.g. {wrong[:5]}"
