"""Typed config fields: `--set` values, configs built in Python and run folders' config.json are
checked against each field's type (and range) before any work is done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlc.__main__ import main
from mlc.config import ConfigError, RunConfig, config_from_json, make_config
from mlc.overrides import check_config, field_types, parse_override
from mlc.runs import get_or_train, read_config

RESULTS = Path(__file__).resolve().parents[1] / "results" / "shapes"


@pytest.mark.parametrize("text, value", [
    ("ml=true", True), ("alpha=1", 1), ("gamma=0.5", 0.5), ("lr_steps=[16, 18]", [16, 18]),
    ("grad_clip=null", None), ("grad_clip=35", 35), ("head_offset=0.5", 0.5),
    ("schedule=final", "final"), ("extra={}", {}), ("epochs=3", 3),
])
def test_values_of_the_right_type_are_taken(text, value):
    assert parse_override(text) == (text.partition("=")[0], value)


@pytest.mark.parametrize("text, says", [
    ("ml=maybe", 'ml takes a bool (true or false), got "maybe" (a string)'),
    ("ml=1", "ml takes a bool (true or false), got 1 (an integer)"),
    ("iur=True", 'iur takes a bool (true or false), got "True" (a string)'),
    ("epochs=2.5", "epochs takes an integer, got 2.5 (a number)"),
    ("epochs=true", "epochs takes an integer, got true (a bool)"),
    ("lr=fast", 'lr takes a finite number, got "fast" (a string)'),
    ("lr=NaN", "lr takes a finite number, got NaN (a number)"),
    ("lr_steps=16", "lr_steps takes a list of integers, e.g. [16, 18], got 16 (an integer)"),
    ("lr_steps=[16, 1.5]", "lr_steps takes a list of integers"),
    ("grad_clip=off", 'grad_clip takes a finite number or null, got "off" (a string)'),
    ("detector=7", "detector takes a string, got 7 (an integer)"),
    ("extra=[1]", "extra takes a JSON object, got [1] (a list)"),
    ("lr=0", "lr must be > 0, got 0"),
    ("nms_thresh=1.5", "nms_thresh must be in [0, 1], got 1.5"),
    ("seed=-1", "seed must be >= 0, got -1"),
    ("lr_steps=[18, 16]", "lr_steps must be in increasing order"),
    ("colour=red", "unknown config field 'colour'"),
    ("ml", "expected FIELD=VALUE"),
])
def test_a_wrong_value_is_refused_naming_field_value_and_type(text, says):
    with pytest.raises(ConfigError, match="^--set ") as err:
        parse_override(text)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_every_field_has_a_checked_type():
    """A new field must have a type this module can check (else the hole opens again)."""
    from mlc.overrides import _fits, describe

    for name, kind in field_types().items():
        assert not describe(kind).startswith(("<", "typing")), name
        assert not _fits(object(), kind), name


def test_the_cli_refuses_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLC_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MLC_DATA", str(tmp_path / "data"))
    assert main(["train", "--detector", "fcos_minus", "--scale", "smoke", "--set", "ml=maybe"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ('error: --set ml=maybe: ml takes a bool (true or false), got "maybe" '
                           "(a string)")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_a_config_built_in_python_is_checked_before_training(tmp_path):
    cfg = make_config("fcos_minus", "smoke", ml="maybe")  # make_config takes it ...
    with pytest.raises(ConfigError, match='ml takes a bool'):
        get_or_train(cfg, runs_root=tmp_path, results_root=tmp_path)  # ... training does not
    assert not any(tmp_path.iterdir())


def test_a_run_folder_with_a_mistyped_config_names_its_file(tmp_path):
    data = make_config("rpn", "smoke").to_json()
    data["iur"] = "yes"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"config.json: iur takes a bool"):
        read_config(tmp_path)


def test_every_committed_config_passes():
    configs = [json.loads(p.read_text())["config"] for p in sorted(RESULTS.glob("*.json"))]
    assert configs
    for data in configs:
        check_config(config_from_json(data))
    assert isinstance(make_config("rpn", "coco"), RunConfig)
