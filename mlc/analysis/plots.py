"""The book's statistical figures, drawn with seaborn in one style (a colour-blind-safe palette,
sized for the book's column): each method's gain with its interval beside the paper's, the
sensitivity sweeps, the divergence-against-AP scatter with its regression band, the head-offset
dial and the learning curves. Intervals are Student-t 95% intervals of the mean over seeds, as
in the tables (for gains: of the paired per-seed differences).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy import stats

from mlc.analysis.tables import metric, per_seed

WIDTH = 7.0  # inches: the book's column at 100 dpi
PALETTE = "colorblind"
OURS, PAPER = sns.color_palette(PALETTE)[0], sns.color_palette(PALETTE)[1]


def style() -> None:
    """The book's one style; call once before drawing."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, font_scale=0.85,
                  rc={"figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (WIDTH, 3.2)})


def t_interval(values: pd.Series) -> tuple[float, float]:
    """The 95% Student-t interval of the mean of `values` (seaborn's errorbar hook); the mean
    itself with fewer than two values or no spread."""
    values = pd.Series(values).dropna()
    mean = float(values.mean())
    if len(values) < 2 or values.std() == 0:
        return mean, mean
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return float(lo), float(hi)


def gain_frame(grid: list[dict], runs: list[dict], paper: pd.DataFrame, columns: dict,
               baselines: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ours, paper's) gains over each row's baseline in % of the baseline's mean: ours one row
    per method, metric and seed; the paper's one per method and metric. Correlations are left
    out (their gains are in the tables)."""
    ours, theirs = [], []
    for det, base_label in baselines.items():
        base = next(r for r in grid if r["label"] == base_label)
        for row in grid:
            if row is base or (det is not None and row["detector"] != det):
                continue
            for name, (paper_col, key) in columns.items():
                if "divergence" in key:
                    continue
                a, b = per_seed(runs, row, key), per_seed(runs, base, key)
                present = [v for v in b.values() if v is not None]
                mean_b = sum(present) / len(present) if present else 0.0
                if mean_b:  # no relative gain over a baseline of 0
                    ours += [{"method": row["label"], "metric": name, "seed": s,
                              "gain": 100 * (a[s] - b[s]) / mean_b}
                             for s in sorted(set(a) & set(b)) if a[s] is not None and b[s] is not None]
                if row["paper"] in paper.index and base["paper"] in paper.index \
                        and pd.notna(paper.at[row["paper"], paper_col]):
                    p = float(paper.at[row["paper"], paper_col])
                    pb = float(paper.at[base["paper"], paper_col])
                    theirs.append({"method": row["label"], "metric": name, "gain": 100 * (p - pb) / pb})
    return (pd.DataFrame(ours, columns=["method", "metric", "seed", "gain"]),
            pd.DataFrame(theirs, columns=["method", "metric", "gain"]))


def gains(grid: list[dict], runs: list[dict], paper: pd.DataFrame, columns: dict,
          baselines: dict, title: str) -> Figure | None:
    """Each method's gain over its baseline in % of the baseline, one panel per metric: ours as
    the mean of the paired per-seed gains with its 95% interval, the paper's as a diamond. None
    when there is nothing to draw (no finished run, or baselines at 0)."""
    ours, theirs = gain_frame(grid, runs, paper, columns, baselines)
    if ours.empty:
        return None
    metrics = list(dict.fromkeys(ours["metric"]))
    order = list(dict.fromkeys(ours["method"]))
    fig, axes = plt.subplots(1, len(metrics), sharey=True, squeeze=False,
                             figsize=(WIDTH, 0.45 * len(order) + 1.7))
    for ax, name in zip(axes[0], metrics):
        sns.pointplot(data=ours[ours["metric"] == name], x="gain", y="method", order=order,
                      errorbar=t_interval, linestyle="none", color=OURS, capsize=0.25, ax=ax,
                      label="ours: mean and 95% interval over paired seeds")
        if not theirs.empty and (theirs["metric"] == name).any():
            sns.pointplot(data=theirs[theirs["metric"] == name], x="gain", y="method", order=order,
                          errorbar=None, linestyle="none", markers="D", color=PAPER, ax=ax,
                          label="paper")
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set(xlabel=f"{name} gain (%)", ylabel="")
        if ax.get_legend():
            ax.get_legend().remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"{title}: gain over the baseline, in % of its value", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def sweep(grid: list[dict], runs: list[dict], field: str, keys: dict[str, str],
          title: str, per_seed_lines: bool = False) -> Figure | None:
    """Each metric {name: key} against the swept config field, mean over seeds with its 95%
    interval; with `per_seed_lines`, each seed's values as its own line instead (for a sweep on
    two seeds, whose t-interval says little and one collapsed run would stretch the axis)."""
    rows = [{field: row["set"][field], "metric": name, "seed": s, "value": v}
            for row in grid for name, key in keys.items()
            for s, v in per_seed(runs, row, key).items() if v is not None]
    if not rows:
        return None
    data = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, len(keys), squeeze=False, figsize=(WIDTH, 2.8))
    for ax, name in zip(axes[0], keys):
        if per_seed_lines:
            sns.pointplot(data=data[data["metric"] == name], x=field, y="value", hue="seed",
                          errorbar=None, palette=PALETTE, ax=ax)
        else:
            sns.pointplot(data=data[data["metric"] == name], x=field, y="value",
                          errorbar=t_interval, color=OURS, capsize=0.2, ax=ax)
        ax.set(ylabel=name, xlabel=field)
        ax.tick_params(axis="x", labelrotation=45)
        if per_seed_lines:  # one legend, beside the last panel, off the lines
            ax.get_legend().remove()
    if per_seed_lines:
        axes[0][-1].legend(*axes[0][-1].get_legend_handles_labels(), title="seed", fontsize=7,
                           loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def floors(grid: list[dict], runs: list[dict], title: str) -> Figure | None:
    """Each method's divergence metric against the IoU floor of its box set, mean over seeds
    with its 95% interval."""
    rows = [{"method": row["label"], "IoU floor": float(floor), "correlation": value["mean"]}
            for row in grid for run in runs if per_seed([run], row, "AP")
            for floor, value in (metric(run["record"], "divergence_by_floor") or {}).items()
            if value.get("mean") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    sns.lineplot(data=pd.DataFrame(rows), x="IoU floor", y="correlation", hue="method",
                 style="method", markers=True, errorbar=t_interval, err_style="bars", ax=ax)
    ax.axvline(0.3, color="0.5", ls=":", lw=1)  # DESIGN.md's floor
    ax.set(ylabel="mean per-object Spearman correlation", title=title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


def divergence_vs_ap(points: pd.DataFrame, judged: pd.DataFrame, title: str) -> Figure | None:
    """Every method's mean AP against its mean correlation (colour: detector, marker:
    schedule, and whether it is a successor), with the least-squares line and its 95% band over
    the methods claim 7 judges."""
    if points.empty:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, 4.2))
    if len(judged) >= 3:
        sns.regplot(data=judged, x="correlation", y="AP", scatter=False, ci=95, color="0.35",
                    line_kws={"lw": 1}, ax=ax, label="claim 7's methods: fit, 95% band")
    data = points.reset_index()
    if "successor" in data:  # VFL and TAL: drawn, not judged
        data["schedule"] = data["schedule"] + data["successor"].map({True: ", successor",
                                                                     False: ""})
    sns.scatterplot(data=data, x="correlation", y="AP", hue="detector", style="schedule", s=60,
                    ax=ax)
    for name, p in points.iterrows():
        ax.annotate(name, (p["correlation"], p["AP"]), fontsize=7, xytext=(4, 2),
                    textcoords="offset points")
    ax.set(xlabel="mean per-object Spearman correlation (score vs IoU)", ylabel="AP (%)",
           title=title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


def dial(grid: list[dict], runs: list[dict]) -> Figure | None:
    """FCOS−'s correlation and MLC's AP gain over it at each head offset, mean over seeds with
    the 95% interval (of the paired per-seed gains for the gain)."""
    rows = []
    for off in sorted({r["offset"] for r in grid}):
        base = next(r for r in grid if r["offset"] == off and r["role"] == "baseline")
        meth = next(r for r in grid if r["offset"] == off and r["role"] == "method")
        corr = per_seed(runs, base, "divergence.mean")
        ap_b, ap_m = per_seed(runs, base, "AP"), per_seed(runs, meth, "AP")
        rows += [{"offset": off, "what": "corr", "value": v} for v in corr.values() if v is not None]
        rows += [{"offset": off, "what": "gain", "value": ap_m[s] - ap_b[s]}
                 for s in set(ap_m) & set(ap_b) if ap_m[s] is not None and ap_b[s] is not None]
    if not rows:
        return None
    data = pd.DataFrame(rows)
    fig, (a, b) = plt.subplots(1, 2, figsize=(WIDTH, 3.0))
    sns.pointplot(data=data[data["what"] == "corr"], x="offset", y="value", errorbar=t_interval,
                  color=OURS, capsize=0.2, ax=a)
    a.set(xlabel="head offset (0 centre, 1 tip)", ylabel="FCOS− correlation (score vs IoU)")
    sns.pointplot(data=data[data["what"] == "gain"], x="offset", y="value", errorbar=t_interval,
                  color=PAPER, capsize=0.2, ax=b)
    b.axhline(0, color="0.4", lw=0.8)
    b.set(xlabel="head offset (0 centre, 1 tip)", ylabel="MLC's AP gain over FCOS− (points)")
    fig.tight_layout()
    return fig


def curves(data: pd.DataFrame, y: str, hue: str, col: str | None = None, row: str | None = None,
           start_epoch: int | None = None) -> sns.FacetGrid | None:
    """Learning curves: column `y` per epoch, mean over seeds with its 95% interval, one line
    per `hue`, panels by `col` and `row` (each with its own y scale); a dotted line where MLC's
    terms switch on."""
    if data.empty:
        return None
    ncols = data[col].nunique() if col else 1
    grid = sns.relplot(data=data, x="epoch", y=y, hue=hue, style=hue, col=col, row=row, kind="line",
                       errorbar=t_interval, height=2.4, aspect=WIDTH / ncols / 2.4,
                       facet_kws={"sharey": False, "sharex": True})
    grid.set_titles(size=9)
    grid.set_axis_labels("epoch", "mean loss per epoch")
    if start_epoch is not None:
        grid.refline(x=start_epoch + 0.5, color="0.5", ls=":")
    return grid


def setting(points: pd.DataFrame, ap_goal: float, correlation_goal: float) -> Figure | None:
    """The setting study: every run's AP and correlation against the CPU-minutes it took
    (colour: candidate, marker: FCOS− or + ML + IUR), with the goals as dotted lines."""
    if points.empty:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(WIDTH, 3.4))
    for ax, y, goal, label in ((a, "AP", ap_goal, "AP (%)"),
                               (b, "correlation", correlation_goal, "FCOS−'s correlation")):
        sns.scatterplot(data=points, x="minutes", y=y, hue="scale", style="role", s=55, ax=ax,
                        legend=ax is b)
        ax.axhline(goal, color="0.5", ls=":", lw=1)
        ax.set(xlabel="CPU-minutes per run (one thread)", ylabel=label)
    b.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


_COLOURS = sns.color_palette(PALETTE)
VERDICT_COLOURS = {"held": _COLOURS[2], "above 0, size undecided": _COLOURS[8],
                   "held, but below the band": _COLOURS[9], "no effect": _COLOURS[4],
                   "below 0, but within the band": _COLOURS[6], "below 0, size undecided": _COLOURS[1],
                   "contradicted": _COLOURS[3], "inconclusive": _COLOURS[7]}


def init_seeds(points: pd.DataFrame) -> Figure | None:
    """Each seed's headline metric per row at both inits (`tables.init_points`), one panel per
    metric, with the mean and its 95% t-interval beside the seeds."""
    if points.empty:
        return None
    metrics = list(dict.fromkeys(points["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(WIDTH, 3.4), squeeze=False,
                             gridspec_kw={"width_ratios": [points[points["metric"] == m]["row"].nunique()
                                                           for m in metrics]})
    for ax, m in zip(axes[0], metrics):
        data = points[points["metric"] == m]
        sns.stripplot(data=data, x="row", y="value", hue="init", dodge=True, ax=ax, size=4,
                      alpha=0.7, hue_order=["random", "pretrained"], legend=ax is axes[0][-1])
        sns.pointplot(data=data, x="row", y="value", hue="init", dodge=0.4, ax=ax, errorbar=t_interval,
                      markers="_", linestyles="none", hue_order=["random", "pretrained"],
                      palette=["black", "black"], legend=False)
        ax.set(xlabel="", ylabel=m)
        ax.tick_params(axis="x", labelrotation=20)
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.01, 1), title="init", frameon=False)
    fig.tight_layout()
    return fig


def scorecard_figure(parts: pd.DataFrame) -> Figure:
    """Every part of claims 1-6 (`claims.claim_parts`) as our gain's 95% interval in % of its
    baseline, coloured by the part's verdict, on the grey band of effects too small to matter
    (±0.5 points or ±0.02 of correlation, in % of that part's baseline), with the paper's own
    gain (in % of its baseline) as a black diamond."""
    shown = parts.dropna(subset=["ours_pct"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.32 * len(shown) + 1.2))
    labels = []
    for y, part in shown.iterrows():
        band = 100 * part["band"] / abs(part["baseline"])
        ax.fill_betweenx([y - 0.4, y + 0.4], -band, band, color="0.88", lw=0, zorder=0)
        colour = VERDICT_COLOURS.get(str(part["verdict"]).split(":")[0], "0.5")
        lo = part["ours_pct_lo"] if pd.notna(part["ours_pct_lo"]) else part["ours_pct"]
        hi = part["ours_pct_hi"] if pd.notna(part["ours_pct_hi"]) else part["ours_pct"]
        ax.plot([lo, hi], [y, y], color=colour, lw=3, solid_capstyle="butt", zorder=2)
        ax.plot(part["ours_pct"], y, "o", color=colour, ms=5, zorder=3)
        if pd.notna(part["paper_pct"]):
            ax.plot(part["paper_pct"], y, "D", color="black", ms=4, zorder=4)
        labels.append(f"{part['claim']} · {part['part']}")
    ax.axvline(0, color="0.3", lw=0.8, zorder=1)
    ax.set_yticks(range(len(shown)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("gain, % of the baseline (ours: 95% interval over paired seeds)")
    handles = [plt.Line2D([], [], color=c, lw=3, label=v) for v, c in VERDICT_COLOURS.items()
               if v in set(shown["verdict"].astype(str).str.split(":").str[0])]
    handles += [plt.Line2D([], [], color="black", marker="D", ls="", ms=4, label="the paper's gain"),
                plt.Rectangle((0, 0), 1, 1, color="0.88", label="too small to matter")]
    for y in range(1, len(shown)):  # a rule between claims
        if shown.at[y, "claim"] != shown.at[y - 1, "claim"]:
            ax.axhline(y - 0.5, color="0.6", lw=0.6)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.35, -0.6 / len(shown) - 0.06),
              ncol=3, frameon=False)
    fig.tight_layout()
    return fig
