"""What the book computes from records (mlc.analysis), on hand-made run records: scipy's paired
intervals, the four verdicts, tables beside the paper with relative gains, the claims, and the
seaborn figures."""

from __future__ import annotations

import math
import statistics

import matplotlib
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from mlc.analysis import claims, grids, plots, stats, tables
from mlc.config import SCALES, make_config

matplotlib.use("Agg")


def _run(detector: str, seed: int, metrics: dict, **flags) -> dict:
    return {"config": make_config(detector, "smoke", None, seed, **flags),
            "record": {"metrics": metrics}}


def test_paired_difference_and_its_interval_by_hand():
    d = stats.paired_difference({0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 3.0, 3: 9.0})
    # Differences 2, 3, 1 on the shared seeds: mean 2, sd 1, t(0.975, 2) = 4.303.
    assert d["n"] == 3 and d["mean"] == pytest.approx(2.0)
    assert d["lo"] == pytest.approx(2 - 4.3027 / 3 ** 0.5, abs=1e-4)
    assert d["hi"] == pytest.approx(2 + 4.3027 / 3 ** 0.5, abs=1e-4)
    assert stats.paired_difference({0: 1.0}, {1: 1.0}) is None
    assert stats.paired_difference({0: 2.0}, {0: 1.0})["lo"] is None
    same = stats.paired_difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})  # no spread
    assert (same["lo"], same["hi"]) == (1.0, 1.0)


def test_the_interval_is_scipys_paired_t_for_many_seeds():
    a = {s: 10 + math.sin(s) for s in range(7)}
    b = {s: 9.5 + math.cos(s) / 3 for s in range(7)}
    d = stats.paired_difference(a, b)
    ci = scipy_stats.ttest_rel(list(a.values()), list(b.values())).confidence_interval(0.95)
    assert (d["lo"], d["hi"]) == pytest.approx((ci.low, ci.high))


@pytest.mark.parametrize("diff, band, expected", [
    ({"mean": 1.2, "lo": 0.6, "hi": 1.8, "n": 3}, 0.5, "held"),  # clears the band
    ({"mean": 0.2, "lo": 0.1, "hi": 0.3, "n": 3}, 0.5, "held, but below the band"),  # real, small
    ({"mean": 0.5, "lo": 0.1, "hi": 0.9, "n": 3}, 0.5, "above 0, size undecided"),  # into the band
    ({"mean": 0.03, "lo": 0.015, "hi": 0.043, "n": 9}, 0.02, "above 0, size undecided"),
    ({"mean": -1.0, "lo": -1.8, "hi": -0.6, "n": 3}, 0.5, "contradicted"),
    ({"mean": -1.0, "lo": -1.8, "hi": -0.2, "n": 3}, 0.5, "below 0, size undecided"),
    ({"mean": -0.2, "lo": -0.3, "hi": -0.1, "n": 3}, 0.5, "below 0, but within the band"),
    ({"mean": 0.1, "lo": -0.3, "hi": 0.4, "n": 5}, 0.5, "no effect"),
    ({"mean": 0.01, "lo": -0.03, "hi": 0.01, "n": 5}, 0.02, "inconclusive"),
    ({"mean": 0.01, "lo": -0.01, "hi": 0.015, "n": 5}, 0.02, "no effect"),
    ({"mean": 1.0, "lo": -0.2, "hi": 2.2, "n": 3}, 0.5, "inconclusive"),
    ({"mean": 0.5, "lo": None, "hi": None, "n": 1}, 0.5, "inconclusive: 1 seed"),
    (None, 0.5, "no data"),
])
def test_the_verdicts_say_what_the_interval_says(diff, band, expected):
    assert stats.verdict(diff, band) == expected


def test_seeds_to_decide_from_the_mean_and_spread():
    """Gains 2, -1, 1 (mean 2/3, sd 1.53): the half-width t(0.975, m-1) * 1.53 / sqrt(m) falls
    below 2/3 first at m = 23; a decided interval needs no more seeds than it has."""
    a, b = {0: 12.0, 1: 10.0, 2: 13.0}, {0: 10.0, 1: 11.0, 2: 12.0}
    d = stats.paired_difference(a, b)
    sd = statistics.stdev([2.0, -1.0, 1.0])
    expected = next(m for m in range(3, 100)
                    if scipy_stats.t.ppf(0.975, m - 1) * sd / math.sqrt(m) < 2 / 3)
    assert stats.seeds_to_decide(d, 0.5) == expected == 23
    assert stats.seeds_to_decide({"mean": 1.0, "lo": 0.2, "hi": 1.8, "n": 3}, 0.5) == 3
    assert stats.seeds_to_decide({"mean": 0.0, "lo": -3.0, "hi": 3.0, "n": 3}, 0.5, most=10) is None
    assert stats.seeds_to_decide({"mean": 0.5, "lo": None, "hi": None, "n": 1}, 0.5) is None


def test_seeds_for_power_agrees_with_the_noncentral_t():
    """One part, per-seed differences of mean 1 and sd 1, band 0.5: an interval decides when it
    clears 0, which a paired t does with the noncentral t's power; the simulated plan lands
    within a seed of the first n where that power reaches 80%."""
    z = [-1.5, -0.5, 0.0, 0.5, 1.5]
    unit = [1.0 + v / statistics.stdev(z) for v in z]  # mean 1, sd 1
    exact = next(n for n in range(3, 100) if 1 - scipy_stats.nct.cdf(
        scipy_stats.t.ppf(0.975, n - 1), n - 1, math.sqrt(n)) >= 0.8)
    planned = stats.seeds_for_power([[u] for u in unit], [0.5])
    assert abs(planned - exact) <= 1 and exact == 10
    half = [[u - 0.5] for u in unit]  # half the effect, same spread: about four times the seeds
    assert stats.seeds_for_power(half, [0.5]) > 3 * planned
    both = [[u, h[0]] for u, h in zip(unit, half)]  # every part must decide: the harder one rules
    assert stats.seeds_for_power(both, [0.5, 0.5]) >= stats.seeds_for_power(half, [0.5])
    assert stats.seeds_for_power(half, [0.5], most=20) is None


@pytest.mark.parametrize("parts, expected", [
    (["held", "held"], "held"),
    (["held", "contradicted"], "contradicted"),
    (["held", "no effect"], "no effect"),
    (["held", "inconclusive"], "inconclusive"),
    (["inconclusive: 1 seed", "held"], "inconclusive"),
    (["held", "no data"], "no data"),
    (["held", "held, but below the band"], "held, but below the band"),
    (["held, but below the band", "no effect"], "no effect"),
    (["held", "above 0, size undecided"], "above 0, size undecided"),
    (["above 0, size undecided", "held, but below the band"], "held, but below the band"),
    (["held", "below 0, but within the band"], "contradicted"),
])
def test_a_claim_of_several_parts(parts, expected):
    assert stats.combined(parts) == expected


def test_counts_name_every_label_as_it_is():
    said = stats.counts(["held", "held, but below the band", "inconclusive", "held"])
    assert said == "2 held; 1 held, but below the band; 1 inconclusive"


def test_looks_add_up_their_error_rates():
    assert stats.error_rate(1) == pytest.approx(0.05)
    assert stats.error_rate(2) == pytest.approx(0.0975)
    assert stats.error_rate(3) == pytest.approx(1 - 0.95 ** 3)


def _plain(shown: str) -> str:
    """A claim's verdict without what is shown with it (looks, a protocol's caveat)."""
    return shown.split(" (")[0]


