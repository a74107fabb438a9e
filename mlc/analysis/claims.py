"""The paper's seven claims (DESIGN.md), judged by one rule: each part of a claim is a paired
difference over seeds with its 95% interval (mlc.analysis.stats), read on the claim's last stage
of fresh seeds where it has confirmatory stages (grids.DECIDING); the claim is held when every
part is, contradicted when a part below 0 survives Holm's correction across its parts. Every part
also sets its gain, in % of its baseline, against the paper's.

`claim_parts` is the table of parts (the scorecard figure and the README read it); `scorecard`
words it, one line per claim. The pretrained book reads each claim once, on its one confirmatory
stage (grids.CONFIRMING) when the stage is whole: `pretrained_parts` and `pretrained_scorecard`.
"""

from __future__ import annotations

import pandas as pd

from mlc.analysis.grids import (
    AFTER_A_LOOK,
    BOOK_SEEDS,
    CONFIRMING,
    DECIDING,
    FCOS_MINUS,
    IUR_FROM_START,
    MOST_STAGE_SEEDS,
    PRETRAINED,
    RETINANET,
    RPN,
    STAGE_ROWS,
    STAGE_SCHEDULE,
    stages,
)
from mlc.analysis.stats import (
    ABOVE_ZERO,
    BANDS,
    BELOW_WITHIN_BAND,
    BELOW_ZERO,
    CONTRADICTED,
    HELD,
    INCONCLUSIVE,
    NO_DATA,
    NO_EFFECT,
    combined,
    error_rate,
    format_interval,
    holm,
    paired_difference,
    pearson,
    relative,
    seeds_for_power,
    size_reading,
    verdict,
)
from mlc.analysis.tables import method_points, one_machine, paper_table, per_seed
from mlc.config import SCHEDULES, make_config

POINTS, CORRELATION = BANDS["points"], BANDS["correlation"]
NAMES = {FCOS_MINUS: "FCOS−", RETINANET: "RetinaNet"}  # the detectors as the evidence names them
TITLES = {
    1: "ML raises FCOS−'s correlation and AP more than prediction alignment",
    2: "IUR raises the correlation far more than centerness, AP at least as high",
    3: "IoU-NMS on IUR's IoUs scores below IUR's rescoring",
    4: "ML and IUR are complementary: ML+IUR is best (FCOS−, RetinaNet)",
    5: "ML and IUR raise RPN AR@100/300/1000, most at AR@100",
    6: "MLC lifts AP75, and more than AP50 (24-epoch schedule)",
    7: "Across methods the correlation tracks AP",
}
# Claim 5's gains: (RPN's flags, name, recall key); each against the RPN baseline. "Most at
# AR@100" is read as paired parts too: each method's AR@100 gain minus its AR@300 and AR@1000 gains.
_RPN_PARTS = [(flags, name, k) for flags, name in (({"ml": True}, "ML"), ({"iur": True}, "IUR"))
              for k in ("AR100", "AR300", "AR1000")]
_RPN_GAPS = [(flags, name, k) for flags, name in (({"ml": True}, "ML"), ({"iur": True}, "IUR"))
             for k in ("AR300", "AR1000")]
PART_COLUMNS = ["claim", "part", "unit", "band", "baseline", "mean", "lo", "hi", "n", "p", "holm_p",
                "verdict", "ours_pct", "ours_pct_lo", "ours_pct_hi", "paper_pct", "size", "seeds"]


def _row(detector: str, source: str | None = None, **flags) -> dict:
    return {"label": detector, "detector": detector, "set": flags, "source": source}


def _paper_gain(number: int, a: str, b: str, key: str, base_key: str | None = None) -> float:
    """The paper's gain of row a over row b of its Table `number`, in % of b's `base_key` value."""
    table = paper_table(number)
    base = float(table.at[b, base_key or key])
    return 100 * (float(table.at[a, key]) - float(table.at[b, key])) / base


def _spec(claim: int, name: str, a: dict, b: dict, key: str, paper: float | None,
          band: float = POINTS, gap: str | None = None) -> dict:
    """One part: row a − row b at `key` (with `gap`, the a − b gain at key minus that at gap)."""
    return {"claim": claim, "part": name, "a": a, "b": b, "key": key, "gap": gap, "paper": paper,
            "band": band}


