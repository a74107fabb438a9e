"""The runs the book reads: each table's rows as a *grid* of dicts {label, detector, set, paper[,
source, scale]}, where `set` holds config overrides (e.g. {"ml": True}), `paper` names the paper's row
and `source` a nested metrics entry (e.g. "iou_nms": the IUR run evaluated with IoU-NMS); the
sensitivity sweeps and the head-offset dial; and every config they need. Notebooks keep their
grid in their parameters cell, so a reader adds a variant by adding a dict.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlc.config import SCALES, RunConfig, make_config

FCOS_MINUS, RETINANET, RPN = "fcos_minus", "retinanet", "rpn"
# A row's init, set explicitly where a study must keep it whatever the scale's default is.
PRETRAINED, RANDOM_INIT = {"pretrained": True}, {"pretrained": False}
GRIDS = {
    1: [{"label": "FCOS−", "detector": FCOS_MINUS, "set": {}, "paper": "baseline"},
        {"label": "FCOS− + alignment", "detector": FCOS_MINUS, "set": {"alignment": True},
         "paper": "alignment"},
        {"label": "FCOS− + ML", "detector": FCOS_MINUS, "set": {"ml": True}, "paper": "ml"}],
    2: [{"label": "FCOS−", "detector": FCOS_MINUS, "set": {}, "paper": "baseline"},
        {"label": "FCOS− + centerness (FCOS)", "detector": "fcos", "set": {}, "paper": "centerness"},
        {"label": "FCOS− + IUR", "detector": FCOS_MINUS, "set": {"iur": True}, "paper": "iur"},
        {"label": "FCOS− + IoU-NMS", "detector": FCOS_MINUS, "set": {"iur": True},
         "paper": "iou_nms", "source": "iou_nms"}],
    3: [{"label": f"{name}{suffix}", "detector": det, "set": flags, "paper": f"{det}|{key}"}
        for det, name in ((FCOS_MINUS, "FCOS−"), (RETINANET, "RetinaNet"))
        for suffix, flags, key in (("", {}, "False|False"), (" + ML", {"ml": True}, "True|False"),
                                   (" + IUR", {"iur": True}, "False|True"),
                                   (" + ML + IUR", {"ml": True, "iur": True}, "True|True"))],
    4: [{"label": f"RPN{suffix}", "detector": RPN, "set": flags, "paper": f"rpn|{key}"}
        for suffix, flags, key in (("", {}, "False|False"), (" + ML", {"ml": True}, "True|False"),
                                   (" + IUR", {"iur": True}, "False|True"),
                                   (" + ML + IUR", {"ml": True, "iur": True}, "True|True"))],
    5: [{"label": "FCOS", "detector": "fcos", "set": {}, "paper": "FCOS"},
        {"label": "FCOS−", "detector": FCOS_MINUS, "set": {}, "paper": "FCOS−"},
        {"label": "FCOS− + MLC", "detector": FCOS_MINUS, "set": {"ml": True, "iur": True},
         "paper": "FCOS− + MLC"},
        {"label": "RetinaNet", "detector": RETINANET, "set": {}, "paper": "RetinaNet"},
        {"label": "RetinaNet + MLC", "detector": RETINANET, "set": {"ml": True, "iur": True},
         "paper": "RetinaNet + MLC"}],
}
SCHEDULE = {1: None, 2: None, 3: None, 4: None, 5: "final"}  # None: the scale's (ablation)

# MLC beside its successors (the book's page after the paper's tables): each detector alone,
# with VFL, with TAL and with ML + IUR, on the ablation schedule; `against` names the rows every
# other row is compared with.
SUCCESSORS = [{"label": f"{name}{suffix}", "detector": det, "set": flags, "method": method}
              for det, name in ((FCOS_MINUS, "FCOS−"), (RETINANET, "RetinaNet"))
              for suffix, flags, method in (("", {}, "baseline"), (" + VFL", {"vfl": True}, "VFL"),
                                            (" + TAL", {"tal": True}, "TAL"),
                                            (" + ML + IUR", {"ml": True, "iur": True}, "ML + IUR"))]

# The paired parts of the claims whose gains the noise study reads on the validation set's first
# 200 images and on the whole set: [label, method row, baseline row, metric], rows as {detector, set}.
_ROW = {name: {"detector": det, "set": flags} for name, det, flags in (
    ("FCOS−", FCOS_MINUS, {}), ("FCOS− + alignment", FCOS_MINUS, {"alignment": True}),
    ("FCOS− + ML", FCOS_MINUS, {"ml": True}), ("FCOS− + IUR", FCOS_MINUS, {"iur": True}),
    ("FCOS− + ML + IUR", FCOS_MINUS, {"ml": True, "iur": True}), ("FCOS", "fcos", {}),
    ("RetinaNet", RETINANET, {}), ("RetinaNet + ML", RETINANET, {"ml": True}),
    ("RetinaNet + IUR", RETINANET, {"iur": True}),
    ("RetinaNet + ML + IUR", RETINANET, {"ml": True, "iur": True}), ("RPN", RPN, {}),
    ("RPN + ML", RPN, {"ml": True}), ("RPN + IUR", RPN, {"iur": True}))}
NOISE_PARTS = [[f"{where}: {a} − {b}", _ROW[a], _ROW[b], key] for where, a, b, key in (
    ("Table 3", "FCOS− + ML + IUR", "FCOS−", "AP"),
    ("claim 1", "FCOS− + ML", "FCOS− + alignment", "AP"),
    ("claim 1", "FCOS− + ML", "FCOS− + alignment", "divergence.mean"),
    ("claim 2", "FCOS− + IUR", "FCOS", "AP"), ("claim 2", "FCOS− + IUR", "FCOS", "divergence.mean"),
    ("claim 4", "FCOS− + ML + IUR", "FCOS− + ML", "AP"), ("claim 4", "FCOS− + ML + IUR", "FCOS− + IUR", "AP"),
    ("claim 4", "RetinaNet + ML + IUR", "RetinaNet + ML", "AP"),
    ("claim 4", "RetinaNet + ML + IUR", "RetinaNet + IUR", "AP"),
    ("claim 5", "RPN + ML", "RPN", "AR100"), ("claim 5", "RPN + IUR", "RPN", "AR100"))]

# The gains retrained at the Xeon's own CPU kernels as well (results/kernels-native/, `make
# kernels-native`), on seeds 0-6: Table 3's FCOS− and RetinaNet gains, the AP parts of claims 1
# and 2 and the AR@100 parts of claim 5, each as [method row, baseline row] with labels and
# metric, as `noise.machine_shifts` reads them.
KERNEL_GAINS = [[{"label": name, **_ROW[name], "key": key} for name in pair]
                for pair, key in ((("FCOS− + ML + IUR", "FCOS−"), "AP"),
                                  (("RetinaNet + ML + IUR", "RetinaNet"), "AP"),
                                  (("FCOS− + ML", "FCOS− + alignment"), "AP"),
                                  (("FCOS− + IUR", "FCOS"), "AP"), (("RPN + ML", "RPN"), "AR100"),
                                  (("RPN + IUR", "RPN"), "AR100"))]

# Claims the book's seven seeds (0-6) left undecided, each with its confirmatory stages: fresh seeds
# after the book's, their number fixed before any of them ran from the seeds before them, and the
# rows they train. A claim reads its last stage alone (DESIGN.md, "One rule for every claim"); the
# earlier stages are shown after it. Each stage names how its number was planned and when it was
# fixed; the extra seeds extend only the full book at `shapes` scale (seeds 0-6 or more).
BOOK_SEEDS = 7
_FIRST_PLAN = "stats.seeds_to_decide (50% power to decide one part) on seeds 0-6"
DECIDING = {
    1: {"rows": [_ROW["FCOS− + ML"], _ROW["FCOS− + alignment"]],
        "stages": [{"seeds": 20, "planned": _FIRST_PLAN, "fixed": "2026-11-28"}]},
    2: {"rows": [_ROW["FCOS− + IUR"], _ROW["FCOS"]],
        "stages": [{"seeds": 9, "planned": _FIRST_PLAN, "fixed": "2026-11-28"}]},
    5: {"rows": [_ROW["RPN"], _ROW["RPN + ML"], _ROW["RPN + IUR"]],
        "stages": [{"seeds": 5, "planned": _FIRST_PLAN, "fixed": "2026-11-28"},
                   {"seeds": 29, "planned": "stats.seeds_for_power (80% power to decide every "
                    "part) on seeds 0-11", "fixed": "2026-12-05"}]},
}
# Choices made after a look at a claim's results, named in that claim's evidence.
AFTER_A_LOOK = {5: "RPN's lr was raised from 4x to 16x the paper's after claim 5 had read "
                   "contradicted at 4x (the setting page's sweep of the RPN baseline alone)"}


def stages(claim: int) -> list[range]:
    """The seeds of each stage of a claim: the book's seeds 0-6, then each confirmatory stage's
    fresh seeds (DECIDING)."""
    out = [range(BOOK_SEEDS)]
    for stage in DECIDING.get(claim, {}).get("stages", []):
        out.append(range(out[-1].stop, out[-1].stop + stage["seeds"]))
    return out


def deciding_configs(scale: str, seeds: Iterable[int],
                     claims: Iterable[int] | None = None) -> list[RunConfig]:
    """The runs DECIDING's claims (or those of `claims`) add to the book's: their rows on the
    seeds after the book's, up to each claim's last stage; none unless the book reads seeds 0-6 at
    `shapes` scale."""
    seeds = sorted(seeds)
    if scale != "shapes" or not set(range(BOOK_SEEDS)) <= set(seeds):
        return []
    chosen = DECIDING if claims is None else {n: DECIDING[n] for n in claims}
    return [cfg for n in chosen
            for cfg in grid_configs(DECIDING[n]["rows"], scale, range(seeds[-1] + 1, stages(n)[-1].stop))]


def part_configs(parts: list, scale: str, seeds: Iterable[int]) -> list[RunConfig]:
    """The distinct runs a list of NOISE_PARTS-like parts compares."""
    rows = [row for part in parts for row in part[1:3]]
    return grid_configs(rows, scale, seeds)


# The setting study ("Choosing the shapes setting"): candidate scales, the chosen one last, each
# with FCOS− and FCOS− + ML + IUR on seeds 0 and 1 (seeds the book trains anyway, where it does).
SETTING_CANDIDATES = ["shapes-v1", "shapes-600", "shapes"]
SETTING_SEEDS = [0, 1]


def setting_grid(candidates: list[str]) -> list[dict]:
    """Grid rows of FCOS− and FCOS− + ML + IUR at each candidate scale, from random init."""
    return [{"label": f"{name} {suffix}".strip(), "detector": FCOS_MINUS,
             "set": {**flags, **RANDOM_INIT},
             "scale": name, "role": role}
            for name in candidates
            for suffix, flags, role in (("", {}, "baseline"),
                                        ("+ ML + IUR", {"ml": True, "iur": True}, "method"))]


# RPN's learning rate at the `shapes` scale (the same page): the baseline alone, on the study's
# seeds, at 2x-64x the paper's lr scaled to the batch; the scale's RPN lr is one of them
# (mlc.config.RPN_LR_MULTIPLIER), and ML and IUR train at the baseline's. Part of the full book only.
RPN_LRS = [0.02, 0.04, 0.08, 0.16, 0.32, 0.64]


def rpn_lr_grid(lrs: list[float]) -> list[dict]:
    """Grid rows of the RPN baseline at each learning rate, from random init."""
    return sweep_grid(RPN, "lr", lrs, RANDOM_INIT)


# The dense detectors' learning rate (the same page): the FCOS− and RetinaNet baselines at half and
# twice the scale's lr (4x the paper's, chosen on FCOS− on an earlier set), on four seeds to see
# the spread beside the level. Part of the full book only.
DENSE_LRS = [0.01, 0.02, 0.04]
DENSE_LR_SEEDS = [0, 1, 2, 3]


def dense_lr_grid(detector: str, lrs: list[float]) -> list[dict]:
    """Grid rows of a dense detector's baseline at each learning rate, from random init."""
    return sweep_grid(detector, "lr", lrs, RANDOM_INIT)