def test_holm_against_its_definition():
    """p (0.01, 0.04, 0.03) over three parts: sorted 0.01, 0.03, 0.04 times 3, 2, 1, each at least
    the one before: 0.03, 0.06, 0.06 (None stays None and does not count as a part)."""
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.02, None]) == [0.02, None]
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_a_part_below_zero_contradicts_only_if_it_survives_holm():
    parts = ["held", "contradicted"]
    assert stats.combined(parts, [0.001, 0.01]) == "contradicted"
    assert stats.combined(parts, [0.001, 0.06]) == "inconclusive"
    assert stats.combined(parts) == "contradicted"  # one test: no correction


def test_paired_difference_gives_scipys_p_and_the_differences():
    a, b = {0: 12.0, 1: 10.0, 2: 13.0}, {0: 10.0, 1: 11.0, 2: 12.0}
    d = stats.paired_difference(a, b)
    assert d["p"] == pytest.approx(scipy_stats.ttest_rel([12, 10, 13], [10, 11, 12]).pvalue)
    assert d["differences"] == {0: 2.0, 1: -1.0, 2: 1.0}


@pytest.mark.parametrize("ours, paper, expected", [
    ({"mean": 2.0, "lo": 1.0, "hi": 3.0}, 14.0, "smaller than the paper's"),
    ({"mean": 12.0, "lo": 9.0, "hi": 16.0}, 14.0, "consistent with the paper's"),
    ({"mean": 20.0, "lo": 16.0, "hi": 24.0}, 14.0, "larger than the paper's"),
    ({"mean": 2.0, "lo": None, "hi": None}, 14.0, ""),
    ({"mean": 2.0, "lo": 1.0, "hi": 3.0}, None, ""),
])
def test_our_gain_against_the_papers(ours, paper, expected):
    assert stats.size_reading(ours, paper) == expected


def test_relative_gain_and_pearson_from_scipy():
    rel = stats.relative({"mean": 1.0, "lo": 0.5, "hi": 1.5, "n": 3}, 10.0)
    assert (rel["mean"], rel["lo"], rel["hi"]) == pytest.approx((10.0, 5.0, 15.0))
    r = stats.pearson([0.1, 0.2, 0.3, 0.4, 0.5], [1.0, 2.1, 2.9, 4.2, 5.0])
    res = scipy_stats.pearsonr([0.1, 0.2, 0.3, 0.4, 0.5], [1.0, 2.1, 2.9, 4.2, 5.0])
    assert r["r"] == pytest.approx(res.statistic) and r["verdict"] == "held"
    assert stats.pearson([1, 2, 3], [1, 2, 3]) is None


def test_claim_7_on_the_papers_own_five_methods():
    # Tables 1-2 (Sec. 4.2): FCOS−, + alignment, + ML, + centerness, + IUR; IoU-NMS reports no
    # correlation, and FCOS− is in both tables but is one method.
    corr, ap = [0.32, 0.42, 0.48, 0.33, 0.50], [34.5, 35.3, 37.5, 36.9, 37.3]
    paper = claims.paper_correlation_tracks_ap()
    expected = scipy_stats.pearsonr(corr, ap).confidence_interval(0.95)
    assert paper["n"] == 5 and paper["r"] == pytest.approx(scipy_stats.pearsonr(corr, ap).statistic)
    assert (paper["lo"], paper["hi"]) == pytest.approx((expected.low, expected.high))
    assert paper["verdict"] == "inconclusive"  # its own interval crosses zero


def test_comparison_table_sets_ours_beside_the_paper_in_points_and_percent():
    runs = [_run("fcos_minus", s, {"AP": ap, "divergence": {"mean": c}})
            for s, ap, c in ((0, 10.0, 0.40), (1, 12.0, 0.44))]
    runs += [_run("fcos_minus", s, {"AP": ap, "divergence": {"mean": 0.5}}, ml=True)
             for s, ap in ((0, 11.0), (1, 14.0))]
    table = tables.comparison_table(grids.GRIDS[1], runs, tables.paper_table(1),
                                    {"AP": ("AP", "AP"), "corr": ("correlation", "divergence.mean")},
                                    baseline="FCOS−")
    assert table.loc["FCOS−", ("AP", "ours")] == "11.0 ± 1.4"
    assert table.loc["FCOS−", ("AP", "paper")] == "34.5"
    assert table.loc["FCOS−", ("AP", "ours − paper")] == "-23.5"
    assert table.loc["FCOS− + ML", ("AP", "gain, paper")] == "+3.0; +9%"  # 37.5 over 34.5
    # gains 1 and 2 over a baseline of mean 11: +1.5 points, +14%
    assert table.loc["FCOS− + ML", ("AP", "gain, ours")].startswith("+1.5 [")
    assert "; +14% [" in table.loc["FCOS− + ML", ("AP", "gain, ours")]
    assert table.loc["FCOS− + ML", ("corr", "gain, ours")].startswith("+0.08 [")
    assert "%" not in table.loc["FCOS− + ML", ("corr", "gain, ours")]
    assert table.loc["FCOS− + ML", ("corr", "ours")] == "0.50 ± 0.00"
    assert table.loc["FCOS− + alignment", ("AP", "ours")] == "not run"
    assert table.loc["FCOS− + ML", ("", "seeds")] == "0,1"


def _claim1_runs(ml_ap: list[float], align_ap: list[float], ml_corr: float = 0.5) -> list[dict]:
    runs = [_run("fcos_minus", s, {"AP": ap, "divergence": {"mean": 0.40 + s / 1000}}, alignment=True)
            for s, ap in enumerate(align_ap)]
    runs += [_run("fcos_minus", s, {"AP": ap, "divergence": {"mean": ml_corr + s / 500}}, ml=True)
             for s, ap in enumerate(ml_ap)]
    return runs


@pytest.mark.parametrize("ml_ap, expected", [
    ([11.0, 12.2, 13.1], "held"),  # AP gains 1.0, 1.2, 1.1; correlation +0.1
    ([10.1, 10.9, 12.1], "no effect"),  # AP gains 0.1, -0.1, 0.1: within ±0.5
    ([8.0, 9.3, 10.1], "contradicted"),  # AP gains -2.0, -1.7, -1.9
    ([12.0, 10.0, 13.0], "inconclusive"),  # AP gains 2, -1, 1
])
def test_claim_1_takes_every_verdict(ml_ap, expected):
    card = claims.scorecard(_claim1_runs(ml_ap, [10.0, 11.0, 12.0]), [])
    assert _plain(card.iloc[0]["verdict"]) == expected
    evidence = card.iloc[0]["evidence"]
    assert "AP ML − alignment" in evidence and "correlation ML − alignment +0.10 [+0.10, +0.10] (held;" \
        in evidence
    assert "the paper's +6%" in evidence  # Table 1: (37.5 − 35.3) / 35.3
    if expected == "inconclusive":  # AP gains 2, -1, 1 and correlation gains 0.100-0.102
        planned = stats.seeds_for_power([[2.0, 0.1], [-1.0, 0.101], [1.0, 0.102]], [0.5, 0.02])
        assert f"A further stage would need {planned} fresh seeds for 80% power" in evidence


def test_scorecard_with_one_seed_is_inconclusive_and_says_what_is_missing():
    runs = [_run("fcos_minus", 0, {"AP": 10.0, "divergence": {"mean": 0.4}}, alignment=True),
            _run("fcos_minus", 0, {"AP": 11.0, "divergence": {"mean": 0.5}}, ml=True),
            _run("fcos_minus", 0, {"AP": 12.0, "divergence": {"mean": 0.5},
                                   "iou_nms": {"AP": 9.0}}, iur=True)]
    card = claims.scorecard(runs, [])
    assert _plain(card.iloc[0]["verdict"]) == "inconclusive"
    assert card.iloc[2]["evidence"] == "AP rescoring − IoU-NMS +3.0 (inconclusive: 1 seed)"  # no plan
    assert _plain(card.iloc[4]["verdict"]) == "no data"


