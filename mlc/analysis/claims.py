"""The paper's seven claims (DESIGN.md), each judged on paired per-seed differences and their
95% intervals (mlc.analysis.stats): the evidence names every part of a claim with its interval
and verdict, and the claim's verdict combines them.
"""

from __future__ import annotations

import pandas as pd

from mlc.analysis.grids import DECIDING, FCOS_MINUS, RETINANET, RPN, stages
from mlc.analysis.stats import (
    BANDS,
    HELD,
    INCONCLUSIVE,
    NO_EFFECT,
    combined,
    format_interval,
    paired_difference,
    pearson,
    seeds_for_power,
    seeds_to_decide,
    verdict,
)
from mlc.analysis.tables import method_points, paper_table, per_seed

POINTS, CORRELATION = BANDS["points"], BANDS["correlation"]
NAMES = {FCOS_MINUS: "FCOS−", RETINANET: "RetinaNet"}  # the detectors as the evidence names them
# Claim 5's parts: (RPN's flags, name, recall key); each against the RPN baseline.
_RPN_PARTS = [(flags, name, k) for flags, name in (({"ml": True}, "ML"), ({"iur": True}, "IUR"))
              for k in ("AR100", "AR300", "AR1000")]


def _row(detector: str, source: str | None = None, **flags) -> dict:
    return {"label": detector, "detector": detector, "set": flags, "source": source}


def _diff(runs: list[dict], a: dict, b: dict, key: str) -> dict | None:
    return paired_difference(per_seed(runs, a, key), per_seed(runs, b, key))


def _gap(runs: list[dict], a: dict, b: dict, key_a: str, key_b: str) -> dict | None:
    """Per seed (a − b at key_a) − (a − b at key_b): e.g. the AP75 gain minus the AP50 gain."""
    first, second = per_seed(runs, a, key_a), per_seed(runs, a, key_b)
    base_first, base_second = per_seed(runs, b, key_a), per_seed(runs, b, key_b)
    seeds = set(first) & set(second) & set(base_first) & set(base_second)
    return paired_difference({s: first[s] - base_first[s] for s in seeds},
                             {s: second[s] - base_second[s] for s in seeds})


def _part(name: str, diff: dict | None, band: float = POINTS, plan: bool = True) -> tuple[str, str]:
    """(evidence text, verdict) of one part of a claim; an inconclusive part says how many
    seeds its mean and spread would need to decide, unless `plan` is False (a claim read on the
    seeds fixed for it: that number was spent, and it is not raised after the look)."""
    v = verdict(diff, band)
    note = ""
    if v == INCONCLUSIVE and plan:
        needed = seeds_to_decide(diff, band)
        note = f"; {needed} seeds would decide it" if needed else "; over 100 seeds to decide"
    return f"{name} {format_interval(diff, 2 if band == CORRELATION else 1)} ({v}{note})", v


def _claim(title: str, parts: list[tuple[str, str]], v: str | None = None) -> tuple[str, str, str]:
    return title, "; ".join(text for text, _ in parts), v or combined([p[1] for p in parts])


def _seeds_read(runs: list[dict], rows: list[dict]) -> list[int]:
    """The seeds on which every one of `rows` has a finished run."""
    seeds = [set(per_seed(runs, row, "AP")) for row in rows]
    return sorted(set.intersection(*seeds)) if seeds else []


