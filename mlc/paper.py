"""The paper beside the reproduction: its tables (data/paper/*.csv), the runs each table needs,
tables of paper value, reproduced mean ± std over seeds and the differences, and the paper's
seven claims (DESIGN.md) judged with paired per-seed differences and 95% intervals.

A table's rows are a *grid*: dicts {label, detector, set, paper[, source]} where `set` holds
config overrides (e.g. {"ml": true}), `paper` names the paper's row and `source` picks a
nested metrics entry (e.g. "iou_nms": the IUR run evaluated with IoU-NMS). Notebooks keep the
grid in their parameters cell, so a reader adds a variant by adding a dict.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

import pandas as pd

from mlc.config import SCALES, RunConfig, make_config
from mlc.paths import REPO_ROOT
from mlc.report import mean_std

PAPER_DIR = REPO_ROOT / "data" / "paper"

# Two-sided 95% quantiles of Student's t by degrees of freedom (normal beyond 30).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}

FCOS_MINUS, RETINANET, RPN = "fcos_minus", "retinanet", "rpn"
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


def paper_table(number: int) -> pd.DataFrame:
    """Table `number` of the paper, indexed by the key the grids' `paper` entries use."""
    table = pd.read_csv(PAPER_DIR / f"table{number}.csv")
    if "variant" in table:
        return table.set_index("variant")
    if "ml" in table:
        return table.set_index(table["detector"] + "|" + table["ml"].astype(str) + "|"
                               + table["iur"].astype(str))
    return table.set_index("method")


def grid_configs(grid: list[dict], scale: str, seeds: Iterable[int],
                 schedule: str | None = None) -> list[RunConfig]:
    """The distinct run configs a grid needs (rows sharing a run, as IoU-NMS, share it)."""
    configs = {}
    for row in grid:
        for seed in seeds:
            cfg = make_config(row["detector"], scale, schedule, seed, **row["set"])
            configs[cfg.name] = cfg
    return list(configs.values())


def metric(record: dict | None, key: str, source: str | None = None) -> float | None:
    """A metric of a run's record; `key` may be dotted ("divergence.mean"), `source` a nested
    entry ("iou_nms"). None when the run or the value is missing."""
    if record is None:
        return None
    value = record["metrics"] if source is None else record["metrics"].get(source)
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def per_seed(runs: list[dict], row: dict, key: str) -> dict[int, float | None]:
    """{seed: value} of a grid row's metric over the collected runs (see report.collect): every
    finished run of the row, None where it has no such value (e.g. no object qualified)."""
    out = {}
    for run in runs:
        cfg = run["config"]
        if run["record"] is None or cfg.detector != row["detector"] or cfg.name != make_config(
                row["detector"], cfg.scale, cfg.schedule, cfg.seed, **row["set"]).name:
            continue
        out[cfg.seed] = metric(run["record"], key, row.get("source"))
    return out


def comparison_table(grid: list[dict], runs: list[dict], paper: pd.DataFrame,
                     columns: dict[str, tuple[str, str]], baseline: str | None = None) -> pd.DataFrame:
    """Per grid row and shown metric {name: (paper column, metric key)}: the paper's value, ours
    (mean ± std over seeds), ours − paper and, when `baseline` names a row, the paper's gain
    over it and ours (with a 95% interval over paired seeds). Correlations get 2 decimals,
    percentages 1. Columns are (metric, what); an empty `paper` (a sweep the paper does not
    have) leaves out the paper's columns."""
    base_row = next((r for r in grid if r["label"] == baseline), None)
    rows = {}
    for row in grid:
        out = {}
        for name, (paper_col, key) in columns.items():
            digits = 2 if "divergence" in key else 1
            ours = per_seed(runs, row, key)
            theirs = paper.at[row["paper"], paper_col] if row["paper"] in paper.index else None
            theirs = None if theirs is None or pd.isna(theirs) else float(theirs)
            present = [v for v in ours.values() if v is not None]
            mean = statistics.fmean(present) if present else None
            if not paper.empty:
                out[(name, "paper")] = "–" if theirs is None else f"{theirs:.{digits}f}"
            out[(name, "ours")] = mean_std(list(ours.values()), digits)
            if not paper.empty:
                out[(name, "ours − paper")] = "–" if theirs is None or mean is None else \
                    f"{mean - theirs:+.{digits}f}"
            if base_row is not None:
                base_theirs = float(paper.at[base_row["paper"], paper_col])
                same = row is base_row
                out[(name, "gain, paper")] = "" if same else (
                    "–" if theirs is None else f"{theirs - base_theirs:+.{digits}f}")
                out[(name, "gain, ours")] = "" if same else format_interval(
                    paired_difference(ours, per_seed(runs, base_row, key)), digits)
        seeds = per_seed(runs, row, next(iter(columns.values()))[1])
        out[("", "seeds")] = ",".join(str(s) for s in sorted(seeds)) or "-"
        rows[row["label"]] = out
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "method"
    return table