@pytest.mark.parametrize("iur_ap, expected", [
    ((10.1, 11.9, 12.2), "held"),  # AP gaps +0.1, -0.1, +0.2: no effect, "at least as high"
    ((9.0, 11.5, 11.0), "contradicted"),  # gaps -1, -0.5, -1: AP below centerness
    ((9.0, 12.5, 10.0), "inconclusive"),  # gaps -1, +0.5, -2
])
def test_iur_against_centerness_needs_ap_at_least_as_high(iur_ap, expected):
    runs = [_run("fcos", s, {"AP": ap, "divergence": {"mean": 0.40 + s / 100}})
            for s, ap in enumerate((10.0, 12.0, 12.0))]
    runs += [_run("fcos_minus", s, {"AP": ap, "divergence": {"mean": 0.50 + s / 100 + (s == 1) / 50}},
                  iur=True) for s, ap in enumerate(iur_ap)]
    assert _plain(claims.scorecard(runs, []).iloc[1]["verdict"]) == expected


def test_a_deciding_claim_reads_its_fresh_seeds_alone_and_no_other_claim_does():
    """Claim 2's confirmatory stage (seeds 7-15, grids.DECIDING) decides it on those seeds alone;
    claims 3 and 4 read the same IUR runs but only on the book's seeds; claim 1, whose fixed seeds
    are not run, says so."""
    def iur_fcos(seeds, gaps):
        runs = [_run("fcos", s, {"AP": 10.0 + s, "divergence": {"mean": 0.40}}) for s in seeds]
        runs += [_run("fcos_minus", s, {"AP": 10.0 + s + g, "divergence": {"mean": 0.45 + s / 1000},
                                        "iou_nms": {"AP": 9.0 + s + g + s % 2}}, iur=True)
                 for s, g in zip(seeds, gaps)]
        return runs

    book = iur_fcos(range(3), [-2.0, 1.0, -1.5])  # inconclusive on three seeds
    extra = iur_fcos(range(3, 16), [-1.0, -1.2, -0.8] * 4 + [-1.1])
    alone = claims.scorecard(book, [])
    card = claims.scorecard(book, [], extra)
    assert _plain(alone.iloc[1]["verdict"]) == "inconclusive"
    assert _plain(card.iloc[1]["verdict"]) == "contradicted"
    assert card.index[1].startswith("on 9 fresh seeds (7-15), fixed 2026-11-28 by stats.seeds_to_decide")
    assert "AP IUR − centerness -1.0 [" in card.iloc[1]["evidence"]  # seeds 7-15 alone
    assert card.iloc[1]["evidence"].endswith("Seeds 0-6, read before: contradicted")  # 3-6 from extra
    assert card.iloc[2].equals(alone.iloc[2])  # claim 3: the book's three seeds only
    assert card.index[0].startswith("on 0 fresh seeds (7-26)") and "20 not run" in card.index[0]
    assert card.iloc[3].equals(alone.iloc[3])  # claim 4 reads the IUR runs on the book's seeds


def test_an_open_claim_plans_its_next_stage_from_every_seed_read():
    """A claim left open on its confirmatory stage names the fresh seeds a further stage needs for
    80% power to decide every part, planned from all the seeds read (stats.seeds_for_power)."""
    def iur_fcos(seeds, gaps):
        runs = [_run("fcos", s, {"AP": 10.0 + s, "divergence": {"mean": 0.40}}) for s in seeds]
        runs += [_run("fcos_minus", s, {"AP": 10.0 + s + g, "divergence": {"mean": 0.45 + s / 1000}},
                      iur=True) for s, g in zip(seeds, gaps)]
        return runs

    gaps = [-2.0, 0.5, -1.5, 0.2] * 4  # inconclusive on the first 7 seeds and on the next 9
    card = claims.scorecard(iur_fcos(range(7), gaps[:7]), [], iur_fcos(range(7, 16), gaps[7:]))
    assert _plain(card.iloc[1]["verdict"]) == "inconclusive"
    planned = stats.seeds_for_power([[0.05 + s / 1000, g] for s, g in enumerate(gaps)], [0.02, 0.5])
    assert planned is not None
    assert f"A further stage would need {planned} fresh seeds for 80% power" in card.iloc[1]["evidence"]


def _rpn_runs(seeds, gains) -> list[dict]:
    """RPN, + ML and + IUR on `seeds`; `gains(seed)` gives (ML, IUR) gains at AR@100, 300, 1000."""
    runs = []
    for s in seeds:
        base = {"AR100": 50.0 + s % 3, "AR300": 60.0 + s % 3, "AR1000": 65.0 + s % 3}
        runs.append(_run("rpn", s, base))
        for flags, gain in zip(({"ml": True}, {"iur": True}), gains(s)):
            runs.append(_run("rpn", s, {k: base[k] + g for k, g in zip(base, gain)}, **flags))
    return runs


def test_a_second_stage_decides_on_its_new_seeds_alone():
    """Claim 5's first 12 seeds scatter (gains +1.5, -0.5 in turn); its second stage (seeds 12-40,
    grids.DECIDING) gains about +1 AR@100: the verdict and means read the new seeds only, with the
    first stage's evidence after them, and the plan recomputes from the first stage alone."""
    def scatter(s):
        g = 1.5 if s % 2 else -0.5
        return (g, g, g), (g, g, g)

    def clear(s):  # every gain, and every AR@100 gain's lead, clears the band
        j = 0.2 * (s % 3 - 1)
        return (2.5 + j, 1.5 + j, 0.9 + j), (2.2 + j, 1.6 + j, 1.0 + j)

    book, first = _rpn_runs(range(3), scatter), _rpn_runs(range(3, 12), scatter)
    second = _rpn_runs(range(12, 41), clear)
    card = claims.scorecard(book, [], first + second)
    evidence = card.iloc[4]["evidence"]
    assert _plain(card.iloc[4]["verdict"]) == "held"
    assert card.index[4].startswith("on 29 fresh seeds (12-40), fixed 2026-12-05 by stats.seeds_for_power")
    assert evidence.startswith("ML AR100 +2.5 [")  # pooled with the seeds before it would be +1.9
    assert "Seeds 0-6, read before: inconclusive. Seeds 7-11, read before: inconclusive" in evidence
    assert "further stage" not in evidence and "Chosen after a look: RPN's lr" in evidence
    partial = claims.scorecard(book, [], first + second[:30])
    assert partial.index[4].startswith("on 10 fresh seeds (12-40)") and "19 not run" in partial.index[4]
    diffs = [[g for gains in scatter(s) for g in gains] for s in range(12)]
    assert claims.claim5_second_stage(book + first + second) == stats.seeds_for_power(diffs, [0.5] * 6)
    assert claims.claim5_second_stage(second) is None


def test_figures_are_drawn_with_the_books_style():
    plots.style()
    runs = _claim1_runs([11.0, 12.2, 13.1], [10.0, 11.0, 12.0])
    runs += [_run("fcos_minus", s, {"AP": ap, "divergence": {"mean": 0.3}})
             for s, ap in enumerate((9.0, 10.0, 11.0))]
    fig = plots.gains(grids.GRIDS[1], runs, tables.paper_table(1), {"AP": ("AP", "AP")}, {None: "FCOS−"},
                      "Table 1")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["FCOS− + alignment", "FCOS− + ML"]
    ours, _ = plots.gain_frame(grids.GRIDS[1], runs, tables.paper_table(1), {"AP": ("AP", "AP")},
                               {None: "FCOS−"})
    assert ours[ours["method"] == "FCOS− + ML"]["gain"].round(3).tolist() == [20.0, 22.0, 21.0]
    points = tables.method_points(runs)
    assert plots.divergence_vs_ap(points, claims.judged_points(points), "claim 7") is not None
    assert plots.gains(grids.GRIDS[2], [], tables.paper_table(2), {"AP": ("AP", "AP")},
                       {None: "FCOS−"}, "none") is None
    lo, hi = plots.t_interval([1.0, 2.0, 3.0])
    assert (lo, hi) == pytest.approx(scipy_stats.t.interval(0.95, 2, loc=2.0, scale=1 / 3 ** 0.5))


