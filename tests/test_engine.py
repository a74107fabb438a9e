"""Training, evaluation, schedules, determinism, resume and the run cache at smoke scale."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mlc.config import RPN_LR_MULTIPLIER, make_config
from mlc.engine import GlobalBatchSampler, learning_rate
from mlc.figures import load_model
from mlc.runs import get_or_train


def test_paper_schedules():
    cfg = make_config("fcos_minus", "coco")
    assert (cfg.epochs, cfg.lr_steps, cfg.batch_size, cfg.lr) == (19, (16, 18), 16, 0.01)
    final = make_config("retinanet", "coco", schedule="final")
    assert (final.epochs, final.lr_steps) == (24, (18, 22))
    # Warmup from lr x 0.001, linear over 500 iterations.
    assert learning_rate(cfg, 0, 0) == pytest.approx(1e-5)
    assert learning_rate(cfg, 0, 250) == pytest.approx(0.01 * (0.001 + 0.999 * 0.5))
    assert learning_rate(cfg, 15, 10**6) == pytest.approx(0.01)
    assert learning_rate(cfg, 16, 10**6) == pytest.approx(0.001)  # the 17th epoch
    assert learning_rate(cfg, 18, 10**6) == pytest.approx(0.0001)
    assert make_config("rpn", "coco").lr == 0.02
    # The shapes scale: 4x the paper's lr at its batch of 8, RPN at its own multiple.
    assert make_config("retinanet", "shapes").lr == pytest.approx(0.01 * 8 / 16 * 4)
    assert make_config("rpn", "shapes").lr == pytest.approx(0.02 * 8 / 16 * RPN_LR_MULTIPLIER)


def test_global_batches_do_not_depend_on_the_number_of_processes():
    one = list(GlobalBatchSampler(20, 4, seed=3, rank=0, world_size=1))
    r0 = list(GlobalBatchSampler(20, 4, seed=3, rank=0, world_size=2))
    r1 = list(GlobalBatchSampler(20, 4, seed=3, rank=1, world_size=2))
    assert len(one) == len(r0) == len(r1) == 5
    for full, a, b in zip(one, r0, r1):
        assert sorted(full) == sorted(a + b) and len(a) == len(b) == 2
    other = GlobalBatchSampler(20, 4, seed=3, rank=0, world_size=1)
    other.set_epoch(1)
    assert list(other) != one


def _state(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


def _same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def fcos_run(tmp_path_factory, data_root):
    runs = tmp_path_factory.mktemp("runs")
    cfg = make_config("fcos", "smoke")
    return cfg, runs, get_or_train(cfg, runs, data_root, progress=False, results_root=runs)


def test_smoke_training_writes_a_complete_run(fcos_run):
    cfg, runs, record = fcos_run
    run_dir = runs / "smoke" / cfg.name
    assert run_dir.name.startswith("fcos-") and len(run_dir.name) == len("fcos-") + 8
    for name in ("config.json", "metrics.json", "provenance.json", "log.jsonl", "checkpoint.pt"):
        assert (run_dir / name).exists(), name
    assert set(record["metrics"]) == {"AP", "AP50", "AP75", "APS", "APM", "APL", "divergence",
                                      "divergence_by_floor", "val_halves"}
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(record["run"]["steps_total"]))
    assert {"lr", "loss", "classification", "bbox_regression", "bbox_ctrness"} <= set(log[0])
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert {"git_commit", "packages", "date"} <= set(prov)
    assert record["run"]["seconds_per_step"] > 0 and record["run"]["device"] == "cpu"


def test_finished_run_is_read_not_retrained(fcos_run, data_root):
    cfg, runs, record = fcos_run
    again = get_or_train(cfg, runs, data_root, progress=False, results_root=runs)
    assert not again["trained_now"] and again["metrics"] == record["metrics"]


def test_committed_record_is_used_without_the_run_folder(fcos_run, tmp_path, data_root):
    cfg, runs, record = fcos_run
    committed = runs / "smoke" / f"{cfg.name}.json"
    assert committed.exists()
    again = get_or_train(cfg, tmp_path, data_root, results_root=runs, allow_training=False)
    assert again["source"] == "committed results" and again["metrics"] == record["metrics"]
    assert [e["epoch"] for e in again["curve"]] == [1, 2]
    assert get_or_train(cfg, tmp_path, data_root, results_root=tmp_path,
                        allow_training=False) is None


def test_same_seed_same_bits_other_seed_differs(fcos_run, tmp_path, data_root):
    cfg, runs, record = fcos_run
    twin = get_or_train(cfg, tmp_path, data_root, progress=False, results_root=tmp_path)
    assert twin["metrics"] == record["metrics"]
    a, b = runs / "smoke" / cfg.name, tmp_path / "smoke" / cfg.name
    assert (a / "log.jsonl").read_text() == (b / "log.jsonl").read_text()
    assert _same_weights(_state(a), _state(b))
    other = make_config("fcos", "smoke", seed=1)
    get_or_train(other, tmp_path, data_root, progress=False, results_root=tmp_path)
    assert not _same_weights(_state(a), _state(tmp_path / "smoke" / other.name))


def test_resume_equals_uninterrupted(fcos_run, tmp_path, data_root):
    cfg, runs, record = fcos_run
    part = get_or_train(cfg, tmp_path, data_root, progress=False, stop_after_epoch=1,
                        results_root=tmp_path)
    assert part == {**part, "stopped_after_epoch": 1}
    run_dir = tmp_path / "smoke" / cfg.name
    assert not (run_dir / "metrics.json").exists()
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["epoch"] == 1
    resumed = get_or_train(cfg, tmp_path, data_root, progress=False, results_root=tmp_path)
    assert resumed["run"]["steps_this_call"] < record["run"]["steps_this_call"]
    assert resumed["metrics"] == record["metrics"]
    assert _same_weights(_state(run_dir), _state(runs / "smoke" / cfg.name))
    assert (run_dir / "log.jsonl").read_text() == (runs / "smoke" / cfg.name / "log.jsonl").read_text()


def test_rpn_reports_average_recall(tmp_path, data_root):
    record = get_or_train(make_config("rpn", "smoke"), tmp_path, data_root, progress=False,
                          results_root=tmp_path)
    assert set(record["metrics"]) == {"AR100", "AR300", "AR1000", "divergence", "divergence_by_floor",
                                      "val_halves"}
    m = record["metrics"]
    assert 0 <= m["AR100"] <= m["AR300"] <= m["AR1000"] <= 100
    assert m["AR1000"] > 0


def test_checkpoint_of_another_config_is_rejected(fcos_run, tmp_path, data_root):
    from mlc.engine import load_checkpoint

    cfg, runs, _ = fcos_run
    other = make_config("fcos", "smoke", lr=0.5)
    with pytest.raises(ValueError, match="different config"):
        load_checkpoint(runs / "smoke" / cfg.name / "checkpoint.pt", other)


def test_a_record_of_other_evaluation_code_is_scored_again_not_retrained(fcos_run, tmp_path,
                                                                          data_root, monkeypatch):
    cfg, runs, record = fcos_run
    run_dir = tmp_path / "smoke" / cfg.name
    shutil.copytree(runs / "smoke" / cfg.name, run_dir)
    shutil.copy(runs / "smoke" / f"{cfg.name}.json", tmp_path / "smoke" / f"{cfg.name}.json")
    trained = (run_dir / "checkpoint.pt").stat().st_mtime_ns, (run_dir / "log.jsonl").read_text()
    monkeypatch.setattr("mlc.runs.evaluation_version", lambda: "00000000")
    assert get_or_train(cfg, tmp_path, data_root, results_root=tmp_path, allow_training=False) is None
    again = get_or_train(cfg, tmp_path, data_root, progress=False, results_root=tmp_path)
    assert again["scored_again"] and not again["trained_now"]
    assert ((run_dir / "checkpoint.pt").stat().st_mtime_ns,
            (run_dir / "log.jsonl").read_text()) == trained
    assert again["metrics"] == record["metrics"] and again["curve"] == record["curve"]
    assert again["evaluation"]["identity"] != record["evaluation"]["identity"]
    committed = json.loads((tmp_path / "smoke" / f"{cfg.name}.json").read_text())
    assert committed["evaluation"] == again["evaluation"]
    assert "scored_again" not in get_or_train(cfg, tmp_path, data_root, results_root=tmp_path)
    monkeypatch.setattr("mlc.runs.evaluation_version", lambda: "11111111")  # and no checkpoint:
    (run_dir / "checkpoint.pt").unlink()
    assert get_or_train(cfg, tmp_path, data_root, progress=False, results_root=tmp_path)["trained_now"]


def test_the_first_images_are_scored_beside_the_whole_set(fcos_run, data_root, monkeypatch):
    from mlc.data.build import datasets
    from mlc.engine import evaluate_run
    from mlc.evaluation import detection_metrics, predict

    cfg, runs, record = fcos_run
    assert "val_first" not in record["metrics"]  # the smoke set has fewer images than the subset
    monkeypatch.setattr("mlc.evaluation.FIRST_IMAGES", 2)
    scored = evaluate_run(cfg, runs / "smoke" / cfg.name, data_root)
    assert {k: v for k, v in scored["metrics"].items() if k != "val_first"} == record["metrics"]
    _, val = datasets(cfg.scale, data_root, cfg.seed)
    model = load_model(cfg, val.num_classes, torch.device("cpu"), runs)
    results, _ = predict(model, val, torch.device("cpu"), cfg.batch_size)
    first = scored["metrics"]["val_first"]
    assert first["images"] == 2 and scored["val_images"] == len(val) > 2
    assert first["AP"] == detection_metrics(val, results, list(val.ids[:2]))["AP"]
    assert first["divergence"]["n_objects"] <= record["metrics"]["divergence"]["n_objects"]
