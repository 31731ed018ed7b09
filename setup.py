"""The compiled parts of the engine; everything else is in pyproject.toml.

Both are optional: without a C compiler (or without mypyc at build time, or where its type check
fails) the package installs and runs the same code as plain Python, slower.

* ``onrails/constrain/_walk.c``: the mask walk over the vocabulary trie.
* The parser core (``_automaton``, ``_lr``) compiled by mypyc from the same typed Python: a state
  met for the first time costs hundreds of Python calls (stacks, reductions, guards, LR states);
  compiled, first visits of object keys cost 14-19% less (docs/benchmarks.md).
"""

import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PARSER_CORE = ["onrails/constrain/_automaton.py", "onrails/constrain/_lr.py"]


def parser_core() -> list[Extension]:
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    # The build environment has none of the optional packages (pydantic, torch), so the rest of the
    # package is read for types only, its errors silenced; a cache of its own keeps a developer's
    # .mypy_cache (made with those packages installed) from deciding what a clean build sees.
    options = ["--follow-imports=silent", "--cache-dir=build/mypyc-cache"]
    try:
        extensions = mypycify([*options, *PARSER_CORE], group_name="onrails.constrain._parser_core")
    except SystemExit as exc:  # mypyc exits on a type error; an install must not fail on a speed-up
        print(f"warning: the parser core stays Python: mypyc exited with {exc.code} (errors above)", file=sys.stderr)
        return []
    for extension in extensions:
        extension.optional = True
    return extensions


class BuildAllOrNone(build_ext):
    """Builds the extensions; where any module of the parser core failed, drops the ones built, so
    that the package falls back to its Python rather than importing half a compiled core."""

    def run(self) -> None:
        super().run()
        core = [e for e in self.extensions if e.name != "onrails.constrain._walk"]
        paths = [Path(self.get_ext_fullpath(e.name)) for e in core]
        if not all(path.exists() for path in paths):
            for path in paths:
                path.unlink(missing_ok=True)


setup(
    ext_modules=[Extension("onrails.constrain._walk", ["onrails/constrain/_walk.c"], optional=True), *parser_core()],
    cmdclass={"build_ext": BuildAllOrNone},
)
