"""The front door: README.md is short, its results are those the committed records give (written
by `python -m mlc readme`, never typed), and neither it nor the book's prose carries history."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mlc.analysis import summary

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HISTORY = re.compile(r"\b20\d\d-\d\d-\d\d\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")


def test_the_readme_is_one_screen_of_a_document():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the rest belongs in the book"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[:2] == ["## The answer", "## Two commands"]
    assert (ROOT / "book" / "images" / "scorecard.png").exists()


def test_the_readme_results_are_the_committed_results():
    assert summary.current_block(README) == summary.readme_block(), \
        "README.md's results differ from what the committed results give: run python -m mlc readme"


def test_no_dates_or_commit_hashes_in_the_readme_or_the_books_prose():
    text = summary.replace_block(README.read_text(), "")  # the block carries provenance
    assert not HISTORY.findall(text), HISTORY.findall(text)
    for page in [*sorted((ROOT / "notebooks").glob("*.ipynb")), ROOT / "book" / "guide.md"]:
        if page.suffix == ".md":
            prose = page.read_text()
        else:
            cells = json.loads(page.read_text())["cells"]
            prose = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        assert not HISTORY.findall(prose), (page.name, HISTORY.findall(prose))


def test_a_results_block_is_replaced_whole_and_a_missing_one_is_named():
    text = f"intro\n{summary.BEGIN}\nold\n{summary.END}\nafter\n"
    assert summary.replace_block(text, "NEW") == "intro\nNEW\nafter\n"
    try:
        summary.replace_block("no markers", "NEW")
    except ValueError as err:
        assert "no results block" in str(err)
    else:
        raise AssertionError("a README without markers was accepted")


# A signed number (a gain, a difference, a correlation) and the interval that must follow it.
SIGNED = re.compile(r"(?<![\w.\[/])(?:r = )?[+−-]\d+(?:\.\d+)?%?")
WITH_INTERVAL = re.compile(r"(?:r = )?[+−-]\d+(?:\.\d+)?%? \[[^\]]*\]")


def bare_numbers(prose: str) -> list[str]:
    """Signed numbers in `prose` without their interval; the paper's own figures (single values,
    said as 'the paper's') and table rows (their interval has a column of its own) are exempt."""
    lines = [line for line in prose.splitlines() if not line.lstrip().startswith("|")]
    text = WITH_INTERVAL.sub("", "\n".join(lines))
    return [m.group() for m in SIGNED.finditer(text)
            if "paper's" not in text[max(0, m.start() - 16):m.start()]]


def test_no_gain_or_correlation_without_its_interval_in_the_readme_or_the_intro():
    """Every gain and correlation said in a sentence of the README or the first page carries its
    95% interval."""
    assert bare_numbers("ML +0.7 [+0.6, +0.8], r = +0.90 over 5") == ["r = +0.90"]
    assert bare_numbers("the paper's +52%; seeds 0-6\n| +6% | +1% |") == []
    assert not bare_numbers(README.read_text())
    intro = json.loads((ROOT / "tests" / "book" / "intro.ipynb").read_text())["cells"]
    shown = ["".join(c["source"]) for c in intro if c["cell_type"] == "markdown"]
    shown += ["".join(o.get("data", {}).get("text/markdown", "")) for c in intro
              if c["cell_type"] == "code" for o in c.get("outputs", [])]
    for text in shown:
        assert not bare_numbers(text), (bare_numbers(text), text[:300])
