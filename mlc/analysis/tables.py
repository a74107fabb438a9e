"""The paper's tables beside the reproduction: the paper's values (data/paper/*.csv), ours as
mean ± std over seeds, the difference, and each gain over a baseline row in points and relative
to the baseline, ours with its paired 95% interval; the divergence at each IoU floor; the
head-offset dial; and one point per method for the divergence-against-AP figure.
"""

from __future__ import annotations

import statistics

import pandas as pd

from mlc.analysis.grids import RPN
from mlc.analysis.stats import (
    BANDS,
    MAX_BELOW_MEDIAN,
    format_interval,
    mean_std,
    paired_difference,
    relative,
    signed,
    verdict,
)
from mlc.config import make_config
from mlc.paths import REPO_ROOT

PAPER_DIR = REPO_ROOT / "data" / "paper"


def paper_table(number: int) -> pd.DataFrame:
    """Table `number` of the paper, indexed by the key the grids' `paper` entries use."""
    table = pd.read_csv(PAPER_DIR / f"table{number}.csv")
    if "variant" in table:
        return table.set_index("variant")
    if "ml" in table:
        return table.set_index(table["detector"] + "|" + table["ml"].astype(str) + "|"
                               + table["iur"].astype(str))
    return table.set_index("method")


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
    finished run of the row (at the row's `scale` where it names one), None where it has no
    such value (e.g. no object qualified)."""
    out = {}
    for run in runs:
        cfg = run["config"]
        if (run["record"] is None or cfg.detector != row["detector"]
                or cfg.scale != row.get("scale", cfg.scale)
                or cfg.name != make_config(row["detector"], cfg.scale, cfg.schedule, cfg.seed,
                                           **row["set"]).name):
            continue
        out[cfg.seed] = metric(run["record"], key, row.get("source"))
    return out


class PairingError(ValueError):
    """Two arms of a paired comparison were trained where the CPU kernels round otherwise."""


def fingerprints(runs: list[dict], row: dict) -> dict[int, str | None]:
    """{seed: kernel fingerprint its record was trained at} of a grid row's finished runs."""
    out = {}
    for run in runs:
        if per_seed([run], row, "AP"):
            out[run["config"].seed] = run["record"].get("provenance", {}).get("kernel_fingerprint")
    return out


def one_machine(runs: list[dict], a: dict, b: dict) -> None:
    """Refuse to pair rows `a` and `b` on a seed whose two runs were trained at two kernel
    fingerprints: their difference would hold the machines' rounding as well as the method's.
    The error names each such seed's runs and fingerprints (retrain one of them where the other
    was made)."""
    fa, fb = fingerprints(runs, a), fingerprints(runs, b)
    mixed = [s for s in sorted(set(fa) & set(fb)) if fa[s] != fb[s]]
    if mixed:
        def name(row: dict, seed: int) -> str:
            return next(r["config"].name for r in runs
                        if r["config"].seed == seed and per_seed([r], row, "AP"))
        raise PairingError(
            f"{a.get('label', a['detector'])} − {b.get('label', b['detector'])} pairs runs trained at "
            "two kernel fingerprints: " + "; ".join(
                f"seed {s}: {name(a, s)} at {fa[s]}, {name(b, s)} at {fb[s]}" for s in mixed))


def paired_rows(runs: list[dict], a: dict, b: dict, key: str) -> dict | None:
    """Row a − row b at `key` over the seeds both have (stats.paired_difference), once the two
    arms are known to be trained at one kernel fingerprint on every seed (`one_machine`)."""
    one_machine(runs, a, b)
    return paired_difference(per_seed(runs, a, key), per_seed(runs, b, key))


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def format_gain(diff: dict | None, baseline: float | None, digits: int = 1) -> str:
    """A gain in points with its interval, then relative to the baseline ('+1.5 [+0.2, +2.8];
    +13% [+2, +25]'); correlations (digits 2) in points only."""
    text = format_interval(diff, digits)
    rel = relative(diff, baseline) if digits == 1 else None
    return text if rel is None else f"{text}; {format_interval(rel, 0, '%')}"


def comparison_table(grid: list[dict], runs: list[dict], paper: pd.DataFrame,
                     columns: dict[str, tuple[str, str]], baseline: str | None = None) -> pd.DataFrame:
    """Per grid row and shown metric {name: (paper column, metric key)}: the paper's value, ours
    (mean ± std over seeds), ours − paper and, when `baseline` names a row, the paper's gain
    over it and ours (with a 95% interval over paired seeds), each also relative to the
    baseline's value. Correlations get 2 decimals, percentages 1. Columns are (metric, what);
    an empty `paper` (a sweep the paper does not have) leaves out the paper's columns."""
    base_row = next((r for r in grid if r["label"] == baseline), None)
    if not paper.empty:
        unknown = [r for r in grid if r.get("paper") and r["paper"] not in paper.index]
        if unknown:
            raise ValueError(f"row {unknown[0]['label']!r} names the paper's row "
                             f"{unknown[0]['paper']!r}, which the paper's table does not have; its "
                             f"rows: {', '.join(map(str, paper.index))} (or \"\" for none)")
    rows = {}
    for row in grid:
        out = {}
        for name, (paper_col, key) in columns.items():
            digits = 2 if "divergence" in key else 1
            ours = per_seed(runs, row, key)
            theirs = paper.at[row["paper"], paper_col] if row["paper"] in paper.index else None
            theirs = None if theirs is None or pd.isna(theirs) else float(theirs)
            mean = _mean(ours.values())
            if not paper.empty:
                out[(name, "paper")] = "–" if theirs is None else f"{theirs:.{digits}f}"
            out[(name, "ours")] = mean_std(list(ours.values()), digits)
            if not paper.empty:
                out[(name, "ours − paper")] = "–" if theirs is None or mean is None else \
                    signed(mean - theirs, digits)
            if base_row is not None:
                same = row is base_row
                base_ours = per_seed(runs, base_row, key)
                if not paper.empty:
                    base_theirs = float(paper.at[base_row["paper"], paper_col])
                    gain = None if theirs is None else {"mean": theirs - base_theirs, "lo": None,
                                                        "hi": None, "n": 1}
                    out[(name, "gain, paper")] = "" if same else (
                        "–" if gain is None else format_gain(gain, base_theirs, digits))
                out[(name, "gain, ours")] = "" if same else format_gain(
                    paired_rows(runs, row, base_row, key), _mean(base_ours.values()), digits)
        seeds = per_seed(runs, row, next(iter(columns.values()))[1])
        out[("", "seeds")] = ",".join(str(s) for s in sorted(seeds)) or "-"
        rows[row["label"]] = out
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "method"
    return table


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


def offset_table(grid: list[dict], runs: list[dict]) -> pd.DataFrame:
    """Per head offset: the baseline's correlation and AP, the method's AP and its gain (mean ±
    std over seeds; the gain with a paired 95% interval when there are several seeds), and the
    means the text reads (`_corr`, `_ap`, `_gain`)."""
    out = {}
    for off in sorted({r["offset"] for r in grid}):
        base = next(r for r in grid if r["offset"] == off and r["role"] == "baseline")
        meth = next(r for r in grid if r["offset"] == off and r["role"] == "method")
        corr = per_seed(runs, base, "divergence.mean")
        ap_b, ap_m = per_seed(runs, base, "AP"), per_seed(runs, meth, "AP")
        gain = paired_rows(runs, meth, base, "AP")
        out[off] = {"FCOS− correlation": mean_std(list(corr.values()), 3),
                    "FCOS− AP": mean_std(list(ap_b.values())),
                    "FCOS− + MLC AP": mean_std(list(ap_m.values())),
                    "MLC's AP gain": format_interval(gain),
                    "_corr": _mean(corr.values()),
                    "_ap": _mean(ap_b.values()),
                    "_gain": None if gain is None else gain["mean"]}
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "head offset"
    return table


def offsets_meeting_goals(table: pd.DataFrame, ap_goal: float, correlation_goal: float) -> list[float]:
    """The head offsets of an `offset_table` at which FCOS−'s mean AP reaches `ap_goal` and its
    mean correlation stays at or below `correlation_goal`: sets with working detectors and a
    divergence left to fix."""
    known = table.dropna(subset=["_ap", "_corr"])
    return [off for off, row in known.iterrows()
            if row["_ap"] >= ap_goal and row["_corr"] <= correlation_goal]


def method_points(runs: list[dict]) -> pd.DataFrame:
    """One row per trained detection method (config without its seed): detector, schedule,
    whether it is one of MLC's successors (VFL, TAL), mean AP and mean correlation over seeds.
    IoU-NMS is left out: it reranks after the boxes the metric reads."""
    groups: dict[str, dict] = {}
    for run in runs:
        cfg, record = run["config"], run["record"]
        if record is None or cfg.detector == RPN or metric(record, "divergence.mean") is None:
            continue
        flags = [k for k in ("ml", "iur", "alignment", "vfl", "tal") if getattr(cfg, k)]
        key = f"{cfg.detector} {cfg.schedule}" + "".join(f" +{f}" for f in flags)
        g = groups.setdefault(key, {"detector": cfg.detector, "schedule": cfg.schedule,
                                    "successor": cfg.vfl or cfg.tal, "AP": [], "correlation": []})
        g["AP"].append(metric(record, "AP"))
        g["correlation"].append(metric(record, "divergence.mean"))
    columns = ["detector", "schedule", "successor", "AP", "correlation", "seeds"]
    return pd.DataFrame([{"method": k, "detector": g["detector"], "schedule": g["schedule"],
                          "successor": g["successor"],
                          "AP": statistics.fmean(g["AP"]),
                          "correlation": statistics.fmean(g["correlation"]), "seeds": len(g["AP"])}
                         for k, g in groups.items()], columns=["method", *columns]).set_index("method")


def value_table(grid: list[dict], runs: list[dict], keys: dict[str, str]) -> pd.DataFrame:
    """Per grid row, each metric {name: key} as mean ± std over seeds, and the seeds."""
    rows = {}
    for row in grid:
        values = {name: per_seed(runs, row, key) for name, key in keys.items()}
        digits = {name: 3 if "divergence" in key else 1 for name, key in keys.items()}
        rows[row["label"]] = {**{name: mean_std(list(v.values()), digits[name])
                                 for name, v in values.items()},
                              "seeds": ",".join(str(s) for s in sorted(next(iter(values.values()))))
                              or "-"}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def difference_table(grid: list[dict], runs: list[dict], keys: dict[str, str],
                     against: str) -> pd.DataFrame:
    """Per grid row, each metric's paired difference from the row of the same detector whose
    `method` is `against`, with its 95% interval and relative to that row's mean ("" for that
    row itself; correlations in absolute terms), and the verdict on AP (`stats.verdict`)."""
    rows = {}
    for row in grid:
        ref = next((r for r in grid if r["detector"] == row["detector"] and r["method"] == against),
                   None)
        if ref is None or ref is row:
            continue
        out = {}
        for name, key in keys.items():
            theirs = per_seed(runs, ref, key)
            diff = paired_rows(runs, row, ref, key)
            out[name] = (format_interval(diff, 3) if "divergence" in key
                         else format_gain(diff, _mean(theirs.values())))
            if key == "AP":
                out["AP verdict"] = verdict(diff, BANDS["points"])
        rows[row["label"]] = out
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = f"method − {against}"
    return table


def step_cost(grid: list[dict], report: dict, names: dict[str, str]) -> pd.DataFrame:
    """Seconds per training step of each grid row from a `python -m mlc bench` report, and its
    ratio to its detector's baseline; `names` maps a row's `method` to the report's variant."""
    rows = {}
    for row in grid:
        times = report["training"].get(row["detector"], {})
        seconds, base = times.get(names[row["method"]]), times.get("baseline")
        rows[row["label"]] = {"s / step": "not measured" if seconds is None else f"{seconds:.4f}",
                              "× baseline": "" if seconds is None or not base
                              else f"{seconds / base:.3f}"}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def reference_points(grid: list[dict], runs: list[dict]) -> pd.DataFrame:
    """The outside reference points (data/paper/successors.csv: each method's published gain
    over its own baseline on COCO) beside ours, both in % of the baseline's AP, ours with its
    paired 95% interval."""
    refs = pd.read_csv(PAPER_DIR / "successors.csv")
    out = []
    for _, ref in refs.iterrows():
        row = next((r for r in grid if r["detector"] == ref["detector"]
                    and r["method"] == ref["method"]), None)
        base = next((r for r in grid if r["detector"] == ref["detector"]
                     and r["method"] == "baseline"), None)
        ours = "not in the grid"
        if row is not None and base is not None:
            b = per_seed(runs, base, "AP")
            rel = relative(paired_rows(runs, row, base, "AP"), _mean(b.values()))
            ours = format_interval(rel, 1, "%")
        theirs = 100 * (ref["method_AP"] - ref["baseline_AP"]) / ref["baseline_AP"]
        out.append({"method": ref["method"], "ours on": ref["detector"],
                    "reference (COCO, R-50)": f"{ref['reference']}: {ref['baseline_AP']} → "
                                              f"{ref['method_AP']}",
                    "reference gain": f"{theirs:+.1f}%", "our gain": ours,
                    "source": ref["source"]})
    return pd.DataFrame(out).set_index("method")


def cpu_minutes(record: dict) -> float:
    """Minutes a run's training and evaluation took (its steps at the pace of its last call; one
    process, one thread on the CPU scales)."""
    run = record["run"]
    return (run["steps_total"] * run["seconds_per_step"] + run["eval_seconds"]) / 60


def setting_points(grid: list[dict], runs: list[dict]) -> pd.DataFrame:
    """One row per finished run of the setting study: candidate scale, role (baseline or
    method), seed, AP, correlation and CPU-minutes."""
    rows = []
    for row in grid:
        for run in runs:
            if per_seed([run], row, "AP"):
                rows.append({"scale": row["scale"], "role": row["role"], "seed": run["config"].seed,
                             "AP": metric(run["record"], "AP"),
                             "correlation": metric(run["record"], "divergence.mean"),
                             "minutes": cpu_minutes(run["record"])})
    return pd.DataFrame(rows, columns=["scale", "role", "seed", "AP", "correlation", "minutes"])


def setting_table(grid: list[dict], runs: list[dict]) -> pd.DataFrame:
    """Per candidate scale: its data, minutes a run, FCOS−'s AP and correlation, ML + IUR's AP
    gain with its paired 95% interval, and the evidence a CPU-minute buys: the gain over the
    std of its paired per-seed values times the square root of a run's minutes (a t-statistic
    per square root of the minutes spent, so that settings of different cost compare)."""
    from mlc.config import SCALES

    out = {}
    for name in dict.fromkeys(r["scale"] for r in grid):
        base = next(r for r in grid if r["scale"] == name and r["role"] == "baseline")
        meth = next(r for r in grid if r["scale"] == name and r["role"] == "method")
        ap_b, ap_m = per_seed(runs, base, "AP"), per_seed(runs, meth, "AP")
        spec = SCALES[name].shapes
        minutes = [cpu_minutes(r["record"]) for r in runs
                   if per_seed([r], base, "AP") or per_seed([r], meth, "AP")]
        diff = paired_rows(runs, meth, base, "AP")
        paired = [ap_m[s] - ap_b[s] for s in ap_m if s in ap_b and None not in (ap_m[s], ap_b[s])]
        merit = "n/a"
        if len(paired) >= 2 and statistics.stdev(paired) > 0 and minutes:
            noise = statistics.stdev(paired) * statistics.fmean(minutes) ** 0.5
            merit = f"{statistics.fmean(paired) / noise:+.2f}"
        out[name] = {
            "data": f"{spec.num_train} images of {spec.image_size} px, objects {spec.min_size:g}-"
                    f"{spec.max_size:g} px, head {spec.head_scale:g} ({spec.head_colour} colour)",
            "min / run": mean_std(minutes, 1),
            "FCOS− AP": mean_std(list(ap_b.values())),
            "FCOS− correlation": mean_std(list(per_seed(runs, base, "divergence.mean").values()), 3),
            "ML + IUR gain": format_gain(diff, _mean(ap_b.values())),
            "gain / (sd √min)": merit,
        }
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "candidate"
    return table


def init_points(grid: list[dict], runs: list[dict]) -> pd.DataFrame:
    """One row per finished run of an init grid (grids.init_grid): the row's label without its
    init, the init, seed, headline metric (AR@100 for RPN, else AP) and correlation."""
    rows = []
    for row in grid:
        key = "AR100" if row["detector"] == RPN else "AP"
        corr = per_seed(runs, row, "divergence.mean")
        for seed, value in per_seed(runs, row, key).items():
            rows.append({"row": row["label"].rsplit(" (", 1)[0], "init": row["init"], "seed": seed,
                         "metric": key, "value": value, "correlation": corr.get(seed)})
    return pd.DataFrame(rows, columns=["row", "init", "seed", "metric", "value", "correlation"])


def init_table(grid: list[dict], runs: list[dict]) -> pd.DataFrame:
    """Per row and init: the headline metric's mean ± sample std over seeds, its worst seed's
    distance below the median, whether it meets the one spread goal (no seed more than
    stats.MAX_BELOW_MEDIAN below the median), the correlation, the kernel fingerprints its runs
    were trained at, and pretrained − random over paired seeds with its 95% interval (said to
    pair two machines where it does)."""
    points = init_points(grid, runs)
    out = {}
    for (label, init), group in points.groupby(["row", "init"], sort=False):
        values = group["value"].dropna()
        below = float(values.median() - values.min()) if len(values) else None
        row = next(r for r in grid if r["label"].rsplit(" (", 1)[0] == label and r["init"] == init)
        machines = fingerprints(runs, row)
        out[(label, init)] = {
            "metric": group["metric"].iloc[0], "seeds": ",".join(map(str, sorted(group["seed"]))),
            "mean ± std": mean_std(list(values)),
            "worst below median": "–" if below is None else f"{below:.1f}",
            "goal met": "–" if below is None else "yes" if below <= MAX_BELOW_MEDIAN else "no",
            "correlation": mean_std(list(group["correlation"].dropna()), 3),
            "kernel fingerprint": ", ".join(sorted({str(f) for f in machines.values()})),
        }
        if init == "pretrained":
            other = points[(points["row"] == label) & (points["init"] == "random")]
            diff = paired_difference(dict(zip(group["seed"], group["value"])),
                                     dict(zip(other["seed"], other["value"])))
            twin = next((r for r in grid if r["label"].rsplit(" (", 1)[0] == label
                         and r["init"] == "random"), None)
            theirs = fingerprints(runs, twin) if twin else {}
            mixed = any(s in theirs and theirs[s] != f for s, f in machines.items())
            out[(label, init)]["pretrained − random"] = format_interval(diff) + (
                " (two CPUs)" if mixed else "")
    table = pd.DataFrame.from_dict(out, orient="index").fillna("")
    if out:
        table.index.names = ["row", "init"]
    return table


def init_gain_table(grid: list[dict], runs: list[dict], method: str, baseline: str) -> pd.DataFrame:
    """The paired gain of row `method` over row `baseline` (labels without their init) at each
    init, in AP and correlation, with 95% intervals and in % of the baseline."""
    out = {}
    for init in ("random", "pretrained"):
        rows = {r["label"].rsplit(" (", 1)[0]: r for r in grid if r["init"] == init}
        if method not in rows or baseline not in rows:
            continue
        m, b = rows[method], rows[baseline]
        ap_b = per_seed(runs, b, "AP")
        out[init] = {
            "AP gain": format_gain(paired_difference(per_seed(runs, m, "AP"), ap_b),
                                   _mean(ap_b.values())),
            "correlation gain": format_interval(paired_difference(
                per_seed(runs, m, "divergence.mean"), per_seed(runs, b, "divergence.mean")), 3),
        }
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "init"
    return table


def body_norms(weights) -> pd.DataFrame:
    """Per conv of a pretrained tiny body (a weights file of mlc.models.pretrain): its weight's
    norm as pretrained, the norm PyTorch's default init gives its shape in expectation
    (sqrt(out_channels / 3), what `mlc.models.rescale_to_initial_norm` scales it back to) and
    their ratio, whose square divides the step a normalised layer takes at a given lr."""
    import torch

    state = torch.load(weights, map_location="cpu", weights_only=True)
    rows = {name.removesuffix(".weight"): {"pretrained": float(w.norm()), "initial": (w.shape[0] / 3) ** 0.5}
            for name, w in state.items() if w.dim() == 4}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["ratio"] = table["pretrained"] / table["initial"]
    table.index.name = "conv"
    return table.round(2)