# Both goals on one set (the same page): FCOS− and FCOS− + ML + IUR on the study's seeds at head
# offsets around the scale's own (0.7), to see whether moving the head out brings FCOS−'s
# correlation to the goal before its AP leaves it. 0.7 and 1.0 are the dial's runs; part of the
# full book only.
GOAL_OFFSETS = [0.7, 0.8, 1.0]


# Pretrained or random init (the same page): the four baselines and FCOS− + ML + IUR on the book's
# seeds with the tiny backbone pretrained on the generated classification set (mlc.models.pretrain),
# beside the same rows from random init. Part of the full book only.
INIT_ROWS = [{"label": "FCOS−", "detector": FCOS_MINUS, "set": {}},
             {"label": "FCOS", "detector": "fcos", "set": {}},
             {"label": "RetinaNet", "detector": RETINANET, "set": {}},
             {"label": "RPN", "detector": RPN, "set": {}},
             {"label": "FCOS− + ML + IUR", "detector": FCOS_MINUS, "set": {"ml": True, "iur": True}}]


def init_grid(rows: list[dict]) -> list[dict]:
    """Each row at both inits: random and pretrained (`pretrained` set to each)."""
    return [{**row, "label": f"{row['label']} ({init})", "init": init,
             "set": {**row["set"], **(PRETRAINED if init == "pretrained" else RANDOM_INIT)}}
            for row in rows for init in ("random", "pretrained")]


