"""Would a cheap first rung decide `optimize`'s trials? How far each trained row's dev score moves after its first
evaluation, read from grids' `dev_history`.

Successive halving (issue #39, item 1) trains every candidate a short first rung and drops those a test says
cannot pass before paying for the rest of their schedule. That saves training only if a first-rung score is close
enough to the final one: a candidate may be dropped when its first-rung score is below the line by more than any
later gain. Each trained row of a grid records its dev macro-F1 after each evaluation (`dev_history`: one per
epoch in the shipped presets); this reads, per row, the score at the first evaluation, the best one (the
checkpoint the row keeps) and the gain between them, and per run how the rows' first-evaluation ranks agree with
their final ranks (Spearman). Nothing is trained or timed:

    .venv/bin/python benchmarks/first_epoch.py reports/sentiment-quick/results.json \
        reports/levers/sentiment/results.json reports/cpu-quick-avx2/results.json --out reports/optimize/first-epoch

Writes OUT/results.json and OUT/report.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mahacompress.core.files import write_json, write_text


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation (ties broken by order: scores here are fractions of thousands of texts)."""
    ra, rb = (np.argsort(np.argsort(v)) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def rows_of(path: Path) -> list[dict]:
    """Every trained row with at least two dev evaluations: its first, best and final dev macro-F1 (points)."""
    results = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for row in results["rows"]:
        history = row.get("dev_history") or []
        if row.get("status") != "done" or len(history) < 2:
            continue
        scores = [100 * score for _, score in history]
        out.append({
            "row": row["name"], "evaluations": len(scores), "first": scores[0], "best": max(scores),
            "gain": max(scores) - scores[0], "test": 100 * row["accuracy"]
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="grids' results.json files")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = []
    for path in args.results:
        rows = rows_of(path)
        rho = spearman([r["first"] for r in rows], [r["best"] for r in rows]) if len(rows) > 2 else None
        runs.append({"results": str(path), "rows": rows, "spearman_first_vs_best": rho})
    out = {"runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "results.json", out)
    lines = [
        "# How far a trained row's dev score moves after its first evaluation", "",
        "Dev macro-F1 in points, from each grid's `dev_history` (one evaluation per epoch in the shipped presets; "
        "pruned rows evaluate only after their pruning schedule's warm-up). `gain`: best minus first: how much a "
        "row that a first rung would judge still had to come. Spearman: the agreement of the rows' first-evaluation "
        "ranks with their best ranks within one run.", ""
    ]
    for run in runs:
        rho = run["spearman_first_vs_best"]
        lines += [
            f"## `{run['results']}`", "",
            f"Spearman (first vs best, {len(run['rows'])} rows): " + (f"{rho:.2f}" if rho is not None else "-"), "",
            "| row | evaluations | first | best | gain | test acc. |", "|---|---|---|---|---|---|"
        ]
        lines += [
            f"| {r['row']} | {r['evaluations']} | {r['first']:.2f} | {r['best']:.2f} | {r['gain']:+.2f} | "
            f"{r['test']:.2f} |" for r in sorted(run["rows"], key=lambda r: -r["best"])
        ]
        lines.append("")
    write_text(args.out / "report.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