def test_sweeps_dial_floors_and_curves_draw_their_intervals():
    plots.style()
    floors = {"0.1": {"mean": 0.5}, "0.3": {"mean": 0.4}}
    runs = [_run("fcos_minus", s, {"AP": 10.0 + s, "divergence": {"mean": 0.4},
                                   "divergence_by_floor": floors}, iur=True, gamma=g)
            for s in range(3) for g in (0.5, 1.0)]
    gamma = grids.sweep_grid("fcos_minus", "gamma", [0.5, 1.0], {"iur": True})
    fig = plots.sweep(gamma, runs, "gamma", {"AP": "AP"}, "gamma")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.5", "1.0"]
    fig = plots.sweep(gamma, runs, "gamma", {"AP": "AP"}, "gamma", per_seed_lines=True)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["0", "1", "2"]
    fig = plots.floors(gamma, runs, "floors")
    assert len(fig.axes[0].get_lines()) >= 2  # one line per method
    dial = grids.offset_grid([0.0, 0.5], 0.5)
    runs = [_run("fcos_minus", s, {"AP": ap + s, "divergence": {"mean": 0.4}}, **row["set"])
            for s in range(2) for row, ap in zip(dial, (5.0, 6.0, 5.0, 7.0))]
    fig = plots.dial(dial, runs)
    assert [ax.get_xlabel() for ax in fig.axes] == ["head offset (0 centre, 1 tip)"] * 2
    curves = pd.DataFrame([{"detector": d, "seed": s, "epoch": e, "loss": 1 / e + s / 10}
                           for d in ("fcos", "rpn") for s in range(2) for e in range(1, 5)])
    grid = plots.curves(curves, y="loss", hue="detector", start_epoch=2)
    assert len(grid.axes.flat) == 1 and grid.legend is not None
    assert plots.curves(curves.iloc[:0], y="loss", hue="detector") is None


def test_noise_components_by_hand(tmp_path):
    """Seed: the std over seeds; validation set: sqrt(mean((a - b)^2)) / 2 of the halves;
    machine: the retrained run minus the pinned one, and the std that implies."""
    from mlc.analysis import noise

    runs = [_run("fcos_minus", s, {"AP": ap, "val_halves": {"AP": halves}})
            for s, ap, halves in ((0, 10.0, [11.0, 9.0]), (1, 12.0, [12.0, 12.0]),
                                  (2, 14.0, [13.0, 15.0]))]
    row = {"label": "FCOS−", "detector": "fcos_minus", "set": {}, "key": "AP"}
    assert noise.seed_spread(runs, row, "AP") == pytest.approx(2.0)
    assert noise.eval_set_spread(runs, row, "AP") == pytest.approx(math.sqrt((4 + 0 + 4) / 3) / 2)
    other = tmp_path / "native" / "smoke"
    other.mkdir(parents=True)
    name = runs[0]["config"].name
    (other / f"{name}.json").write_text('{"metrics": {"AP": 10.5}}')
    assert noise.machine_differences(runs, row, "AP", tmp_path / "native") == [0.5]
    table = noise.noise_table(runs, [row], {"own kernels": tmp_path / "native",
                                            "another CPU": tmp_path / "elsewhere"})
    assert table.loc["FCOS−", "own kernels: retrained − committed"] == "+0.50"
    assert table.loc["FCOS−", "std from own kernels"] == f"{0.5 / math.sqrt(2):.2f}"
    assert table.loc["FCOS−", "another CPU: retrained − committed"] == "not run"
    assert table.loc["FCOS−", "largest"] == "seed"
    # another thread count is not the machine's difference: refused, naming the file
    (other / f"{name}.json").write_text('{"metrics": {"AP": 10.5}, "provenance": {"threads": 2}}')
    with pytest.raises(ValueError, match=f"{name}.json was trained with 2 thread"):
        noise.machine_differences(runs, row, "AP", tmp_path / "native")


def _successor_runs() -> list[dict]:
    """FCOS−, + VFL and + ML + IUR on seeds 0-2: VFL +1 AP over the baseline at every seed,
    ML + IUR +2 (so VFL − ML + IUR is -1)."""
    runs = []
    for s, base in enumerate((20.0, 22.0, 21.0)):
        for flags, gain in (({}, 0.0), ({"vfl": True}, 1.0), ({"ml": True, "iur": True}, 2.0)):
            m = {"AP": base + gain, "AP50": 40.0, "AP75": 20.0, "divergence": {"mean": 0.5}}
            runs.append(_run("fcos_minus", s, m, **flags))
    return runs


SUCCESSOR_ROWS = [r for r in grids.SUCCESSORS if r["detector"] == "fcos_minus" and r["method"] != "TAL"]


def test_successor_differences_against_the_baseline_and_ml_iur():
    runs = _successor_runs()
    keys = {"AP": "AP", "correlation": "divergence.mean"}
    vs_base = tables.difference_table(SUCCESSOR_ROWS, runs, keys, "baseline")
    assert vs_base.loc["FCOS− + VFL", "AP"] == "+1.0 [+1.0, +1.0]; +5% [+5, +5]"
    assert vs_base.loc["FCOS− + VFL", "AP verdict"] == "held"
    assert "FCOS−" not in vs_base.index  # the reference row itself
    vs_mlc = tables.difference_table(SUCCESSOR_ROWS, runs, keys, "ML + IUR")
    assert vs_mlc.loc["FCOS− + VFL", "AP"].startswith("-1.0 [-1.0, -1.0]")
    assert vs_mlc.loc["FCOS− + VFL", "AP verdict"] == "contradicted"
    values = tables.value_table(SUCCESSOR_ROWS, runs, keys)
    assert values.loc["FCOS− + ML + IUR", "AP"] == "23.0 ± 1.0" and values.iloc[0]["seeds"] == "0,1,2"


def test_reference_points_set_ours_beside_the_published_gain():
    refs = tables.reference_points(SUCCESSOR_ROWS, _successor_runs())
    mlc = refs[refs["ours on"] == "fcos_minus"].loc["ML + IUR"]
    assert mlc["reference gain"] == f"{100 * (38.7 - 34.6) / 34.6:+.1f}%"
    assert mlc["our gain"] == "+9.5% [+9.5, +9.5]"  # +2 over a baseline of 21
    assert refs[refs["ours on"] == "retinanet"]["our gain"].eq("not in the grid").all()


def test_step_cost_from_a_bench_report():
    report = {"training": {"fcos_minus": {"baseline": 0.1, "ML+IUR": 0.104, "VFL": 0.1}}}
    cost = tables.step_cost(SUCCESSOR_ROWS, report, {"baseline": "baseline", "VFL": "VFL",
                                                     "ML + IUR": "ML+IUR"})
    assert cost.loc["FCOS− + ML + IUR", "× baseline"] == "1.040"