# The sweeps the book runs by default (the notebooks' parameter cells hold the same values).
GAMMAS = [0.5, 1.0, 2.0]  # IUR's loss weight, on FCOS− + IUR
ALPHAS = [0.0, 0.5, 2.0]  # ML's alpha, on RPN + ML
OFFSETS = [0.0, 0.7, 1.0]  # the generated set's head offset, FCOS− and FCOS− + MLC


def grid_configs(grid: list[dict], scale: str, seeds: Iterable[int],
                 schedule: str | None = None) -> list[RunConfig]:
    """The distinct run configs a grid needs (rows sharing a run, as IoU-NMS, share it); a row
    may name its own `scale` (the setting study's candidates)."""
    configs = {}
    for row in grid:
        for seed in seeds:
            cfg = make_config(row["detector"], row.get("scale", scale), schedule, seed, **row["set"])
            configs[cfg.name] = cfg
    return list(configs.values())


def sweep_grid(detector: str, field: str, values: list, base: dict | None = None) -> list[dict]:
    """Grid rows that vary one config field (e.g. gamma) on top of `base` overrides."""
    return [{"label": f"{field} = {v}", "detector": detector, "set": {**(base or {}), field: v},
             "paper": ""} for v in values]


def offset_grid(offsets: list[float], default: float, method: dict | None = None,
                base: dict | None = None) -> list[dict]:
    """Grid rows of FCOS− and FCOS− + `method` (default ML + IUR) at each head offset of the
    generated set, with `base` overrides on both; the scale's own offset (`default`) is the
    scale's set, shared with the tables."""
    method = {"ml": True, "iur": True} if method is None else method
    rows = []
    for off in offsets:
        where = {**(base or {}), **({} if off == default else {"head_offset": off})}
        rows.append({"label": f"FCOS− @ {off}", "detector": FCOS_MINUS, "set": where,
                     "offset": off, "role": "baseline"})
        rows.append({"label": f"FCOS− + MLC @ {off}", "detector": FCOS_MINUS,
                     "set": {**method, **where}, "offset": off, "role": "method"})
    return rows


