"""Runs fanned out over a Slurm cluster with submitit, as DETR's and torchvision's references do.

Every missing run becomes one task of a job array (`executor.map_array`, at most
`array_parallelism` at once): a `shapes` run one single-threaded CPU task, a `coco` run a
multi-GPU job with one task per GPU, submitit's JobEnvironment feeding torch.distributed. A job
that times out or is preempted is sent a signal before it is killed; its `checkpoint()` requeues
it, and the requeued job resumes the run from its last epoch checkpoint (mlc.runs). The run's lock
keeps two jobs off one run, and a run whose record exists is never submitted. Submitting returns
at once with the job ids and where the logs are; `status` reads each run's state back from its
record, its job's files and the scheduler (Slurm's accounting, `sacct`; on the local executor, the
job's process), so it works after the submitting process has gone, and a job cancelled or killed
before it wrote a result reads failed and is submitted again.

submitit's local executor runs the same code path on one machine (the tests use it); plain local
runs keep `mlc.launch`'s pool of workers, which needs no job folder and no pickling.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from mlc import paths
from mlc.config import ConfigError, RunConfig, config_from_json
from mlc.runs import load_record, scored_now
from mlc.util import io


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how the jobs run: the Slurm cluster (or submitit's "local" executor) and its
    options; `folder` holds the jobs' logs and pickles, and must be on a filesystem the nodes
    share, as must MLC_RUNS, MLC_RESULTS and MLC_DATA."""

    cluster: str = "slurm"
    folder: str | None = None  # default: <runs>/_jobs
    partition: str | None = None
    account: str | None = None
    timeout_min: float = 24 * 60
    signal_delay_s: int = 120
    gpus_per_run: int = 8  # coco runs: one task per GPU
    cpus_per_task: int = 8
    array_parallelism: int = 64
    max_num_timeout: int = 20  # requeues after a timeout or preemption, per job

    def jobs_folder(self) -> Path:
        return Path(self.folder) if self.folder else paths.runs_root() / "_jobs"


class RunJob:
    """The callable of every job: trains the run of `config` (or reads it, if another job
    finished it) through `mlc.runs.get_or_train`, one CPU thread or one process per GPU; on a
    timeout or preemption submitit calls `checkpoint`, which requeues the same run to resume from
    its last epoch."""

    def __call__(self, config: dict) -> str:
        import submitit

        from mlc.util import cpu

        defer_during_writes(submitit.JobEnvironment._usr_sig())
        cpu.pin()  # before torch runs a kernel; the environment of sbatch is the submitter's
        import torch

        from mlc.runs import get_or_train

        cfg = config_from_json(config)
        uses_gpus = cfg.scale_spec.backbone == "resnet50" and torch.cuda.is_available()
        if uses_gpus:
            _join_from_job_environment()
        else:
            torch.set_num_threads(1)  # as the committed CPU runs were trained
        record = get_or_train(cfg, device="cuda" if uses_gpus else "cpu", progress=False)
        return "read" if record is not None and not record.get("trained_now") else "trained"

    def checkpoint(self, config: dict):
        """Requeue this run; it resumes from the checkpoint its last whole epoch wrote."""
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(), config)


def defer_during_writes(signum: int, retry_s: float = 0.2) -> None:
    """Hold the handler of `signum` (submitit's timeout and preemption signal) back while a file
    is being written (`mlc.util.io.atomic_write`: a checkpoint, a record) and send the signal again
    after `retry_s`. submitit's handler requeues the job by exiting from wherever the signal lands,
    and an exit inside torch.save's write aborts the process instead (the local executor then
    never requeues it)."""
    handler = signal.getsignal(signum)
    if not callable(handler):
        return

    def deferred(sig: int, frame) -> None:
        here = frame
        while here is not None:
            if here.f_code is io.atomic_write.__code__:
                threading.Timer(retry_s, os.kill, (os.getpid(), sig)).start()
                return
            here = here.f_back
        handler(sig, frame)

    signal.signal(signum, deferred)