def test_setting_table_ranks_evidence_per_cpu_minute():
    """Gains 2, 4, 3 over three seeds (mean 3, sd 1) at 4 minutes a run: 3 / (1 x 2) = 1.5."""
    grid = grids.setting_grid(["smoke"])
    timing = {"steps_total": 200, "seconds_per_step": 1.2, "eval_seconds": 0.0}  # 4 minutes
    runs = []
    for s, (base, gain) in enumerate(((10.0, 2.0), (11.0, 4.0), (12.0, 3.0))):
        for flags, ap in (({}, base), ({"ml": True, "iur": True}, base + gain)):
            run = _run("fcos_minus", s, {"AP": ap, "divergence": {"mean": 0.4}}, **flags)
            run["record"]["run"] = timing
            runs.append(run)
    table = tables.setting_table(grid, runs)
    assert table.loc["smoke", "gain / (sd √min)"] == "+1.50"
    assert table.loc["smoke", "min / run"] == "4.0 ± 0.0"
    points = tables.setting_points(grid, runs)
    assert len(points) == 6 and set(points["role"]) == {"baseline", "method"}
    assert plots.setting(points, 35.0, 0.5) is not None


def test_no_minus_zero_in_intervals():
    assert stats.format_interval({"mean": -0.04, "lo": -0.001, "hi": 0.3, "n": 3}) == "+0.0 [+0.0, +0.3]"
    assert stats.format_interval({"mean": -0.06, "lo": None, "hi": None, "n": 1}) == "-0.1"


def test_noise_in_a_gain_by_hand():
    """Gains 2 and 4 (seed std 1.41); on the halves the gains are (3, 1) and (4, 4): the
    validation set's std of the gain is sqrt((4 + 0) / 2) / 2."""
    from mlc.analysis import noise

    runs = [_run("fcos_minus", 0, {"AP": 10.0, "val_halves": {"AP": [10.0, 10.0]}}),
            _run("fcos_minus", 0, {"AP": 12.0, "val_halves": {"AP": [13.0, 11.0]}}, ml=True),
            _run("fcos_minus", 1, {"AP": 10.0, "val_halves": {"AP": [9.0, 11.0]}}),
            _run("fcos_minus", 1, {"AP": 14.0, "val_halves": {"AP": [13.0, 15.0]}}, ml=True)]
    base = {"label": "FCOS−", "detector": "fcos_minus", "set": {}, "key": "AP"}
    ml = {"label": "FCOS− + ML", "detector": "fcos_minus", "set": {"ml": True}, "key": "AP"}
    spreads = noise.gain_spreads(runs, ml, base, "AP")
    assert spreads["seed"] == pytest.approx(math.sqrt(2))
    assert spreads["validation set"] == pytest.approx(math.sqrt(2) / 2)
    table = noise.gain_noise_table(runs, [(ml, base)])
    assert table.loc["FCOS− + ML − FCOS−", "std of the gain over seeds"] == "1.41"
    assert list(table.columns) == ["metric", "std of the gain over seeds",
                                   "std of the gain from the validation set"]  # no other asked


def test_noise_in_a_gain_from_the_machine(tmp_path):
    """Seed 0 retrained with other kernels: base 10 -> 7, ML 12 -> 10, so the gain 2 -> 3 (+1);
    seed 1 has only its baseline retrained and gives no pair."""
    from mlc.analysis import noise

    runs = [_run("fcos_minus", 0, {"AP": 10.0}), _run("fcos_minus", 0, {"AP": 12.0}, ml=True),
            _run("fcos_minus", 1, {"AP": 10.0}), _run("fcos_minus", 1, {"AP": 14.0}, ml=True)]
    other = tmp_path / "native" / "smoke"
    other.mkdir(parents=True)
    for run, ap in zip(runs[:3], (7.0, 10.0, 9.0)):
        (other / f"{run['config'].name}.json").write_text(f'{{"metrics": {{"AP": {ap}}}}}')
    base = {"label": "FCOS−", "detector": "fcos_minus", "set": {}, "key": "AP"}
    ml = {"label": "FCOS− + ML", "detector": "fcos_minus", "set": {"ml": True}, "key": "AP"}
    assert noise.machine_differences(runs, base, "AP", tmp_path / "native") == [-3.0, -1.0]
    table = noise.gain_noise_table(runs, [(ml, base), (base, ml)], {"own kernels": tmp_path / "native"})
    assert table.loc["FCOS− + ML − FCOS−", "own kernels: retrained gain − committed gain"] == "+1.00"
    assert table.loc["FCOS− − FCOS− + ML", "own kernels: retrained gain − committed gain"] == "-1.00"
    assert table.loc["FCOS− + ML − FCOS−", "std of the gain from own kernels"] == \
        f"{1 / math.sqrt(2):.2f}"
    summary = noise.machine_summary(runs, ml, base, "Own kernels", tmp_path / "native")
    assert summary.startswith("Own kernels (seeds 0): FCOS− moved by -3.0 AP")
    assert "over it by +1.0" in summary and "levels compare only where the CPU kernels" in summary
    assert noise.machine_summary(runs, ml, base, "Another CPU", tmp_path / "elsewhere") == \
        "Another CPU: no seed of FCOS− + ML and FCOS− was retrained."


def test_a_kernel_change_that_moves_the_level_is_told_from_one_that_scatters(tmp_path):
    """Base retrained 3, 2 and 4 below on seeds 0-2 (mean -3, sd 1: held below 0); ML retrained
    -3, -1, -5, so the gain moves by 0, +1, -1 (undecided); seed 3's baseline alone gives no
    gain pair; another folder with one seed says so."""
    from mlc.analysis import noise

    levels = {0: (10.0, 12.0), 1: (11.0, 14.0), 2: (12.0, 13.0), 3: (9.0, 11.0)}
    runs = [r for s, (b, m) in levels.items()
            for r in (_run("fcos_minus", s, {"AP": b}), _run("fcos_minus", s, {"AP": m}, ml=True))]
    other, one = tmp_path / "native" / "smoke", tmp_path / "one" / "smoke"
    other.mkdir(parents=True)
    one.mkdir(parents=True)
    for run in runs:
        seed, ml = run["config"].seed, run["config"].ml
        moved = {0: (-3, -3), 1: (-2, -1), 2: (-4, -5), 3: (-3, None)}[seed][ml]
        if moved is not None:
            ap = run["record"]["metrics"]["AP"] + moved
            (other / f"{run['config'].name}.json").write_text(f'{{"metrics": {{"AP": {ap}}}}}')
    (one / f"{runs[0]['config'].name}.json").write_text('{"metrics": {"AP": 10.2}}')
    base = {"label": "FCOS−", "detector": "fcos_minus", "set": {}, "key": "AP"}
    ml = {"label": "FCOS− + ML", "detector": "fcos_minus", "set": {"ml": True}, "key": "AP"}
    shifts = noise.machine_shifts(runs, [base, ml], [(ml, base)],
                                  {"own kernels": tmp_path / "native", "one": tmp_path / "one"})
    table = noise.shift_table(shifts)
    level = table.loc[("own kernels", "FCOS−")]
    half = 3.1824 * 0.8165 / 2  # t(0.975, 3) * sd of (-3, -2, -4, -3) / sqrt(4)
    assert level["seeds"] == 4
    assert level["retrained − committed"] == f"-3.0 [{-3 - half:.1f}, {-3 + half:.1f}]"
    assert level["what the interval says"] == "retrained lower"
    assert level["std over these seeds, committed"] == f"{statistics.stdev([10, 11, 12, 9]):.2f}"
    assert level["std over these seeds, retrained"] == f"{statistics.stdev([7, 9, 8, 6]):.2f}"
    gain = table.loc[("own kernels", "FCOS− + ML − FCOS−")]
    assert gain["seeds"] == 3 and gain["what the interval says"] == "undecided"
    assert gain["retrained − committed"].startswith("+0.0 [")
    assert table.loc[("one", "FCOS−"), "what the interval says"] == "one seed"
    assert ("one", "FCOS− + ML") not in table.index  # not retrained there
    summary = noise.shift_summary(shifts)
    assert summary.startswith(f"Own kernels moved FCOS− by {level['retrained − committed']} AP over "
                              "4 seeds. ")  # FCOS− + ML's -3 over 3 seeds is undecided
    # the gain's interval (3 seeds, sd 1: ±2.5) lies closer to 0 than its row FCOS− moved (3), but
    # reaches past the band: it moved less than its row, and that it carries is not shown
    assert ("whose intervals lie closer to 0 than their rows moved but reach past ±0.5: FCOS− + ML − "
            "FCOS− +0.0 [") in summary and "carries across" not in summary
    assert summary.endswith("One moved no level beyond what its seeds can tell.")
    base_shift, gain_shift = shifts[0], shifts[2]
    assert (base_shift["what"], gain_shift["what"]) == ("FCOS−", "FCOS− + ML − FCOS−")

    def with_gain(lo: float, hi: float, base: dict = base_shift) -> str:
        return noise.shift_summary([base, {**gain_shift, "diff": {"mean": (lo + hi) / 2, "lo": lo,
                                                                  "hi": hi, "n": 3}}])
    assert "whose intervals reach as far as their rows moved: FCOS− + ML − FCOS− +0.0 [-3.5, +3.5]" \
        in with_gain(-3.5, 3.5)
    assert "Paired gains that moved: FCOS− + ML − FCOS− +1.5 [+1.0, +2.0] AP; a gain measured" \
        in with_gain(1.0, 2.0)
    assert "lie within ±0.5: FCOS− + ML − FCOS− +0.0 [-0.3, +0.3] AP; such a gain carries across" \
        in with_gain(-0.3, 0.3)
    still = {**base_shift, "diff": {"mean": 0.1, "lo": -0.2, "hi": 0.4, "n": 4}}
    assert with_gain(-3.5, 3.5, still) == (
        "Own kernels moved no level beyond what its seeds can tell, and left FCOS− within ±0.5 of "
        "the committed runs. Paired gains over rows not shown to move: FCOS− + ML − FCOS− +0.0 "
        "[-3.5, +3.5] AP.")
    assert noise.shift_summary([]).startswith("No run of these rows was retrained")