def paired_difference(a: dict[int, float], b: dict[int, float]) -> dict | None:
    """Mean of a − b over the seeds both have, with a 95% t-interval (None with one seed)."""
    seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
    if not seeds:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return {"mean": mean, "lo": None, "hi": None, "n": 1}
    df = len(diffs) - 1
    t = T975[max(k for k in T975 if k <= df)] if df <= 30 else 1.96  # conservative between rows
    half = t * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": len(diffs)}


def format_interval(diff: dict | None, digits: int = 1) -> str:
    """'+mean [lo, hi]', '+mean' with one seed, 'no data' without a pair of values."""
    if diff is None:
        return "no data"
    if diff["lo"] is None:
        return f"{diff['mean']:+.{digits}f}"
    return f"{diff['mean']:+.{digits}f} [{diff['lo']:+.{digits}f}, {diff['hi']:+.{digits}f}]"


def verdict(diffs: list[dict | None]) -> str:
    """'held' when every difference's 95% interval lies above 0, 'not held' when a mean is at
    or below 0, else 'inconclusive'; with one seed the point estimates decide, and say so."""
    if not diffs or any(d is None for d in diffs):
        return "no data (a run is missing or has no value)"
    if any(d["mean"] <= 0 for d in diffs):
        return "not held" + (" (1 seed)" if any(d["n"] == 1 for d in diffs) else "")
    if any(d["n"] == 1 for d in diffs):
        return "held (1 seed, no interval)"
    return "held" if all(d["lo"] > 0 for d in diffs) else "inconclusive"


def _row(detector: str, source: str | None = None, **flags) -> dict:
    return {"label": detector, "detector": detector, "set": flags, "source": source}


def scorecard_configs(scale: str, seeds: Iterable[int],
                      final_schedule: str | None = "final") -> list[RunConfig]:
    """Every run the seven claims read: Tables 1-4 (the scale's schedule) and Table 5
    (`final_schedule`; None: the scale's, to keep smoke tests short)."""
    configs = {}
    for number, grid in GRIDS.items():
        for cfg in grid_configs(grid, scale, seeds, final_schedule if number == 5 else SCHEDULE[number]):
            configs[cfg.name] = cfg
    return list(configs.values())


def _diff(runs: list[dict], a: dict, b: dict, key: str) -> dict | None:
    return paired_difference(per_seed(runs, a, key), per_seed(runs, b, key))


def _gap(runs: list[dict], a: dict, b: dict, key_a: str, key_b: str) -> dict | None:
    """Per seed (a − b at key_a) − (a − b at key_b): e.g. the AP75 gain minus the AP50 gain."""
    first, second = per_seed(runs, a, key_a), per_seed(runs, a, key_b)
    base_first, base_second = per_seed(runs, b, key_a), per_seed(runs, b, key_b)
    seeds = set(first) & set(second) & set(base_first) & set(base_second)
    return paired_difference({s: first[s] - base_first[s] for s in seeds},
                             {s: second[s] - base_second[s] for s in seeds})