def scorecard(runs: list[dict], final_runs: list[dict], deciding_runs: list[dict] = ()) -> pd.DataFrame:
    """The seven claims of DESIGN.md, each with its evidence (mean difference over paired seeds,
    its 95% interval and verdict, per part) and the claim's verdict; `final_runs` are the
    24-epoch runs of Table 5, `deciding_runs` the extra seeds of grids.DECIDING's claims, which
    only those claims read (their evidence says on how many seeds)."""
    def on(claim: int) -> list[dict]:
        return list(runs) + list(deciding_runs) if claim in DECIDING else runs

    def part(claim: int, name: str, diff: dict | None, band: float = POINTS) -> tuple[str, str]:
        return _part(name, diff, band, plan=not (deciding_runs and claim in DECIDING))

    corr, ap = "divergence.mean", "AP"
    align, ml = _row(FCOS_MINUS, alignment=True), _row(FCOS_MINUS, ml=True)
    iur, fcos = _row(FCOS_MINUS, iur=True), _row("fcos")
    iou_nms = _row(FCOS_MINUS, source="iou_nms", iur=True)
    claims = [_claim("1. ML raises FCOS−'s correlation and AP more than prediction alignment",
                     [part(1, "AP ML − alignment", _diff(on(1), ml, align, ap)),
                      part(1, "correlation", _diff(on(1), ml, align, corr), CORRELATION)])]

    # "AP at least as high": no effect on AP is enough, a significant drop contradicts.
    parts = [part(2, "correlation IUR − centerness", _diff(on(2), iur, fcos, corr), CORRELATION),
             part(2, "AP", _diff(on(2), iur, fcos, ap))]
    claims.append(_claim("2. IUR raises the correlation far more than centerness, AP at least as "
                         "high", parts,
                         combined([parts[0][1], HELD if parts[1][1] == NO_EFFECT else parts[1][1]])))

    claims.append(_claim("3. IoU-NMS on IUR's IoUs scores below IUR's rescoring",
                         [part(3, "AP rescoring − IoU-NMS", _diff(on(3), iur, iou_nms, ap))]))

    parts = []
    for det in (FCOS_MINUS, RETINANET):
        both = _row(det, ml=True, iur=True)
        for single, name in ((_row(det, ml=True), "ML"), (_row(det, iur=True), "IUR")):
            parts.append(part(4, f"{NAMES[det]} AP ML+IUR − {name}", _diff(on(4), both, single, ap)))
    claims.append(_claim("4. ML and IUR are complementary: ML+IUR is best (FCOS−, RetinaNet)", parts))

    def rpn_claim(runs_read: list[dict]) -> tuple[str, str, str]:
        parts, means = [], {}
        for flags, name, k in _RPN_PARTS:
            d = _diff(runs_read, _row(RPN, **flags), _row(RPN), k)
            parts.append(part(5, f"{name} {k}", d))
            means[(name, k)] = None if d is None else d["mean"]
        v = combined([p[1] for p in parts])
        if v == HELD and not all(means[(n, "AR100")] >= max(means[(n, "AR300")], means[(n, "AR1000")])
                                 for n in ("ML", "IUR")):
            v = "held, but the largest gain is not at AR@100"
        return _claim("5. ML and IUR raise RPN AR@100/300/1000, most at AR@100", parts, v)

    claims.append(_staged(rpn_claim, on(5), 5) if deciding_runs else rpn_claim(on(5)))

    claims.append(_claim("6. MLC lifts AP75 more than AP50 (24-epoch schedule)",
                         [part(6, f"{NAMES[det]} AP75 gain − AP50 gain",
                                _gap(final_runs, _row(det, ml=True, iur=True), _row(det), "AP75", "AP50"))
                          for det in (FCOS_MINUS, RETINANET)]))

    claims.append(("7. Across methods the correlation tracks AP", *_correlation_tracks_ap(on(7))))
    card = pd.DataFrame(claims, columns=["claim", "evidence", "verdict"]).set_index("claim")
    if deciding_runs:
        for n, claim in DECIDING.items():
            read = len(_seeds_read(_on_seeds(on(n), stages(n)[-1]), claim["rows"]))
            if "second" in claim:
                fixed = claim["second"]
                on_seeds = (f"on {read} new seeds, fixed from the first {claim['seeds']} (a second "
                            f"stage, the last)" if read == fixed else
                            f"on {read} of the {fixed} new seeds fixed from the first "
                            f"{claim['seeds']} (the rest not run)")
            else:
                fixed = claim["seeds"]
                on_seeds = (f"on {read} seeds, fixed in advance" if read == fixed else
                            f"on {read} of the {fixed} seeds fixed in advance (the rest not run)")
            card.iloc[n - 1, 0] = f"{on_seeds}: {card.iloc[n - 1, 0]}"
    return card


def _on_seeds(runs: list[dict], seeds: range) -> list[dict]:
    return [run for run in runs if run["config"].seed in seeds]


def _staged(build, runs: list[dict], claim: int) -> tuple[str, str, str]:
    """A DECIDING claim judged by `build` on its last stage's seeds; a second stage's evidence is
    followed by the first stage's, which no longer decides."""
    *earlier, last = stages(claim)
    title, text, v = build(_on_seeds(runs, last))
    if earlier:
        _, first_text, first_v = build(_on_seeds(runs, earlier[0]))
        text += f". First stage, {len(earlier[0])} seeds: {first_v} ({first_text})"
    return title, text, v


def claim5_second_stage(runs: list[dict]) -> int | None:
    """Claim 5's second stage as its first stage's runs plan it (stats.seeds_for_power over its
    six parts' per-seed differences): grids.DECIDING fixes the number, this recomputes it."""
    first = _on_seeds(runs, stages(5)[0])
    pairs = [(per_seed(first, _row(RPN, **flags), k), per_seed(first, _row(RPN), k))
             for flags, _, k in _RPN_PARTS]
    seeds = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
    if len(seeds) < 3:
        return None
    return seeds_for_power([[a[s] - b[s] for a, b in pairs] for s in seeds], [POINTS] * len(pairs))


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
        return f"{len(points)} methods with a correlation; at least 4 needed", "no data"
    text = f"Pearson r = {r['r']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}] over {r['n']} methods"
    minus = points[points["detector"] == FCOS_MINUS]
    if len(minus) >= 3:  # shown beside, not judged: the verdict's set was fixed beforehand
        r_minus = float(minus["AP"].astype(float).corr(minus["correlation"].astype(float)))
        text += f" (FCOS− variants alone: r = {r_minus:+.2f} over {len(minus)})"
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
