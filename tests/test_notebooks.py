"""A failing notebook stops the build, naming the notebook and cell, and leaves no stale copy;
every notebook is parameterized and its smoke execution is of its current source."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from mlc.notebooks import NotebookFailed, execute


def _notebook(path, body: str):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("scale = 'shapes'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_success_writes_the_executed_copy(tmp_path):
    nb = _notebook(tmp_path / "good.ipynb", "print(scale)")
    execute(nb, tmp_path / "book", {"scale": "smoke"})
    executed = nbformat.read(tmp_path / "book" / "good.ipynb", 4)
    assert executed.cells[-1].outputs[0]["text"] == "smoke\n"
    # the page shows neither the parameters cell nor the one papermill injected after it
    tagged = [c.metadata.get("tags", []) for c in executed.cells]
    assert "parameters" in tagged[0] and "injected-parameters" in tagged[1]
    assert all("remove-cell" in tags for tags in tagged[:2])
    assert not any("remove-cell" in tags for tags in tagged[2:])


def test_failure_names_notebook_and_cell_and_removes_the_stale_copy(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    (book / "bad.ipynb").write_text("an executed copy from an earlier, good build")
    nb = _notebook(tmp_path / "bad.ipynb", "raise ValueError('no such run')")
    with pytest.raises(NotebookFailed) as err:
        execute(nb, book, {"scale": "smoke"})
    message = str(err.value)
    assert str(nb) in message and "cell 3" in message and "ValueError: no such run" in message
    assert not (book / "bad.ipynb").exists()
    assert (book / "_failed" / "bad.ipynb").exists()
    assert not list(book.glob(".*.ipynb"))


NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_is_parameterized_and_its_executions_are_of_this_source(path):
    """The notebooks are the only source of the book: each has one `parameters` cell naming the
    scale and seeds, and tests/ holds its executions that nbval re-runs (smoke scale in
    tests/notebooks/, the committed shapes results in tests/book/) made from this very source,
    so an edit without refreshing them fails here."""
    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "scale = " in params[0].source and "seeds = " in params[0].source
    for copy, refresh in ((f"notebooks/{path.stem}.smoke.ipynb", "make smoke-notebook"),
                          (f"book/{path.stem}.ipynb", "make book-notebooks")):
        executed = path.parents[1] / "tests" / copy
        assert executed.exists(), f"run `{refresh}`: tests/{copy} is missing"
        sources = [c.source for c in nbformat.read(executed, as_version=4).cells
                   if "injected-parameters" not in c.metadata.get("tags", [])]
        assert sources == [c.source for c in nb.cells], f"tests/{copy} is stale: run `{refresh}`"
