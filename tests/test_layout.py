"""The package's imports point one way: cli → runtime → constrain → grammars → errors.

Each layer may import itself and what stands to its right, never to its left; no module imports
another into a circle; a ``_private`` name or module is used only inside its own module or
package. The README's "Layout" section lists the same folders.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "onrails"
README = PACKAGE.parent / "README.md"
LAYERS = ("cli", "runtime", "constrain", "grammars", "errors")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS[1:]:
        return parts[1]
    return "cli"  # the package façade, the command line and the demo


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every ``onrails`` import, lazy ones
    inside functions included."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "onrails"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "onrails":
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    if target in MODULES:
                        out.append((target, None, node.lineno))
                    else:
                        out.append((node.module, alias.name, node.lineno))
    return out


def _package(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def test_imports_point_down_the_stack() -> None:
    wrong = []
    for module in MODULES:
        mine = LAYERS.index(_layer(module))
        for target, _, line in _imports(module):
            if LAYERS.index(_layer(target)) < mine:
                wrong.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} ({_layer(module)}) imports {target} ({_layer(target)})")
    assert not wrong, "imports pointing up " + " → ".join(LAYERS) + ":\n" + "\n".join(wrong)


def test_no_module_imports_itself_in_a_circle() -> None:
    graph = {m: sorted({t for t, _, _ in _imports(m) if t in MODULES and t != m}) for m in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module) :] + [module]
            pytest.fail("import circle: " + " → ".join(cycle))
        if module in done:
            return
        for target in graph[module]:
            # A package's __init__ re-exporting its own modules is not a circle through them.
            if _package(target) == target and module.startswith(target + "."):
                continue
            visit(target, path + [module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_private_names_stay_inside_their_module_or_package() -> None:
    wrong = []
    for module in MODULES:
        for target, name, line in _imports(module):
            where = f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}"
            if name is not None and name.startswith("_") and target != module:
                wrong.append(f"{where} imports the private {target}.{name}")
            leaf = target.rpartition(".")[2]
            if leaf.startswith("_") and not leaf.startswith("__") and _package(module) != target.rpartition(".")[0]:
                wrong.append(f"{where} imports the private module {target} from outside its package")
    assert not wrong, "\n".join(wrong)


def test_readme_layout_lists_every_folder_in_stack_order() -> None:
    text = README.read_text()
    assert "## Layout" in text
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    for folder in folders:
        assert f"`onrails/{folder}/`" in section, f"README layout misses onrails/{folder}/"
    positions = [section.index(f"`onrails/{layer}/`") for layer in ("runtime", "constrain", "grammars")]
    assert positions == sorted(positions), "README layout lists the folders out of stack order"
    assert "cli → runtime → constrain → grammars → errors" in section


def test_the_public_names_are_exactly_these_and_every_error_derives_from_onrails_error() -> None:
    import onrails

    assert sorted(onrails.__all__) == [
        "AsyncClient", "BUILTIN_ROOTS", "BadRequestError", "CompileBudgetError", "CompiledGrammar",
        "Explanation", "GrammarCompiler", "GrammarError", "Matcher", "MatcherError", "Model",
        "OnRailsError", "QueueFullError", "SamplingParams", "SchemaError", "SchemaGrammar",
        "ServerLimits", "TokenizerError", "Unenforced", "Vocabulary", "WHITESPACE_MODES",
        "allocate_token_bitmask", "apply_token_bitmask_inplace", "builtin_grammar_text",
        "create_app", "generate", "load_model", "pydantic_schema", "schema_to_grammar",
        "tools_to_grammar",
    ]  # fmt: skip
    errors = [getattr(onrails, n) for n in onrails.__all__ if n.endswith("Error")]
    assert all(issubclass(e, onrails.OnRailsError) for e in errors)