def scorecard(runs: list[dict], final_runs: list[dict]) -> pd.DataFrame:
    """The seven claims of DESIGN.md, each with its evidence (mean difference over paired seeds
    and its 95% interval) and a verdict; `final_runs` are the 24-epoch runs of Table 5."""
    corr, ap = "divergence.mean", "AP"
    align, ml = _row(FCOS_MINUS, alignment=True), _row(FCOS_MINUS, ml=True)
    iur, fcos = _row(FCOS_MINUS, iur=True), _row("fcos")
    iou_nms = _row(FCOS_MINUS, source="iou_nms", iur=True)
    claims = []

    d = [_diff(runs, ml, align, ap), _diff(runs, ml, align, corr)]
    claims.append(("1. ML raises FCOS−'s correlation and AP more than prediction alignment",
                   f"AP ML − alignment {format_interval(d[0])}; correlation "
                   f"{format_interval(d[1], 2)}", verdict(d)))

    d = [_diff(runs, iur, fcos, corr)]
    ap_gap = _diff(runs, iur, fcos, ap)
    v = verdict(d)
    if ap_gap is not None and v.startswith("held") and (ap_gap["hi"] if ap_gap["hi"] is not None
                                                        else ap_gap["mean"]) < 0:
        v = "not held (AP below centerness)"
    elif ap_gap is not None and v == "held" and ap_gap["mean"] < 0:
        v = "held (AP lower, but within its interval)"
    claims.append(("2. IUR raises the correlation far more than centerness, AP at least as high",
                   f"correlation IUR − centerness {format_interval(d[0], 2)}; AP "
                   f"{format_interval(ap_gap)}", v if ap_gap is not None else "not run"))

    d = [paired_difference(per_seed(runs, iur, ap), per_seed(runs, iou_nms, ap))]
    claims.append(("3. IoU-NMS on IUR's IoUs scores below IUR's rescoring",
                   f"AP rescoring − IoU-NMS {format_interval(d[0])}", verdict(d)))

    d, text = [], []
    for det in (FCOS_MINUS, RETINANET):
        both, one, other = _row(det, ml=True, iur=True), _row(det, ml=True), _row(det, iur=True)
        for single, name in ((one, "ML"), (other, "IUR")):
            d.append(_diff(runs, both, single, ap))
            text.append(f"{det} ML+IUR − {name} {format_interval(d[-1])}")
    claims.append(("4. ML and IUR are complementary: ML+IUR is best (FCOS−, RetinaNet)",
                   "AP " + "; ".join(text), verdict(d)))

    d, text, gains = [], [], {}
    for flags, name in (({"ml": True}, "ML"), ({"iur": True}, "IUR")):
        for k in ("AR100", "AR300", "AR1000"):
            d.append(_diff(runs, _row(RPN, **flags), _row(RPN), k))
            gains[(name, k)] = d[-1]
        text.append(f"{name}: " + ", ".join(f"{k} {format_interval(gains[(name, k)])}"
                                             for k in ("AR100", "AR300", "AR1000")))
    v = verdict(d)
    if v.startswith("held") and not all(
            gains[(n, "AR100")]["mean"] >= max(gains[(n, "AR300")]["mean"], gains[(n, "AR1000")]["mean"])
            for n in ("ML", "IUR")):
        v = "not held (largest gain not at AR100)"
    claims.append(("5. ML and IUR raise RPN AR@100/300/1000, most at AR@100", "; ".join(text), v))

    d = [_gap(final_runs, _row(det, ml=True, iur=True), _row(det), "AP75", "AP50")
         for det in (FCOS_MINUS, RETINANET)]
    claims.append(("6. MLC lifts AP75 more than AP50 (24-epoch schedule)",
                   "MLC's AP75 gain − AP50 gain: " + "; ".join(
                       f"{det} {format_interval(x)}" for det, x in zip((FCOS_MINUS, RETINANET), d)),
                   verdict(d)))

    claims.append(("7. Across methods the correlation tracks AP", *_correlation_tracks_ap(runs)))
    return pd.DataFrame(claims, columns=["claim", "evidence", "verdict"]).set_index("claim")


def method_points(runs: list[dict]) -> pd.DataFrame:
    """One row per trained detection method (config without its seed): detector, schedule,
    mean AP and mean correlation over seeds. IoU-NMS is left out: it reranks after the boxes
    the metric reads."""
    groups: dict[str, dict] = {}
    for run in runs:
        cfg, record = run["config"], run["record"]
        if record is None or cfg.detector == RPN or metric(record, "divergence.mean") is None:
            continue
        flags = [k for k in ("ml", "iur", "alignment") if getattr(cfg, k)]
        key = f"{cfg.detector} {cfg.schedule}" + "".join(f" +{f}" for f in flags)
        g = groups.setdefault(key, {"detector": cfg.detector, "schedule": cfg.schedule,
                                    "AP": [], "correlation": []})
        g["AP"].append(metric(record, "AP"))
        g["correlation"].append(metric(record, "divergence.mean"))
    columns = ["detector", "schedule", "AP", "correlation", "seeds"]
    return pd.DataFrame([{"method": k, "detector": g["detector"], "schedule": g["schedule"],
                          "AP": statistics.fmean(g["AP"]),
                          "correlation": statistics.fmean(g["correlation"]), "seeds": len(g["AP"])}
                         for k, g in groups.items()], columns=["method", *columns]).set_index("method")


def _correlation_tracks_ap(runs: list[dict]) -> tuple[str, str]:
    """Pearson r between mean correlation and mean AP over the FCOS family's methods on the
    ablation schedule (the paper's Tables 1-2), with Fisher's 95% interval."""
    points = method_points(runs)
    points = points[points["detector"].isin(["fcos", FCOS_MINUS]) & (points["schedule"] != "final")]
    n = len(points)
    if n < 4:
        return f"{n} methods with a correlation; at least 4 needed", "no data"
    r = float(pd.Series(points["AP"], dtype=float).corr(pd.Series(points["correlation"], dtype=float)))
    z, half = math.atanh(max(min(r, 0.999999), -0.999999)), 1.96 / math.sqrt(n - 3)
    lo, hi = math.tanh(z - half), math.tanh(z + half)
    v = "held" if lo > 0 else ("not held" if r <= 0 else "inconclusive")
    text = f"Pearson r = {r:+.2f} [{lo:+.2f}, {hi:+.2f}] over {n} methods"
    minus = points[points["detector"] == FCOS_MINUS]
    if len(minus) >= 3:  # shown beside, not judged: the verdict's set was fixed beforehand
        r_minus = float(pd.Series(minus["AP"], dtype=float).corr(pd.Series(minus["correlation"],
                                                                           dtype=float)))
        text += f" (FCOS− variants alone: r = {r_minus:+.2f} over {len(minus)})"
    return text, v


