"""Finished runs scored on validation images beyond the book's: the generator's next indices,
so the finite validation set's share of a gain's noise is measured, not only estimated from
halves (the noise study). It scores checkpoints and never trains, so it cannot change a run.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from mlc import paths
from mlc.config import RunConfig
from mlc.data.build import data_source
from mlc.data.coco import CocoDetection, Split
from mlc.data.shapes import generate
from mlc.engine import load_checkpoint
from mlc.evaluation import (
    OBJECT_ID_STRIDE,
    detection_metrics,
    divergence_metrics,
    predict,
    proposal_metrics,
)
from mlc.models import build_detector
from mlc.models.rpn import ProposalNetwork
from mlc.runs import provenance, record_paths
from mlc.util.io import atomic_write_text

HELDOUT_IMAGES = 1000
# How far the book's images may score from the record: other CPU kernels move a last digit.
BOOK_TOLERANCE = 0.05


class CheckpointMismatch(ValueError):
    """A checkpoint does not reproduce its run's record on the book's images."""


def heldout_set(scale: str, images: int, data_root: Path | None = None) -> tuple[CocoDetection, int]:
    """The scale's validation images followed by `images` more from the same generator, and how
    many of them are the book's; only generated scales have more."""
    name, spec = data_source(scale)
    if spec is None:
        raise ValueError(f"scale {scale!r} has a fixed validation set; held-out images are "
                         "generated, so only the smoke and shapes scales have them")
    root = Path(data_root or paths.data_root()) / f"{name}-heldout{images}"
    generate(replace(spec, num_train=1, num_val=spec.num_val + images), root)
    split = Split(root / "val", root / "annotations" / "instances_val.json")
    return CocoDetection(split, train=False), spec.num_val


def score_checkpoint(cfg: RunConfig, checkpoint: Path, dataset: CocoDetection, book: int,
                     device: torch.device, batch_size: int = 8) -> dict:
    """Metrics of a run's checkpoint on the book's images (`book`: the first ones, which must
    reproduce its record) and on the rest: the headline metrics and the divergence."""
    model, _ = build_detector(cfg, dataset.num_classes)
    model.load_state_dict(load_checkpoint(checkpoint, cfg)["model"])
    model.to(device)
    results, around = predict(model, dataset, device, batch_size)
    score = proposal_metrics if isinstance(model, ProposalNetwork) else detection_metrics
    rows = torch.cat(around) if around else torch.zeros(0, 3, dtype=torch.float64)
    in_book = rows[:, 2] // OBJECT_ID_STRIDE < book
    out = {}
    for part, ids, keep in (("book", dataset.ids[:book], in_book),
                            ("heldout", dataset.ids[book:], ~in_book)):
        metrics = score(dataset, [r for r in results if r["image_id"] in set(ids)], list(ids))
        out[part] = {**metrics, "divergence": divergence_metrics([rows[keep]])["divergence"]}
    return out


def heldout_path(cfg: RunConfig, images: int, results_root: Path | None = None) -> Path:
    """Where a run's held-out record is written: results/heldout<images>/<scale>/<name>.json."""
    return Path(results_root or paths.results_root()) / f"heldout{images}" / cfg.scale / f"{cfg.name}.json"


def score_runs(configs: list[RunConfig], images: int = HELDOUT_IMAGES,
               device: torch.device | None = None) -> list[Path]:
    """Score every finished run among `configs` that has no held-out record yet (its checkpoint
    must be there); prints each run's time. Refuses a checkpoint whose book images do not
    reproduce its record's headline metric, naming both files."""
    device = device or torch.device("cpu")
    dataset, book = heldout_set(configs[0].scale, images) if configs else (None, 0)
    written, start = [], time.perf_counter()
    for i, cfg in enumerate(configs, 1):
        out = heldout_path(cfg, images)
        if out.exists():
            continue
        run_dir, result = record_paths(cfg)
        checkpoint = run_dir / "checkpoint.pt"
        if not result.exists() or not checkpoint.exists():
            raise FileNotFoundError(f"{cfg.name}: needs its record {result} and its checkpoint "
                                    f"{checkpoint} (train it with `python -m mlc runs`)")
        record = json.loads(result.read_text())
        t0 = time.perf_counter()
        metrics = score_checkpoint(cfg, checkpoint, dataset, book, device)
        key = "AR100" if cfg.detector == "rpn" else "AP"
        if abs(metrics["book"][key] - record["metrics"][key]) > BOOK_TOLERANCE:
            raise CheckpointMismatch(f"{checkpoint} scores {key} {metrics['book'][key]} on the book's "
                             f"images, its record {result} says {record['metrics'][key]}: the "
                             "checkpoint is not the one the record was made from")
        atomic_write_text(out, json.dumps({"name": cfg.name, "config": record["config"],
                                           "images": {"book": book, "heldout": images},
                                           "metrics": metrics, "provenance": provenance()},
                                          indent=1) + "\n")
        written.append(out)
        print(f"  [{i}/{len(configs)}] {cfg.name}: scored in {time.perf_counter() - t0:.0f} s",
              flush=True)
    print(f"scoring took {time.perf_counter() - start:.0f} s for {len(written)} run(s)")
    return written