def part_specs() -> list[dict]:
    """Every part of claims 1-6 with its rows, metric, band and the paper's gain."""
    corr, ap = "divergence.mean", "AP"
    align, ml = _row(FCOS_MINUS, alignment=True), _row(FCOS_MINUS, ml=True)
    iur, fcos = _row(FCOS_MINUS, iur=True), _row("fcos")
    specs = [_spec(1, "AP ML − alignment", ml, align, ap, _paper_gain(1, "ml", "alignment", "AP")),
             _spec(1, "correlation ML − alignment", ml, align, corr,
                   _paper_gain(1, "ml", "alignment", "correlation"), CORRELATION),
             _spec(2, "correlation IUR − centerness", iur, fcos, corr,
                   _paper_gain(2, "iur", "centerness", "correlation"), CORRELATION),
             _spec(2, "AP IUR − centerness", iur, fcos, ap, _paper_gain(2, "iur", "centerness", "AP")),
             _spec(3, "AP rescoring − IoU-NMS", iur, _row(FCOS_MINUS, source="iou_nms", iur=True), ap,
                   _paper_gain(2, "iur", "iou_nms", "AP"))]
    for det in (FCOS_MINUS, RETINANET):
        for flags, name, key in (({"ml": True}, "ML", "True|False"), ({"iur": True}, "IUR", "False|True")):
            specs.append(_spec(4, f"{NAMES[det]} AP ML+IUR − {name}", _row(det, ml=True, iur=True),
                               _row(det, **flags), ap,
                               _paper_gain(3, f"{det}|True|True", f"{det}|{key}", "AP")))
    for flags, name, k in _RPN_PARTS:
        paper_key = "rpn|True|False" if "ml" in flags else "rpn|False|True"
        specs.append(_spec(5, f"{name} {k}", _row(RPN, **flags), _row(RPN), k,
                           _paper_gain(4, paper_key, "rpn|False|False", k)))
    table4 = paper_table(4)
    for flags, name, k in _RPN_GAPS:
        key = "rpn|True|False" if "ml" in flags else "rpn|False|True"
        gap = ((table4.at[key, "AR100"] - table4.at["rpn|False|False", "AR100"])
               - (table4.at[key, k] - table4.at["rpn|False|False", k]))
        specs.append(_spec(5, f"{name} AR100 gain − {k} gain", _row(RPN, **flags), _row(RPN), "AR100",
                           float(100 * gap / table4.at["rpn|False|False", "AR100"]), gap=k))
    for det in (FCOS_MINUS, RETINANET):
        name, mlc = NAMES[det], _row(det, ml=True, iur=True)
        table5 = paper_table(5)
        base, method = name, f"{name} + MLC"
        lift = 100 * (table5.at[method, "AP75"] - table5.at[base, "AP75"]) / table5.at[base, "AP75"]
        more = 100 * ((table5.at[method, "AP75"] - table5.at[base, "AP75"])
                      - (table5.at[method, "AP50"] - table5.at[base, "AP50"])) / table5.at[base, "AP75"]
        specs.append(_spec(6, f"{name} AP75 gain", mlc, _row(det), "AP75", float(lift)))
        specs.append(_spec(6, f"{name} AP75 gain − AP50 gain", mlc, _row(det), "AP75", float(more),
                           gap="AP50"))
    return specs


def _measure(spec: dict, runs: list[dict]) -> tuple[dict | None, float | None]:
    """(paired difference, our baseline's mean) of one part over `runs`, whose two arms must be
    trained at one kernel fingerprint on every seed (tables.one_machine)."""
    one_machine(runs, spec["a"], spec["b"])
    a, b = per_seed(runs, spec["a"], spec["key"]), per_seed(runs, spec["b"], spec["key"])
    if spec["gap"]:
        a2, b2 = per_seed(runs, spec["a"], spec["gap"]), per_seed(runs, spec["b"], spec["gap"])
        seeds = [s for s in set(a) & set(b) & set(a2) & set(b2)
                 if None not in (a[s], b[s], a2[s], b2[s])]
        diff = paired_difference({s: a[s] - b[s] for s in seeds}, {s: a2[s] - b2[s] for s in seeds})
    else:
        diff = paired_difference(a, b)
    if diff is None:
        return None, None
    base = [b[s] for s in diff["differences"]]
    return diff, sum(base) / len(base)


def _on_seeds(runs: list[dict], seeds: range) -> list[dict]:
    return [run for run in runs if run["config"].seed in seeds]


def _stage_seeds(claim: int, deciding: bool) -> range | None:
    """The seeds a claim is read on: its last confirmatory stage when the extra seeds are at hand
    (grids.DECIDING), else every seed of the runs given (None)."""
    return stages(claim)[-1] if deciding and claim in DECIDING else None


