"""`search.certainty`: how sure `optimize`'s verdicts are, on made-up dev predictions whose answer is known, and
the report's words for it."""

from __future__ import annotations

import numpy as np
import pytest

from mahacompress.core.config import OptimizeConfig
from mahacompress.core.metrics import (
    correctness,
    paired_difference,
    paired_macro_f1_difference,
    resampled_difference,
    resampled_macro_f1_difference,
)
from mahacompress.search import scoring
from mahacompress.search.certainty import (
    FALSE_PASS_TARGET,
    resampled,
    search_rates,
    verdict_certainty,
    within,
    wrong_probability,
)
from mahacompress.search.report import certainty_section, chance, held_on_test
from mahacompress.search.scoring import judge


def _wrong_on(y: np.ndarray, texts: np.ndarray, num_labels: int = 2) -> list[int]:
    """`y` with the label of each text of `texts` moved to the next class: a model wrong exactly there."""
    pred = y.copy()
    pred[texts] = (pred[texts] + 1) % num_labels
    return pred.tolist()


def _pair(n: int, teacher_errors: int, candidate_errors: int, seed: int = 0):
    """Truth, teacher and candidate on `n` binary texts (truth and teacher the same for every `seed`), the
    candidate wrong on texts the teacher gets right (chosen by `seed`), so its difference to the teacher is exactly
    (teacher_errors - candidate_errors) / n and the two disagree on as many texts as can be."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    order = rng.permutation(n)
    teacher = _wrong_on(y, order[:teacher_errors])
    candidate = _wrong_on(y, np.random.default_rng(seed).permutation(order[teacher_errors:])[:candidate_errors])
    return y.tolist(), teacher, candidate


def _verdicts(y, predictions: dict, reference, budget: float, metric: str = "accuracy", num_labels: int = 2):
    cfg = OptimizeConfig(budget=budget, metric=metric, decide="point")
    return {r: judge(y, p, reference, cfg, num_labels) for r, p in predictions.items()}


def test_the_intervals_are_read_from_the_same_resamples_certainty_reads():
    """One bootstrap: the interval functions' percentiles are those of the resampled differences."""
    y, teacher, candidate = _pair(500, 60, 70)
    draws = resampled_difference(correctness(y, [candidate]), correctness(y, [teacher]))
    d = paired_difference(correctness(y, [candidate]), correctness(y, [teacher]))
    assert (d["ci_low"], d["ci_high"]) == tuple(np.percentile(draws, [2.5, 97.5]))
    assert d["difference"] == pytest.approx(-10 / 500)
    f1 = paired_macro_f1_difference(y, candidate, teacher, 2)
    f1_draws = resampled_macro_f1_difference(y, candidate, teacher, 2)
    assert (f1["ci_low"], f1["ci_high"]) == tuple(np.percentile(f1_draws, [2.5, 97.5]))
    assert np.array_equal(resampled(y, candidate, teacher, "accuracy", 2), draws)
    assert np.array_equal(resampled(y, candidate, teacher, "macro-f1", 2), f1_draws)


def test_a_candidate_identical_to_the_teacher_never_passes_falsely():
    y, teacher, _ = _pair(2000, 300, 0)
    cert = verdict_certainty({"onnx": teacher}, _verdicts(y, {"onnx": teacher}, teacher, 1.0), "onnx", {"onnx": 1.0}, y,
                             teacher, 1.0, "accuracy", 2)
    assert cert == {"runtime": "onnx", "verdict": "passed", "p_wrong": 0.0, "by_runtime": {"onnx": 0.0}}


def test_as_accurate_as_the_teacher_on_other_texts_is_sure_on_a_large_dev_split_and_not_on_a_small_one():
    """Same accuracy, errors on other texts: the 1-point budget is decided on 12,000 texts, not on 200."""
    y, teacher, candidate = _pair(12_000, 900, 900)
    large = wrong_probability(resampled(y, candidate, teacher, "accuracy", 2), 1.0, passed=True)
    assert large < 0.01
    y, teacher, candidate = _pair(200, 15, 15)
    small = wrong_probability(resampled(y, candidate, teacher, "accuracy", 2), 1.0, passed=True)
    assert small > FALSE_PASS_TARGET and small < 0.5