def scorecard_configs(scale: str, seeds: Iterable[int],
                      final_schedule: str | None = "final") -> list[RunConfig]:
    """Every run the seven claims read: Tables 1-4 (the scale's schedule) and Table 5
    (`final_schedule`; None: the scale's, to keep smoke tests short)."""
    configs = {}
    for number, grid in GRIDS.items():
        for cfg in grid_configs(grid, scale, seeds, final_schedule if number == 5 else SCHEDULE[number]):
            configs[cfg.name] = cfg
    return list(configs.values())


def book_configs(scale: str, seeds: Iterable[int], final_schedule: str | None = "final") -> list[RunConfig]:
    """Every run the book's notebooks read with their default parameters: the tables and the
    scorecard, MLC's successors, the sensitivity sweeps, on a generated set the head-offset dial
    and, at `shapes` scale, the setting study's candidates, learning-rate checks and pretrained
    backbone, and the seeds that decide a claim."""
    seeds = list(seeds)
    configs = {c.name: c for c in scorecard_configs(scale, seeds, final_schedule)}
    grids = [SUCCESSORS, sweep_grid(FCOS_MINUS, "gamma", GAMMAS, {"iur": True}),
             sweep_grid(RPN, "alpha", ALPHAS, {"ml": True})]
    shapes = SCALES[scale].shapes
    if shapes is not None:
        grids.append(offset_grid(OFFSETS, shapes.head_offset))
    for grid in grids:
        configs.update((c.name, c) for c in grid_configs(grid, scale, seeds))
    if scale == "shapes":  # the setting study, on the seeds of SETTING_SEEDS the book trains
        study = setting_grid(SETTING_CANDIDATES) + (
            rpn_lr_grid(RPN_LRS) + offset_grid(GOAL_OFFSETS, shapes.head_offset, base=RANDOM_INIT)
            if set(range(BOOK_SEEDS)) <= set(seeds) else [])
        configs.update((c.name, c) for c in grid_configs(study, scale, [
            s for s in seeds if s in SETTING_SEEDS]))
        if set(range(BOOK_SEEDS)) <= set(seeds):
            dense = [row for det in (FCOS_MINUS, RETINANET) for row in dense_lr_grid(det, DENSE_LRS)]
            configs.update((c.name, c) for c in grid_configs(dense, scale, DENSE_LR_SEEDS))
            configs.update((c.name, c) for c in grid_configs(init_grid(INIT_ROWS), scale,
                                                             range(BOOK_SEEDS)))
    configs.update((c.name, c) for c in deciding_configs(scale, seeds))
    return list(configs.values())


