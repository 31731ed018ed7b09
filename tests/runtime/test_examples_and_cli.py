"""The examples/ scripts run, and the ``onrails generate`` command prints what it promises.

Both run in this process, so they share the model the fixture loaded (load_model caches it).
"""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from onrails.cli import main

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(smollm2_model: Any, script: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(script), run_name="__main__")
    assert capsys.readouterr().out.strip()


def test_examples_exist() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"generate_roots", "json_schema", "pydantic_model", "tool_calls", "streaming", "hf_logits_processor"} <= names


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["generate", *args]) == 0
    return capsys.readouterr().out


def test_cli_generate_grammar_root_and_stream(smollm2_model: Any, capsys: pytest.CaptureFixture[str]) -> None:
    common = ("Describe a cat.", "--max-tokens", "20", "--temperature", "0")
    whole = _cli(capsys, *common, "--grammar-root", "object")
    assert isinstance(json.loads(whole), dict)
    assert _cli(capsys, *common, "--stream") == whole  # default root: object


def test_cli_generate_schema_and_grammar_files(smollm2_model: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": False}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    (tmp_path / "g.lark").write_text('start: "Answer: " ("yes" | "no")\n')
    out = _cli(capsys, "Pick a number.", "--schema", str(tmp_path / "s.json"), "--max-tokens", "12", "--seed", "1")
    jsonschema.validate(json.loads(out), schema)
    out = _cli(capsys, "Is it raining?", "--grammar", str(tmp_path / "g.lark"), "--max-tokens", "8")
    assert re.fullmatch(r"Answer: (yes|no)\n", out)


def test_cli_generate_reports_bad_input(smollm2_model: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "Hi", "--grammar-root", "nope"]) == 2
    assert "grammar_root" in capsys.readouterr().err
