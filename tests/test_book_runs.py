"""What `make reproduce` trains and what the figures read: the book's run list matches the
notebooks' parameters, `mlc runs` trains missing runs in parallel workers and reads finished ones,
figure data comes from finished runs only, the head-offset dial has its own data."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import papermill
import pytest
import torch

from mlc.__main__ import build_parser
from mlc.analysis import grids
from mlc.bench import synthetic_coco_batch
from mlc.config import ConfigError, make_config
from mlc.data.build import data_source
from mlc.figures import figure_data, figure_path
from mlc.launch import cli_args, train_missing
from mlc.overrides import parse_override
from mlc.runs import load_record, record_paths

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _defaults(notebook: str) -> dict:
    params = papermill.inspect_notebook(str(NOTEBOOKS / f"{notebook}.ipynb"))
    return {k: ast.literal_eval(v["default"]) for k, v in params.items()}


def test_notebook_sweeps_are_the_ones_make_reproduce_trains():
    assert _defaults("sensitivity")["gammas"] == grids.GAMMAS
    assert _defaults("sensitivity")["alphas"] == grids.ALPHAS
    assert _defaults("beyond_head_offset")["offsets"] == grids.OFFSETS
    assert _defaults("successors")["grid"] == grids.SUCCESSORS
    assert _defaults("setting")["candidates"] == grids.SETTING_CANDIDATES
    assert _defaults("setting")["study_seeds"] == grids.SETTING_SEEDS
    assert _defaults("setting")["rpn_lrs"] == grids.RPN_LRS
    assert _defaults("setting")["goal_offsets"] == grids.GOAL_OFFSETS
    assert _defaults("setting")["former_rpn_lr"] in grids.RPN_LRS
    assert _defaults("setting")["dense_lrs"] == grids.DENSE_LRS
    assert _defaults("setting")["dense_lr_seeds"] == grids.DENSE_LR_SEEDS


def test_book_configs_cover_tables_sweeps_and_dial():
    configs = grids.book_configs("shapes", [0, 1])
    names = {c.name for c in configs}
    assert len(names) == len(configs)
    assert {c.name for c in grids.scorecard_configs("shapes", [0, 1])} <= names
    assert {c.head_offset for c in configs} == {None, 0.0, 1.0}  # 0.7 is the shapes set itself
    assert {c.gamma for c in configs} == {0.5, 1.0, 2.0} and {c.seed for c in configs} == {0, 1}
    assert {(c.detector, c.vfl, c.tal) for c in configs if c.vfl or c.tal} == {
        (d, vfl, not vfl) for d in ("fcos_minus", "retinanet") for vfl in (True, False)}
    assert {c.scale for c in configs} == {"shapes", "shapes-v1", "shapes-600"}  # the study
    assert {c.seed for c in configs if c.scale != "shapes"} == {0, 1}
    assert {c.lr for c in configs if c.detector == "rpn"} == {make_config("rpn", "shapes").lr}
    full = grids.book_configs("shapes", range(7))  # RPN's lr sweep is part of the full book
    rpn_lrs = {(c.lr, c.seed) for c in full if c.detector == "rpn" and not (c.ml or c.iur)}
    assert rpn_lrs == {(lr, s) for lr in grids.RPN_LRS for s in (0, 1)} | {
        (make_config("rpn", "shapes").lr, s) for s in range(41)}  # seeds 7-40 decide claim 5
    offsets = {(c.head_offset, c.ml and c.iur, c.seed) for c in full if c.detector == "fcos_minus"
               and c.head_offset not in (None, 0.0, 1.0)}  # both goals: 0.8 on the study's seeds
    assert offsets == {(0.8, m, s) for m in (False, True) for s in (0, 1)}
    dense = {(c.detector, c.lr, c.seed) for c in full if c.detector in ("fcos_minus", "retinanet")
             and c.lr != make_config(c.detector, "shapes").lr}  # their lr check, four seeds
    assert dense == {(d, lr, s) for d in ("fcos_minus", "retinanet") for lr in (0.01, 0.04)
                     for s in range(4)}
    assert {c.lr for c in configs if c.detector in ("fcos_minus", "retinanet")} == {0.02}
    assert {c.lr for c in full if c.detector == "rpn" and (c.ml or c.iur)} == {
        make_config("rpn", "shapes").lr}  # ML and IUR at the baseline's lr
    assert {c.head_offset for c in grids.book_configs("coco", [0])} == {None}


def test_claims_left_undecided_get_their_fixed_seeds_only_in_the_full_book():
    extra = grids.deciding_configs("shapes", range(7))

    def row(c):
        return c.detector, c.ml, c.alignment, c.iur

    claim1 = {("fcos_minus", True, False, False), ("fcos_minus", False, True, False)}  # ML, alignment
    claim2 = {("fcos_minus", False, False, True), ("fcos", False, False, False)}  # + IUR, FCOS
    claim5 = {("rpn", False, False, False), ("rpn", True, False, False), ("rpn", False, False, True)}
    seeds = {r: sorted(c.seed for c in extra if row(c) == r) for r in claim1 | claim2 | claim5}
    assert {row(c) for c in extra} == claim1 | claim2 | claim5
    assert all(seeds[r] == list(range(7, 27)) for r in claim1)  # 27 seeds in all
    assert all(seeds[r] == list(range(7, 16)) for r in claim2)  # 16
    assert all(seeds[r] == list(range(7, 41)) for r in claim5)  # 12, then a second stage of 29
    assert len(extra) == 40 + 18 + 3 * 34
    assert {row(c) for c in grids.deciding_configs("shapes", range(7), claims=[1])} == claim1
    assert {row(c) for c in grids.deciding_configs("shapes", range(7), claims=[5])} == claim5
    assert {c.name for c in extra} <= {c.name for c in grids.book_configs("shapes", range(7))}
    assert len(grids.deciding_configs("shapes", range(10))) == 34 + 12 + 3 * 31  # seeds 10 on
    assert grids.deciding_configs("shapes", [0]) == grids.deciding_configs("smoke", range(7)) == []
    assert len(grids.deciding_configs("shapes", range(16))) == 22 + 3 * 25  # claims 1 and 5
    assert len(grids.deciding_configs("shapes", range(27))) == 3 * 14  # claim 5's seeds 27-40
    assert grids.deciding_configs("shapes", range(41)) == []
    assert grids.stages(5) == [range(7), range(7, 12), range(12, 41)]
    assert grids.stages(1) == [range(7), range(7, 27)] and grids.stages(3) == [range(7)]


@pytest.mark.parametrize("overrides", [{}, {"ml": True, "alpha": 1.0}, {"head_offset": 0.0},
                                       {"iur": True, "gamma": 2.0, "lr_steps": [1]}])
def test_cli_args_rebuild_the_same_config(overrides):
    cfg = make_config("fcos_minus", "smoke", seed=3, **overrides)
    args = build_parser().parse_args(["train", *cli_args(cfg)])
    again = make_config(args.detector, args.scale, args.schedule, args.seed,
                        **dict(parse_override(s) for s in args.set))
    assert again.name == cfg.name


def test_train_missing_trains_in_workers_then_reads(capsys):
    configs = [make_config("fcos_minus", "smoke", seed=s) for s in (11, 12)]
    first, left = train_missing(configs, workers=2)
    assert sorted(o for _, _, o in first) == ["trained", "trained"] and left == []
    assert all(load_record(c) is not None for c in configs)
    assert train_missing(configs, workers=2) == ([], [])
    assert "0 to train" in capsys.readouterr().out


def test_train_missing_scores_again_a_record_of_other_evaluation():
    """A record whose evaluation identity is not this code's is scored again in a worker from
    its checkpoint, not retrained, and then read."""
    cfg = make_config("fcos_minus", "smoke", seed=14)
    train_missing([cfg], workers=1)
    run_dir, result = record_paths(cfg)
    record = json.loads(result.read_text())
    stale = {**record, "evaluation": {**record["evaluation"], "identity": "00000000"}}
    for path in (run_dir / "metrics.json", result):
        path.write_text(json.dumps(stale))
    assert [o for _, _, o in train_missing([cfg], workers=1)[0]] == ["scored again"]
    again = json.loads(result.read_text())
    assert again["evaluation"]["identity"] == record["evaluation"]["identity"]
    assert again["metrics"] == record["metrics"] and again["curve"] == record["curve"]
    assert train_missing([cfg], workers=1) == ([], [])


def test_figure_data_needs_a_finished_run_and_is_kept():
    cfg = make_config("fcos_minus", "smoke", ml=True, seed=13)
    assert figure_data(cfg, "labels") is None  # not trained: no figure
    train_missing([cfg], workers=1)
    labels = figure_data(cfg, "labels")
    n = len(labels["centres"])
    assert n and all(len(labels[k]) == n for k in ("object", "own_positive", "cls_positive",
                                                    "loc_positive", "strides"))
    assert all(labels["own_positive"])  # FCOS−'s candidates are its own positives
    assert set(labels["object"]) <= set(range(len(labels["gt_boxes"])))
    assert figure_path(cfg).exists() and figure_data(cfg, "labels") == labels
    examples = figure_data(cfg, "divergence")
    for e in examples:
        assert e["scores"] == sorted(e["scores"], reverse=True)
        assert all(0.3 <= v <= 1 for v in e["ious"]) and e["gap"] >= 0


def test_head_offset_has_its_own_data_and_is_checked():
    assert data_source("shapes")[0] == "shapes"
    assert data_source("shapes", 0.7)[0] == "shapes"  # the scale's own offset
    name, spec = data_source("shapes", 0.0)
    assert name == "shapes-head0" and spec.head_offset == 0.0
    assert make_config("fcos_minus", head_offset=0.0).name != make_config("fcos_minus").name
    with pytest.raises(ConfigError, match="generated sets only"):
        make_config("fcos_minus", "coco", head_offset=0.2)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        make_config("fcos_minus", head_offset=1.5)


def test_synthetic_coco_batch_has_valid_boxes_inside_the_images():
    images, targets, num_classes = synthetic_coco_batch(16)
    assert len(images) == 16 and num_classes == 80
    for img, t in zip(images, targets):
        h, w = img.shape[-2:]
        b = t["boxes"]
        assert 1 <= len(b) <= 15 and (b[:, 2:] > b[:, :2]).all()
        assert (b >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert t["labels"].dtype == torch.int64 and t["labels"].max() < 80


def test_the_pretrained_book_goes_seed_block_by_seed_block_scorecard_first():
    """Every seed's scorecard rows come before any seed's other rows; every run starts from the
    pretrained body; claim 2's like-for-like row trains IUR from epoch 0; and the pretrained runs
    already committed (the setting page's init comparison) are among the blocks' own names."""
    blocks = grids.retrain_blocks("shapes", range(7))
    names = [name for name, _ in blocks]
    assert names[:14] == [f"{part}, seed {s}" for part in ("scorecard", "rest of the book") for s in range(7)]
    assert names[14:] == [name for name, _ in grids.confirm_blocks("shapes")]
    assert all(c.pretrained and c.seed == int(name.rsplit(" ", 1)[1]) for name, cs in blocks for c in cs)
    names = {c.name for _, cs in blocks for c in cs}
    assert len(names) == sum(len(cs) for _, cs in blocks)  # no run in two blocks
    like = make_config("fcos_minus", "shapes", None, 0, iur=True, mlc_start_epoch=0, pretrained=True)
    assert like.name in {c.name for c in blocks[0][1]}
    committed = grids.grid_configs([r for r in grids.init_grid(grids.INIT_ROWS) if r["init"] == "pretrained"],
                                   "shapes", range(7))
    assert {c.name for c in committed} <= names


def test_the_setting_studies_name_their_init_whatever_the_scales_default():
    """The setting page's studies stay at random init (the candidate sets, the learning-rate
    sweeps, the goal offsets, the init comparison's random rows) and the comparison's other rows
    are pretrained: each row says so itself, so moving the `shapes` default moves none of them."""
    shapes = grids.SCALES["shapes"].shapes
    random_rows = (grids.setting_grid(grids.SETTING_CANDIDATES) + grids.rpn_lr_grid(grids.RPN_LRS)
                   + grids.dense_lr_grid("retinanet", grids.DENSE_LRS)
                   + grids.offset_grid(grids.GOAL_OFFSETS, shapes.head_offset, base=grids.RANDOM_INIT))
    inits = grids.init_grid(grids.INIT_ROWS)
    assert all(row["set"]["pretrained"] is False for row in random_rows)
    assert all(row["set"]["pretrained"] is (row["init"] == "pretrained") for row in inits)
    assert {r["init"] for r in inits} == {"random", "pretrained"}


def test_each_confirmatory_stage_trains_its_claims_rows_on_fresh_seeds(monkeypatch):
    """A plan of 3 seeds for claim 1, 1 for claim 6 and none for claim 5 (over the limit): seed
    7's block holds claim 1's two rows and claim 6's four 24-epoch rows, seeds 8-9 claim 1's
    alone, every run pretrained; no block without a plan."""
    monkeypatch.setattr(grids, "CONFIRMING", {1: {"seeds": 3}, 5: {"seeds": 0}, 6: {"seeds": 1}})
    blocks = grids.confirm_blocks("shapes")
    assert [name for name, _ in blocks] == [f"confirmatory stages, seed {s}" for s in (7, 8, 9)]
    assert [len(cs) for _, cs in blocks] == [6, 2, 2]
    assert all(c.pretrained and c.seed == s for (_, cs), s in zip(blocks, (7, 8, 9)) for c in cs)
    assert sorted(c.schedule for c in blocks[0][1]) == ["ablation"] * 2 + ["final"] * 4
    assert {c.detector for c in blocks[1][1]} == {"fcos_minus"}
    assert grids.confirm_seeds(5) == range(7, 7) and grids.confirm_blocks("smoke") == []
    monkeypatch.setattr(grids, "CONFIRMING", {})
    assert grids.confirm_blocks("shapes") == []


def test_the_committed_plan_is_what_the_pilot_plans():
    """grids.CONFIRMING, fixed before any of its runs, is what claims.pilot_plan computes from the
    committed pilot (seeds 0-6 of the pretrained scorecard): each claim's number of seeds, and a
    stage only where that number is within grids.MOST_STAGE_SEEDS."""
    from mlc.analysis import claims, report

    pilot = [c for seed in range(7) for c in grids.retrain_parts("shapes", seed)[0][1]]
    runs = report.collect(pilot, allow_training=False)
    assert all(run["record"] for run in runs), "the pilot is not whole"
    plan = claims.pilot_plan([r for r in runs if r["config"].schedule != "final"],
                             [r for r in runs if r["config"].schedule == "final"])
    assert set(grids.CONFIRMING) == set(range(1, 7))
    for claim, row in plan.iterrows():
        committed = grids.CONFIRMING[claim]
        assert committed["needed"] == row["needed"] and row["pilot seeds"] == "0-6"
        assert committed["seeds"] == (row["needed"] if row["runs"] else 0)


def test_a_budget_starts_no_run_it_cannot_end_and_says_what_is_left(capsys):
    """Paces from the records: a run of 4 steps at 60 s a step takes 4 minutes. A budget of 10
    minutes on 2 workers starts such a run, but not a seed of six of them (12 minutes of the two
    workers); a spent budget starts nothing and returns every run as left."""
    from mlc import launch

    runs = [make_config("fcos_minus", "smoke", seed=21, lr=0.001 * (i + 1)) for i in range(6)]
    key = ("smoke", "fcos_minus", False, False, False, False, False)
    tables = [{key: 60.0}, {}, {}]
    assert launch.steps(runs[0]) == 4 and launch.run_minutes(runs[0], tables) == pytest.approx(4.0)
    budget = launch.Budget(10, workers=2, pace_tables=tables)
    assert budget.fits(runs[0]) and not budget.fits(runs[0], runs)
    assert launch.left_line(runs, tables) == "6 run(s) (seeds 21), about 24 CPU-minutes"
    done, left = train_missing(runs, workers=2, budget=launch.Budget(0, 2, tables))
    assert done == [] and [c.name for c in left] == [c.name for c in runs]
    assert not any(load_record(c) for c in runs)


def test_status_says_how_much_of_the_pretrained_book_is_committed(capsys):
    from mlc.__main__ import main

    assert main(["runs", "--book", "pretrained", "--status"]) == 0
    line = capsys.readouterr().out.strip()
    total = sum(len(cs) for _, cs in grids.retrain_blocks("shapes", range(7)))
    assert line.startswith("pretrained book: ") and f" of {total} runs done; seeds whole: " in line
    assert "scorecard seeds whole: " in line and line.endswith("CPU-hours")


def test_a_seed_trained_on_another_machine_is_skipped_or_retrained_whole(tmp_path, monkeypatch, capsys):
    """A seed's runs are paired, so a block is trained only where the seed's committed runs were
    made: a record of seed 0 at another kernel fingerprint skips the seed's block, and
    --retrain-other-machines removes that record so that the seed is retrained here."""
    from mlc.__main__ import main

    results = tmp_path / "results"
    (results / "shapes").mkdir(parents=True)
    (results / "pretrained").symlink_to(Path(__file__).resolve().parents[1] / "results" / "pretrained")
    monkeypatch.setenv("MLC_RESULTS", str(results))
    monkeypatch.setenv("MLC_RUNS", str(tmp_path / "runs"))
    cfg = grids.retrain_blocks("shapes", [0])[0][1][0]
    made = results / "shapes" / f"{cfg.name}.json"
    made.write_text(json.dumps({"name": cfg.name, "config": cfg.to_json(), "metrics": {},
                                "provenance": {"kernel_fingerprint": "elsewhere"}}))
    common = ["runs", "--book", "pretrained", "--seeds", "1", "--block", "0", "--budget-min", "0"]
    assert main(common) == 0
    out = capsys.readouterr().out
    assert "skipped: seed 0's runs were trained at kernel fingerprint elsewhere" in out and made.exists()
    assert main([*common, "--retrain-other-machines"]) == 0
    out = capsys.readouterr().out
    assert f"{cfg.name}: trained at elsewhere, retrained here" in out and not made.exists()