# The pretrained book: every row the book's pages read on seeds 0-6, from the pretrained tiny body,
# retrained in seed blocks so that each block can be committed when it is trained. The scorecard's
# rows come first (Tables 1-5, and claim 2's like-for-like row, IUR's loss trained from epoch 0 as
# long as centerness trains), then the successors, the sensitivity sweeps and the head-offset dial.
# The setting page's studies (candidate sets, learning-rate sweeps, the random rows of the init
# comparison) stay at random init.
IUR_FROM_START = {"label": "FCOS− + IUR from epoch 0", "detector": FCOS_MINUS,
                  "set": {"iur": True, "mlc_start_epoch": 0}, "paper": "iur"}


def pretrained(grid: list[dict]) -> list[dict]:
    """The grid's rows from the pretrained body."""
    return [{**row, "set": {**row["set"], **PRETRAINED}} for row in grid]


def retrain_parts(scale: str, seed: int) -> list[tuple[str, list[RunConfig]]]:
    """The pretrained book's runs of one seed, in the order they are retrained: (part, configs)
    for the scorecard's rows, then the rest of the book's pages."""
    scorecard = {c.name: c for number, grid in GRIDS.items()
                 for c in grid_configs(pretrained(grid), scale, [seed],
                                       "final" if number == 5 else SCHEDULE[number])}
    scorecard.update((c.name, c) for c in grid_configs(pretrained([IUR_FROM_START]), scale, [seed]))
    rest = [SUCCESSORS, sweep_grid(FCOS_MINUS, "gamma", GAMMAS, {"iur": True}),
            sweep_grid(RPN, "alpha", ALPHAS, {"ml": True})]
    shapes = SCALES[scale].shapes
    if shapes is not None:
        rest.append(offset_grid(OFFSETS, shapes.head_offset))
    others = {c.name: c for grid in rest for c in grid_configs(pretrained(grid), scale, [seed])
              if c.name not in scorecard}
    return [("scorecard", list(scorecard.values())), ("rest of the book", list(others.values()))]


