"""Command line: `python -m mlc data|pretrain|train|eval|bench|runs|notebooks|readme`; `python -m mlc
<command> --help`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlc import paths
from mlc.util import cpu

# Before anything imports torch: its CPU kernels at the level the committed results were made at
# (inherited by the workers, torchrun jobs and notebook kernels this process starts).
cpu.pin()

EPILOG = """examples:
  python -m mlc data shapes                       # write data/shapes (COCO JSON + PNG)
  python -m mlc pretrain shapes                   # the tiny backbone's pretrained weights
  python -m mlc train --detector fcos_minus       # train FCOS- at shapes scale, seed 0
  python -m mlc train --detector rpn --scale smoke --seed 1
  torchrun --nproc_per_node 8 -m mlc train --detector fcos --scale coco
  python -m mlc train --detector fcos_minus --set ml=true --set iur=true   # FCOS- + MLC
  python -m mlc eval runs/shapes/fcos-1a2b3c4d    # re-evaluate a run's checkpoint
  python -m mlc bench                             # MLC's cost: step, inference, Otsu
  python -m mlc runs --seeds 3 --workers 2        # train what the book needs, 2 at a time
"""


def _data(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from mlc.config import SCALES
    from mlc.data.shapes import generate

    spec = SCALES[args.scale].shapes
    overrides = {k: v for k, v in (("num_train", args.num_train), ("num_val", args.num_val),
                                   ("image_size", args.image_size), ("seed", args.seed),
                                   ("head_offset", args.head_offset)) if v is not None}
    spec = replace(spec, **overrides)
    root = Path(args.out or paths.data_root() / SCALES[args.scale].data)
    generate(spec, root)
    print(f"wrote {spec.num_train} train and {spec.num_val} val images to {root}")


def _train(args: argparse.Namespace) -> None:
    from mlc.config import make_config
    from mlc.overrides import parse_override
    from mlc.runs import get_or_train

    overrides = dict(parse_override(s) for s in args.set)
    cfg = make_config(args.detector, args.scale, args.schedule, args.seed, **overrides)
    runs = Path(args.runs) if args.runs else None
    record = get_or_train(cfg, runs_root=runs, device=args.device, resume=args.resume,
                          stop_after_epoch=args.stop_after_epoch, progress=not args.quiet)
    if record is not None:  # None on the ranks other than 0 under torchrun
        print(json.dumps({k: record[k] for k in ("name", "metrics", "run", "trained_now",
                                                 "source", "stopped_after_epoch")
                          if k in record}, indent=2))


def _eval(args: argparse.Namespace) -> None:
    from mlc.config import DENSE
    from mlc.data.build import datasets
    from mlc.engine import load_checkpoint
    from mlc.evaluation import evaluate
    from mlc.models import build_detector
    from mlc.runs import read_config
    from mlc.util import distributed

    run_dir = Path(args.run)
    cfg = read_config(run_dir)
    dist = distributed.setup(args.device)
    if dist.device.type == "cpu":
        cpu.check()
    _, val = datasets(cfg.scale, paths.data_root(), cfg.seed, cfg.head_offset)
    model, _ = build_detector(cfg, val.num_classes)
    model.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt", cfg)["model"])
    model.to(dist.device)
    batch = args.batch_size or max(1, cfg.batch_size // dist.world_size)
    metrics = evaluate(model, val, dist.device, batch_size=batch, rank=dist.rank,
                       world_size=dist.world_size, iou_nms=cfg.iur and cfg.detector in DENSE)
    if dist.is_main:
        print(json.dumps(metrics, indent=2))


def _bench(args: argparse.Namespace) -> None:
    import torch

    from mlc.bench import run
    from mlc.util.io import atomic_write_text

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    report = run(args.scale, args.detectors, device, args.rounds, args.repeat, tuple(args.parts))
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(report, indent=2) + "\n")


def _pretrain(args: argparse.Namespace) -> None:
    from mlc.config import SCALES
    from mlc.models.pretrain import pretrained_weights

    sc = SCALES[args.scale]
    print(pretrained_weights(sc.pretrain, sc.shapes, sc.tiny_widths))


def _runs(args: argparse.Namespace) -> None:
    from mlc.analysis.grids import book_configs
    from mlc.launch import Budget, left_line, paces, train_missing
    from mlc.notebooks import notebook_configs

    seeds = list(range(args.seeds))
    if args.book == "pretrained":
        _pretrained_book(args, seeds)
        return
    configs = {c.name: c for c in book_configs(args.scale, seeds)}
    notebooks = sorted((paths.REPO_ROOT / "notebooks").glob("*.ipynb"))
    configs.update((c.name, c) for c in notebook_configs(notebooks, args.scale, seeds))
    configs = list(configs.values())
    if args.status or args.launcher != "pool":
        from mlc import cluster

        options = cluster.ClusterOptions(
            cluster="local" if args.launcher == "submitit-local" else "slurm",
            folder=args.jobs_folder, partition=args.partition, account=args.account,
            timeout_min=args.timeout_min, gpus_per_run=args.gpus_per_run,
            array_parallelism=args.array_parallelism)
        if args.status:
            print(cluster.status_report(cluster.status(configs, options)))
            if args.scale == "shapes":
                print(_pretrained_progress(seeds))
            return
        cluster.require_submitit()
        _check_prerequisites(configs)
        print(cluster.describe(cluster.submit(configs, options), options))
        return
    _check_prerequisites(configs)
    budget = Budget(args.budget_min, args.workers)
    done, left = train_missing(configs, workers=args.workers, ngpus=args.ngpus, device=args.device,
                               budget=budget)
    print(f"done: {len(done)} run(s) in {budget.elapsed_min():.0f} min; left: "
          f"{left_line(left, budget.pace_tables or paces())}")
    if args.scale == "shapes":
        print(_pretrained_progress(seeds))
    if any(outcome.startswith("failed") for _, _, outcome in done):
        raise SystemExit(1)


def _pretrained_book(args: argparse.Namespace, seeds: list[int]) -> None:
    """Train the pretrained book's seed blocks in order (grids.retrain_blocks), or one of them,
    within the budget; a line per block, then what is left."""
    from mlc.analysis.grids import retrain_blocks
    from mlc.cluster import missing
    from mlc.launch import Budget, left_line, paces, train_missing
    from mlc.runs import load_record, record_paths

    blocks = retrain_blocks(args.scale, seeds)
    if args.status:
        print(_pretrained_progress(seeds))
        return
    if args.plan:
        print(pilot_plan_report(args.scale))
        return
    chosen = blocks if args.block is None else [blocks[args.block]]
    budget = Budget(args.budget_min, args.workers)
    here = _this_machine(args.workers)
    failed, left = False, []
    for name, configs in chosen:
        _check_prerequisites(configs)
        print(f"block: {name}", flush=True)
        theirs = seed_machines(configs[0].seed, blocks) - {here}
        if theirs and not args.retrain_other_machines:
            print(f"  skipped: seed {configs[0].seed}'s runs were trained at kernel fingerprint "
                  f"{', '.join(sorted(theirs))}, this machine's is {here}; a seed's runs are paired, "
                  "so train it where they were made, or retrain its runs here with "
                  "--retrain-other-machines", flush=True)
            left += missing(configs)
            continue
        for cfg in configs if theirs else []:
            made = load_record(cfg)
            if made and made.get("provenance", {}).get("kernel_fingerprint") != here:
                record_paths(cfg)[1].unlink(missing_ok=True)  # git keeps it; retrained here
                print(f"  {cfg.name}: trained at {made['provenance'].get('kernel_fingerprint')}, "
                      "retrained here", flush=True)
        done, not_started = train_missing(configs, workers=args.workers, ngpus=args.ngpus,
                                          device=args.device, budget=budget)
        failed |= any(outcome.startswith("failed") for _, _, outcome in done)
        left += not_started
    print(f"done: {len(chosen)} block(s) looked at in {budget.elapsed_min():.0f} min; left: "
          f"{left_line(left, budget.pace_tables or paces())}")
    print(_pretrained_progress(seeds))
    if failed:
        raise SystemExit(1)


def pilot_plan_report(scale: str) -> str:
    """Each claim's confirmatory stage as the pretrained pilot's committed records plan it
    (claims.pilot_plan), with its runs and estimated CPU-hours, beside the plan committed in
    grids.CONFIRMING (which must be fixed before any of the stages' runs)."""
    from mlc.analysis import claims, report
    from mlc.analysis.grids import (
        BOOK_SEEDS,
        CONFIRMING,
        MOST_STAGE_SEEDS,
        STAGE_ROWS,
        STAGE_SCHEDULE,
        grid_configs,
        pretrained,
        retrain_parts,
    )
    from mlc.launch import paces, run_minutes

    pilot = [c for seed in range(BOOK_SEEDS) for c in retrain_parts(scale, seed)[0][1]]
    runs = report.collect(pilot, allow_training=False)
    plan = claims.pilot_plan([r for r in runs if r["config"].schedule != "final"],
                             [r for r in runs if r["config"].schedule == "final"], range(BOOK_SEEDS))
    tables, lines, total = paces(), [], 0.0
    for claim, row in plan.iterrows():
        one_seed = grid_configs(pretrained(STAGE_ROWS[claim]), scale, [BOOK_SEEDS],
                                STAGE_SCHEDULE.get(claim))
        hours = sum(run_minutes(c, tables) or 0.0 for c in one_seed) / 60
        needed = row["needed"]
        cost = (f"{needed} seeds x {len(one_seed)} runs, about {needed * hours:.1f} CPU-hours"
                if needed else f"more than 100 seeds ({hours:.1f} CPU-hours a seed)")
        fate = "runs" if row["runs"] else f"not run (over {MOST_STAGE_SEEDS} seeds)"
        committed = CONFIRMING.get(claim)
        fixed = (f"committed: {committed['seeds']} seeds, fixed {committed['fixed']}" if committed
                 else "not committed")
        total += needed * hours if row["runs"] else 0.0
        if not row["pilot seeds"]:
            cost, fate = "no plan", "no pilot runs at hand"
        lines.append(f"claim {claim}: {row['parts']} part(s) on pilot seeds {row['pilot seeds']}; "
                     f"needs {cost}; {fate}; {fixed}")
    return "\n".join(lines + [f"the stages that run: about {total:.1f} CPU-hours (runs two claims "
                              "share on a seed are counted for each)"])


def _this_machine(workers: int) -> str:
    """This machine's kernel fingerprint at the thread count each of `workers` runs gets (as
    mlc.launch gives them)."""
    import os

    from mlc.provenance import kernel_fingerprint

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return kernel_fingerprint(max(1, cores // workers))


def seed_machines(seed: int, blocks: list) -> set[str]:
    """The kernel fingerprints the committed runs of one seed of the pretrained book were
    trained at (every block of that seed)."""
    from mlc.runs import load_record

    records = [load_record(c) for _, configs in blocks for c in configs if c.seed == seed]
    return {str(r.get("provenance", {}).get("kernel_fingerprint")) for r in records if r}


def _pretrained_progress(seeds: list[int]) -> str:
    """One line: how much of the pretrained book is committed (seeds whole, runs missing and
    their estimated CPU-hours)."""
    from mlc.analysis.grids import retrain_blocks
    from mlc.cluster import missing
    from mlc.launch import paces, run_minutes

    blocks = retrain_blocks("shapes", seeds)
    lacking = {name: missing(configs) for name, configs in blocks}
    whole = [s for s in seeds if not any(lacking[n] for n, c in blocks if c and c[0].seed == s)]
    runs = [c for cs in lacking.values() for c in cs]
    tables = paces()
    hours = sum(run_minutes(c, tables) or 0.0 for c in runs) / 60
    scorecard = [s for s in seeds if not lacking[f"scorecard, seed {s}"]]
    stages = [(len(c), len(lacking[n])) for n, c in blocks if n.startswith("confirmatory")]
    confirming = (f"; confirmatory stages: {sum(a - b for a, b in stages)} of "
                  f"{sum(a for a, _ in stages)} runs done" if stages else "")
    return (f"pretrained book: {sum(len(c) for _, c in blocks) - len(runs)} of "
            f"{sum(len(c) for _, c in blocks)} runs done; seeds whole: "
            f"{', '.join(map(str, whole)) or 'none'}; scorecard seeds whole: "
            f"{', '.join(map(str, scorecard)) or 'none'}{confirming}; {len(runs)} missing, "
            f"about {hours:.1f} CPU-hours")


def _check_prerequisites(configs: list) -> None:
    """Name everything the missing runs need and lack (data, weights, folders) in one message."""
    from mlc.cluster import missing
    from mlc.config import ConfigError
    from mlc.runs import missing_prerequisites

    problems = list(dict.fromkeys(p for c in missing(configs) for p in missing_prerequisites(c)))
    if problems:
        raise ConfigError("the runs cannot start: " + "; ".join(problems))


def _readme(args: argparse.Namespace) -> None:
    from mlc.analysis import claims, plots, summary
    from mlc.util.io import atomic_write_text

    readme = paths.REPO_ROOT / "README.md"
    block = summary.readme_block(args.scale, range(args.seeds))
    if args.check:
        if summary.current_block(readme) != block:
            raise SystemExit(f"{readme}'s results differ from the committed results: run "
                             "python -m mlc readme")
        print(f"{readme}'s results are those of the committed results")
        return
    atomic_write_text(readme, summary.replace_block(readme.read_text(), block))
    plots.style()
    ablation, final, deciding = summary.scorecard_runs(args.scale, range(args.seeds))
    figure = paths.REPO_ROOT / "book" / "images" / "scorecard.png"
    figure.parent.mkdir(exist_ok=True)
    plots.scorecard_figure(claims.claim_parts(ablation, final, deciding)).savefig(
        figure, bbox_inches="tight")
    print(f"wrote the results into {readme} and the scorecard figure {figure}")


def _notebooks(args: argparse.Namespace) -> None:
    from mlc.notebooks import execute_all

    notebooks = args.notebooks or sorted((paths.REPO_ROOT / "notebooks").glob("*.ipynb"))
    parameters = {"scale": args.scale, "seeds": list(range(args.seeds)),
                  "allow_training": args.allow_training}
    execute_all([Path(nb) for nb in notebooks], Path(args.out), parameters, args.workers)


def build_parser() -> argparse.ArgumentParser:
    from mlc.bench import PARTS
    from mlc.config import DETECTORS, SCALES, SCHEDULES

    parser = argparse.ArgumentParser(
        prog="python -m mlc", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reproduce MLC (mutual labeling, IoU rescoring) on torchvision detectors.",
        epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{data,pretrain,train,eval,bench,runs,notebooks,readme}")

    p = sub.add_parser("data", help="generate a synthetic COCO-format data set",
                       description="Write a generated set (train and val, COCO JSON + PNG). "
                       "It is deterministic: the same options write the same files.")
    p.add_argument("scale", choices=[s for s in SCALES if SCALES[s].shapes is not None],
                   help="which generated set (its defaults are that scale's)")
    p.add_argument("--out", help="folder to write (default: data/<scale>)")
    p.add_argument("--num-train", type=int, help="training images")
    p.add_argument("--num-val", type=int, help="validation images")
    p.add_argument("--image-size", type=int, help="image side in pixels")
    p.add_argument("--head-offset", type=float,
                   help="where the class-defining part sits, 0 (centre) to 1 (tip of the body)")
    p.add_argument("--seed", type=int, help="generator seed")
    p.set_defaults(func=_data)

    p = sub.add_parser("pretrain", help="pretrain a scale's tiny backbone (made once, then read)",
                       description="Train the tiny backbone to tell which classes a generated "
                       "image holds, on images of the scale's generator drawn with a seed of "
                       "their own: the weights runs with pretrained=true start from. Made once "
                       "under results/pretrained/, named by spec and code, then read.")
    p.add_argument("scale", nargs="?", default="shapes",
                   choices=[s for s in SCALES if SCALES[s].pretrain is not None])
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("train", help="train and evaluate one run (cached by config)",
                       description="Train one detector and evaluate it on val. The run lives in "
                       "runs/<scale>/<detector>-<hash>/; if it has finished it is not trained "
                       "again, and if it was interrupted it resumes from its last checkpoint. "
                       "Under torchrun every process joins one DDP run.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--detector", required=True, choices=DETECTORS,
                   help="fcos_minus is FCOS without centerness (the paper's FCOS-)")
    p.add_argument("--scale", default="shapes", choices=list(SCALES),
                   help="smoke: seconds, tests; shapes: generated set on a CPU; coco: the paper")
    p.add_argument("--schedule", choices=list(SCHEDULES),
                   help="ablation: 19 epochs (lr drops 16, 18); final: 24 (18, 22); "
                   "default: the scale's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--runs", help="runs folder (default: runs/, or $MLC_RUNS)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field, e.g. --set lr=0.02 --set epochs=12")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the run's checkpoint if there is one")
    p.add_argument("--stop-after-epoch", type=int,
                   help="stop (with a checkpoint) after this many epochs; resume later")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint on val",
                       description="Load RUN/checkpoint.pt and print its COCO metrics.")
    p.add_argument("run", help="a run folder, e.g. runs/shapes/fcos-1a2b3c4d")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int,
                   help="images per forward pass (default: the run's per-process batch)")
    p.set_defaults(func=_eval)

    p = sub.add_parser("bench", help="time MLC's training, inference and Otsu against baselines",
                       description="Training steps with and without ML/IUR, inference with and "
                       "without IUR, batched Otsu against a scikit-image loop; side by side in "
                       "one process, printed as seconds and ratios.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scale", default="shapes", choices=list(SCALES))
    p.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds (median taken)")
    p.add_argument("--repeat", type=int, default=2, help="calls per variant per round")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                   help="anchor: FCOS beside torchvision's; training; inference; otsu")
    p.add_argument("--out", help="also write the figures to this JSON file")
    p.set_defaults(func=_bench)

    p = sub.add_parser("runs", help="train the runs the book needs that are missing",
                       description="Train every run the notebooks read with their default "
                       "parameters (tables, scorecard, sensitivity sweeps, head-offset dial, and "
                       "any row added to a notebook's grid) that has no record yet: on a CPU in "
                       "parallel single-threaded workers, on GPUs one after another through "
                       "torchrun. Prints each run's time and the total.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scale", default="shapes", choices=list(SCALES))
    p.add_argument("--seeds", type=int, default=7, help="seeds 0..n-1")
    p.add_argument("--workers", type=int, default=2, help="CPU worker processes")
    p.add_argument("--ngpus", type=int, default=0, help="GPUs per run (torchrun); 0: CPU workers")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--launcher", choices=["pool", "slurm", "submitit-local"], default="pool",
                   help="pool: train here; slurm: submit a job array with submitit and return; "
                   "submitit-local: the slurm code path on this machine")
    p.add_argument("--status", action="store_true",
                   help="list the runs as done, queued or running, failed (with its log) or missing")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--account", help="Slurm account")
    p.add_argument("--timeout-min", type=float, default=24 * 60,
                   help="a job's time limit; a job that reaches it is requeued and resumes")
    p.add_argument("--gpus-per-run", type=int, default=8, help="GPUs of one coco run (a task each)")
    p.add_argument("--array-parallelism", type=int, default=64, help="jobs of the array at once")
    p.add_argument("--jobs-folder", help="submitit's logs and pickles (default: <runs>/_jobs); "
                   "on storage the nodes share, as runs/, results/ and data/")
    p.add_argument("--budget-min", type=float,
                   help="start no run that the committed records' paces say cannot end within "
                   "this many minutes; the runs under way finish, then what is left is said")
    p.add_argument("--book", choices=["current", "pretrained"], default="current",
                   help="current: the runs the book reads now; pretrained: the pretrained book's "
                   "seed blocks, scorecard rows first (with --status: its progress)")
    p.add_argument("--block", type=int, help="with --book pretrained: only this block (0-based)")
    p.add_argument("--plan", action="store_true",
                   help="with --book pretrained: each claim's confirmatory stage as the pilot "
                   "(seeds 0-6) plans it, its cost, and the plan committed (grids.CONFIRMING)")
    p.add_argument("--retrain-other-machines", action="store_true",
                   help="with --book pretrained: retrain here a seed's runs made at another kernel "
                   "fingerprint (else such a seed is skipped: its runs are paired)")
    p.set_defaults(func=_runs)

    p = sub.add_parser("readme", help="write README.md's results and the scorecard figure",
                       description="Write the results block of README.md (between its markers) "
                       "and book/images/scorecard.png from the records at hand, by the code the "
                       "book uses; never trains.")
    p.add_argument("--scale", default="shapes", choices=list(SCALES))
    p.add_argument("--seeds", type=int, default=7, help="the book's seeds 0..n-1")
    p.add_argument("--check", action="store_true",
                   help="only check that README.md's results are those of the records")
    p.set_defaults(func=_readme)

    p = sub.add_parser("notebooks", help="execute the notebooks into the book with papermill",
                       description="Execute notebooks/*.ipynb with papermill into the book's "
                       "folder, passing scale, seeds and allow_training to each parameters cell. "
                       "A failing notebook stops the build with the notebook and cell named.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("notebooks", nargs="*", help="notebooks to run (default: notebooks/*.ipynb)")
    p.add_argument("--scale", default="shapes", choices=list(SCALES))
    p.add_argument("--seeds", type=int, default=7, help="seeds 0..n-1")
    p.add_argument("--allow-training", action="store_true",
                   help="train missing runs (else they show as 'not run')")
    p.add_argument("--out", default=str(paths.REPO_ROOT / "book"), help="where executed copies go")
    p.add_argument("--workers", type=int, default=2, help="notebooks executed at once")
    p.set_defaults(func=_notebooks)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; a problem with the user's data, config or run ends with one clear line."""
    from mlc.config import ConfigError
    from mlc.data.validate import DataError
    from mlc.notebooks import NotebookFailed

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, DataError, FileNotFoundError, FloatingPointError, NotebookFailed,
            cpu.KernelLevelError) as err:
        message = str(err).strip()
        if "Original Traceback" in message:  # raised in a DataLoader worker: keep its last line
            message = message.splitlines()[-1]
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
