"""Where a result's noise comes from: the seed of training, the finite validation set and the
machine. The seed's share is the spread over seeds; the validation set's is read from each run's
headline metric on the two halves of the validation images (independent halves: the whole set's
value has about a quarter of the variance of their difference) and measured by the same gains on
the set's first 200 images, which every record also carries (`mlc.evaluation`); the machine's
from runs retrained, the same config and seed, where the CPU kernels round otherwise: with the
CPU's own kernels in place of the pinned ones (`mlc.util.cpu`), or on another CPU at the pinned
level. Each such set of records is an "other" (a name and its folder).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd

from mlc.analysis.stats import (
    ABOVE_SIZE_OPEN,
    ABOVE_ZERO,
    BANDS,
    BELOW_SIZE_OPEN,
    BELOW_WITHIN_BAND,
    BELOW_ZERO,
    CONTRADICTED,
    HELD,
    HELD_BELOW_BAND,
    INCONCLUSIVE,
    NO_DATA,
    NO_EFFECT,
    format_interval,
    paired_difference,
    verdict,
)
from mlc.analysis.tables import metric, per_seed


def seed_spread(runs: list[dict], row: dict, key: str) -> float | None:
    """Sample std over seeds of a grid row's metric (None with fewer than two seeds)."""
    values = [v for v in per_seed(runs, row, key).values() if v is not None]
    return statistics.stdev(values) if len(values) >= 2 else None


def eval_set_spread(runs: list[dict], row: dict, key: str) -> float | None:
    """The std a finite validation set puts into a row's headline metric: the root of the mean
    squared difference between the two halves' values, over 2 (None without halves)."""
    diffs = [a - b for a, b in _halves(runs, row, key).values()]
    return math.sqrt(statistics.fmean(d * d for d in diffs)) / 2 if diffs else None


def _halves(runs: list[dict], row: dict, key: str) -> dict[int, list[float]]:
    """{seed: [value on the even half, on the odd half]} of a row's runs that have both."""
    out = {}
    for run in runs:
        if per_seed([run], row, key):
            halves = metric(run["record"], f"val_halves.{key}")
            if halves and None not in halves:
                out[run["config"].seed] = halves
    return out


def gain_spreads(runs: list[dict], row: dict, base: dict, key: str) -> dict[str, float | None]:
    """The noise in a method's paired gain over its baseline: the std of the per-seed gains
    (seed) and the validation set's share, from the gain on each half (root mean squared
    difference of the two halves' gains, over 2)."""
    ours, theirs = per_seed(runs, row, key), per_seed(runs, base, key)
    gains = [ours[s] - theirs[s] for s in ours if s in theirs and None not in (ours[s], theirs[s])]
    h_ours, h_theirs = _halves(runs, row, key), _halves(runs, base, key)
    diffs = [(h_ours[s][0] - h_theirs[s][0]) - (h_ours[s][1] - h_theirs[s][1])
             for s in h_ours if s in h_theirs]
    return {"seed": statistics.stdev(gains) if len(gains) >= 2 else None,
            "validation set": math.sqrt(statistics.fmean(d * d for d in diffs)) / 2 if diffs
            else None}


def gain_noise_table(runs: list[dict], pairs: list[tuple[dict, dict]],
                     others: dict[str, Path] | None = None) -> pd.DataFrame:
    """Per (method row, baseline row): the std of the paired gain over seeds, the validation
    set's share of it and, for each of `others` (name: folder of retrained records) where both
    rows were retrained, each seed's gain there minus its committed gain (rows carry their
    `key`)."""
    out = {}
    for row, base in pairs:
        key = row["key"]
        spreads = gain_spreads(runs, row, base, key)
        entry = {"metric": key, "std of the gain over seeds": _fmt(spreads["seed"]),
                 "std of the gain from the validation set": _fmt(spreads["validation set"])}
        for name, root in (others or {}).items():
            machine = machine_gain_differences(runs, row, base, key, root)
            entry[f"{name}: retrained gain − committed gain"] = (
                ", ".join(f"{d:+.2f}" for d in machine) or "not run")
            entry[f"std of the gain from {name}"] = _fmt(
                math.sqrt(statistics.fmean(d * d for d in machine) / 2) if machine else None)
        out[f"{row['label']} − {base['label']}"] = entry
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "gain"
    return table


def machine_gain_differences(runs: list[dict], row: dict, base: dict, key: str,
                             other_root: Path) -> list[float]:
    """Per seed where both rows were retrained under `other_root`: the gain of `row` over
    `base` there minus the committed gain."""
    ours, theirs = (_machine_pairs(runs, r, key, other_root) for r in (row, base))
    return [(ours[s][0] - theirs[s][0]) - (ours[s][1] - theirs[s][1])
            for s in sorted(ours) if s in theirs]


