"""The code version: what a run's identity says about the code that made it."""

from __future__ import annotations

import shutil

from mlc.config import make_config
from mlc.version import PACKAGE, code_version, fingerprint, result_modules


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


def test_reporting_code_is_not_result_code(tmp_path):
    root = _copy(tmp_path)
    before = fingerprint(root)
    (root / "report.py").write_text((root / "report.py").read_text() + "\nX = 1\n")
    assert fingerprint(root) == before
    assert all(p.name != "report.py" for p in result_modules())


def test_the_run_name_carries_the_code_version(monkeypatch):
    cfg = make_config("fcos_minus", "smoke")
    name = cfg.name
    monkeypatch.setattr("mlc.version.code_version", lambda: "00000000")
    assert cfg.name != name
