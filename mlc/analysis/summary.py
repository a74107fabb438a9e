"""The answer at a glance: the scorecard's runs collected once, the table of every claim's parts
that opens the README and the book, and the README's block of results, written between its
markers from the committed results by the same code the book runs (`python -m mlc readme`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from mlc.analysis import claims, grids
from mlc.analysis.report import collect, what_was_run
from mlc.analysis.stats import counts, format_interval, mean_std
from mlc.analysis.tables import per_seed

BEGIN = "<!-- results: written by `python -m mlc readme` from results/; do not edit by hand -->"
END = "<!-- end of results -->"
# The baselines the README names: (label, row, metric, unit).
BASELINES = [("FCOS−", {"detector": grids.FCOS_MINUS, "set": {}}, "AP", "AP"),
             ("FCOS", {"detector": "fcos", "set": {}}, "AP", "AP"),
             ("RetinaNet", {"detector": grids.RETINANET, "set": {}}, "AP", "AP"),
             ("RPN", {"detector": grids.RPN, "set": {}}, "AR100", "AR@100")]


def scorecard_runs(scale: str, seeds: Iterable[int], final_schedule: str | None = "final",
                   allow_training: bool = False, device: str | None = None
                   ) -> tuple[list[dict], list[dict], list[dict]]:
    """(ablation runs, Table 5's runs, the confirmatory stages' runs) the scorecard reads."""
    seeds = list(seeds)
    runs = collect(grids.scorecard_configs(scale, seeds, final_schedule),
                   allow_training=allow_training, device=device)
    table5 = {c.name for c in grids.grid_configs(grids.GRIDS[5], scale, seeds, final_schedule)}
    final = [r for r in runs if r["config"].name in table5]
    deciding = collect(grids.deciding_configs(scale, seeds), allow_training=allow_training,
                       device=device)
    return [r for r in runs if r not in final], final, deciding


def answer_table(parts: pd.DataFrame, shown: pd.Series | None = None) -> pd.DataFrame:
    """One row per part of claims 1-6 (those `shown` marks, when given): the claim (its number,
    words and verdict on its first part, the verdict read from all its parts), the part, the
    paper's gain and ours in % of the baseline, ours in points with its 95% interval and seeds,
    and the part's verdict with the size reading."""
    rows = []
    picked = parts if shown is None else parts[shown]
    for claim, group in picked.groupby("claim", sort=True):
        verdict = claims.verdict_text(claim, parts)
        for i, (_, part) in enumerate(group.iterrows()):
            digits = 2 if part["unit"] == "correlation" else 1
            present = pd.notna(part["mean"])
            ours = format_interval({k: part[k] if pd.notna(part[k]) else None
                                    for k in ("mean", "lo", "hi")} if present else None, digits)
            pct = f"{part['ours_pct']:+.0f}%" if pd.notna(part["ours_pct"]) else "–"
            rows.append({"claim": f"**{claim}.** {claims.TITLES[claim]}: **{verdict}**" if i == 0 else "",
                         "part": part["part"],
                         "paper": f"{part['paper_pct']:+.0f}%" if pd.notna(part["paper_pct"]) else "–",
                         "ours": pct, "ours, points [95% interval]": ours,
                         "seeds": part["seeds"] or "–",
                         "verdict": part["verdict"] + (f"; {part['size']}" if part["size"] else "")})
    return pd.DataFrame(rows)


def claim_answer(numbers: list[int], parts: pd.DataFrame) -> str:
    """A page's answer in a line per claim: its verdict and each part's interval and verdict."""
    lines = []
    for claim in numbers:
        group = parts[parts["claim"] == claim]
        said = []
        for _, part in group.iterrows():
            digits = 2 if part["unit"] == "correlation" else 1
            diff = ({k: part[k] if pd.notna(part[k]) else None for k in ("mean", "lo", "hi")}
                    if pd.notna(part["mean"]) else None)
            said.append(f"{part['part']} {format_interval(diff, digits)} ({part['verdict']})")
        seeds = ", ".join(sorted(set(group["seeds"]) - {""})) or "none"
        lines.append(f"**Claim {claim}** ({claims.TITLES[claim]}): **{claims.verdict_text(claim, parts)}** "
                     f"on seeds {seeds}: " + "; ".join(said) + ".")
    return "\n\n".join(lines)