def claim_parts(runs: list[dict], final_runs: list[dict], deciding_runs: list[dict] = (),
                seeds: range | None = None, specs: list[dict] | None = None) -> pd.DataFrame:
    """One row per part of claims 1-6 (PART_COLUMNS, and the per-seed differences): the paired
    difference, its interval, p and Holm-adjusted p within the claim, verdict, our gain and the
    paper's in % of the baseline, the size reading and the seeds read. Table 5's parts read
    `final_runs`; a claim of grids.DECIDING reads its last stage's fresh seeds alone when
    `deciding_runs` has them; `seeds`, if given, restricts every claim to those seeds; `specs`
    defaults to part_specs()."""
    rows = []
    for spec in part_specs() if specs is None else specs:
        claim = spec["claim"]
        pool = final_runs if claim == 6 else list(runs) + list(deciding_runs)
        read = seeds if seeds is not None else _stage_seeds(claim, bool(deciding_runs))
        if read is not None:
            pool = _on_seeds(pool, read)
        elif claim != 6:
            pool = list(runs)
        diff, base = _measure(spec, pool)
        rel = relative(diff, base)
        rows.append({"claim": claim, "part": spec["part"],
                     "unit": "correlation" if spec["band"] == CORRELATION else "points",
                     "band": spec["band"], "baseline": base,
                     **{k: None if diff is None else diff[k] for k in ("mean", "lo", "hi", "n", "p")},
                     "verdict": verdict(diff, spec["band"]),
                     "ours_pct": None if rel is None else rel["mean"],
                     "ours_pct_lo": None if rel is None else rel["lo"],
                     "ours_pct_hi": None if rel is None else rel["hi"],
                     "paper_pct": spec["paper"], "size": size_reading(rel, spec["paper"]),
                     "seeds": "" if diff is None else _seed_range(diff["differences"]),
                     "differences": None if diff is None else diff["differences"]})
    table = pd.DataFrame(rows)
    table["holm_p"] = None
    for _, group in table.groupby("claim"):
        table.loc[group.index, "holm_p"] = pd.Series(holm(list(group["p"])), index=group.index,
                                                     dtype=object)
    return table[PART_COLUMNS + ["differences"]]


def _seed_range(differences: dict) -> str:
    seeds = sorted(differences)
    contiguous = seeds == list(range(seeds[0], seeds[-1] + 1))
    return f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 1 else ",".join(map(str, seeds))


def claim_verdict(claim: int, parts: pd.DataFrame) -> str:
    """A claim's verdict from its parts: stats.combined with Holm's correction, and claim 2's own
    reading of its AP part ("AP at least as high": an interval above 0 or within the band, no
    drop that matters, is enough)."""
    group = parts[parts["claim"] == claim]
    verdicts = list(group["verdict"])
    if claim == 2:
        verdicts = [HELD if part.startswith("AP") and v in (*ABOVE_ZERO, NO_EFFECT, BELOW_WITHIN_BAND)
                    else v for part, v in zip(group["part"], verdicts)]
    return combined(verdicts, list(group["holm_p"]))


def looks(claim: int, parts: pd.DataFrame) -> int:
    """How many times a claim had been read with a verdict that could have ended it, up to the
    reading in `parts`: seeds 0-6, then each confirmatory stage (grids.DECIDING) up to the one
    its parts read."""
    read = [s for d in parts[parts["claim"] == claim]["differences"] if d for s in d]
    if not read:
        return 1
    return next((i + 1 for i, seeds in enumerate(stages(claim)) if max(read) in seeds), 1)


def protocol_caveat(claim: int) -> str:
    """What a claim's reading must carry where its arms trained unequally: claim 2 compares IUR,
    whose loss trains from mlc_start_epoch on, with centerness, which trains every epoch."""
    if claim != 2:
        return ""
    iur = make_config(FCOS_MINUS, iur=True)
    return f"IUR trained {iur.epochs - iur.mlc_start_epoch} epochs, centerness {iur.epochs}"


def verdict_text(claim: int, parts: pd.DataFrame) -> str:
    """A claim's verdict as every page and the README show it: claim_verdict, then what a
    referee must read with it (more than one look, with the error rate the looks add up to; an
    unequal protocol)."""
    said, n = [protocol_caveat(claim)], looks(claim, parts)
    if n > 1:
        said.append(f"{n} looks at 5% each: error rate up to {100 * error_rate(n):.2f}%")
    said = [s for s in said if s]
    return claim_verdict(claim, parts) + (f" ({'; '.join(said)})" if said else "")


def next_stage(claim: int, parts: pd.DataFrame) -> int | None:
    """The fresh seeds a further stage of an open claim needs for an 80% chance to decide every
    part (stats.seeds_for_power over the per-seed differences in `parts`, every seed read so far);
    None beyond 100 seeds or with fewer than 3 seeds."""
    group = parts[parts["claim"] == claim]
    if any(d is None for d in group["differences"]):
        return None
    seeds = sorted(set.intersection(*(set(d) for d in group["differences"])))
    if len(seeds) < 3:
        return None
    bands = [CORRELATION if u == "correlation" else POINTS for u in group["unit"]]
    return seeds_for_power([[d[s] for d in group["differences"]] for s in seeds], bands)


