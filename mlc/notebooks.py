"""Execute the parameterized notebooks with papermill into the book's folder, and read the runs
their parameters cells ask for (so that `python -m mlc runs` trains a row a reader added).

A notebook that fails stops the whole build with the notebook, the cell and the error named;
its previous executed copy is removed, so the book is never built from a stale notebook. A
notebook that succeeds replaces its executed copy atomically.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path


def parameters(notebook: Path) -> dict:
    """The values a notebook's `parameters` cell sets (the cell run as Python; {} without one)."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    namespace: dict = {}
    if cell is not None:
        exec("".join(cell["source"]), {}, namespace)  # the repository's own notebooks
    return namespace


def notebook_configs(notebooks: list[Path], scale: str, seeds: list[int]) -> list:
    """The runs the notebooks' own `grid` rows ask for at `scale` and `seeds`, each at its
    notebook's `schedule`: a row added to a notebook is trained by `mlc runs` like the book's."""
    from mlc.analysis.grids import grid_configs

    configs = {}
    for notebook in notebooks:
        values = parameters(notebook)
        if "grid" in values:
            for cfg in grid_configs(values["grid"], scale, seeds, values.get("schedule")):
                configs[cfg.name] = cfg
    return list(configs.values())


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
    hide_parameters(tmp)
    os.replace(tmp, target)
    failed.unlink(missing_ok=True)
    return time.perf_counter() - t0


def hide_parameters(notebook: Path) -> None:
    """Tag an executed notebook's parameters cell and the cell papermill injected after it
    `remove-cell`, so that the book's page shows neither (papermill still finds them)."""
    import json

    nb = json.loads(Path(notebook).read_text())
    for cell in nb["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    Path(notebook).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _execute_in_worker(notebook: Path, out_dir: Path, parameters: dict, log: Path) -> float:
    """Execute one notebook in this worker process with everything it and its kernel print
    (cell output, papermill's progress, the kernel's own warnings) going to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)  # inherited by the kernel papermill starts
    logger = logging.getLogger("papermill")
    logger.handlers[:] = [logging.StreamHandler(sys.stderr)]
    logger.setLevel(logging.INFO)
    try:
        return execute(notebook, out_dir, parameters)
    except NotebookFailed as err:
        raise NotebookFailed(f"{err} Its log: {log}") from None


def execute_all(notebooks: list[Path], out_dir: Path, parameters: dict, workers: int = 1) -> None:
    """Execute every notebook, `workers` at a time, each in its own process and kernel, printing
    one line per notebook with its time and where its full log is; the first failure stops the
    rest and is raised.

    A notebook reads finished runs or waits on the lock of a run another one is training, so
    the order they run in does not change what they show."""
    start, total = time.perf_counter(), 0.0
    logs = Path(out_dir) / "_logs"
    print(f"executing {len(notebooks)} notebook(s) into {out_dir} ({parameters['scale']} scale, "
          f"{len(parameters['seeds'])} seed(s)), {workers} at a time", flush=True)
    with ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {pool.submit(_execute_in_worker, nb, out_dir, parameters,
                            logs / f"{Path(nb).stem}.log"): nb for nb in notebooks}
        try:
            for job in as_completed(jobs):
                seconds = job.result()
                total += seconds
                print(f"  {jobs[job]} done in {seconds:.0f} s", flush=True)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    print(f"{len(notebooks)} notebook(s) executed in {time.perf_counter() - start:.0f} s "
          f"({total:.0f} s of notebook time); their logs are in {logs}", flush=True)