def machine_summary(runs: list[dict], row: dict, base: dict, name: str, other_root: Path) -> str:
    """One sentence for the page: how far the retraining `name` (records under `other_root`)
    moved the baseline's level and how far the paired gain over it, over the seeds where both
    were retrained."""
    key = row["key"]
    gains = machine_gain_differences(runs, row, base, key, other_root)
    if not gains:
        return f"{name}: no seed of {row['label']} and {base['label']} was retrained."
    pairs = _machine_pairs(runs, base, key, other_root)
    seeds = [s for s in sorted(pairs) if s in _machine_pairs(runs, row, key, other_root)]
    level = [pairs[s][0] - pairs[s][1] for s in seeds]
    moved_more = statistics.fmean(map(abs, level)) > statistics.fmean(map(abs, gains))
    return (f"{name} (seeds {', '.join(map(str, seeds))}): {base['label']} moved by "
            f"{', '.join(f'{d:+.1f}' for d in level)} {key} and the gain of {row['label']} over "
            f"it by {', '.join(f'{d:+.1f}' for d in gains)}. "
            + ("That moves a run's level more than the paired gain: levels compare only where "
               "the CPU kernels round alike, gains across." if moved_more else
               "That moves the paired gain at least as much as the level: gains measured where "
               "the CPU kernels round otherwise do not compare."))


def machine_differences(runs: list[dict], row: dict, key: str, other_root: Path) -> list[float]:
    """Per seed of a row that was also retrained elsewhere (its record under
    `other_root`/<scale>/<run name>.json): that run's value minus the committed run's. Both must
    have been trained with the same thread count."""
    pairs = _machine_pairs(runs, row, key, other_root)
    return [other - pinned for other, pinned in (pairs[s] for s in sorted(pairs))]


def _machine_pairs(runs: list[dict], row: dict, key: str,
                   other_root: Path) -> dict[int, tuple[float, float]]:
    """{seed: (retrained value, committed value)} of a row's runs retrained under
    `other_root`; refuses a pair trained with different thread counts, naming the file."""
    out = {}
    for run in runs:
        if not per_seed([run], row, key):
            continue
        cfg = run["config"]
        path = Path(other_root) / cfg.scale / f"{cfg.name}.json"
        if path.exists():
            record = json.loads(path.read_text())
            threads = (record.get("provenance", {}).get("threads"),
                       run["record"].get("provenance", {}).get("threads"))
            if threads[0] != threads[1]:
                raise ValueError(f"{path} was trained with {threads[0]} thread(s), the committed "
                                 f"run with {threads[1]}: their difference is not the kernels' alone")
            out[cfg.seed] = (metric(record, key), metric(run["record"], key))
    return out


SHIFT_WORDS = {HELD: "retrained higher", ABOVE_SIZE_OPEN: "retrained higher",
               HELD_BELOW_BAND: f"retrained higher, within ±{BANDS['points']}",
               CONTRADICTED: "retrained lower", BELOW_SIZE_OPEN: "retrained lower",
               BELOW_WITHIN_BAND: f"retrained lower, within ±{BANDS['points']}",
               NO_EFFECT: f"no shift beyond ±{BANDS['points']}", INCONCLUSIVE: "undecided"}
MOVED = (HELD, ABOVE_SIZE_OPEN, CONTRADICTED, BELOW_SIZE_OPEN)  # clear of 0, not inside the band


def machine_shifts(runs: list[dict], rows: list[dict], pairs: list[tuple[dict, dict]],
                   others: dict[str, Path]) -> list[dict]:
    """Does a kernel change move a result or only scatter it? For each of `others` (name: folder
    of retrained records), each row's level and each (method row, baseline row) gain retrained
    there on some seeds: retrained − committed over those seeds as a paired difference with its
    95% interval (a change that only scatters runs centres on 0), and a level's values."""
    out = []
    for name, root in others.items():
        for row in rows:
            found = _machine_pairs(runs, row, row["key"], root)
            if found:
                retrained, committed = ({s: v[i] for s, v in found.items()} for i in (0, 1))
                out.append({"retrained": name, "what": row["label"], "key": row["key"],
                            "gain": False, "diff": paired_difference(retrained, committed),
                            "values": {"committed": committed, "retrained": retrained}})
        for row, base in pairs:
            ours, theirs = (_machine_pairs(runs, r, row["key"], root) for r in (row, base))
            seeds = [s for s in ours if s in theirs]
            if seeds:
                gain = [{s: ours[s][i] - theirs[s][i] for s in seeds} for i in (0, 1)]
                out.append({"retrained": name, "what": f"{row['label']} − {base['label']}",
                            "key": row["key"], "gain": True, "rows": (row["label"], base["label"]),
                            "diff": paired_difference(gain[0], gain[1]), "values": None})
    return out


