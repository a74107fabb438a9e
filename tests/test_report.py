"""Tables and provenance lines the notebooks show."""

from __future__ import annotations

from pathlib import Path

from mlc.analysis import grids
from mlc.analysis.report import benchmark_ratios, provenance_line, summary_table
from mlc.config import make_config

ROOT = Path(__file__).resolve().parents[1]


def _run(detector, seed, ap, trained_now=True, apl=None):
    record = {"metrics": {"AP": ap, "APL": apl}, "trained_now": trained_now,
              "provenance": {"git_commit": "abcdef1234567", "date": "2026-11-26T10:00:00+00:00"}}
    return {"config": make_config(detector, "smoke", seed=seed), "record": record}


def test_mean_and_sample_std_over_seeds():
    runs = [_run("fcos", 0, 10.0), _run("fcos", 1, 14.0), _run("retinanet", 0, 7.25),
            {"config": make_config("rpn", "smoke"), "record": None}]
    table = summary_table(runs, ["AP", "APL"])
    assert table.loc["fcos", "AP"] == "12.0 ± 2.8"  # std of (10, 14) with n-1 is 2.83
    assert table.loc["fcos", "seeds"] == "0,1"
    assert table.loc["retinanet", "AP"] == "7.2"
    assert table.loc["fcos", "APL"] == "n/a"
    assert table.loc["rpn", "AP"] == "not run" and table.loc["rpn", "seeds"] == "-"


def test_provenance_line_says_what_was_trained_and_what_was_read():
    runs = [_run("fcos", 0, 1.0), _run("fcos", 1, 2.0, trained_now=False),
            {"config": make_config("rpn", "smoke"), "record": None}]
    line = provenance_line(runs, "notebooks/x.ipynb")
    assert line == ("Made by notebooks/x.ipynb from 2 run(s) at scale smoke: 1 trained by this notebook, "
                    "1 read from their result files, 1 not run; code abcdef1234; dated 2026-11-26.")
    assert provenance_line([], "notebooks/x.ipynb") == "Made by notebooks/x.ipynb: no run at this scale."


def test_benchmark_ratios_merge_reports_and_divide_by_the_baseline():
    first = {"training": {"fcos": {"baseline": 2.0, "ML": 2.1, "IUR": 2.0, "ML+IUR": 2.2}},
             "otsu": {"batched": 0.5, "loop": 40.0}}
    second = {"inference": {"rpn@0.05": {"baseline": 1.0, "IUR": 1.01, "same_boxes": True}},
              "otsu": {"batched": 0.25, "loop": 50.0}}
    table, otsu = benchmark_ratios([first, second])
    assert table.loc[("training step, ML+IUR", "≤ 1.05"), "FCOS"] == "1.100"
    assert table.loc[("inference with IUR, score threshold 0.05", "≤ 1.02"), "RPN"] == "1.010"
    assert table.loc[("training step, ML", ""), "RPN"] == ""
    assert otsu == 200.0  # the later report's
    assert benchmark_ratios([first])[1] == 80.0
    assert benchmark_ratios([{"inference": {}}])[1] is None


def test_what_was_run_names_the_cpu_its_kernels_and_the_records_without_them():
    from mlc.analysis.report import what_was_run

    def run(seed, **provenance):
        base = {"code_version": "bd54c92c", "threads": 1, "git_commit": "abc", "date": "2026-11-27"}
        return {"config": make_config("fcos_minus", "smoke", None, seed),
                "record": {"run": {"device": "cpu", "train_seconds_this_call": 1800},
                           "provenance": {**base, **provenance}}}

    pinned = {"cpu_model": "Xeon", "aten_capability": "AVX2", "onednn_isa": "AVX2", "mkl_isa": "AVX2",
              "kernel_fingerprint": "fbe87e8f16bd"}
    runs = [run(0, **pinned), run(1, **pinned), run(2),
            {"config": make_config("fcos_minus", "smoke", None, 2, ml=True), "record": None}]
    for scored in runs[:2]:
        scored["record"]["evaluation"] = {"evaluation_version": "17f19939", "val_images": 1200}
    table = what_was_run(runs, "shapes", [0, 1, 2])["scale shapes"]
    assert table["runs needed"] == 4 and table["runs finished"] == 3
    assert table["training hours"] == 1.5 and table["devices"] == "cpu"
    assert table["CPU kernels"] == "ATen AVX2, oneDNN AVX2, MKL AVX2 (2 runs); not recorded (1 run)"
    assert table["CPU"] == "Xeon (2 runs); not recorded (1 run)"
    assert table["threads per run"] == "1" and table["training code versions"] == "bd54c92c"
    assert table["evaluation"] == "code 17f19939 on 1200 images (2 runs); not recorded (1 run)"
    assert table["seeds"] == "0, 1, 2"
    more = what_was_run(runs + [run(3), run(4)], "shapes", [0, 1, 2])["scale shapes"]
    assert more["seeds"] == "0, 1, 2; 3-4 for the claims that needed more (grids.DECIDING)"


def test_provenance_line_flags_runs_that_do_not_compare_bit_for_bit():
    """A row trained at another thread count (a notebook's own kernel) than the rows beside it
    is named, with how to get comparable runs."""
    same, other = _run("fcos", 0, 1.0), _run("fcos", 1, 2.0)
    for run, threads in ((same, 1), (other, 2)):
        run["record"]["provenance"] = {**run["record"]["provenance"], "threads": threads,
                                       "kernel_fingerprint": "fbe87e8f16bd"}
    line = provenance_line([same, other], "notebooks/x.ipynb")
    assert "**not comparable bit for bit**: trained at 1 thread(s), kernel fingerprint fbe87e8f16bd " \
           "(1 run), 2 thread(s), kernel fingerprint fbe87e8f16bd (1 run)" in line
    assert "mlc runs" in line
    other["record"]["provenance"]["threads"] = 1
    assert "not comparable" not in provenance_line([same, other], "notebooks/x.ipynb")


def test_the_runs_a_notebook_grid_asks_for_include_a_row_a_reader_added(tmp_path):
    import json

    from mlc.notebooks import notebook_configs, parameters

    source = json.loads((ROOT / "notebooks" / "table3.ipynb").read_text())
    cell = next(c for c in source["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = "".join(cell["source"]).replace(
        "grid = [", 'grid = [{"label": "FCOS− + ML (alpha 1)", "detector": "fcos_minus", '
        '"set": {"ml": True, "alpha": 1.0}, "paper": "fcos_minus|True|False"},\n ', 1)
    edited = tmp_path / "table3.ipynb"
    edited.write_text(json.dumps(source))
    assert parameters(edited)["grid"][0]["set"] == {"ml": True, "alpha": 1.0}
    configs = notebook_configs([edited], "shapes", [0, 1])
    new = make_config("fcos_minus", "shapes", seed=1, ml=True, alpha=1.0)
    assert new.name in {c.name for c in configs} and len(configs) == 2 * 9
    assert new.name not in {c.name for c in grids.book_configs("shapes", [0, 1])}
