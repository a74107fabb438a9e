"""A failing notebook stops the build, naming the notebook and cell, and leaves no stale copy."""

from __future__ import annotations

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