def _join_from_job_environment() -> None:
    """torch.distributed's variables from submitit's view of the Slurm job (as DETR does)."""
    import submitit

    job = submitit.JobEnvironment()
    os.environ.update(RANK=str(job.global_rank), LOCAL_RANK=str(job.local_rank),
                      WORLD_SIZE=str(job.num_tasks), MASTER_ADDR=job.hostnames[0],
                      MASTER_PORT=str(29500 + int(str(job.job_id).split("_")[0]) % 10000))


def executor(options: ClusterOptions, gpus: int):
    """A submitit executor for runs of `gpus` GPUs each (0: a single-threaded CPU task)."""
    import submitit

    folder = options.jobs_folder() / "%j"
    if options.cluster == "local":
        ex = submitit.LocalExecutor(folder, max_num_timeout=options.max_num_timeout)
        ex.update_parameters(timeout_min=options.timeout_min, signal_delay_s=options.signal_delay_s,
                             tasks_per_node=max(1, gpus), gpus_per_node=gpus)
        return ex
    ex = submitit.AutoExecutor(folder, cluster=options.cluster,
                               slurm_max_num_timeout=options.max_num_timeout)
    extra = {"slurm_partition": options.partition, "slurm_account": options.account}
    ex.update_parameters(
        timeout_min=int(options.timeout_min), slurm_signal_delay_s=options.signal_delay_s,
        slurm_array_parallelism=options.array_parallelism, nodes=max(1, -(-gpus // 8)),
        tasks_per_node=min(8, max(1, gpus)), gpus_per_node=min(8, gpus),
        cpus_per_task=options.cpus_per_task if gpus else 1, name="mlc",
        **{k: v for k, v in extra.items() if v is not None})
    return ex


def missing(configs: list[RunConfig]) -> list[RunConfig]:
    """The configs without a record scored by this evaluation code, each once."""
    return list({c.name: c for c in configs
                 if (r := load_record(c)) is None or not scored_now(r, c)}.values())


def submit(configs: list[RunConfig], options: ClusterOptions) -> list[dict]:
    """Submit every missing run (none that is queued or running already) as one job array per
    number of GPUs; returns {name, job_id, stdout, stderr} per job, also written next to the
    jobs so that `status` finds them later."""
    check_shared(options)
    states = {row["name"]: row["state"] for row in status(configs, options)}
    todo = [c for c in missing(configs) if states.get(c.name) not in ("queued or running",)]
    submitted = []
    by_gpus: dict[int, list[RunConfig]] = {}
    for cfg in todo:
        by_gpus.setdefault(cfg.scale_spec.backbone == "resnet50" and options.gpus_per_run or 0,
                           []).append(cfg)
    for gpus, group in by_gpus.items():
        jobs = executor(options, gpus).map_array(RunJob(), [c.to_json() for c in group])
        for cfg, job in zip(group, jobs):
            entry = {"name": cfg.name, "scale": cfg.scale, "job_id": str(job.job_id),
                     "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
                     "result": str(job.paths.result_pickle)}
            _registry(options, cfg).write_text(json.dumps(entry))
            submitted.append(entry)
    return submitted


def _registry(options: ClusterOptions, cfg: RunConfig) -> Path:
    path = options.jobs_folder() / "runs" / cfg.scale / f"{cfg.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# Slurm job states (sacct) of a job that may still write its result; any other state ended it.
LIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED",
               "RESIZING", "SIGNALING", "STAGE_OUT", "REQUEUE_HOLD", "REQUEUE_FED", "UNKNOWN"}


def scheduler_states(job_ids: list[str], options: ClusterOptions) -> dict[str, str]:
    """{job id: state} as the scheduler sees the jobs now: Slurm's accounting in one `sacct`
    call (none where sacct is not installed), or, on the local executor, RUNNING while the job's
    process lives and FINISHED after."""
    if not job_ids:
        return {}
    if options.cluster == "local":
        lives = {True: "RUNNING", False: "FINISHED", None: "UNKNOWN"}
        return {job_id: lives[_process_lives(job_id.split("_")[0])] for job_id in job_ids}
    if shutil.which("sacct") is None:
        return {}
    from submitit.slurm.slurm import SlurmInfoWatcher

    command = ["sacct", "-o", "JobID,State", "--parsable2", "-j",
               ",".join(sorted({j.split("_")[0] for j in job_ids}))]
    out = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    info = SlurmInfoWatcher().read_info(out)
    return {j: info[j]["State"] for j in job_ids if j in info}


def _process_lives(pid: str) -> bool | None:
    """Whether process `pid` runs; a zombie (ended, not yet reaped by the process that started
    it, as a job is while its submitter lives) does not. None where it cannot be told."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return None
    try:  # Linux: the state field follows the parenthesised command name
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def status(configs: list[RunConfig], options: ClusterOptions,
           states: dict[str, str] | None = None) -> list[dict]:
    """Per run: done (its record exists), queued or running (submitted, no result yet, and the
    scheduler has not ended its job), failed (its job ended in an error, or ended without a
    result: cancelled, killed, out of memory, the node lost; the last lines of its log) or
    missing. `states` ({job id: scheduler state}) replaces asking the scheduler."""
    rows, waiting = [], []
    for cfg in {c.name: c for c in configs}.values():
        record = load_record(cfg)
        entry_path = options.jobs_folder() / "runs" / cfg.scale / f"{cfg.name}.json"
        row = {"name": cfg.name, "seed": cfg.seed, "state": "missing", "job_id": None, "log": ""}
        if record is not None and scored_now(record, cfg):
            row["state"] = "done"
        elif entry_path.exists():
            entry = json.loads(entry_path.read_text())
            row["job_id"] = entry["job_id"]
            result = Path(entry["result"])
            if not result.exists():
                row["state"] = "queued or running"
                waiting.append((row, entry))
            else:
                outcome, value = pickle.loads(result.read_bytes())[:2]
                row["state"] = "failed" if outcome == "error" else "done"
                if outcome == "error":
                    row["log"] = _tail(Path(entry["stderr"])) or str(value).strip()[-600:]
        rows.append(row)
    if states is None:
        states = scheduler_states([row["job_id"] for row, _ in waiting], options)
    for row, entry in waiting:
        state = states.get(row["job_id"], "UNKNOWN")
        if state.split()[0] not in LIVE_STATES and not Path(entry["result"]).exists():
            row["state"] = "failed"
            row["log"] = (f"the job ended {state} without a result\n" + _tail(Path(entry["stderr"]))).strip()
    return rows


def _tail(path: Path, lines: int = 5) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def check_shared(options: ClusterOptions) -> None:
    """The folders a Slurm job writes must be writable here and not local to this machine."""
    problems = []
    for name, folder in (("MLC_RUNS", paths.runs_root()), ("MLC_RESULTS", paths.results_root()),
                         ("the jobs folder", options.jobs_folder())):
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write-check-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            problems.append(f"{name} ({folder}) is not writable: {err.strerror}")
            continue
        if options.cluster == "slurm" and str(folder.resolve()).startswith(("/tmp", "/var/tmp")):
            problems.append(f"{name} ({folder}) is on this machine's /tmp, which the nodes do not "
                            "share: point it at shared storage")
    if problems:
        raise ConfigError("cannot submit: " + "; ".join(problems))


def describe(submitted: list[dict], options: ClusterOptions) -> str:
    """What a user reads after submitting: job ids, logs, how to follow them."""
    if not submitted:
        return "nothing to submit: every run is done, queued or running"
    ids = sorted({s["job_id"].split("_")[0] for s in submitted})
    return (f"submitted {len(submitted)} run(s) as job(s) {', '.join(ids)} to {options.cluster}"
            f"{' partition ' + options.partition if options.partition else ''}; logs in "
            f"{options.jobs_folder()}/<job id>/ (e.g. {submitted[0]['stdout']}). Follow them with "
            "`python -m mlc runs --status`; `make book` builds from what has finished.")


def status_report(rows: list[dict]) -> str:
    """A count per state and one line per failed run with the end of its log."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    lines = [f"{len(rows)} runs: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))]
    for row in rows:
        if row["state"] == "failed":
            lines.append(f"failed: {row['name']} (seed {row['seed']}, job {row['job_id']}):\n  "
                         + row["log"].replace("\n", "\n  "))
    return "\n".join(lines)


def require_submitit() -> None:
    """submitit is an optional extra: say how to install it."""
    try:
        import submitit  # noqa: F401
    except ImportError as err:
        raise ConfigError("the slurm launcher needs submitit: pip install -e '.[cluster]'") from err