def test_gains_on_the_first_images_beside_the_whole_set():
    """First 4 images: ML − base gains +1 and +3 (inconclusive over 2 seeds); all 7: +2 and
    +2.2 (held); a record without the subset is no data on it."""
    from mlc.analysis import noise

    def run(seed: int, first: float, whole: float, **flags) -> dict:
        made = _run("fcos_minus", seed, {"AP": whole, "val_first": {"images": 4, "AP": first}},
                    **flags)
        made["record"]["run"] = {"val_images": 7}
        return made

    runs = [run(0, 10.0, 20.0), run(0, 11.0, 22.0, ml=True),
            run(1, 10.0, 21.0), run(1, 13.0, 23.2, ml=True)]
    base = {"detector": "fcos_minus", "set": {}}
    ml = {"detector": "fcos_minus", "set": {"ml": True}}
    parts = [["ML − base", ml, base, "AP"]]
    table = noise.subset_table(runs, parts)
    row = table.loc[("ML − base", "AP")]
    assert row["first 4 images: gain"].startswith("+2.0 [")
    assert row["first 4 images: verdict"] == "inconclusive"
    assert row["first 4 images: std over seeds"] == "1.41"
    assert row["all 7 images: gain"] == "+2.1 [+0.8, +3.4]"
    assert row["all 7 images: verdict"] == "held"
    summary = noise.subset_summary(table)
    assert summary.startswith("1 of the 1 parts decide on all 7 images, 0 on the first 4 images")
    assert f"{0.14 / 1.41:.2f} times that on the first 4 images" in summary
    assert "ML − base (AP): inconclusive on the first 4 images, held on all 7 images" in summary
    del runs[3]["record"]["metrics"]["val_first"]
    table = noise.subset_table(runs, parts)
    assert table.loc[("ML − base", "AP"), "first 4 images: gain"] == "+1.0"  # one seed left


def test_offsets_meeting_both_goals_read_the_baselines_means():
    """At each head offset FCOS−'s mean AP and correlation decide whether that set meets both
    goals (AP at least the goal, correlation at most it); the method's runs do not count."""
    default = SCALES["smoke"].shapes.head_offset
    grid = grids.offset_grid([default, 1.0], default)
    runs = [_run("fcos_minus", s, {"AP": ap, "divergence": {"mean": c}}, **where)
            for where, aps, c in (({}, (36.0, 35.0), 0.52), ({"head_offset": 1.0}, (35.5, 36.5), 0.48))
            for s, ap in enumerate(aps)]
    runs += [_run("fcos_minus", s, {"AP": 20.0, "divergence": {"mean": 0.3}}, ml=True, iur=True,
                  head_offset=1.0) for s in (0, 1)]
    table = tables.offset_table(grid, runs)
    assert table.loc[1.0, "_ap"] == pytest.approx(36.0) and table.loc[1.0, "_corr"] == pytest.approx(0.48)
    assert tables.offsets_meeting_goals(table, 35.0, 0.5) == [1.0]
    assert tables.offsets_meeting_goals(table, 36.5, 0.5) == []
    assert tables.offsets_meeting_goals(table, 35.0, 0.55) == [default, 1.0]


def test_pretrained_or_random_init_side_by_side():
    """The init table reads each row at both inits: mean ± std, the worst seed below the median
    against the goal, and pretrained − random over paired seeds; MLC's gain at each init."""
    grid = grids.init_grid([{"label": "FCOS−", "detector": "fcos_minus", "set": {}},
                            {"label": "FCOS− + ML + IUR", "detector": "fcos_minus",
                             "set": {"ml": True, "iur": True}}])
    assert [r["label"] for r in grid][:2] == ["FCOS− (random)", "FCOS− (pretrained)"]
    assert grid[1]["set"] == {"pretrained": True} and grid[0]["set"] == {"pretrained": False}
    runs = []
    for s in range(4):
        runs.append(_run("fcos_minus", s, {"AP": [30.0, 36.0, 35.0, 37.0][s], "divergence": {"mean": 0.5}}))
        runs.append(_run("fcos_minus", s, {"AP": 40.0 + 0.2 * s, "divergence": {"mean": 0.55}},
                         pretrained=True))
        runs.append(_run("fcos_minus", s, {"AP": 43.0 + 0.2 * s, "divergence": {"mean": 0.6}},
                         pretrained=True, ml=True, iur=True))
    table = tables.init_table(grid, runs)
    assert table.loc[("FCOS−", "random"), "worst below median"] == "5.5"
    assert table.loc[("FCOS−", "random"), "goal met"] == "no"
    assert table.loc[("FCOS−", "pretrained"), "goal met"] == "yes"
    assert table.loc[("FCOS−", "pretrained"), "pretrained − random"].startswith("+5.8 [")
    assert not table.loc[("FCOS−", "pretrained"), "pretrained − random"].endswith("(two CPUs)")
    assert ("FCOS− + ML + IUR", "random") not in table.index  # not run: no row
    assert stats.MAX_BELOW_MEDIAN == 3.0  # the one goal; 3.0 below the median still meets it
    for run in runs:
        run["record"]["provenance"] = {"kernel_fingerprint": "pre" if run["config"].pretrained else "ran"}
    across = tables.init_table(grid, runs)
    assert across.loc[("FCOS−", "pretrained"), "pretrained − random"].endswith("(two CPUs)")
    assert across.loc[("FCOS−", "random"), "kernel fingerprint"] == "ran"
    gains = tables.init_gain_table(grid, runs, "FCOS− + ML + IUR", "FCOS−")
    assert gains.loc["pretrained", "AP gain"].startswith("+3.0 [+3.0, +3.0]")
    assert gains.loc["random", "AP gain"] == "no data"
    plots.style()
    assert plots.init_seeds(tables.init_points(grid, runs)) is not None