def floor_table(grid: list[dict], runs: list[dict]) -> pd.DataFrame:
    """The divergence metric of each grid row at every recorded IoU floor (mean ± std over
    seeds): how the figure moves with the floor that DESIGN.md sets at 0.3."""
    rows = {}
    for row in grid:
        records = [metric(r["record"], "divergence_by_floor") for r in runs
                   if per_seed([r], row, "AP")]
        floors = sorted({f for rec in records if rec for f in rec}, key=float)
        rows[row["label"]] = {f"IoU ≥ {f}": mean_std([(rec or {}).get(f, {}).get("mean")
                                                      for rec in records], 2) for f in floors}
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("not run")
    table.index.name = "method"
    return table


def sweep_grid(detector: str, field: str, values: list, base: dict | None = None) -> list[dict]:
    """Grid rows that vary one config field (e.g. gamma) on top of `base` overrides."""
    return [{"label": f"{field} = {v}", "detector": detector, "set": {**(base or {}), field: v},
             "paper": ""} for v in values]


def offset_grid(offsets: list[float], default: float, method: dict | None = None) -> list[dict]:
    """Grid rows of FCOS− and FCOS− + `method` (default ML + IUR) at each head offset of the
    generated set; the scale's own offset (`default`) is the scale's set, shared with the tables."""
    method = {"ml": True, "iur": True} if method is None else method
    rows = []
    for off in offsets:
        where = {} if off == default else {"head_offset": off}
        rows.append({"label": f"FCOS− @ {off}", "detector": FCOS_MINUS, "set": where,
                     "offset": off, "role": "baseline"})
        rows.append({"label": f"FCOS− + MLC @ {off}", "detector": FCOS_MINUS,
                     "set": {**method, **where}, "offset": off, "role": "method"})
    return rows


def offset_table(grid: list[dict], runs: list[dict]) -> pd.DataFrame:
    """Per head offset: the baseline's correlation and AP, the method's AP and its gain (mean ±
    std over seeds; the gain with a paired 95% interval when there are several seeds)."""
    out = {}
    for off in sorted({r["offset"] for r in grid}):
        base = next(r for r in grid if r["offset"] == off and r["role"] == "baseline")
        meth = next(r for r in grid if r["offset"] == off and r["role"] == "method")
        corr = per_seed(runs, base, "divergence.mean")
        ap_b, ap_m = per_seed(runs, base, "AP"), per_seed(runs, meth, "AP")
        gain = paired_difference(ap_m, ap_b)
        out[off] = {"FCOS− correlation": mean_std(list(corr.values()), 3),
                    "FCOS− AP": mean_std(list(ap_b.values())),
                    "FCOS− + MLC AP": mean_std(list(ap_m.values())),
                    "MLC's AP gain": format_interval(gain),
                    "_corr": statistics.fmean([v for v in corr.values() if v is not None])
                    if any(v is not None for v in corr.values()) else None,
                    "_gain": None if gain is None else gain["mean"]}
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "head offset"
    return table


# The sweeps the book runs by default (the notebooks' parameter cells hold the same values).
GAMMAS = [0.5, 1.0, 2.0]  # IUR's loss weight, on FCOS− + IUR
ALPHAS = [0.0, 0.5, 2.0]  # ML's alpha, on RPN + ML
OFFSETS = [0.0, 0.5, 1.0]  # the generated set's head offset, FCOS− and FCOS− + MLC


def book_configs(scale: str, seeds: Iterable[int], final_schedule: str | None = "final") -> list[RunConfig]:
    """Every run the book's notebooks read with their default parameters: the tables and the
    scorecard, the sensitivity sweeps and, on a generated set, the head-offset dial."""
    seeds = list(seeds)
    configs = {c.name: c for c in scorecard_configs(scale, seeds, final_schedule)}
    grids = [sweep_grid(FCOS_MINUS, "gamma", GAMMAS, {"iur": True}),
             sweep_grid(RPN, "alpha", ALPHAS, {"ml": True})]
    shapes = SCALES[scale].shapes
    if shapes is not None:
        grids.append(offset_grid(OFFSETS, shapes.head_offset))
    for grid in grids:
        configs.update((c.name, c) for c in grid_configs(grid, scale, seeds))
    return list(configs.values())