def _moved(shift: dict) -> bool:
    return verdict(shift["diff"], BANDS["points"]) in MOVED


def shift_table(shifts: list[dict]) -> pd.DataFrame:
    """`machine_shifts` as a table: per retraining and level or gain, the seeds, retrained −
    committed with its interval, what the interval says and, for a level, the std over the same
    seeds of the committed and of the retrained runs."""
    def spread(shift: dict, which: str) -> str:
        if shift["values"] is None:
            return ""
        values = list(shift["values"][which].values())
        return _fmt(statistics.stdev(values) if len(values) >= 2 else None)

    columns = ["metric", "seeds", "retrained − committed", "what the interval says",
               "std over these seeds, committed", "std over these seeds, retrained"]
    table = pd.DataFrame([[s["key"], s["diff"]["n"], format_interval(s["diff"], 1),
                           SHIFT_WORDS.get(verdict(s["diff"], BANDS["points"]), "one seed"),
                           spread(s, "committed"), spread(s, "retrained")] for s in shifts],
                         columns=columns)
    table.index = pd.MultiIndex.from_tuples([(s["retrained"], s["what"]) for s in shifts],
                                            names=["retrained", "level or gain"])
    return table


def shift_summary(shifts: list[dict]) -> str:
    """Sentences per retraining of `machine_shifts`: which levels it moved (intervals clear 0
    and the band) and which it left within the band; then the paired gains: those that moved,
    those whose interval lies within the band (such a gain carries across kernel levels where
    its rows' levels do not), those whose interval lies closer to 0 than its rows moved but
    reaches past the band (moved less than its rows; whether it carries is not shown), those
    whose interval reaches as far as its rows moved, and those whose rows were not shown to
    move."""
    if not shifts:
        return "No run of these rows was retrained at other CPU kernels at this scale."

    def said(items: list[dict]) -> str:
        return "; ".join(f"{s['what']} {format_interval(s['diff'], 1)} {s['key']}" for s in items)

    sentences = []
    for name in dict.fromkeys(s["retrained"] for s in shifts):
        mine = [s for s in shifts if s["retrained"] == name]
        levels = {s["what"]: s for s in mine if not s["gain"]}
        moved = [s for s in levels.values() if _moved(s)]
        kept_level = [s for s in levels.values()
                      if verdict(s["diff"], BANDS["points"]) == NO_EFFECT]
        text = f"{name[:1].upper() + name[1:]} " + (
            "moved " + "; ".join(f"{s['what']} by {format_interval(s['diff'], 1)} {s['key']} over "
                                 f"{s['diff']['n']} seeds" for s in moved)
            if moved else "moved no level beyond what its seeds can tell")
        if kept_level:
            text += (f", and left {' and '.join(s['what'] for s in kept_level)} within "
                     f"±{BANDS['points']} of the committed runs")
        sentences.append(text + ".")
        groups: dict[str, list[dict]] = {"moved": [], "kept": [], "less": [], "reach": [], "still": []}
        for gain in (s for s in mine if s["gain"]):
            shifted = [abs(levels[r]["diff"]["mean"]) for r in gain["rows"]
                       if r in levels and _moved(levels[r])]
            lo, hi = gain["diff"]["lo"], gain["diff"]["hi"]
            closer = lo is not None and shifted and max(-lo, hi) < min(shifted)
            groups["moved" if _moved(gain) else "still" if not shifted else
                   "kept" if closer and verdict(gain["diff"], BANDS["points"]) == NO_EFFECT else
                   "less" if closer else "reach"].append(gain)
        if groups["moved"]:
            sentences.append(f"Paired gains that moved: {said(groups['moved'])}; a gain measured "
                             "at one kernel level can be that far from the same gain at another.")
        if groups["kept"]:
            sentences.append(f"Paired gains over rows that moved, whose intervals lie within "
                             f"±{BANDS['points']}: {said(groups['kept'])}; such a gain carries "
                             "across kernel levels, where a level compares only at one.")
        if groups["less"]:
            sentences.append(f"Paired gains over rows that moved, whose intervals lie closer to 0 "
                             f"than their rows moved but reach past ±{BANDS['points']}: "
                             f"{said(groups['less'])}; they moved less than their rows, and whether "
                             "they carry across kernel levels is not shown.")
        if groups["reach"]:
            sentences.append(f"Paired gains over rows that moved, whose intervals reach as far as "
                             f"their rows moved: {said(groups['reach'])}.")
        if groups["still"]:
            sentences.append(f"Paired gains over rows not shown to move: {said(groups['still'])}.")
    return " ".join(sentences)