# The pretrained book's confirmatory stages (DESIGN.md, "One rule for every claim"). Its seeds 0-6
# are the pilot: tables, figures and each claim's plan, no verdict. Each of claims 1-6 is decided
# by one stage of fresh seeds after the pilot's, of the rows its parts compare (claim 2 on the
# like-for-like IUR row, claim 6 on the 24-epoch schedule). The stage's seeds are planned from
# the pilot (claims.pilot_plan: 80% power to decide every part), fixed and committed in
# CONFIRMING before any of its runs; a stage that would need more than MOST_STAGE_SEEDS is not
# run, and its claim reads "inconclusive, would need N seeds". Claim 7 is read on the pilot.
MOST_STAGE_SEEDS = 40
STAGE_ROWS = {1: [_ROW["FCOS− + ML"], _ROW["FCOS− + alignment"]],
              2: [IUR_FROM_START, _ROW["FCOS"]],
              3: [_ROW["FCOS− + IUR"]],
              4: [_ROW[f"{det}{suffix}"] for det in ("FCOS−", "RetinaNet")
                  for suffix in (" + ML + IUR", " + ML", " + IUR")],
              5: [_ROW["RPN"], _ROW["RPN + ML"], _ROW["RPN + IUR"]],
              6: [_ROW[name] for name in ("FCOS−", "FCOS− + ML + IUR", "RetinaNet", "RetinaNet + ML + IUR")]}
STAGE_SCHEDULE = {6: "final"}
PILOT_PLAN = "stats.seeds_for_power (80% power to decide every part) on the pretrained pilot, seeds 0-6"
# {claim: {"seeds": fresh seeds its stage trains (0: not run), "needed": the plan's number,
# "planned": how, "fixed": when}}, committed before any of the stages' runs.
CONFIRMING: dict[int, dict] = {
    claim: {"seeds": needed, "needed": needed, "planned": PILOT_PLAN, "fixed": "2026-12-07"}
    for claim, needed in ((1, 15), (2, 12), (3, 3), (4, 4), (5, 15), (6, 3))}


def confirm_seeds(claim: int) -> range:
    """The fresh seeds of a claim's confirmatory stage on the pretrained book (empty when it has
    none or its stage is not run)."""
    return range(BOOK_SEEDS, BOOK_SEEDS + CONFIRMING.get(claim, {}).get("seeds", 0))


def confirm_blocks(scale: str) -> list[tuple[str, list[RunConfig]]]:
    """The confirmatory stages' seed blocks: for each fresh seed, every run of the claims whose
    stage reaches it (runs the claims share, trained once)."""
    if scale != "shapes" or not CONFIRMING:
        return []
    blocks = []
    for seed in range(BOOK_SEEDS, max(confirm_seeds(c).stop for c in CONFIRMING)):
        configs = {c.name: c for claim in sorted(CONFIRMING) if seed in confirm_seeds(claim)
                   for c in grid_configs(pretrained(STAGE_ROWS[claim]), scale, [seed],
                                         STAGE_SCHEDULE.get(claim))}
        blocks.append((f"confirmatory stages, seed {seed}", list(configs.values())))
    return blocks


def retrain_blocks(scale: str, seeds: Iterable[int]) -> list[tuple[str, list[RunConfig]]]:
    """The pretrained book's seed blocks in training order: every seed's scorecard rows first,
    seed by seed, then every seed's other rows, then the confirmatory stages' fresh seeds
    (confirm_blocks); each block is (its name, its configs)."""
    seeds = list(seeds)
    by_seed = {seed: retrain_parts(scale, seed) for seed in seeds}
    return [(f"{part}, seed {seed}", by_seed[seed][i][1])
            for i, part in enumerate(("scorecard", "rest of the book")) for seed in seeds
            ] + confirm_blocks(scale)
