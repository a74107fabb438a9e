"""Typed config fields: a value given for a `RunConfig` field (`--set FIELD=VALUE`, a notebook's
`make_config(..., FIELD=value)`, a run folder's config.json) must have the field's type, so that
`--set ml=maybe` is refused with one line before any work is done rather than trained and cached.

`mlc.config.validate` keeps the rules that tie fields together (lr drops within the epochs, ML's
candidate rules); this module checks each field alone: its type, and for numbers their range.
"""

from __future__ import annotations

import functools
import json
import math
import types
import typing
from dataclasses import fields

from mlc.config import ConfigError, RunConfig

# Fields whose value must also lie in a range; (low, high, what the range means).
RANGES = {
    "seed": (0, None, ">= 0"),
    "epochs": (1, None, ">= 1"),
    "warmup_iters": (0, None, ">= 0"),
    "warmup_factor": (0, 1, "in [0, 1]"),
    "batch_size": (1, None, ">= 1"),
    "lr": (0, None, "> 0"),
    "momentum": (0, 1, "in [0, 1]"),
    "weight_decay": (0, None, ">= 0"),
    "grad_clip": (0, None, "> 0"),
    "alpha": (0, None, ">= 0"),
    "gamma": (0, None, ">= 0"),
    "vfl_alpha": (0, None, ">= 0"),
    "vfl_gamma": (0, None, ">= 0"),
    "tal_topk": (1, None, ">= 1"),
    "tal_alpha": (0, None, ">= 0"),
    "tal_beta": (0, None, ">= 0"),
    "mlc_start_epoch": (0, None, ">= 0"),
    "center_sampling_radius": (0, None, "> 0"),
    "head_offset": (0, 1, "in [0, 1]"),
    "score_thresh": (0, 1, "in [0, 1]"),
    "nms_thresh": (0, 1, "in [0, 1]"),
    "topk_candidates": (1, None, ">= 1"),
    "detections_per_img": (1, None, ">= 1"),
    "proposals_per_img": (1, None, ">= 1"),
}
STRICTLY_POSITIVE = {"lr", "grad_clip", "center_sampling_radius"}


@functools.cache
def field_types() -> dict[str, object]:
    """Each RunConfig field's type, e.g. {'ml': bool, 'grad_clip': float | None, ...}."""
    hints = typing.get_type_hints(RunConfig)
    return {f.name: hints[f.name] for f in fields(RunConfig)}


def _fits(value: object, kind: object) -> bool:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return any(_fits(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if typing.get_origin(kind) is tuple:  # tuple[int, ...]
        item = typing.get_args(kind)[0]
        return isinstance(value, (list, tuple)) and all(_fits(v, item) for v in value)
    if typing.get_origin(kind) is dict or kind is dict:
        return isinstance(value, dict)
    return isinstance(value, kind)


def describe(kind: object) -> str:
    """How a field's type reads in an error, with the JSON a user types for it."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return " or ".join(describe(k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is tuple:
        return "a list of integers, e.g. [16, 18]"
    return {bool: "a bool (true or false)", int: "an integer", float: "a finite number",
            str: "a string", type(None): "null", dict: "a JSON object"}.get(
        typing.get_origin(kind) or kind, str(kind))


def _kind_of(value: object) -> str:
    return {bool: "a bool", int: "an integer", float: "a number", str: "a string",
            list: "a list", tuple: "a list", dict: "an object", type(None): "null"}.get(
        type(value), type(value).__name__)


def field_error(name: str, value: object) -> str | None:
    """Why `value` cannot be RunConfig's field `name`, or None if it can."""
    types_ = field_types()
    if name not in types_:
        return f"unknown config field {name!r}; allowed: {', '.join(sorted(types_))}"
    if not _fits(value, types_[name]):
        return f"{name} takes {describe(types_[name])}, got {json.dumps(value)} ({_kind_of(value)})"
    if name in RANGES and value is not None:
        low, high, text = RANGES[name]
        below = value < low or (value == low and name in STRICTLY_POSITIVE)
        if below or (high is not None and value > high):
            return f"{name} must be {text}, got {json.dumps(value)}"
    if name == "lr_steps" and list(value) != sorted(value):
        return f"lr_steps must be in increasing order, got {json.dumps(list(value))}"
    return None


def check_fields(values: dict[str, object]) -> None:
    """Raise ConfigError naming the first field whose value has the wrong type or range."""
    for name, value in values.items():
        error = field_error(name, value)
        if error:
            raise ConfigError(error)


def check_config(cfg: RunConfig) -> None:
    """Every field of a built config, before a run trains or a run folder is read."""
    check_fields(cfg.to_json())


def parse_override(text: str) -> tuple[str, object]:
    """`FIELD=VALUE` from the command line: VALUE is JSON (`true`, `0.02`, `[16, 18]`, `null`),
    or a bare string; a value of the wrong type for FIELD raises ConfigError."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise ConfigError(f"--set {text}: expected FIELD=VALUE, e.g. --set ml=true")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    error = field_error(name, value)
    if error:
        raise ConfigError(f"--set {text}: {error}")
    return name, value
