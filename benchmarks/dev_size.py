"""How often a dev split of a given size gets a budget verdict right, measured on a grid's own models.

`optimize` (and the grid's `best`) judge a candidate by its accuracy difference to the teacher on the dev split,
against a budget (1 point). Its report reads a verdict's chance of being wrong from the bootstrap of that one
split (`search.certainty`); this benchmark measures the verdicts' behaviour instead. A grid's results hold every
row's predictions on the whole test split, per seed, and the teacher's: the test split stands in for the
population of texts, and dev splits of `--sizes` texts are drawn from it (with replacement, seeded, `--draws`
times). Each draw applies the search's rules to each seed's model:

- `point`: the dev difference is at most `budget` points below the teacher (optimize's default, the grid's `best`);
- `risk 10%`: its one-sided 90% lower bound is (the rule whose false-pass rate is the issue's 10% target);
- `interval`: its two-sided 95% lower bound is (optimize's `--decide interval`).

Bounds use the normal approximation of the paired difference (its standard error from the draw's own texts) in
place of optimize's 2,000-resample bootstrap, which would cost 2,000 times as much per draw; the report says how
often the two agree, from a few hundred draws of the row nearest the line judged both ways. The line is optimize's
own (`search.scoring.within`, with its float tolerance). A row's share of passing draws is averaged over its seeds,
so training noise (one recipe trained again) is in it where a row has several seeds; such a row also gets a
`(seeds pooled)` line, each dev split judged once on its seeds' mean per-text correctness: what training several
seeds of a finalist and pooling them (issue #39's second lever for more evidence) would buy. In this simulation a row's
true difference is its whole-test difference (the mean of the texts drawn from): a row at or above the line should
pass, and each pass of one below it is a false pass. The test split's own sampling is not in that truth: its 95%
interval is shown beside it, and a row whose interval straddles the line might be on either side of it.

Nothing is trained or timed; it reads results.json alone (seconds of numpy):

    .venv/bin/python benchmarks/dev_size.py reports/cpu-quick-avx2/results.json --sizes 232 1500 5000 \
        --out reports/optimize/dev-size/mahanews

Writes OUT/results.json and OUT/report.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import NormalDist

import numpy as np

from mahacompress.core.files import write_json, write_text
from mahacompress.core.metrics import correctness, paired_difference, resampled_difference
from mahacompress.search.scoring import FALSE_PASS_TARGET, within

# each rule's one-sided normal quantile: the lower bound that must be within budget (None: the point estimate)
RULES = {
    "point": None, "risk 10%": NormalDist().inv_cdf(1 - FALSE_PASS_TARGET), "interval": NormalDist().inv_cdf(0.975)
}
CHECK_DRAWS = 200  # draws judged by the bootstrap too, to say how often the normal approximation agrees


def pass_rates(diff: np.ndarray, budget: float, sizes: list[int], draws: int, seed: int) -> dict[int, dict]:
    """Per dev size, the share of `draws` dev splits (texts drawn with replacement from `diff`'s, the per-text
    correctness difference row - teacher) on which each rule passes."""
    rng = np.random.default_rng(seed)
    out = {}
    for n in sizes:
        out[n] = {rule: float(passed.mean()) for rule, passed in verdicts(draw(diff, n, draws, rng), budget).items()}
    return out


def draw(diff: np.ndarray, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """`draws` dev splits of `n` texts, drawn with replacement: their per-text differences (draws x n)."""
    return diff[rng.integers(0, len(diff), size=(draws, n))]


def verdicts(sample: np.ndarray, budget: float) -> dict[str, np.ndarray]:
    """Each rule's verdict on each dev split (a row of `sample`), by the normal approximation."""
    mean, se = sample.mean(axis=1), sample.std(axis=1, ddof=1) / np.sqrt(sample.shape[1])
    return {rule: within(mean - (z * se if z else 0.0), budget) for rule, z in RULES.items()}


def agreement(diff: np.ndarray, n: int, budget: float, seed: int) -> dict[str, float]:
    """How often the normal approximation gives optimize's bootstrap verdict (`risk`: at least 1 - the target of
    2,000 resamples within budget; `interval`: the 2.5th percentile within it) on `CHECK_DRAWS` dev splits."""
    sample = draw(diff, n, CHECK_DRAWS, np.random.default_rng(seed))
    normal = verdicts(sample, budget)
    resamples = [resampled_difference(row, np.zeros_like(row)) for row in sample]
    boot = {
        "risk 10%": np.array([within(r, budget).mean() >= 1 - FALSE_PASS_TARGET for r in resamples]),
        "interval": np.array([bool(within(np.percentile(r, 2.5), budget)) for r in resamples])
    }
    return {rule: float(np.mean(normal[rule] == boot[rule])) for rule in boot}


