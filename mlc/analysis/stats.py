"""The statistics the book reports, from scipy: a paired difference over seeds with its Student-t
95% interval and p-value, the verdict it supports, Holm's correction across a claim's parts, gains
relative to a baseline set against the paper's, and Pearson's r with its Fisher interval.

A verdict says what the interval says, against 0 and against the band of effects too small to
matter (±0.5 AP or AR points, ±0.02 of correlation): *held* when it lies above the band;
*above 0, size undecided* when it lies above 0 but reaches into the band (real, not shown to be
large enough to matter); *held, but below the band* when it lies above 0 and inside the band
(real, and too small to matter); the mirror readings below 0 (*contradicted* below the band,
*below 0, size undecided*, *below 0, but within the band*); *no effect* when it crosses 0
inside the band; *inconclusive* otherwise.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BANDS = {"points": 0.5, "correlation": 0.02}  # |effect| that counts as none, by unit
HELD, CONTRADICTED, NO_EFFECT, INCONCLUSIVE = "held", "contradicted", "no effect", "inconclusive"
ABOVE_SIZE_OPEN, HELD_BELOW_BAND = "above 0, size undecided", "held, but below the band"
BELOW_SIZE_OPEN, BELOW_WITHIN_BAND = "below 0, size undecided", "below 0, but within the band"
NO_DATA = "no data"
# The one goal for a baseline's spread over seeds, read by every page: no failing seed, that is no
# seed more than this many points (AP, or AR for RPN) below its row's median; the sample std is
# reported beside it.
MAX_BELOW_MEDIAN = 3.0
ABOVE_ZERO = (HELD, ABOVE_SIZE_OPEN, HELD_BELOW_BAND)  # strongest first
BELOW_ZERO = (CONTRADICTED, BELOW_SIZE_OPEN, BELOW_WITHIN_BAND)
VERDICTS = (*ABOVE_ZERO, NO_EFFECT, *BELOW_ZERO[::-1], INCONCLUSIVE)  # in the order they are listed


def paired_difference(a: dict[int, float | None], b: dict[int, float | None]) -> dict | None:
    """Mean of a − b over the seeds both have, with the 95% interval and two-sided p-value of
    scipy's paired t-test and the per-seed differences ({"mean", "lo", "hi", "n", "p",
    "differences"}; lo, hi and p None with one seed; None without a pair)."""
    seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
    if not seeds:
        return None
    differences = {s: a[s] - b[s] for s in seeds}
    mean = statistics.fmean(differences.values())
    out = {"mean": mean, "lo": None, "hi": None, "n": len(seeds), "p": None,
           "differences": differences}
    if len(seeds) < 2:
        return out
    if len(set(differences.values())) == 1:  # no spread: the interval is the point
        return {**out, "lo": mean, "hi": mean, "p": 1.0 if mean == 0 else 0.0}
    test = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    interval = test.confidence_interval(CONFIDENCE)
    return {**out, "lo": float(interval.low), "hi": float(interval.high), "p": float(test.pvalue)}


def relative(diff: dict | None, baseline: float | None) -> dict | None:
    """A difference as a percentage of the baseline's mean (its interval scaled the same way:
    the baseline's own spread is not in it)."""
    if diff is None or not baseline:
        return None
    scale = 100 / baseline
    return {k: (None if diff[k] is None else diff[k] * scale) if k in ("mean", "lo", "hi")
            else diff[k] for k in diff if k != "differences"}


def verdict(diff: dict | None, band: float) -> str:
    """The one reading of an interval against 0 and the band (see the module's docstring); one
    seed gives no interval, so it is inconclusive and says why."""
    if diff is None:
        return NO_DATA
    lo, hi = diff["lo"], diff["hi"]
    if lo is None:
        return f"{INCONCLUSIVE}: 1 seed"
    if lo > 0:
        return HELD if lo > band else HELD_BELOW_BAND if hi <= band else ABOVE_SIZE_OPEN
    if hi < 0:
        return CONTRADICTED if hi < -band else BELOW_WITHIN_BAND if lo >= -band else BELOW_SIZE_OPEN
    if -band <= lo and hi <= band:
        return NO_EFFECT
    return INCONCLUSIVE


def counts(verdicts: Sequence[str]) -> str:
    """'2 held, 1 above 0, size undecided, ...': every label as it is, in VERDICTS' order."""
    order = {v: i for i, v in enumerate((*VERDICTS, NO_DATA))}
    tally: dict[str, int] = {}
    for v in verdicts:
        tally[v] = tally.get(v, 0) + 1
    return "; ".join(f"{n} {v}" for v, n in sorted(tally.items(), key=lambda kv: order.get(kv[0], 99)))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a claim's parts' p-values (None stays None): the k-th
    smallest of m is multiplied by m − k + 1, and each adjusted value is at least the one before."""
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(present):
        running = max(running, min(1.0, (len(present) - k) * p))
        out[i] = running
    return out


def size_reading(ours: dict | None, paper: float | None) -> str:
    """Our gain's interval (in % of our baseline) against the paper's gain (in % of its own):
    smaller than the paper's, consistent with it, or larger; "" where either is missing."""
    if ours is None or ours["lo"] is None or paper is None:
        return ""
    if ours["hi"] < paper:
        return "smaller than the paper's"
    if ours["lo"] > paper:
        return "larger than the paper's"
    return "consistent with the paper's"


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


def combined(verdicts: list[str], holm_p: Sequence[float | None] | None = None) -> str:
    """The verdict of a claim made of parts: held when every part is held; when every part lies
    above 0 but some not above the band, the weakest of their readings (held, but below the band
    before above 0, size undecided); contradicted when a part lies below 0 and, with `holm_p`
    (the parts' Holm-adjusted p-values), stays below 0 after the correction; no effect when every
    part lies above 0 or is no effect; else inconclusive."""
    if not verdicts or any(v == NO_DATA for v in verdicts):
        return NO_DATA
    if all(v in ABOVE_ZERO for v in verdicts):
        return max(verdicts, key=ABOVE_ZERO.index)
    if any(v in BELOW_ZERO and (holm_p is None or (holm_p[i] is not None
                                                   and holm_p[i] < 1 - CONFIDENCE))
           for i, v in enumerate(verdicts)):
        return CONTRADICTED
    if all(v in (*ABOVE_ZERO, NO_EFFECT) for v in verdicts):
        return NO_EFFECT
    return INCONCLUSIVE


def error_rate(looks: int, alpha: float = 1 - CONFIDENCE) -> float:
    """The chance that at least one of `looks` independent tests at `alpha` rejects by chance
    alone: what a claim read once on seeds 0-6 and again on each further stage spends."""
    return 1 - (1 - alpha) ** looks


def mean_std(values: list[float | None], digits: int = 1) -> str:
    """'mean ± sample std' ('mean' for one value; 'not run' for no run, 'n/a' for no value,
    e.g. no object of that size in the validation set)."""
    if not values:
        return "not run"
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


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
