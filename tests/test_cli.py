"""The command line a newcomer uses: help, data, train, eval, and errors that say what is allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlc.__main__ import main
from mlc.config import ConfigError, make_config
from mlc.util import cpu


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlc", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.parametrize("command", [[], ["data"], ["train"], ["eval"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: python -m mlc" in out


def test_train_help_names_every_detector_and_scale(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for word in ("fcos_minus", "retinanet", "rpn", "smoke", "shapes", "coco", "--stop-after-epoch"):
        assert word in out


def test_data_writes_a_coco_set(tmp_path):
    out = tmp_path / "set"
    res = _run("data", "smoke", "--out", str(out), "--num-train", "3", "--num-val", "2")
    assert res.returncode == 0, res.stderr
    train = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert len(train["images"]) == 3 and (out / "val" / "000001.png").exists()


def test_train_then_eval_through_the_cli(tmp_path):
    """Started with other kernel levels in its environment, the CLI still trains at the pinned
    one, and the record says so (provenance: CPU model, ATen and oneDNN levels, threads)."""
    env = {"MLC_RUNS": str(tmp_path / "runs"), "MLC_RESULTS": str(tmp_path / "results"),
           "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
           "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}
    res = _run("train", "--detector", "retinanet", "--scale", "smoke", "--quiet", env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    made = json.loads((tmp_path / "results" / "smoke" / f"{out['name']}.json").read_text())["provenance"]
    assert {"cpu_model", *cpu.LIBRARIES.values(), "kernels", "threads", "kernel_fingerprint"} <= set(made)
    if cpu.unpinnable_reason() is None:
        assert cpu.is_pinned(made), made
        assert made["kernels"] == "pinned"
    assert set(out["metrics"]) == {"AP", "AP50", "AP75", "APS", "APM", "APL", "divergence",
                                   "divergence_by_floor", "val_halves"}
    assert set(out["metrics"]["divergence"]) == {"mean", "pooled", "n_objects"}
    run_dir = tmp_path / "runs" / "smoke" / out["name"]
    res = _run("eval", str(run_dir), env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == out["metrics"]


def test_unknown_detector_is_refused_with_the_choices():
    res = _run("train", "--detector", "yolo")
    assert res.returncode == 2
    assert "fcos_minus" in res.stderr and "retinanet" in res.stderr


def test_bad_config_names_what_is_allowed():
    with pytest.raises(ConfigError, match="allowed: coco, shapes, shapes-600, shapes-v1, smoke"):
        make_config("fcos", "imagenet")
    with pytest.raises(ConfigError, match="unknown config field"):
        make_config("fcos", "smoke", learning_rate=0.1)
    with pytest.raises(ConfigError, match="lr_steps"):
        make_config("fcos", "smoke", lr_steps=[5])
