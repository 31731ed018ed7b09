"""The parser core compiled by mypyc (``setup.py``) gives the masks its Python source gives.

Where the package was built with mypyc it imports the compiled ``_automaton`` and ``_lr``; a
child process made to import their Python source instead walks the same documents and seeded
random walks, and every mask along them must be equal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

_WALKS = r'''
import hashlib, importlib.util, json, random, sys
from pathlib import Path

PACKAGE = Path(sys.argv[1])
# The compiled core: every module built beside its Python source.
CORE = {f"onrails.constrain.{p.name.split('.')[0]}" for p in PACKAGE.glob("*.so") if (PACKAGE / (p.name.split(".")[0] + ".py")).exists()}


class PythonCore:
    """Imports the parser core from its .py files, not the compiled modules beside them."""

    def find_spec(self, name, path, target=None):
        if name in CORE:
            return importlib.util.spec_from_file_location(name, PACKAGE / (name.rsplit(".", 1)[1] + ".py"))
        return None


if sys.argv[2] == "python":
    sys.meta_path.insert(0, PythonCore())
import numpy as np
from onrails import GrammarCompiler, Matcher, Vocabulary
from onrails.runtime.tokenizers import load_tokenizer

tokenizer = load_tokenizer("smollm2-135m-instruct")
compiler = GrammarCompiler(Vocabulary.from_tokenizer(tokenizer))
cases = json.loads(sys.argv[3])
out = {"files": sorted(sys.modules[name].__file__ for name in CORE), "masks": []}
for kind, grammar, text in cases:
    compiled = compiler.compile_json_schema(grammar) if kind == "schema" else compiler.compile_lark(grammar)
    tokens = tokenizer.encode(text, add_special_tokens=False)
    rng = random.Random(len(out["masks"]))
    for walk in ("document", "random"):
        matcher = Matcher(compiled)
        for step in range(60):
            allowed = matcher.allowed_token_ids()
            out["masks"].append(hashlib.sha256(np.asarray(allowed, dtype=np.int64).tobytes()).hexdigest())
            token = (tokens[step] if step < len(tokens) else None) if walk == "document" else rng.choice(allowed)
            if token is None or not matcher.advance(token):
                break
print(json.dumps(out))
'''

_CASES = [
    (
        "schema",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "integer"}},
                "kind": {"enum": ["a", "b", 3]},
                "child": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"x": {"type": "number"}}}]},
            },
            "required": ["name", "kind"],
            "additionalProperties": False,
        },
        '{"name": "a b", "tags": [1, 23], "kind": 3, "child": {"x": -1.5}}',
    ),
    ("lark", "start: item+\n?item: WORD | NUMBER\n%import common.WORD\n%import common.NUMBER\n%import common.WS\n%ignore WS\n", "hello 12 world3 x"),
    ("lark", 'start: expr\n?expr: atom | list\nlist: "(" expr* ")"\natom: SYMBOL | NUMBER\nSYMBOL: /[a-z+*\\/-]+/\nNUMBER: /[0-9]+/\n%ignore " "\n', "(add (mul 2 x) 10)"),
]


def _walks(core: str) -> Any:
    import onrails.constrain as package

    done = subprocess.run(
        [sys.executable, "-c", _WALKS, package.__path__[0], core, json.dumps(_CASES)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_compiled_parser_core_gives_the_masks_of_its_python_source() -> None:
    import onrails.constrain._automaton as automaton

    if automaton.__file__ is None or automaton.__file__.endswith(".py"):
        pytest.skip("the parser core was not compiled (no mypyc or no C compiler at build time)")
    compiled, python = _walks("compiled"), _walks("python")
    assert all(not path.endswith(".py") for path in compiled["files"]), compiled["files"]
    assert all(path.endswith(".py") for path in python["files"]), python["files"]
    assert len(compiled["masks"]) > 200
    assert compiled["masks"] == python["masks"]
    assert len(set(compiled["masks"])) > 20  # the walks met many different masks