def _part_text(part: pd.Series) -> str:
    digits = 2 if part["unit"] == "correlation" else 1
    diff = None if part["mean"] is None or pd.isna(part["mean"]) else {
        k: (None if part[k] is None or pd.isna(part[k]) else part[k]) for k in ("mean", "lo", "hi")}
    text = f"{part['part']} {format_interval(diff, digits)} ({part['verdict']}"
    if part["verdict"] in BELOW_ZERO and part["holm_p"] is not None and part["holm_p"] >= 0.05:
        text += f", not after Holm's correction: p {part['holm_p']:.2f}"
    if part["size"]:
        ours = {"mean": part["ours_pct"], "lo": part["ours_pct_lo"], "hi": part["ours_pct_hi"]}
        text += f"; {format_interval(ours, 0, '%')} of the baseline, the paper's " \
                f"{part['paper_pct']:+.0f}%: {part['size']}"
    return text + ")"


def scorecard(runs: list[dict], final_runs: list[dict], deciding_runs: list[dict] = ()) -> pd.DataFrame:
    """The seven claims of DESIGN.md, each with its evidence (per part: mean difference over
    paired seeds, its 95% interval, verdict, and the gain against the paper's in % of the
    baseline) and the claim's verdict; `final_runs` are Table 5's 24-epoch runs, `deciding_runs`
    the confirmatory stages of grids.DECIDING's claims, each read on its last stage alone, the
    earlier stages after it."""
    parts = claim_parts(runs, final_runs, deciding_runs)
    rows = []
    for claim in range(1, 7):
        group = parts[parts["claim"] == claim]
        v = claim_verdict(claim, parts)
        text = "; ".join(_part_text(p) for _, p in group.iterrows())
        read = _stage_seeds(claim, bool(deciding_runs))
        prefix = ""
        if read is not None:
            stage = DECIDING[claim]["stages"][-1]
            n = group["n"].dropna()
            got = int(n.min()) if len(n) else 0
            prefix = (f"on {got} fresh seeds ({read.start}-{read.stop - 1}), fixed "
                      f"{stage['fixed']} by {stage['planned']}"
                      + ("" if got == stage["seeds"] else f"; {stage['seeds'] - got} not run")
                      + ": ")
            for earlier in stages(claim)[:-1]:
                before = claim_parts(runs, final_runs, deciding_runs, seeds=earlier)
                text += (f". Seeds {earlier.start}-{earlier.stop - 1}, read before: "
                         f"{claim_verdict(claim, before)}")
        so_far = parts if read is None else claim_parts(runs, final_runs, deciding_runs,
                                                        seeds=range(read.stop))
        if v == INCONCLUSIVE and so_far[so_far["claim"] == claim]["n"].min() >= 3:
            needed = next_stage(claim, so_far)
            text += (f". A further stage would need {needed} fresh seeds for 80% power, planned "
                     "from every seed read" if needed else
                     ". A further stage would need over 100 fresh seeds for 80% power")
        if claim in AFTER_A_LOOK:
            text += f". Chosen after a look: {AFTER_A_LOOK[claim]}"
        rows.append((f"{prefix}{claim}. {TITLES[claim]}", text, verdict_text(claim, parts)))
    rows.append((f"7. {TITLES[7]}", *_correlation_tracks_ap(runs)))
    return pd.DataFrame(rows, columns=["claim", "evidence", "verdict"]).set_index("claim")


