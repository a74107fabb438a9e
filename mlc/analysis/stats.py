"""The statistics the book reports, from scipy: a paired difference over seeds with its Student-t
95% interval, the verdict it supports, gains relative to a baseline, and Pearson's r with its
Fisher interval.

A verdict says what the interval says: *held* when it lies above 0, *contradicted* below 0,
*no effect* when it lies within the band of effects too small to matter (±0.5 AP or AR points,
±0.02 of correlation), and *inconclusive* otherwise. An interval above 0 but inside the band is
*held*: the effect is real, and the interval shows that it is small.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BANDS = {"points": 0.5, "correlation": 0.02}  # |effect| that counts as none, by unit
HELD, CONTRADICTED, NO_EFFECT, INCONCLUSIVE = "held", "contradicted", "no effect", "inconclusive"
NO_DATA = "no data"


def paired_difference(a: dict[int, float | None], b: dict[int, float | None]) -> dict | None:
    """Mean of a − b over the seeds both have, with the 95% interval of scipy's paired t-test
    ({"mean", "lo", "hi", "n"}; lo and hi None with one seed; None without a pair)."""
    seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
    if not seeds:
        return None
    x, y = [a[s] for s in seeds], [b[s] for s in seeds]
    mean = statistics.fmean(u - v for u, v in zip(x, y))
    if len(seeds) < 2:
        return {"mean": mean, "lo": None, "hi": None, "n": 1}
    if len({u - v for u, v in zip(x, y)}) == 1:  # no spread: the interval is the point
        return {"mean": mean, "lo": mean, "hi": mean, "n": len(seeds)}
    interval = stats.ttest_rel(x, y).confidence_interval(CONFIDENCE)
    return {"mean": mean, "lo": float(interval.low), "hi": float(interval.high), "n": len(seeds)}


def relative(diff: dict | None, baseline: float | None) -> dict | None:
    """A difference as a percentage of the baseline's mean (its interval scaled the same way:
    the baseline's own spread is not in it)."""
    if diff is None or not baseline:
        return None
    scale = 100 / baseline
    return {k: (None if diff[k] is None else diff[k] * scale) if k in ("mean", "lo", "hi")
            else diff[k] for k in diff}


def verdict(diff: dict | None, band: float) -> str:
    """held, contradicted, no effect or inconclusive (see the module's docstring); one seed
    gives no interval, so it is inconclusive and says why."""
    if diff is None:
        return NO_DATA
    if diff["lo"] is None:
        return f"{INCONCLUSIVE}: 1 seed"
    if diff["lo"] > 0:
        return HELD
    if diff["hi"] < 0:
        return CONTRADICTED
    if -band <= diff["lo"] and diff["hi"] <= band:
        return NO_EFFECT
    return INCONCLUSIVE


def seeds_to_decide(diff: dict | None, band: float, most: int = 100) -> int | None:
    """How many paired seeds an interval of this mean and per-seed spread would need to decide
    (clear 0, or lie within ±band): a planning figure, not a prediction, since the next seeds'
    mean and spread will differ. None without an interval or beyond `most` seeds."""
    if diff is None or diff["lo"] is None:
        return None
    n = diff["n"]
    sd = (diff["hi"] - diff["lo"]) / 2 * n ** 0.5 / stats.t.ppf((1 + CONFIDENCE) / 2, n - 1)
    for m in range(n, most + 1):
        half = stats.t.ppf((1 + CONFIDENCE) / 2, m - 1) * sd / m ** 0.5
        if abs(diff["mean"]) > half or abs(diff["mean"]) + half <= band:
            return m
    return None


def seeds_for_power(differences: Sequence[Sequence[float]], bands: Sequence[float],
                    power: float = 0.8, draws: int = 20000, seed: int = 0, most: int = 100) -> int | None:
    """The fewest paired seeds with which a new, independent sample decides every part of a claim
    (no part inconclusive) in at least `power` of `draws` samples from a normal with the first
    sample's per-part means and covariance. `differences` holds one row per seed and one column
    per part (paired per-seed differences), `bands` each part's no-effect band. A plan for a
    second stage, fixed before it runs; None beyond `most` seeds."""
    first = np.asarray(differences, dtype=float)
    mean, cov = first.mean(axis=0), np.atleast_2d(np.cov(first, rowvar=False))
    band = np.asarray(bands, dtype=float)
    rng = np.random.default_rng(seed)
    for n in range(3, most + 1):
        sample = rng.multivariate_normal(mean, cov, size=(draws, n))
        centre = sample.mean(axis=1)
        half = stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * sample.std(axis=1, ddof=1) / n ** 0.5
        lo, hi = centre - half, centre + half
        decided = (lo > 0) | (hi < 0) | ((lo >= -band) & (hi <= band))
        if decided.all(axis=1).mean() >= power:
            return n
    return None


def combined(verdicts: list[str]) -> str:
    """The verdict of a claim made of parts: held when every part is, contradicted when any
    part is, no effect when every part is held or no effect, else inconclusive."""
    if not verdicts or any(v == NO_DATA for v in verdicts):
        return NO_DATA
    if all(v == HELD for v in verdicts):
        return HELD
    if any(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    if all(v in (HELD, NO_EFFECT) for v in verdicts):
        return NO_EFFECT
    return INCONCLUSIVE


def signed(value: float, digits: int) -> str:
    """A value with its sign at `digits` decimals; one that rounds to zero is '+0.0', not '-0.0'."""
    return f"{value if round(value, digits) != 0 else 0.0:+.{digits}f}"


def format_interval(diff: dict | None, digits: int = 1, unit: str = "") -> str:
    """'+mean [lo, hi]', '+mean' with one seed, 'no data' without a pair of values."""
    if diff is None:
        return "no data"
    if diff["lo"] is None:
        return f"{signed(diff['mean'], digits)}{unit}"
    return (f"{signed(diff['mean'], digits)}{unit} [{signed(diff['lo'], digits)}, "
            f"{signed(diff['hi'], digits)}]")


def pearson(x: list[float], y: list[float]) -> dict | None:
    """Pearson's r with scipy's 95% interval (Fisher's z); None with fewer than 4 points."""
    if len(x) < 4:
        return None
    result = stats.pearsonr(x, y)
    interval = result.confidence_interval(CONFIDENCE)
    r = float(result.statistic)
    return {"r": r, "lo": float(interval.low), "hi": float(interval.high), "n": len(x),
            "verdict": HELD if interval.low > 0 else CONTRADICTED if interval.high < 0
            else INCONCLUSIVE}
