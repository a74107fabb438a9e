"""Execute the parameterized notebooks with papermill into the book's folder.

A notebook that fails stops the whole build with the notebook, the cell and the error named;
its previous executed copy is removed, so the book is never built from a stale notebook. A
notebook that succeeds replaces its executed copy atomically.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


def execute(notebook: Path, out_dir: Path, parameters: dict) -> float:
    """Execute one notebook into out_dir/<name>; returns the seconds it took."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook, out_dir = Path(notebook), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / notebook.name
    failed = out_dir / "_failed" / notebook.name
    tmp = out_dir / f".{notebook.stem}.running.ipynb"
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(str(notebook), str(tmp), parameters=parameters,
                                   cwd=str(notebook.parent), log_output=True,
                                   progress_bar=False)
    except PapermillExecutionError as err:
        target.unlink(missing_ok=True)
        failed.parent.mkdir(exist_ok=True)
        os.replace(tmp, failed)
        raise NotebookFailed(
            f"{notebook}: cell {err.cell_index} (In [{err.exec_count}]) raised "
            f"{err.ename}: {err.evalue}. The executed copy with the traceback is {failed}; "
            "the book was not built.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    failed.unlink(missing_ok=True)
    return time.perf_counter() - t0


def execute_all(notebooks: list[Path], out_dir: Path, parameters: dict) -> None:
    """Execute every notebook in order, printing each one's time; stop at the first failure.

    The cells' output (each run trained or read) streams to stderr as it comes."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    log = logging.getLogger("papermill")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    total = 0.0
    for nb in notebooks:
        print(f"executing {nb} -> {Path(out_dir) / Path(nb).name} with {parameters}", flush=True)
        seconds = execute(nb, out_dir, parameters)
        total += seconds
        print(f"  {nb} done in {seconds:.0f} s", flush=True)
    print(f"{len(notebooks)} notebook(s) executed in {total:.0f} s", flush=True)