def reading_table(runs: list[dict], final_runs: list[dict], deciding_runs: list[dict]) -> pd.DataFrame:
    """Each claim read by the rules the book used before (a claim with confirmatory seeds on all
    its seeds pooled, the others on the book's; no correction across parts, no band for a held
    part, claim 6 without the AP75 lift itself) and by the one rule, side by side, with the seeds
    each read."""
    rule = claim_parts(runs, final_runs, deciding_runs)
    pooled = claim_parts(runs, final_runs, deciding_runs, seeds=range(0, 10_000))
    book = claim_parts(runs, final_runs)
    before = pd.concat([pooled[pooled["claim"].isin(DECIDING)], book[~book["claim"].isin(DECIDING)]])
    before = before[~((before["claim"] == 6) & before["part"].str.endswith("AP75 gain"))]
    before = before[~before["part"].str.contains(" gain − AR")]  # claim 5 was read on its means
    before = before.assign(holm_p=before["p"], verdict=before["verdict"].map(
        lambda v: HELD if v in ABOVE_ZERO else CONTRADICTED if v in BELOW_ZERO else v))

    def seeds(parts: pd.DataFrame, claim: int) -> str:
        return ", ".join(sorted(set(parts[parts["claim"] == claim]["seeds"]) - {""})) or "none"

    def read_before(claim: int) -> str:
        v = claim_verdict(claim, before)
        group = before[before["claim"] == claim]
        means = dict(zip(group["part"], group["mean"]))
        if claim == 5 and v == HELD and not all(  # then read on the means
                means[f"{n} AR100"] >= max(means[f"{n} AR300"], means[f"{n} AR1000"]) for n in ("ML", "IUR")):
            v += ", but the largest gain is not at AR@100"
        return v

    rows = [{"claim": f"{claim}. {TITLES[claim]}",
             "before: every seed pooled": f"{read_before(claim)} (seeds {seeds(before, claim)})",
             "the one rule": f"{verdict_text(claim, rule)}, seeds {seeds(rule, claim)}"}
            for claim in range(1, 7)]
    return pd.DataFrame(rows).set_index("claim")


def plan_table() -> pd.DataFrame:
    """Every claim's plan as fixed (grids.DECIDING): the seeds each stage reads, how its number
    was planned and when it was fixed; a claim without confirmatory stages reads seeds 0-6."""
    rows = []
    for claim in range(1, 8):
        for i, seeds in enumerate(stages(claim)):
            stage = DECIDING[claim]["stages"][i - 1] if i else None
            rows.append({"claim": claim, "stage": i + 1, "seeds": f"{seeds.start}-{seeds.stop - 1}",
                         "read": "the verdict" if i == len(stages(claim)) - 1 else "shown, not judged",
                         "planned": stage["planned"] if stage else "the book's seeds",
                         "fixed": stage["fixed"] if stage else "before the book's first run"})
    return pd.DataFrame(rows).set_index(["claim", "stage"])


def claim5_second_stage(runs: list[dict]) -> int | None:
    """Claim 5's second stage as the seeds before it plan it (stats.seeds_for_power over its six
    parts' per-seed differences): grids.DECIDING fixes the number, this recomputes it."""
    before = range(stages(5)[0].start, stages(5)[-1].start)
    pairs = [(per_seed(_on_seeds(runs, before), _row(RPN, **flags), k),
              per_seed(_on_seeds(runs, before), _row(RPN), k)) for flags, _, k in _RPN_PARTS]
    seeds = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
    if len(seeds) < 3:
        return None
    return seeds_for_power([[a[s] - b[s] for a, b in pairs] for s in seeds], [POINTS] * len(pairs))


def pretrained_specs() -> list[dict]:
    """part_specs on the pretrained book's rows: every row from the pretrained body, and claim 2
    on the like-for-like IUR row (IUR's loss trained from epoch 0, as centerness is)."""
    def on_pretrained(row: dict, claim: int) -> dict:
        flags = {**row["set"], **PRETRAINED}
        if claim == 2 and row["set"].get("iur"):
            flags.update(IUR_FROM_START["set"])
        return {**row, "set": flags}

    return [{**spec, "a": on_pretrained(spec["a"], spec["claim"]),
             "b": on_pretrained(spec["b"], spec["claim"])} for spec in part_specs()]


def pilot_plan(runs: list[dict], final_runs: list[dict], seeds: range = range(7),
               specs: list[dict] | None = None) -> pd.DataFrame:
    """Each of claims 1-6's confirmatory stage as the pilot plans it: the fewest fresh paired
    seeds that decide every one of its parts with 80% power (stats.seeds_for_power over the
    parts' per-seed differences on `seeds`), and whether the stage runs (at most
    grids.MOST_STAGE_SEEDS); claim 6 reads `final_runs`. `specs` defaults to the pretrained
    book's parts."""
    rows = []
    specs = pretrained_specs() if specs is None else specs
    for claim in range(1, 7):
        pool = _on_seeds(final_runs if claim == 6 else runs, seeds)
        group = [spec for spec in specs if spec["claim"] == claim]
        diffs = [_measure(spec, pool)[0] for spec in group]
        common = sorted(set.intersection(*(set(d["differences"]) if d else set() for d in diffs)))
        needed = (seeds_for_power([[d["differences"][s] for d in diffs] for s in common],
                                  [spec["band"] for spec in group])
                  if len(common) >= 3 else None)
        rows.append({"claim": claim, "parts": len(group), "pilot seeds": _seed_range(
                         dict.fromkeys(common)) if common else "",
                     "needed": needed, "runs": needed is not None and needed <= MOST_STAGE_SEEDS})
    return pd.DataFrame(rows, dtype=object).set_index("claim")


