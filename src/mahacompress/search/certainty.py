"""How sure `optimize`'s verdicts are: the chance each trained candidate's dev verdict is wrong at the budget, and
the search's estimated false-pass and false-fail rates, read from the dev results it already holds.

Why: a verdict is a comparison of a dev difference with a line, and the difference is measured on the few hundred
or thousand texts the dev split happens to hold (MahaNews: 232, with 95% intervals +/-4 points against a 1-point
budget). The report said how wide the intervals are (`report.dev_resolution`); a user deciding whether to ship
needs the consequence: how likely it is that what ships is in truth outside the budget, and that a faster model was
failed by chance. Nothing new is run: the paired bootstrap of `core.metrics` (the very resamples the verdicts'
intervals come from, `resampled_difference` / `resampled_macro_f1_difference`) is read as the uncertainty of the
true difference, and the share of resamples on the other side of the line is the chance the verdict is wrong.

What it leaves out, and the report says so: training noise (two trainings of one recipe differ by more than the
split's sampling on MahaNews) and the candidates the bisection ruled out without training them (their verdict is
an assumption, not a measurement).

Pure numpy over label ids; the caller (`optimize`) hands in the predictions, verdicts and shape timings.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from ..core.metrics import RESAMPLES
from .scoring import FALSE_PASS_TARGET, SHIPPABLE, paired, resampled, within


def wrong_probability(differences: np.ndarray, budget: float, passed: bool) -> float:
    """The chance a verdict at `budget` is wrong: for a pass, the share of resamples beyond the line (a false pass);
    for a failure, the share within it (a false fail)."""
    inside = float(within(differences, budget).mean())
    return 1.0 - inside if passed else inside


def verdict_certainty(predictions: dict[str, list[int]], verdicts: dict[str, dict], passing_runtime: str | None,
                      ms: dict[str, float], y: list[int], reference: list[int], budget: float, metric: str,
                      num_labels: int) -> dict | None:
    """A trained candidate's chance of a wrong verdict, per shippable runtime (`by_runtime`) and in the one its
    verdict rests on: the runtime it passed in (the fastest passing one, which placed it in the search), or, for a
    candidate that failed everywhere, the runtime closest to passing (the largest chance of a false fail; the
    faster on a tie), since that is the runtime that would have passed had the dev split been kinder.
    None when no shippable runtime was judged."""
    by_runtime = {
        r: wrong_probability(resampled(y, predictions[r], reference, metric, num_labels), budget, v["passed"])
        for r, v in verdicts.items() if r in SHIPPABLE and r in predictions and r in ms  # a runtime this run times
    }
    if not by_runtime:
        return None
    runtime = passing_runtime if passing_runtime in by_runtime else max(
        by_runtime, key=lambda r: (by_runtime[r], -ms.get(r, float("inf"))))
    passed = bool(verdicts[runtime]["passed"])
    return {
        "runtime": runtime, "verdict": "passed" if passed else "failed", "p_wrong": by_runtime[runtime],
        "by_runtime": by_runtime
    }


def search_rates(winner: str, runtime: str, models: dict[str, dict], y: list[int], reference: list[int], budget: float,
                 metric: str, num_labels: int) -> dict:
    """The search's estimated error rates at `budget`, for `winner` shipped in `runtime`.

    `models`: name -> {"predictions": runtime -> dev label ids, "verdicts": runtime -> `scoring.judge`'s dict,
    "ms": runtime -> the shape's latency (the timing the search ranked by)}, every trained candidate and the
    teacher, the winner among them.

    - false pass: the chance the winner, in the runtime it ships in, is in truth more than `budget` points below
      the teacher (the share of its resamples beyond the line). The teacher as winner is measured the same way:
      what ships is its exported runtime, not the fp32 reference (in fp32 ONNX it is ~0; quantised it need not be).
    - false fail: the chance that some model faster than the winner was failed by chance. Each model's failed
      shippable runtimes faster than the winner's (by shape latency, as the search compared them; the winner's own
      faster runtimes and a passing candidate's failed faster ones included: any of them, within budget, would
      have won) give p_i, the share of resamples in which at least one of them is within budget (the same
      resamples for all of a model's runtimes, so their strong correlation is kept). Across models, every one is
      resampled with the same draws of texts, so the rate is the share of resamples in which any of them is
      within budget: no independence is assumed. The model with the largest p_i is named.
    """
    shipped = models[winner]
    differences = resampled(y, shipped["predictions"][runtime], reference, metric, num_labels)
    false_pass = 1.0 - float(within(differences, budget).mean())
    line_ms = shipped["ms"].get(runtime, 0.0)  # a runtime the shapes were not timed in: nothing counts as faster
    misses, insides = [], []
    for name, model in models.items():
        faster = [
            r for r, v in model["verdicts"].items() if r in SHIPPABLE and not v["passed"] and r in model["predictions"]
            and model["ms"].get(r, float("inf")) < line_ms
        ]
        if faster:
            inside = np.any(
                [within(resampled(y, model["predictions"][r], reference, metric, num_labels), budget)
                 for r in faster], axis=0)
            misses.append({"name": name, "runtimes": faster, "p": float(inside.mean())})
            insides.append(inside)
    misses.sort(key=lambda m: -m["p"])
    # how many dev texts would bring the false pass to the target, were the winner's observed difference and its
    # per-text spread the truth: the bootstrap's spread shrinks as 1/sqrt(n) (None: at or under the line, no number
    # of texts makes a pass sure)
    margin = paired(y, shipped["predictions"][runtime], reference, metric, num_labels)["difference"] + budget / 100
    z = NormalDist().inv_cdf(1 - FALSE_PASS_TARGET)
    needed = (math.ceil(len(y) * (z * float(np.std(differences)) / margin)**2)
              if margin > 0 and false_pass > FALSE_PASS_TARGET else None)
    # every model and runtime is resampled with the same draws of texts (one seed), so the union is read per resample
    false_fail = float(np.any(insides, axis=0).mean()) if insides else 0.0
    return {
        "budget": budget, "metric": metric, "resamples": RESAMPLES, "target": FALSE_PASS_TARGET, "winner": winner,
        "runtime": runtime, "false_pass": false_pass, "within_target": false_pass <= FALSE_PASS_TARGET,
        "false_fail": false_fail, "false_fail_models": misses, "dev_texts_needed": needed,
        "most_likely_false_fail": misses[0]["name"] if misses else None
    }