def entries(results: dict) -> list[tuple[str, list[list[int]]]]:
    """(label, test predictions per seed) of every finished compressed row and served block, the teacher aside."""
    out = []
    for row in results["rows"]:
        if row.get("status") != "done" or row["name"] == "baseline" or "seeds" not in row:
            continue
        out.append((row["name"], [s["test_predictions"] for s in row["seeds"]]))
        if isinstance(row.get("served"), dict) and "test_predictions" in row["served"]:
            out.append((f"{row['name']} (served, {row['served']['backend']})", [row["served"]["test_predictions"]]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a grid's results.json (reproduce --out, or reports/<preset>)")
    parser.add_argument("--budget", type=float, default=1.0, help="points below the teacher (default 1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[232, 500, 1000, 1500])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    results = json.loads(args.results.read_text(encoding="utf-8"))
    y = results["meta"]["test_labels"]
    rows = {r["name"]: r for r in results["rows"]}
    teacher = correctness(y, [rows["baseline"]["seeds"][0]["test_predictions"]])  # what every student learned from
    measured = []
    for label, predictions in entries(results):
        whole = paired_difference(correctness(y, predictions), teacher)
        per_seed = [
            pass_rates(correctness(y, [p]) - teacher, args.budget, args.sizes, args.draws, args.seed + i)
            for i, p in enumerate(predictions)
        ]
        rates = {n: {rule: float(np.mean([s[n][rule] for s in per_seed])) for rule in RULES} for n in args.sizes}
        low, high = whole["ci_low"] * 100, whole["ci_high"] * 100
        truth = "within" if bool(within(whole["difference"], args.budget)) else "beyond"
        common = {
            "test_difference_points": whole["difference"] * 100, "test_ci_points": [low, high], "truth": truth,
            "test_decides": bool(within(whole["ci_low"], args.budget)) or not within(whole["ci_high"], args.budget)
        }
        measured.append({"row": label, "seeds": len(predictions), **common, "pass_rate": rates})
        if len(predictions) > 1:  # the "several seeds per finalist" lever: one verdict on their pooled correctness
            pooled = pass_rates(correctness(y, predictions) - teacher, args.budget, args.sizes, args.draws, args.seed)
            measured.append({
                "row": f"{label} (seeds pooled)", "seeds": len(predictions), **common, "pass_rate": pooled
            })
    measured.sort(key=lambda m: -m["test_difference_points"])
    nearest = min(measured, key=lambda m: abs(m["test_difference_points"] + args.budget))
    first_seed = dict(entries(results))[nearest["row"]][0]
    check = {
        "row": nearest["row"], "texts": args.sizes[0], "draws": CHECK_DRAWS,
        "agreement": agreement(correctness(y, [first_seed]) - teacher, args.sizes[0], args.budget, args.seed)
    }
    out = {
        "results": str(args.results), "preset": results["meta"]["preset"], "dataset": results["meta"]["dataset"],
        "machine": results["meta"]["machine"], "test_rows": len(y), "dev_rows": results["meta"]["dev_rows"],
        "budget_points": args.budget, "sizes": args.sizes, "draws": args.draws, "rules": list(RULES), "rows": measured,
        "normal_vs_bootstrap": check
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "results.json", out)
    write_text(args.out / "report.md", render(out))
    print(render(out))


def render(out: dict) -> str:
    """The report: per row, its whole-test difference and the share of dev splits of each size that pass it."""
    sizes, budget = out["sizes"], out["budget_points"]
    points = f"{budget:g} point" + ("" if budget == 1 else "s")  # "1 point", "2 points"
    head = " | ".join(f"{rule}, {n}" for n in sizes for rule in out["rules"])
    check = out["normal_vs_bootstrap"]
    agree = ", ".join(f"`{rule}` {share:.0%}" for rule, share in check["agreement"].items())
    lines = [
        f"# How often a dev split decides a {budget:g}-point budget right: `{out['preset']}` on "
        f"`{out['dataset']}`", "",
        f"From `{out['results']}` (the grid's run on {out['machine']}): {out['test_rows']} test texts stand in for "
        f"the population; {out['draws']} dev splits of each size drawn from them with replacement; the grid's own dev "
        f"split holds {out['dev_rows']} texts. Each cell is the share of dev splits on which the rule passes the row "
        "(averaged over its seeds: training noise included where it has several; `(seeds pooled)`: one verdict per "
        "dev split on the seeds' mean per-text correctness). `truth`: the row's whole-test "
        f"difference against the line (the mean of the texts drawn from): a row `within` should pass, and each pass "
        "of one `beyond` is a false pass. A `*` marks a row whose whole-test 95% interval straddles the line: the "
        "test split itself cannot tell which side it is on.", "",
        f"Rules: `point` (the dev difference at most {points} below the teacher: optimize's default and the "
        "grid's `best`), `risk 10%` (its one-sided 90% lower bound: `--decide risk`), `interval` (its two-sided 95% "
        "lower bound: `--decide interval`). The bounds are the normal approximation of optimize's bootstrap: on "
        f"{check['draws']} dev splits of {check['texts']} texts of `{check['row']}` (the row nearest the line) the two "
        f"gave the same verdict in {agree} of them.", "", f"| row | seeds | test Δ [95% CI] | truth | {head} |",
        "|---|---|---|---|" + "---|" * len(sizes) * len(out["rules"])
    ]
    for m in out["rows"]:
        low, high = m["test_ci_points"]
        cells = " | ".join(f"{m['pass_rate'][n][rule]:.0%}" for n in sizes for rule in out["rules"])
        lines.append(f"| {m['row']} | {m['seeds']} | {m['test_difference_points']:+.2f} [{low:+.2f}, {high:+.2f}] | "
                     f"{m['truth']}{'' if m['test_decides'] else '*'} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
