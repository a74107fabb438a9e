"""Execute the parameterized notebooks with papermill into the book's folder.

A notebook that fails stops the whole build with the notebook, the cell and the error named;
its previous executed copy is removed, so the book is never built from a stale notebook. A
notebook that succeeds replaces its executed copy atomically.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
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


def _log_cells(prefix: str) -> None:
    """Stream the cells' output (each run trained or read) to stderr, each line prefixed."""
    log = logging.getLogger("papermill")
    for old in list(log.handlers):
        log.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"  {prefix}%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def _execute_in_worker(notebook: Path, out_dir: Path, parameters: dict) -> float:
    _log_cells(f"[{Path(notebook).stem}] ")
    return execute(notebook, out_dir, parameters)


def execute_all(notebooks: list[Path], out_dir: Path, parameters: dict, workers: int = 1) -> None:
    """Execute every notebook, `workers` at a time (each in its own process and kernel), printing
    each one's time and the wall time; the first failure stops the rest and is raised.

    A notebook reads finished runs or waits on the lock of a run another one is training, so
    the order they run in does not change what they show."""
    start, total = time.perf_counter(), 0.0
    if workers <= 1:
        _log_cells("")
        for nb in notebooks:
            print(f"executing {nb} -> {Path(out_dir) / Path(nb).name} with {parameters}", flush=True)
            seconds = execute(nb, out_dir, parameters)
            total += seconds
            print(f"  {nb} done in {seconds:.0f} s", flush=True)
    else:
        print(f"executing {len(notebooks)} notebooks -> {out_dir} with {parameters}, {workers} at a "
              "time", flush=True)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = {pool.submit(_execute_in_worker, nb, out_dir, parameters): nb for nb in notebooks}
            try:
                for job in as_completed(jobs):
                    seconds = job.result()
                    total += seconds
                    print(f"  {jobs[job]} done in {seconds:.0f} s", flush=True)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    print(f"{len(notebooks)} notebook(s) executed in {time.perf_counter() - start:.0f} s "
          f"({total:.0f} s of notebook time)", flush=True)