def confirm_table(plan: pd.DataFrame, stage_runs: list[dict]) -> pd.DataFrame:
    """The pretrained book's plan beside what it has trained: per claim, the seeds the pilot
    plans (`plan`, of pilot_plan), the stage committed in grids.CONFIRMING (its fresh seeds and
    when it was fixed, or why it is not run) and how many of its runs `stage_runs` has finished."""
    rows = []
    for claim, row in plan.iterrows():
        stage, done = _stage_status(claim, stage_runs)
        rows.append({"claim": claim, "claim says": TITLES[claim], "pilot seeds": row["pilot seeds"],
                     "planned from the pilot": row["needed"], "stage": stage,
                     "fixed": CONFIRMING[claim]["fixed"] if claim in CONFIRMING else "",
                     "runs done": done})
    return pd.DataFrame(rows).set_index("claim")


def _stage_status(claim: int, stage_runs: list[dict]) -> tuple[str, str]:
    """A claim's committed confirmatory stage in words (its fresh seeds, "not run: ..." or "not
    fixed yet") and "k of n" of its runs finished in `stage_runs`."""
    committed = CONFIRMING.get(claim)
    if committed is None:
        return "not fixed yet", "0 of 0"
    fresh = _fresh_seeds(claim)
    runs = [r for r in stage_runs if r["config"].seed in fresh and _in_stage(claim, r)]
    done = f"{sum(r['record'] is not None for r in runs)} of {len(runs)}"
    if not fresh:
        return f"not run: inconclusive, would need {committed['needed'] or 'more than 100'} seeds", done
    return f"seeds {fresh.start}-{fresh.stop - 1}", done


def _fresh_seeds(claim: int) -> range:
    """The fresh seeds of a claim's committed confirmatory stage (empty when it is not run)."""
    return range(BOOK_SEEDS, BOOK_SEEDS + CONFIRMING.get(claim, {}).get("seeds", 0))


def _in_stage(claim: int, run: dict) -> bool:
    """Whether a run is one of the rows of a claim's confirmatory stage (grids.STAGE_ROWS)."""
    cfg = run["config"]
    return any(cfg.name == make_config(row["detector"], cfg.scale, STAGE_SCHEDULE.get(claim), cfg.seed,
                                       **row["set"], **PRETRAINED).name for row in STAGE_ROWS[claim])


def stage_parts(runs: list[dict], final_runs: list[dict]) -> dict[int, pd.DataFrame]:
    """Each claim's parts on the pretrained book's confirmatory stage (grids.CONFIRMING), for the
    claims whose stage has every run in `runs`/`final_runs` finished: a stage is read once,
    whole, never while it is still training."""
    out = {}
    for claim in sorted(CONFIRMING):
        fresh = _fresh_seeds(claim)
        mine = [r for r in (*runs, *final_runs) if r["config"].seed in fresh and _in_stage(claim, r)]
        expected = len(fresh) * len(STAGE_ROWS[claim])
        if fresh and len(mine) == expected and all(r["record"] is not None for r in mine):
            parts = claim_parts(runs, final_runs, seeds=fresh, specs=pretrained_specs())
            out[claim] = parts[parts["claim"] == claim]
    return out


# A claim of the pretrained book whose confirmatory stage has not finished: its pilot is shown,
# and no verdict is read until every run of the stage is in.
NOT_YET = "no verdict yet"


