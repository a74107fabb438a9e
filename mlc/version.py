"""The code version of a result: a fingerprint of the source that can change what a run computes.

It hashes the syntax tree of those modules with docstrings dropped (so comments, docstrings and
formatting do not count, but any change to what the code does does), and is part of every
run's identity: a result made by other code is recomputed, never silently reused.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# Modules that only report, schedule, check or time runs; they cannot change a result. (The CPU
# kernel level that util/cpu.py pins is a fact of the machine, like the thread count: it is in
# each record's provenance, not in the run's identity.) analysis/ reads finished records;
# heldout.py scores finished checkpoints on more images.
NOT_RESULT_CODE = {"__main__.py", "bench.py", "figures.py", "heldout.py", "launch.py", "notebooks.py",
                   "overrides.py", "paths.py", "runs.py", "version.py", "util/cpu.py", "util/lock.py"}
NOT_RESULT_FOLDERS = {"analysis"}


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def result_modules(package: Path = PACKAGE) -> list[Path]:
    """The package's modules that can change a run's result, sorted."""
    return sorted(p for p in package.rglob("*.py")
                  if p.relative_to(package).as_posix() not in NOT_RESULT_CODE
                  and p.relative_to(package).parts[0] not in NOT_RESULT_FOLDERS)


def fingerprint(package: Path) -> str:
    """Eight hex digits over the docstring-free syntax trees of `result_modules(package)`."""
    digest = hashlib.sha256()
    for path in result_modules(package):
        tree = _without_docstrings(ast.parse(path.read_text(), filename=str(path)))
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(ast.dump(tree).encode())
    return digest.hexdigest()[:8]


@functools.cache
def code_version() -> str:
    """The fingerprint of this installed package."""
    return fingerprint(PACKAGE)