def test_a_candidate_exactly_on_the_line_is_a_coin_toss_either_way():
    """1 point below the teacher on 3,000 texts (30 texts): it passes by the point rule, and half the resamples
    put it beyond the line. Judged as failed, the chance of a false fail is the complement."""
    y, teacher, candidate = _pair(3000, 400, 430)
    verdicts = _verdicts(y, {"onnx": candidate}, teacher, 1.0)
    assert verdicts["onnx"]["passed"] and verdicts["onnx"]["difference_points"] == pytest.approx(-1.0)
    cert = verdict_certainty({"onnx": candidate}, verdicts, "onnx", {"onnx": 1.0}, y, teacher, 1.0, "accuracy", 2)
    assert cert["verdict"] == "passed" and cert["p_wrong"] == pytest.approx(0.5, abs=0.06)
    draws = resampled(y, candidate, teacher, "accuracy", 2)
    assert wrong_probability(draws, 1.0, passed=False) == pytest.approx(1 - cert["p_wrong"])
    # a resample exactly on the line is within the budget, as the point estimate there passes
    assert within(np.array([-0.01, -0.0101]), 1.0).tolist() == [True, False]


def test_the_risk_rule_passes_only_what_certainty_would_call_a_false_pass_at_most_the_target():
    """`--decide risk`: pass when at least 90% of the resamples are within budget. On the line (a coin toss) and
    0.5 points below the teacher on 3,000 texts it fails where the point rule passes; as accurate as the teacher on
    12,000 texts, and exactly the teacher, it passes. A pass's chance of being false is then at most the target."""
    risk = OptimizeConfig(budget=1.0, decide="risk")
    for n, teacher_errors, candidate_errors, point, sure in ((3000, 400, 430, True, False), (3000, 400, 415, True,
                                                                                             False),
                                                             (12_000, 900, 900, True, True), (2000, 300, 300, True,
                                                                                              True)):
        y, teacher, candidate = _pair(n, teacher_errors, candidate_errors)
        if n == 2000:
            candidate = teacher  # the teacher itself: nothing differs
        assert _verdicts(y, {"onnx": candidate}, teacher, 1.0)["onnx"]["passed"] is point
        verdict = judge(y, candidate, teacher, risk, 2)
        assert verdict["passed"] is sure, (n, candidate_errors)
        p_wrong = wrong_probability(resampled(y, candidate, teacher, "accuracy", 2), 1.0, passed=True)
        assert (p_wrong <= FALSE_PASS_TARGET) is sure


def test_the_risk_rule_passes_at_exactly_90_percent_of_resamples_within(monkeypatch):
    """The line itself: 1,800 of 2,000 resamples within the budget pass, 1,799 do not."""
    y, teacher, candidate = _pair(500, 60, 60)
    for inside, passed in ((1800, True), (1799, False)):
        draws = np.r_[np.zeros(inside), np.full(2000 - inside, -0.05)]
        monkeypatch.setattr(scoring, "resampled", lambda *args, d=draws: d)
        assert judge(y, candidate, teacher, OptimizeConfig(budget=1.0, decide="risk"), 2)["passed"] is passed


def test_a_failed_candidate_rests_on_its_runtime_closest_to_passing():
    y, teacher, near = _pair(3000, 400, 440)  # -1.33 points: fails a 1-point budget, not by much
    far = _wrong_on(np.array(y), np.arange(0, 3000, 10))  # 300 texts wrong on top of the teacher's: far below
    far = [t if f == yy else f for t, f, yy in zip(teacher, far, y)]
    predictions = {"onnx": near, "onnx-int8": far, "fp32": teacher}  # fp32 is the reference, never a verdict
    verdicts = _verdicts(y, predictions, teacher, 1.0)
    assert not verdicts["onnx"]["passed"] and not verdicts["onnx-int8"]["passed"] and verdicts["fp32"]["passed"]
    cert = verdict_certainty(predictions, verdicts, None, {"onnx": 3.0, "onnx-int8": 1.0, "fp32": 9.0}, y, teacher, 1.0,
                             "accuracy", 2)
    assert cert["runtime"] == "onnx" and cert["verdict"] == "failed" and set(
        cert["by_runtime"]) == {"onnx", "onnx-int8"}
    assert 0.05 < cert["p_wrong"] < 0.5 and cert["by_runtime"]["onnx-int8"] == 0.0


def test_macro_f1_verdicts_are_resampled_in_macro_f1():
    """As accurate as the teacher, but it never predicts the rare class: sure to pass on accuracy, sure to fail
    on macro-F1 (over every class, as the verdicts are judged)."""
    rng = np.random.default_rng(1)
    y = np.array([0] * 5600 + [1] * 5600 + [2] * 800)
    teacher = y.copy()
    teacher[rng.choice(np.arange(11_200), 1200, replace=False)] ^= 1  # 1,200 errors between classes 0 and 1
    candidate = y.copy()
    candidate[y == 2] = 0  # the rare class never predicted: 800 errors
    candidate[rng.choice(np.arange(5600), 400, replace=False)] = 1  # and 400 more: 1,200, as many as the teacher
    y, teacher, candidate = y.tolist(), teacher.tolist(), candidate.tolist()
    for metric, passed in (("accuracy", True), ("macro-f1", False)):
        verdicts = _verdicts(y, {"onnx": candidate}, teacher, 1.0, metric, 3)
        assert verdicts["onnx"]["passed"] is passed
        cert = verdict_certainty({"onnx": candidate}, verdicts, "onnx" if passed else None, {"onnx": 1.0}, y, teacher,
                                 1.0, metric, 3)
        assert cert["verdict"] == ("passed" if passed else "failed") and cert["p_wrong"] < 0.02
    identical = verdict_certainty({"onnx": teacher}, _verdicts(y, {"onnx": teacher}, teacher, 1.0, "macro-f1", 3),
                                  "onnx", {"onnx": 1.0}, y, teacher, 1.0, "macro-f1", 3)
    assert identical["p_wrong"] == 0.0