def test_the_scorecard_figure_draws_every_part_with_the_papers_gain():
    runs = _claim1_runs([11.0, 12.2, 13.1], [10.0, 11.0, 12.0])
    parts = claims.claim_parts(runs, [])
    plots.style()
    fig = plots.scorecard_figure(parts)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["1 · AP ML − alignment", "1 · correlation ML − alignment"]
    shown = parts.dropna(subset=["ours_pct"])
    assert len(shown) == 2 and shown["paper_pct"].round(1).tolist() == [6.2, 14.3]


def test_a_paper_key_the_table_does_not_have_is_an_error_naming_the_keys():
    grid = [{"label": "FCOS−", "detector": "fcos_minus", "set": {}, "paper": "fcos_minus|False|False"},
            {"label": "FCOS− + ML (alpha 1)", "detector": "fcos_minus", "set": {"ml": True}, "paper": "ml"}]
    with pytest.raises(ValueError, match=r"'ml'.*fcos_minus\|True\|False"):
        tables.comparison_table(grid, [], tables.paper_table(3), {"AP": ("AP", "AP")}, baseline="FCOS−")
    grid[1]["paper"] = ""  # no paper row: allowed, its paper column shows "–"
    assert tables.comparison_table(grid, [], tables.paper_table(3), {"AP": ("AP", "AP")},
                                   baseline="FCOS−").loc["FCOS− + ML (alpha 1)", ("AP", "paper")] == "–"


def test_a_pages_answer_names_each_claims_verdict_and_parts():
    from mlc.analysis import summary

    parts = claims.claim_parts(_claim1_runs([11.0, 12.2, 13.1], [10.0, 11.0, 12.0]), [])
    answer = summary.claim_answer([1], parts)
    assert answer.startswith("**Claim 1** (ML raises FCOS−'s correlation and AP more than prediction "
                             "alignment): **held** on seeds 0-2: AP ML − alignment +1.1 [")
    assert "correlation ML − alignment +0.10 [+0.10, +0.10] (held)." in answer


def test_the_earlier_reading_pools_a_deciding_claims_seeds_and_the_one_rule_reads_the_fresh_ones():
    """Claim 2 on seeds 0-6 (book, gaps that cross zero) and 7-15 (confirmatory, clearly below):
    pooled the old way over 0-15, by the one rule on 7-15 alone; claim 3 reads the book's seeds."""
    def iur_fcos(seeds, gaps):
        runs = [_run("fcos", s, {"AP": 10.0 + s, "divergence": {"mean": 0.40}}) for s in seeds]
        runs += [_run("fcos_minus", s, {"AP": 10.0 + s + g, "divergence": {"mean": 0.45 + s / 1000},
                                        "iou_nms": {"AP": 9.0 + s + g}}, iur=True)
                 for s, g in zip(seeds, gaps)]
        return runs

    table = claims.reading_table(iur_fcos(range(7), [-2.0, 1.0, -1.5, 1.2, -0.3, 0.8, -1.0]), [],
                                 iur_fcos(range(7, 16), [-1.0, -1.2, -0.8] * 3))
    assert table.iloc[1]["before: every seed pooled"].endswith("(seeds 0-15)")
    assert table.iloc[1]["the one rule"] == ("contradicted (IUR trained 7 epochs, centerness 19; 2 looks at "
                                             "5% each: error rate up to 9.75%), seeds 7-15")
    assert table.iloc[2]["before: every seed pooled"] == "held (seeds 0-6)"


def test_most_at_ar100_is_read_as_paired_parts_and_the_verdict_carries_its_looks():
    """Claim 5's "most at AR@100" is two paired parts per method (the AR@100 gain minus the AR@300
    and AR@1000 gains), read by the one rule; a claim read on its last stage says how many looks
    it had and the error rate they add up to; claim 2 carries its protocol's caveat."""
    def gains(s):
        j = 0.2 * (s % 3 - 1)
        return (1.0 + j, 0.5 + 2 * j, 0.2 - j), (0.6, 0.6 + j, 0.6 - j)

    last = grids.stages(5)[-1]
    parts = claims.claim_parts([], [], _rpn_runs(last, gains))
    five = parts[parts["claim"] == 5].set_index("part")
    assert len(five) == 10
    ml, iur = five.loc["ML AR100 gain − AR300 gain"], five.loc["IUR AR100 gain − AR1000 gain"]
    expected = stats.paired_difference({s: gains(s)[0][0] - gains(s)[0][1] for s in last},
                                       {s: 0.0 for s in last})
    assert ml["mean"] == pytest.approx(expected["mean"]) and ml["lo"] == pytest.approx(expected["lo"])
    assert iur["mean"] == pytest.approx(sum(0.2 * (s % 3 - 1) for s in last) / len(last))
    assert iur["verdict"] == "no effect"
    shown = claims.verdict_text(5, parts)
    assert shown.startswith(claims.claim_verdict(5, parts))
    assert shown.endswith(f"({len(grids.stages(5))} looks at 5% each: error rate up to "
                          f"{100 * (1 - 0.95 ** len(grids.stages(5))):.2f}%)")
    assert claims.verdict_text(2, parts).endswith("(IUR trained 7 epochs, centerness 19)")


def test_a_pair_trained_at_two_kernel_fingerprints_is_refused_and_named():
    """A claim's part (and every table's paired gain) refuses a seed whose two arms were trained
    where the kernels round otherwise, naming the runs; one machine per seed passes."""
    runs = _claim1_runs([11.0, 12.2, 13.1], [10.0, 11.0, 12.0])
    for run in runs:
        run["record"]["provenance"] = {"kernel_fingerprint": "aaaa"}
    claims.claim_parts(runs, [])  # one machine everywhere
    ml = next(r for r in runs if r["config"].ml and r["config"].seed == 1)
    ml["record"]["provenance"] = {"kernel_fingerprint": "bbbb"}
    with pytest.raises(tables.PairingError, match=rf"seed 1: {ml['config'].name} at bbbb, "
                                                  r"fcos_minus-\w+ at aaaa"):
        claims.claim_parts(runs, [])
    with pytest.raises(tables.PairingError, match="two kernel fingerprints"):
        tables.paired_rows(runs, {"detector": "fcos_minus", "set": {"ml": True}},
                           {"detector": "fcos_minus", "set": {"alignment": True}}, "AP")


def test_the_pilot_plans_each_claims_stage_from_its_parts_differences(monkeypatch):
    """claims.pilot_plan: claim 1's stage is the number stats.seeds_for_power gives for its two
    parts' per-seed differences on the pilot; a claim without pilot runs has no plan; a number
    over grids.MOST_STAGE_SEEDS is kept but gets no stage. The pretrained book's claim 2 compares
    the like-for-like IUR row (its loss from epoch 0)."""
    runs = []
    for s in range(7):
        wobble = 0.3 * (s % 3 - 1)
        runs.append(_run("fcos_minus", s, {"AP": 30.0 + s, "divergence": {"mean": 0.5}}, alignment=True))
        runs.append(_run("fcos_minus", s, {"AP": 31.5 + s + wobble,
                                           "divergence": {"mean": 0.56 + wobble / 20}}, ml=True))
    plan = claims.pilot_plan(runs, [], specs=claims.part_specs())
    diffs = [[1.5 + 0.3 * (s % 3 - 1), 0.06 + 0.015 * (s % 3 - 1)] for s in range(7)]
    needed = stats.seeds_for_power(diffs, [stats.BANDS["points"], stats.BANDS["correlation"]])
    assert plan.at[1, "needed"] == needed and plan.at[1, "runs"]
    assert plan.at[1, "pilot seeds"] == "0-6" and plan.at[1, "parts"] == 2
    assert plan.at[2, "needed"] is None and not plan.at[2, "runs"] and plan.at[2, "pilot seeds"] == ""
    monkeypatch.setattr(claims, "MOST_STAGE_SEEDS", needed - 1)
    over = claims.pilot_plan(runs, [], specs=claims.part_specs())
    assert over.at[1, "needed"] == needed and not over.at[1, "runs"]
    spec = next(s for s in claims.pretrained_specs() if s["claim"] == 2)
    assert spec["a"]["set"] == {"iur": True, "mlc_start_epoch": 0, "pretrained": True}
    assert spec["b"]["set"] == {"pretrained": True}
    assert all(s["a"]["set"]["pretrained"] for s in claims.pretrained_specs())


