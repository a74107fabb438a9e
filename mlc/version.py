"""The code versions of a result: fingerprints of the source that can change what a run computes.

They hash the syntax tree of those modules with docstrings dropped (so comments, docstrings and
formatting do not count, but any change to what the code does does). The training code's
version is part of every run's identity: a run trained by other code is retrained, never
silently reused. The evaluation code's version is part of its record's evaluation identity
(mlc.runs): a record scored by other evaluation code is scored again from the run's checkpoint.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# Modules that only report, schedule, check or time runs; they cannot change a result. (The CPU
# kernel level that util/cpu.py pins is a fact of the machine, like the thread count: it is in
# each record's provenance, not in the run's identity.) analysis/ reads finished records.
NOT_RESULT_CODE = {"__main__.py", "bench.py", "cluster.py", "figures.py", "launch.py", "notebooks.py",
                   "overrides.py", "paths.py", "provenance.py", "runs.py", "version.py", "util/cpu.py",
                   "util/lock.py"}
NOT_RESULT_FOLDERS = {"analysis"}
# Modules that only score a trained model: they change a record's metrics, never its weights.
EVALUATION_CODE = {"divergence.py", "evaluation.py"}


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


def training_modules(package: Path = PACKAGE) -> list[Path]:
    """The result modules that take part in training: all but the evaluation code."""
    return [p for p in result_modules(package)
            if p.relative_to(package).as_posix() not in EVALUATION_CODE]


def evaluation_modules(package: Path = PACKAGE) -> list[Path]:
    """The result modules that only score a trained model."""
    return [p for p in result_modules(package) if p.relative_to(package).as_posix() in EVALUATION_CODE]


def fingerprint(package: Path, modules=training_modules) -> str:
    """Eight hex digits over the docstring-free syntax trees of `modules(package)`."""
    digest = hashlib.sha256()
    for path in modules(package):
        tree = _without_docstrings(ast.parse(path.read_text(), filename=str(path)))
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(ast.dump(tree).encode())
    return digest.hexdigest()[:8]


@functools.cache
def code_version() -> str:
    """The fingerprint of this installed package's training code."""
    return fingerprint(PACKAGE)


@functools.cache
def evaluation_version() -> str:
    """The fingerprint of this installed package's evaluation code."""
    return fingerprint(PACKAGE, evaluation_modules)