def _model(predictions: dict, y, teacher, ms: dict) -> dict:
    return {"predictions": predictions, "verdicts": _verdicts(y, predictions, teacher, 1.0), "ms": ms}


def test_the_search_rates_combine_the_faster_failures_and_name_the_likeliest():
    y, teacher, winner = _pair(3000, 400, 380)  # +0.67 points: a pass, a few % of resamples beyond the line
    _, _, near = _pair(3000, 400, 430, seed=2)  # on the line, judged on other texts: passes the point rule
    _, _, near_fail = _pair(3000, 400, 440, seed=3)  # -1.33: fails, maybe falsely
    _, _, far = _pair(3000, 400, 700, seed=4)  # -10 points: fails surely
    models = {
        "teacher": _model({"onnx": teacher}, y, teacher, {"onnx": 10.0}),
        "win": _model({"onnx": winner}, y, teacher, {"onnx": 5.0}),
        "a": _model({"onnx": near_fail, "onnx-int8": far}, y, teacher, {"onnx": 4.0, "onnx-int8": 2.0}),
        "b": _model({"onnx": far}, y, teacher, {"onnx": 3.0}),
        "slow": _model({"onnx": near_fail}, y, teacher, {"onnx": 6.0}),  # failed, but slower than the winner
        "c": _model({"onnx": near, "onnx-int8": near_fail}, y, teacher, {"onnx": 8.0, "onnx-int8": 4.5}),
    }
    rates = search_rates("win", "onnx", models, y, teacher, 1.0, "accuracy", 2)
    p = {m["name"]: m["p"] for m in rates["false_fail_models"]}
    assert set(p) == {"a", "b", "c"}  # the slower failure and the teacher (slower) cannot have cost a faster model
    assert {m["name"]: m["runtimes"] for m in rates["false_fail_models"]}["c"] == ["onnx-int8"]  # its failed one
    assert p["b"] == 0.0 and p["a"] > 0.05 and rates["most_likely_false_fail"] in ("a", "c")
    # the union per resample (same draws for every model): at least the likeliest, at most the sum
    inside = [within(resampled(y, pred, teacher, "accuracy", 2), 1.0) for pred in (near_fail, far, near_fail)
              ]  # a's onnx and onnx-int8, c's onnx-int8 (b's is far: never within)
    assert rates["false_fail"] == pytest.approx(float(np.any(inside, axis=0).mean()))
    assert max(p.values()) <= rates["false_fail"] <= sum(p.values())
    # a's two failed runtimes: the share of resamples where either is within budget (the same resamples)
    either = within(resampled(y, near_fail, teacher, "accuracy", 2), 1.0) | within(
        resampled(y, far, teacher, "accuracy", 2), 1.0)
    assert p["a"] == pytest.approx(either.mean())
    beyond = ~within(resampled(y, winner, teacher, "accuracy", 2), 1.0)
    assert rates["false_pass"] == pytest.approx(beyond.mean()) and 0 < rates["false_pass"] < FALSE_PASS_TARGET
    assert rates["within_target"] and rates["target"] == FALSE_PASS_TARGET
    on_the_line = search_rates("c", "onnx", models, y, teacher, 1.0, "accuracy", 2)
    assert on_the_line["false_pass"] == pytest.approx(0.5, abs=0.06) and not on_the_line["within_target"]


def test_the_teacher_shipping_in_its_reference_arithmetic_passes_surely_and_quantised_it_is_measured():
    y, teacher, int8 = _pair(3000, 400, 430)
    models = {"teacher": _model({"onnx": teacher, "onnx-int8": int8}, y, teacher, {"onnx": 10.0, "onnx-int8": 4.0})}
    assert search_rates("teacher", "onnx", models, y, teacher, 1.0, "accuracy", 2)["false_pass"] == 0.0
    assert search_rates("teacher", "onnx-int8", models, y, teacher, 1.0, "accuracy", 2)["false_pass"] > 0.3
    nothing_faster = search_rates("teacher", "onnx-int8", models, y, teacher, 1.0, "accuracy", 2)
    assert nothing_faster["false_fail"] == 0.0 and nothing_faster["most_likely_false_fail"] is None