def init_answer(table: pd.DataFrame) -> str:
    """The pretrained-or-random comparison (`tables.init_table`) in one sentence per row."""
    if table.empty:
        return "*No run of the pretrained-or-random comparison yet.*"
    said = []
    for label in dict.fromkeys(table.index.get_level_values(0)):
        rows = table.loc[label]
        parts = [f"{init} {rows.loc[init, 'mean ± std']} {rows.loc[init, 'metric']} (goal "
                 f"{'met' if rows.loc[init, 'goal met'] == 'yes' else 'not met'})" for init in rows.index]
        said.append(f"{label}: " + ", ".join(parts))
    return "**Pretrained or random init**, over the seeds each ran: " + "; ".join(said) + "."


def markdown_table(table: pd.DataFrame) -> str:
    """A data frame as a GitHub Markdown table (no index)."""
    def cells(values) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    return "\n".join([cells(table.columns), cells(["---"] * len(table.columns)),
                      *(cells(row) for row in table.itertuples(index=False))])


def baselines_line(runs: list[dict]) -> str:
    """The four baselines, mean ± sample std over the seeds read, in one sentence."""
    said = []
    for label, row, key, unit in BASELINES:
        values = per_seed(runs, row, key)
        said.append(f"{label} {mean_std(list(values.values()))} {unit}")
    return ", ".join(said)


def read_where(parts: pd.DataFrame) -> str:
    """Which seeds each claim's verdict reads, in one sentence: the claims read on a confirmatory
    stage of fresh seeds (with their looks), the others on the book's seeds, claim 7 on the
    methods' means."""
    def listed(items: list[str]) -> str:
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

    fresh, book = [], []
    for claim in range(1, 7):
        seeds = ", ".join(sorted(set(parts[parts["claim"] == claim]["seeds"]) - {""})) or "none"
        n = claims.looks(claim, parts)
        said = f"claim {claim} on seeds {seeds}"
        if n > 1:
            fresh.append(f"{said} ({n} looks)")
        else:
            book.append(said)
    book.append("claim 7 over the methods' mean correlation and AP")
    lines = [f"Read on fresh seeds fixed in advance, after seeds 0-6 had left them open: "
             f"{listed(fresh)}."] if fresh else []
    return " ".join([*lines, f"Read on the book's seeds: {listed(book)}."])


def readme_block(scale: str = "shapes", seeds: Iterable[int] = range(grids.BOOK_SEEDS)) -> str:
    """The README's results, from the records at hand (never trains)."""
    ablation, final, deciding = scorecard_runs(scale, seeds)
    parts = claims.claim_parts(ablation, final, deciding)
    card = claims.scorecard(ablation, final, deciding)
    table = markdown_table(answer_table(parts))
    done = what_was_run(ablation + final + deciding, scale, list(seeds)).iloc[:, 0]
    claim7 = card.iloc[6]
    verdicts = [claims.claim_verdict(c, parts) for c in range(1, 7)] + [claim7["verdict"]]
    return "\n".join([
        BEGIN,
        f"At `{scale}` scale, seeds {min(seeds)}-{max(seeds)} (mean ± sample std): "
        f"{baselines_line(ablation)}. Of the seven claims: {counts(verdicts)}.",
        "",
        table,
        "",
        f"**7.** {claims.TITLES[7]}: **{claim7['verdict']}**. {claim7['evidence']}.",
        "",
        read_where(parts),
        "",
        f"From {done['runs finished']} of {done['runs needed']} runs "
        f"({done['training hours']} CPU-hours of training; kernel fingerprint "
        f"{done['kernel fingerprint']}).",
        END,
    ])


def replace_block(text: str, block: str) -> str:
    """`text` with the part between BEGIN and END (markers included) replaced by `block`."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no results block: add the lines {BEGIN!r} and {END!r}")
    return pattern.sub(lambda _: block, text)


def current_block(path: Path) -> str:
    """The results block as it stands in README.md."""
    text = Path(path).read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0:
        raise ValueError(f"{path} has no results block: add the lines {BEGIN!r} and {END!r}")
    return text[start:end + len(END)]
