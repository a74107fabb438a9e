"""Scoring finished runs on held-out validation images (mlc.heldout) and reading the gains there."""

from __future__ import annotations

import json

import pytest

from mlc.config import make_config
from mlc.heldout import CheckpointMismatch, heldout_path, heldout_set, score_runs
from mlc.runs import get_or_train, record_paths


def test_the_held_out_set_starts_with_the_books_images(data_root, smoke_sets):
    dataset, book = heldout_set("smoke", 3, data_root)
    _, val = smoke_sets
    assert book == len(val) and len(dataset) == book + 3
    first, again = dataset[0], val[0]
    assert (first[0] == again[0]).all() and (first[1]["boxes"] == again[1]["boxes"]).all()
    with pytest.raises(ValueError, match="fixed validation set"):
        heldout_set("coco", 3, data_root)


def test_a_run_is_scored_on_the_books_images_and_the_rest():
    cfg = make_config("fcos_minus", "smoke", seed=3)
    record = get_or_train(cfg, progress=False)
    written = score_runs([cfg], images=4)
    assert written == [heldout_path(cfg, 4)]
    scored = json.loads(written[0].read_text())
    assert scored["images"] == {"book": 4, "heldout": 4}
    assert scored["metrics"]["book"]["AP"] == record["metrics"]["AP"]
    assert set(scored["metrics"]["heldout"]) >= {"AP", "AP50", "AP75", "divergence"}
    assert score_runs([cfg], images=4) == []  # scored once

    # a checkpoint that does not reproduce its record is refused, naming both files
    written[0].unlink()
    _, result = record_paths(cfg)
    result.write_text(json.dumps({**record, "metrics": {**record["metrics"], "AP": 99.0}}))
    with pytest.raises(CheckpointMismatch, match=f"{cfg.name}.json says 99.0"):
        score_runs([cfg], images=4)