def noise_table(runs: list[dict], rows: list[dict], others: dict[str, Path]) -> pd.DataFrame:
    """Per row (each with its headline `key`): the std over seeds, the validation set's std, for
    each of `others` (name: folder of retrained records) the differences of each retrained seed
    (in points) and the std they imply, and which source is largest."""
    out = {}
    for row in rows:
        key = row["key"]
        spreads = {"seed": seed_spread(runs, row, key),
                   "validation set": eval_set_spread(runs, row, key)}
        entry = {"metric": key, "seeds": len(per_seed(runs, row, key)),
                 "std over seeds": _fmt(spreads["seed"]),
                 "std from the validation set": _fmt(spreads["validation set"])}
        for name, root in others.items():
            machine = machine_differences(runs, row, key, root)
            # a difference of two runs has sqrt(2) times the std of one
            spreads[name] = math.sqrt(statistics.fmean(d * d for d in machine) / 2) if machine else None
            entry[f"{name}: retrained − committed"] = ", ".join(f"{d:+.2f}" for d in machine) or "not run"
            entry[f"std from {name}"] = _fmt(spreads[name])
        known = {k: v for k, v in spreads.items() if v is not None}
        entry["largest"] = max(known, key=known.get) if len(known) >= 2 else "n/a"
        out[row["label"]] = entry
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "run"
    return table


def subset_table(runs: list[dict], parts: list) -> pd.DataFrame:
    """Per claim part [label, method row, baseline row, metric]: the paired gain with its 95%
    interval and verdict and the std of the per-seed gain, on the validation set's first images
    (the records' `val_first`, the book's whole set until 2026-11-28) and on the whole set."""
    made = [r["record"] for r in runs if r["record"] and "val_first" in r["record"]["metrics"]]
    first = f"first {made[0]['metrics']['val_first']['images']} images" if made else "first images"
    whole = f"all {made[0]['run']['val_images']} images" if made else "all images"
    out = {}
    for label, row, base, key in parts:
        band, digits = ((BANDS["correlation"], 2) if key.startswith("divergence")
                        else (BANDS["points"], 1))
        entry = {}
        for name, source in ((first, "val_first"), (whole, None)):
            ours = per_seed(runs, {**row, "source": source}, key)
            theirs = per_seed(runs, {**base, "source": source}, key)
            diff = paired_difference(ours, theirs)
            gains = [ours[s] - theirs[s] for s in ours
                     if s in theirs and None not in (ours[s], theirs[s])]
            entry[f"{name}: gain"] = format_interval(diff, digits)
            entry[f"{name}: verdict"] = verdict(diff, band)
            entry[f"{name}: std over seeds"] = _fmt(statistics.stdev(gains)
                                                    if len(gains) >= 2 else None)
        out[(label, "correlation" if key.startswith("divergence") else key)] = entry
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.names = ["part", "metric"]
    return table


def subset_summary(table: pd.DataFrame) -> str:
    """A sentence on `subset_table`: how many parts each image set decides, how the std of the
    per-seed gain moved (median ratio over the parts), and which verdicts change."""
    first, whole = (c.removesuffix(": verdict") for c in table.columns if c.endswith(": verdict"))
    stds = [(float(f), float(w)) for f, w in zip(table[f"{first}: std over seeds"],
                                                 table[f"{whole}: std over seeds"])
            if "n/a" not in (f, w) and float(f) > 0]
    if not stds:
        return f"No part has two seeds or more scored on the {first} yet."

    def decided(name: str) -> int:
        return sum(v in (*ABOVE_ZERO, *BELOW_ZERO, NO_EFFECT) for v in table[f"{name}: verdict"])

    pairs = list(zip(table.index, table[f"{first}: verdict"], table[f"{whole}: verdict"]))
    changed = [f"{part} ({key}): {f} on the {first}, {w} on {whole}"
               for (part, key), f, w in pairs if f != w and NO_DATA not in (f, w)]
    return (f"{decided(whole)} of the {len(table)} parts decide on {whole}, {decided(first)} on "
            f"the {first}; the std of a per-seed gain on {whole} is "
            f"{statistics.median(w / f for f, w in stds):.2f} times that on the {first} (median "
            "over the parts). " + ("Verdicts that change: " + "; ".join(changed) + "."
                                  if changed else "No verdict changes."))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