def _report(false_pass: float, misses: list[dict], decide: str = "point") -> dict:
    return {
        "meta": {
            "config": {"budget": 1.0, "metric": "accuracy", "decide": decide},
            "dataset": {"splits": {"dev": {"rows": 232}}}
        }, "certainty": {
            "budget": 1.0, "metric": "accuracy", "resamples": 2000, "target": FALSE_PASS_TARGET, "winner": "kd2",
            "runtime": "onnx-int8", "false_pass": false_pass, "within_target": false_pass <= FALSE_PASS_TARGET,
            "false_fail": 1 - np.prod([1 - m["p"] for m in misses]), "false_fail_models": misses,
            "most_likely_false_fail": misses[0]["name"] if misses else None
        }
    }


def test_the_report_says_the_rates_and_what_would_decide_the_budget_when_the_split_cannot():
    risky = "\n".join(certainty_section(_report(0.34, [{"name": "kd3", "runtimes": ["onnx-int8"], "p": 0.4}])))
    assert "## How sure the verdicts are" in risky and "**34.0%** chance that kd2 in onnx-int8" in risky
    assert "**above the 10% target**" in risky and "the dev split (232 texts) is too small to decide a 1-point" in risky
    assert "a larger dev split, a larger --budget, or --decide risk (passing only a model whose chance" in risky
    assert "**40.0%** chance" in risky and "most likely kd3 in onnx-int8: 40.0%" in risky
    safe = "\n".join(certainty_section(_report(0.02, [])))
    assert "within the 10% target" in safe and "too small" not in safe and "false fail: 0%" in safe
    # under --decide risk a pass is within the target by the rule: the report says so, and never suggests the rule
    by_rule = "\n".join(certainty_section(_report(0.08, [], "risk")))
    assert "within the 10% target (the `risk` rule passes nothing above it;" in by_rule
    over = "\n".join(certainty_section(_report(0.34, [], "risk")))  # the teacher as fallback winner, say
    assert "a larger --budget would bring the rate down" in over and "--decide risk" not in over
    assert certainty_section({"meta": {}, "certainty": None}) == []  # a stopped run: no winner, no rates
    assert [chance(p) for p in (0.0, 0.0004, 0.0123, 1.0)] == ["0%", "<0.1%", "1.2%", "100.0%"]


@pytest.mark.parametrize("low, point, says", [(-0.8, 0.1, "the whole 95% interval is within the 1-point budget"),
                                              (-1.6, -0.4, "within the 1-point budget, but the 95% interval"),
                                              (-2.5, -1.5, "**outside the 1-point budget** on test"),
                                              (-1.0, -0.2, "the whole 95% interval is within")])
def test_the_winners_test_interval_is_read_against_the_budget(low, point, says):
    w = {
        "name": "kd2", "runtime": "onnx", "export": {
            "test_vs_teacher": {
                "metric": "accuracy", "difference_points": point, "ci_low_points": low, "ci_high_points": point + 1,
                "level": 0.95, "rows": 2800
            }
        }
    }
    text = held_on_test(w, {"budget": 1.0})
    assert says in text and "on the same 2800 texts" in text and "teacher itself" not in text
    assert "the teacher itself ships" in held_on_test(w | {"name": "teacher"}, {"budget": 1.0})


def test_the_dev_texts_a_sure_pass_needs_bring_the_false_pass_to_the_target():
    """-0.5 points on 400 texts is a doubtful pass; the same per-text results repeated to the number of texts the
    search says is needed bring the false pass to about the target (the bootstrap spread shrinks as 1/sqrt(n))."""
    y, teacher, winner = _pair(400, 40, 42)
    models = {"win": _model({"onnx": winner}, y, teacher, {"onnx": 5.0})}
    rates = search_rates("win", "onnx", models, y, teacher, 1.0, "accuracy", 2)
    assert rates["false_pass"] > FALSE_PASS_TARGET and rates["dev_texts_needed"] > 400
    k = round(rates["dev_texts_needed"] / 400)
    big = {"win": _model({"onnx": winner * k}, y * k, teacher * k, {"onnx": 5.0})}
    assert search_rates("win", "onnx", big, y * k, teacher * k, 1.0, "accuracy",
                        2)["false_pass"] == pytest.approx(FALSE_PASS_TARGET, abs=0.04)
    _, _, failing = _pair(400, 40, 48)  # -2 points: no dev split makes it a sure pass
    assert search_rates("win", "onnx", {"win": _model({"onnx": failing}, y, teacher, {"onnx": 5.0})}, y, teacher, 1.0,
                        "accuracy", 2)["dev_texts_needed"] is None
