"""The paper's tables in data/paper/ are well formed and every value is the paper's, in the
paper's order: checked against the verbatim excerpt of the paper's tables kept beside them,
and the excerpt against the paper's full text where that is at hand."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest

from mlc.paths import REPO_ROOT

PAPER = Path(os.environ.get("MLC_PAPER", REPO_ROOT.parent / "shared" / "paper" / "mlc-paper.txt"))
TABLES = sorted((REPO_ROOT / "data" / "paper").glob("table*.csv"))
EXCERPT = REPO_ROOT / "data" / "paper" / "tables-excerpt.txt"
NUMBER = re.compile(r"^\d+\.\d+$")


def _values(path: Path) -> list[str]:
    """The numeric cells of a table, row by row, as written."""
    with path.open() as f:
        return [cell for row in csv.reader(f) for cell in row[1:] if NUMBER.match(cell)]


def test_every_table_is_there_and_well_formed():
    assert [p.stem for p in TABLES] == [f"table{i}" for i in range(1, 6)]
    for path in TABLES:
        with path.open() as f:
            rows = list(csv.DictReader(f))
        assert rows and all(len(r) == len(rows[0]) for r in rows), path
        assert _values(path), path


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.stem)
def test_values_follow_the_paper_in_order(path):
    text = EXCERPT.read_text()
    start = text.index(f"Table {path.stem[-1]}.")
    numbers = re.findall(r"\d+\.\d+", text[start:start + 2500])
    it = iter(numbers)
    missing = [v for v in _values(path) if v not in it]  # an in-order subsequence of the text
    assert not missing, f"{path.name}: {missing} not found in order after 'Table {path.stem[-1]}.'"


@pytest.mark.skipif(not PAPER.exists(), reason=f"the paper's text is not at {PAPER} (set MLC_PAPER)")
def test_the_excerpt_is_the_papers_text():
    paper = PAPER.read_text()
    for block in EXCERPT.read_text().split("----\n"):
        assert block.strip() in paper, block[:80]
