"""The code version: what a run's identity says about the code that made it."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from mlc.config import make_config
from mlc.version import (
    PACKAGE,
    code_version,
    evaluation_modules,
    evaluation_version,
    fingerprint,
    result_modules,
    training_modules,
)


def _copy(tmp_path):
    root = tmp_path / "mlc"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_docstrings_and_comments_do_not_count_but_code_does(tmp_path):
    root = _copy(tmp_path)
    before = fingerprint(root)
    assert before == code_version()
    mutual = root / "mutual.py"
    text = mutual.read_text()
    mutual.write_text(text.replace('"""Mutual labeling (Sec. 3.1', '"""Reworded. Mutual labeling (Sec. 3.1')
                      .replace("import torch\n", "import torch  # a comment\n", 1))
    assert fingerprint(root) == before
    mutual.write_text(text.replace("cls_pos[cand] = iou > tau_iou", "cls_pos[cand] = iou >= tau_iou"))
    assert fingerprint(root) != before


@pytest.mark.parametrize("module", ["analysis/report.py", "analysis/claims.py", "util/cpu.py",
                                    "overrides.py", "launch.py"])
def test_reporting_and_checking_code_is_not_result_code(tmp_path, module):
    root = _copy(tmp_path)
    before = fingerprint(root)
    (root / module).write_text((root / module).read_text() + "\nX = 1\n")
    assert fingerprint(root) == before
    assert all(not p.as_posix().endswith(module) for p in result_modules())


def test_a_new_module_outside_analysis_is_result_code(tmp_path):
    root = _copy(tmp_path)
    before = fingerprint(root)
    (root / "models" / "new_loss.py").write_text("X = 1\n")
    assert fingerprint(root) != before


def test_the_run_name_carries_the_code_version(monkeypatch):
    cfg = make_config("fcos_minus", "smoke")
    name = cfg.name
    monkeypatch.setattr("mlc.version.code_version", lambda: "00000000")
    assert cfg.name != name


def test_evaluation_code_changes_the_evaluation_version_not_the_run(tmp_path):
    root = _copy(tmp_path)
    training, scoring = fingerprint(root), fingerprint(root, evaluation_modules)
    assert scoring == evaluation_version()
    evaluation = root / "evaluation.py"
    evaluation.write_text(evaluation.read_text().replace("FIRST_IMAGES = 200", "FIRST_IMAGES = 100"))
    assert fingerprint(root) == training
    assert fingerprint(root, evaluation_modules) != scoring
    assert all(p not in training_modules() for p in evaluation_modules())


def test_the_validation_set_size_is_not_in_the_run_name(monkeypatch):
    from dataclasses import replace

    from mlc.config import SCALES

    cfg = make_config("fcos_minus", "shapes")
    name, shapes = cfg.name, SCALES["shapes"]
    monkeypatch.setitem(SCALES, "shapes", replace(shapes, shapes=replace(shapes.shapes, num_val=7)))
    assert cfg.name == name
    monkeypatch.setitem(SCALES, "shapes", replace(shapes, shapes=replace(shapes.shapes, num_train=7)))
    assert cfg.name != name


def test_renaming_records_after_a_code_change_carries_their_figure_data(tmp_path, monkeypatch):
    """tools/rename_records.py: a record named under other code moves to its config's current
    name, keeps the name and version it was trained as, and takes its figure data with it (the
    figures' own folder is not read as records); a second pass renames nothing."""
    path = PACKAGE.parent / "tools" / "rename_records.py"
    spec = importlib.util.spec_from_file_location("rename_records", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg = make_config("fcos_minus", "smoke")
    monkeypatch.setattr("mlc.version.code_version", lambda: "00000000")
    old = cfg.name
    monkeypatch.undo()
    folder = tmp_path / "results" / "smoke"
    (folder / "figures").mkdir(parents=True)
    record = {"name": old, "config": cfg.to_json(), "provenance": {"code_version": "00000000"}}
    (folder / f"{old}.json").write_text(json.dumps(record))
    (folder / "figures" / f"{old}.json").write_text(json.dumps({"version": 1, "run": old}))
    assert tool.rename(tmp_path / "results", tmp_path / "runs", dry_run=False) == 1
    moved = json.loads((folder / f"{cfg.name}.json").read_text())
    assert moved["name"] == cfg.name and moved["provenance"]["code_version"] == code_version()
    assert moved["provenance"]["trained_as"] == {"name": old, "code_version": "00000000"}
    assert json.loads((folder / "figures" / f"{cfg.name}.json").read_text())["run"] == cfg.name
    assert not (folder / f"{old}.json").exists() and not (folder / "figures" / f"{old}.json").exists()
    assert tool.rename(tmp_path / "results", tmp_path / "runs", dry_run=False) == 0
