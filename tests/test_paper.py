"""The book's comparison tables and claim verdicts (mlc.paper) on hand-made run records."""

from __future__ import annotations

import pytest

from mlc import paper
from mlc.config import make_config


def _run(detector: str, seed: int, metrics: dict, **flags) -> dict:
    return {"config": make_config(detector, "smoke", None, seed, **flags),
            "record": {"metrics": metrics}}


def test_paired_difference_and_its_interval_by_hand():
    d = paper.paired_difference({0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 3.0, 3: 9.0})
    # Differences 2, 3, 1 on the shared seeds: mean 2, sd 1, t(2) = 4.303.
    assert d["n"] == 3 and d["mean"] == pytest.approx(2.0)
    assert d["lo"] == pytest.approx(2 - 4.303 / 3 ** 0.5) and d["hi"] == pytest.approx(2 + 4.303 / 3 ** 0.5)
    assert paper.paired_difference({0: 1.0}, {1: 1.0}) is None
    assert paper.paired_difference({0: 2.0}, {0: 1.0})["lo"] is None


@pytest.mark.parametrize("diffs, expected", [
    ([{"mean": 1.0, "lo": 0.2, "hi": 1.8, "n": 3}], "held"),
    ([{"mean": 1.0, "lo": -0.2, "hi": 2.2, "n": 3}], "inconclusive"),
    ([{"mean": -0.1, "lo": -1.0, "hi": 0.8, "n": 3}], "not held"),
    ([{"mean": 0.5, "lo": None, "hi": None, "n": 1}], "held (1 seed, no interval)"),
    ([{"mean": 0.5, "lo": 0.1, "hi": 0.9, "n": 3}, None], "no data (a run is missing or has no value)"),
])
def test_verdicts(diffs, expected):
    assert paper.verdict(diffs) == expected


def test_comparison_table_sets_ours_beside_the_paper():
    runs = [_run("fcos_minus", s, {"AP": ap, "divergence": {"mean": c}})
            for s, ap, c in ((0, 10.0, 0.40), (1, 12.0, 0.44))]
    runs += [_run("fcos_minus", s, {"AP": ap, "divergence": {"mean": 0.5}}, ml=True)
             for s, ap in ((0, 11.0), (1, 14.0))]
    table = paper.comparison_table(paper.GRIDS[1], runs, paper.paper_table(1),
                                   {"AP": ("AP", "AP"), "corr": ("correlation", "divergence.mean")},
                                   baseline="FCOS−")
    assert table.loc["FCOS−", ("AP", "ours")] == "11.0 ± 1.4"
    assert table.loc["FCOS−", ("AP", "paper")] == "34.5"
    assert table.loc["FCOS−", ("AP", "ours − paper")] == "-23.5"
    assert table.loc["FCOS− + ML", ("AP", "gain, paper")] == "+3.0"
    assert table.loc["FCOS− + ML", ("AP", "gain, ours")].startswith("+1.5 [")  # gains 1 and 2
    assert table.loc["FCOS− + ML", ("corr", "ours")] == "0.50 ± 0.00"
    assert table.loc["FCOS− + alignment", ("AP", "ours")] == "not run"
    assert table.loc["FCOS− + ML", ("", "seeds")] == "0,1"


def test_scorecard_judges_what_it_has_and_says_what_is_missing():
    runs = [_run("fcos_minus", 0, {"AP": 10.0, "divergence": {"mean": 0.4}}, alignment=True),
            _run("fcos_minus", 0, {"AP": 11.0, "divergence": {"mean": 0.5}}, ml=True),
            _run("fcos_minus", 0, {"AP": 12.0, "divergence": {"mean": 0.5},
                                   "iou_nms": {"AP": 9.0}}, iur=True)]
    card = paper.scorecard(runs, [])
    assert card.iloc[0]["verdict"] == "held (1 seed, no interval)"
    assert card.iloc[2]["verdict"] == "held (1 seed, no interval)"  # rescoring 12 > IoU-NMS 9
    assert card.iloc[2]["evidence"] == "AP rescoring − IoU-NMS +3.0"
    assert card.iloc[4]["verdict"].startswith("no data")


@pytest.mark.parametrize("iur_ap, expected", [
    ((9.0, 12.5, 10.0), "held (AP lower, but within its interval)"),  # AP gaps -1, +0.5, -2
    ((9.0, 11.5, 11.0), "not held (AP below centerness)"),  # gaps -1, -0.5, -1: interval below 0
    ((10.5, 12.5, 12.5), "held"),
])
def test_iur_against_centerness_judges_ap_by_its_interval(iur_ap, expected):
    runs = [_run("fcos", s, {"AP": ap, "divergence": {"mean": 0.40 + s / 100}})
            for s, ap in enumerate((10.0, 12.0, 12.0))]
    runs += [_run("fcos_minus", s, {"AP": ap, "divergence": {"mean": 0.50 + s / 100 + (s == 1) / 50}},
                  iur=True) for s, ap in enumerate(iur_ap)]
    assert paper.scorecard(runs, []).iloc[1]["verdict"] == expected