def _split_schedules(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(runs on the ablation schedule, Table 5's 24-epoch runs) of `runs`."""
    final = [r for r in runs if r["config"].schedule == "final"]
    return [r for r in runs if r["config"].schedule != "final"], final


def pretrained_parts(runs: list[dict], final_runs: list[dict], stage_runs: list[dict] = ()
                     ) -> pd.DataFrame:
    """Claims 1-6's parts on the pretrained book (claim_parts' columns): a claim whose
    confirmatory stage (grids.CONFIRMING) has every run in `stage_runs` reads that stage alone;
    any other shows its pilot (seeds 0-6 of `runs`, `final_runs`) with no verdict: NOT_YET
    while its stage trains, inconclusive where the stage is over the limit and not run."""
    stage_ablation, stage_final = _split_schedules(list(stage_runs))
    stages = stage_parts([*runs, *stage_ablation], [*final_runs, *stage_final])
    pilot = claim_parts(runs, final_runs, seeds=range(BOOK_SEEDS), specs=pretrained_specs())
    out = []
    for claim in range(1, 7):
        if claim in stages:
            out.append(stages[claim])
            continue
        group = pilot[pilot["claim"] == claim].copy()
        group["verdict"] = INCONCLUSIVE if claim in CONFIRMING and not _fresh_seeds(claim) else NOT_YET
        out.append(group)
    return pd.concat(out, ignore_index=True)


def pretrained_scorecard(runs: list[dict], final_runs: list[dict], stage_runs: list[dict] = ()
                         ) -> pd.DataFrame:
    """The seven claims on the pretrained book, as the scorecard words them: each of claims 1-6
    decided by its confirmatory stage alone, once the stage is whole (one look: no error rate to
    add up, and claim 2 on its like-for-like row), the pilot's intervals on seeds 0-6 after it
    (they planned the stage and give no verdict); claim 7 on the pilot's methods."""
    parts = pretrained_parts(runs, final_runs, stage_runs)
    pilot = claim_parts(runs, final_runs, seeds=range(BOOK_SEEDS), specs=pretrained_specs())
    said, rows = f"Pilot (seeds 0-{BOOK_SEEDS - 1}), no verdict", []
    for claim in range(1, 7):
        group = parts[parts["claim"] == claim]
        shown = "; ".join(f"{p['part']} {_interval_text(p, seeds=False)}"
                          for _, p in pilot[pilot["claim"] == claim].iterrows())
        where, done = _stage_status(claim, stage_runs)
        plan = CONFIRMING.get(claim)
        if plan is None or not _fresh_seeds(claim):
            text = f"{said}: {shown}. Confirmatory stage {where}"
        elif set(group["verdict"]) == {NOT_YET}:
            text = (f"{said}: {shown}. Confirmatory stage ({where}, fixed "
                    f"{plan['fixed']}): {done} runs done; read once all are in")
        else:
            seeds = _fresh_seeds(claim)
            text = (f"on {len(seeds)} fresh seeds ({seeds.start}-{seeds.stop - 1}), fixed "
                    f"{plan['fixed']} by {plan['planned']}: "
                    + "; ".join(_part_text(p) for _, p in group.iterrows())
                    + f". {said}: {shown}")
        verdict = NOT_YET if set(group["verdict"]) == {NOT_YET} else claim_verdict(claim, parts)
        rows.append((f"{claim}. {TITLES[claim]}", text, verdict))
    tables_rows = [r for r in _on_seeds(runs, range(BOOK_SEEDS))  # Tables 1-2's methods only
                   if r["config"].mlc_start_epoch == SCHEDULES[r["config"].schedule].mlc_start_epoch]
    rows.append((f"7. {TITLES[7]}", *_correlation_tracks_ap(tables_rows)))
    return pd.DataFrame(rows, columns=["claim", "evidence", "verdict"]).set_index("claim")


def init_scorecards(random_parts: pd.DataFrame, pilot_parts: pd.DataFrame,
                    stages: dict[int, pd.DataFrame], stage_runs: list[dict]) -> pd.DataFrame:
    """The random-init scorecard beside the pretrained one, claim by claim and part by part:
    random init's reading (the book's now), the pretrained pilot's interval on seeds 0-6 (which
    planned the stage; no verdict), and the pretrained reading on its confirmatory stage
    (`stages`, of stage_parts), or how far that stage has run."""
    rows = []
    for claim in range(1, 7):
        stage = stages.get(claim)
        where, done = _stage_status(claim, stage_runs)
        status = (claim_verdict(claim, stage) if stage is not None
                  else f"{where}: {done} runs done" if claim in CONFIRMING else where)
        rows.append({"claim": f"{claim}. {TITLES[claim]}", "part": "the claim",
                     "random init": verdict_text(claim, random_parts),
                     "pretrained pilot, no verdict": "",
                     "pretrained, confirmatory stage": status})
        pilot = pilot_parts[pilot_parts["claim"] == claim].set_index("part")
        read = None if stage is None else stage.set_index("part")
        for _, part in random_parts[random_parts["claim"] == claim].iterrows():
            name = part["part"]
            rows.append({"claim": "", "part": name,
                         "random init": f"{_interval_text(part)} ({part['verdict']})",
                         "pretrained pilot, no verdict": _interval_text(pilot.loc[name]),
                         "pretrained, confirmatory stage": "" if read is None else
                         f"{_interval_text(read.loc[name])} ({read.loc[name, 'verdict']})"})
    return pd.DataFrame(rows)


def _interval_text(part: pd.Series, seeds: bool = True) -> str:
    """A part's mean difference and 95% interval, with its seeds unless `seeds` is False."""
    digits = 2 if part["unit"] == "correlation" else 1
    diff = None if pd.isna(part["mean"]) else {
        k: None if part[k] is None or pd.isna(part[k]) else part[k] for k in ("mean", "lo", "hi")}
    return format_interval(diff, digits) + (f", seeds {part['seeds']}" if seeds and part["seeds"] else "")


def judged_points(points: pd.DataFrame) -> pd.DataFrame:
    """The methods claim 7 is judged on (of `tables.method_points`): the FCOS family (FCOS− and
    its variants, FCOS with centerness) on the ablation schedule, as the paper's Tables 1-2; the
    successors (VFL, TAL) are drawn beside them but were not part of the paper's claim."""
    return points[points["detector"].isin(["fcos", FCOS_MINUS]) & (points["schedule"] != "final")
                  & ~points["successor"].astype(bool)]


def _correlation_tracks_ap(runs: list[dict]) -> tuple[str, str]:
    """Pearson r between mean correlation and mean AP over `judged_points`, with its 95%
    interval."""
    points = judged_points(method_points(runs))
    r = pearson(list(points["correlation"]), list(points["AP"]))
    if r is None:
        return f"{len(points)} methods with a correlation; at least 4 needed", NO_DATA
    text = f"Pearson r = {r['r']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}] over {r['n']} methods"
    minus = points[points["detector"] == FCOS_MINUS]
    r_minus = pearson(list(minus["correlation"].astype(float)), list(minus["AP"].astype(float)))
    if r_minus is not None:  # shown beside, not judged: the verdict's set was fixed beforehand
        text += (f" (FCOS− variants alone, shown, not judged: r = {r_minus['r']:+.2f} "
                 f"[{r_minus['lo']:+.2f}, {r_minus['hi']:+.2f}] over {r_minus['n']})")
    paper = paper_correlation_tracks_ap()
    text += (f"; the paper's own {paper['n']} methods: r = {paper['r']:+.2f} "
             f"[{paper['lo']:+.2f}, {paper['hi']:+.2f}], {paper['verdict']}")
    return text, r["verdict"]


def paper_correlation_tracks_ap() -> dict:
    """Claim 7 on the paper's own numbers: Pearson r (stats.pearson) between correlation and AP
    over the distinct methods of its Tables 1-2 that report both (FCOS− counted once)."""
    rows = pd.concat([paper_table(1), paper_table(2)]).dropna(subset=["correlation", "AP"])
    rows = rows[~rows.index.duplicated()]
    return pearson(list(rows["correlation"].astype(float)), list(rows["AP"].astype(float)))


def rule_note() -> str:
    """The one rule for every claim, as the first page prints it (MyST, a dropdown note): the
    reading of a part, of a claim, and the error rate across looks, from the code's bands."""
    points, corr = BANDS["points"], BANDS["correlation"]
    return f""":::{{admonition}} How a claim is read (one rule for every claim)
:class: dropdown
Each part of a claim is a mean difference over paired seeds (same seed: same data order and
initialisation) with its 95% t-interval (scipy's paired t-test), read against 0 and against the
band of effects too small to matter (±{points:g} AP or AR points, ±{corr:g} of correlation):

- *held*: the interval lies above the band;
- *above 0, size undecided*: it lies above 0 but reaches into the band (the effect is real, and
  not shown to be large enough to matter);
- *held, but below the band*: it lies above 0 and inside the band (real, and too small to
  matter);
- *no effect*: it crosses 0 inside the band;
- *below 0, but within the band*, *below 0, size undecided* and *contradicted*: the same readings
  below 0;
- *inconclusive*: anything else (always with one seed, which gives no interval).

A claim is held when every part is held; when every part lies above 0 but not every one above
the band, it takes the weakest of their readings; it is contradicted when a part lies below 0 and
stays there after Holm's correction across the claim's parts, no effect when every part lies
above 0 or is no effect, else inconclusive. Claim 2's "AP at least as high" is met by an AP
interval that does not reach below the band. Claim 5's "most at AR@100" and claim 6's "more than
AP50" are paired parts of their own (a gain minus a gain), and claim 6 needs the lift of AP75
itself too. Every part sets our gain, in % of our baseline, against the paper's in % of its own:
smaller than the paper's, consistent with it, or larger.

**One test per claim.** Seeds 0-6 are the pilot: they give the tables, the figures and each
claim's plan, and no verdict. Each claim is then decided by one confirmatory stage of fresh
seeds, its size planned from the pilot for an 80% chance to decide every part
(`stats.seeds_for_power`) and fixed before any of its runs: one test at 5%. A claim read again
after a look spends more: each look that could have ended it adds its chance of a false verdict,
{100 * error_rate(2):.2f}% over two looks at 5%, {100 * error_rate(3):.2f}% over three
(1 − 0.95 to the number of looks). The random-init book read seeds 0-6 for verdicts and each
further stage again, so its verdicts say how many looks they had and what those add up to.
:::"""