def test_the_plan_table_says_each_stages_seeds_and_how_much_of_it_has_run(monkeypatch):
    """claims.confirm_table: a committed stage of 2 seeds (7-8) with one of its four runs done; a
    claim whose plan is over the limit reads "not run: inconclusive, would need N seeds"; a claim
    not committed reads "not fixed yet"."""
    monkeypatch.setattr(claims, "CONFIRMING", {1: {"seeds": 2, "needed": 2, "fixed": "2026-12-08"},
                                               5: {"seeds": 0, "needed": 57, "fixed": "2026-12-08"}})
    plan = pd.DataFrame([{"claim": 1, "needed": 2, "pilot seeds": "0-6"},
                         {"claim": 5, "needed": 57, "pilot seeds": "0-6"},
                         {"claim": 6, "needed": None, "pilot seeds": ""}], dtype=object).set_index("claim")
    stage = [{"config": make_config("fcos_minus", "smoke", None, s, pretrained=True, **flags),
              "record": {"metrics": {}} if (s, i) == (7, 0) else None}
             for s in (7, 8) for i, flags in enumerate(({"ml": True}, {"alignment": True}))]
    stage.append({"config": make_config("fcos_minus", "smoke", None, 7, ml=True), "record": {}})
    table = claims.confirm_table(plan, stage)
    assert table.at[1, "stage"] == "seeds 7-8" and table.at[1, "runs done"] == "1 of 4"
    assert table.at[5, "stage"] == "not run: inconclusive, would need 57 seeds"
    assert table.at[5, "runs done"] == "0 of 0" and table.at[6, "stage"] == "not fixed yet"
    assert table.at[1, "fixed"] == "2026-12-08" and table.at[1, "claim says"] == claims.TITLES[1]


def test_the_pretrained_stage_is_read_only_when_whole_and_stands_beside_random_init(monkeypatch):
    """claims.stage_parts reads claim 3's committed stage (seeds 7-9) only once its three runs are
    all in; claims.init_scorecards sets random init's reading, the pretrained pilot's interval
    (no verdict) and the stage's verdict side by side, or the stage's progress while it runs."""
    monkeypatch.setattr(claims, "CONFIRMING", {3: {"seeds": 3, "needed": 3, "fixed": "2026-12-08"}})

    def iur(seed: int, gain: float, **flags) -> dict:  # rescoring beats IoU-NMS by gain + 0-0.1
        return _run("fcos_minus", seed, {"AP": 40.0 + gain + seed % 2 / 10, "iou_nms": {"AP": 40.0}},
                    iur=True, **flags)

    random = claims.claim_parts([iur(s, -1.0) for s in range(7)], [])
    pilot = [iur(s, 2.0, pretrained=True) for s in range(7)]
    pilot_parts = claims.claim_parts(pilot, [], seeds=range(7), specs=claims.pretrained_specs())
    stage = [iur(s, 3.0, pretrained=True) for s in (7, 8, 9)]
    partial = [*stage[:2], {**stage[2], "record": None}]
    assert claims.stage_parts(pilot + partial, []) == {}
    table = claims.init_scorecards(random, pilot_parts, {}, partial).set_index("part")
    assert table.at["AP rescoring − IoU-NMS", "random init"].endswith("seeds 0-6 (contradicted)")
    assert table.at["AP rescoring − IoU-NMS", "pretrained pilot, no verdict"].startswith("+2.0 [")
    claim_rows = table[table["claim"] != ""].set_index("claim")["pretrained, confirmatory stage"]
    assert claim_rows[f"3. {claims.TITLES[3]}"] == "seeds 7-9: 2 of 3 runs done"
    stages = claims.stage_parts(pilot + stage, [])
    assert list(stages) == [3] and stages[3].iloc[0]["seeds"] == "7-9"
    whole = claims.init_scorecards(random, pilot_parts, stages, stage).set_index("part")
    assert whole.at["AP rescoring − IoU-NMS", "pretrained, confirmatory stage"].startswith("+3.1 [")
    claim_rows = whole[whole["claim"] != ""].set_index("claim")["pretrained, confirmatory stage"]
    assert claim_rows[f"3. {claims.TITLES[3]}"] == "held"
    assert claim_rows[f"1. {claims.TITLES[1]}"] == "not fixed yet"


def test_the_pretrained_scorecard_decides_a_claim_on_its_whole_stage_alone(monkeypatch):
    """claims.pretrained_scorecard: claim 3's stage (seeds 7-9) gives no verdict while a run is
    missing (the pilot's interval and the stage's progress shown), and once whole its verdict is
    the stage's alone, the pilot's interval after it; a claim whose plan is over the limit reads
    inconclusive without a stage, a claim with no plan waits."""
    monkeypatch.setattr(claims, "CONFIRMING", {3: {"seeds": 3, "needed": 3, "fixed": "2026-12-08",
                                                   "planned": "the pilot"},
                                               1: {"seeds": 0, "needed": 57, "fixed": "2026-12-08",
                                                   "planned": "the pilot"}})

    def iur(seed: int, gain: float) -> dict:  # rescoring beats IoU-NMS by gain + 0-0.1
        return _run("fcos_minus", seed, {"AP": 40.0 + gain + seed % 2 / 10, "iou_nms": {"AP": 40.0}},
                    iur=True, pretrained=True)

    pilot, stage = [iur(s, -0.3) for s in range(7)], [iur(s, 3.0) for s in (7, 8, 9)]
    partial = [*stage[:2], {**stage[2], "record": None}]
    waiting = claims.pretrained_scorecard(pilot, [], partial)
    claim3 = waiting.loc[f"3. {claims.TITLES[3]}"]
    assert claim3["verdict"] == claims.NOT_YET
    assert claim3["evidence"].startswith("Pilot (seeds 0-6), no verdict: AP rescoring − IoU-NMS -0.3 [")
    assert "seeds 7-9, fixed 2026-12-08): 2 of 3 runs done" in claim3["evidence"]
    assert waiting.loc[f"1. {claims.TITLES[1]}", "verdict"] == stats.INCONCLUSIVE
    assert "would need 57 seeds" in waiting.loc[f"1. {claims.TITLES[1]}", "evidence"]
    assert waiting.loc[f"2. {claims.TITLES[2]}", "verdict"] == claims.NOT_YET
    parts = claims.pretrained_parts(pilot, [], partial)
    assert set(parts[parts["claim"] == 3]["verdict"]) == {claims.NOT_YET}
    whole = claims.pretrained_scorecard(pilot, [], stage).loc[f"3. {claims.TITLES[3]}"]
    assert whole["verdict"] == stats.HELD  # the pilot, below 0, is not read
    assert whole["evidence"].startswith("on 3 fresh seeds (7-9), fixed 2026-12-08 by the pilot: "
                                        "AP rescoring − IoU-NMS +3.1 [")
    assert ". Pilot (seeds 0-6), no verdict: AP rescoring − IoU-NMS -0.3 [" in whole["evidence"]
