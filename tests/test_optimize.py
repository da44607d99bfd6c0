"""`optimize`: the search's decisions on made-up outcomes, then whole runs on a tiny teacher (resume, the
time budget, the test split read once at the end) and the one-line refusals of the command."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from clirun import one_line_error
from typer.testing import CliRunner

from mahacompress.cli.app import app
from mahacompress.core.config import DataConfig, OptimizeConfig
from mahacompress.core.errors import MahaError
from mahacompress.models.load import save_classifier, tiny_bert, tiny_tokenizer
from mahacompress.search.bisect import (
    CLEARLY_FASTER,
    next_candidate,
    open_candidates,
    search,
    train_chain,
    verdicts,
)
from mahacompress.search.candidates import folder_of, random_compaction, resolve_candidates
from mahacompress.search.report import dev_resolution
from mahacompress.search.scoring import SHIPPABLE, outcome

ORDER = ["a", "b", "c", "d", "e"]
MS = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}


def _run(passes, teacher_ms: float = 10.0, out_of_time=lambda: False, order=ORDER, ms=MS):
    """The search over made-up candidates: `passes(name)` says whether a trained one is within budget."""
    trained = []

    def run_trial(name):
        trained.append(name)
        return {name: {"passed": passes(name), "ms": ms[name]}}

    tried: dict = {}
    timed_out = search(order, ms, teacher_ms, tried, run_trial, out_of_time)
    return trained, verdicts(order, ms, teacher_ms, tried, timed_out)


def test_when_the_fastest_passes_nothing_slower_is_trained():
    trained, status = _run(lambda name: True)
    assert "a" in trained and status["a"]["status"] == "passed"
    assert {"d", "e"}.isdisjoint(trained) and len(trained) < len(ORDER)  # bisection: c, then b, then a
    assert status["e"]["status"] == "cannot win" and "a (1.0 ms), which passed" in status["e"]["why"]


def test_a_failure_prunes_the_faster_candidates_and_the_fastest_passing_one_wins():
    trained, status = _run(lambda name: MS[name] >= 3)
    assert trained == ["c", "b"]  # c passes: only a and b can beat it; b fails: a is assumed to fail too
    assert [status[n]["status"]
            for n in ORDER] == ["pruned by the search", "failed", "passed", "cannot win", "cannot win", ]
    assert "b is slower and failed" in status["a"]["why"]


def test_candidates_slower_than_the_teacher_are_never_trained():
    trained, status = _run(lambda name: False, teacher_ms=2.5)
    assert set(trained) <= {"a", "b"} and status["c"]["status"] == "cannot win" and "the teacher" in status["c"]["why"]
    assert open_candidates(ORDER, MS, 0.5, {}) == []  # a teacher faster than every shape: nothing to train


def test_the_time_budget_stops_the_search_between_trials():
    calls = iter([False, True])  # time left before the first trial, none before the second
    trained, status = _run(lambda name: MS[name] >= 3, out_of_time=lambda: next(calls))
    assert trained == ["c"] and status["c"]["status"] == "passed"
    assert status["a"]["status"] == status["b"]["status"] == "out of time"


def test_a_trial_that_errors_proves_nothing_about_faster_ones():
    tried = {"c": {"passed": None, "ms": None, "error": "boom"}}
    assert open_candidates(ORDER, MS, 10.0, tried) == ["a", "b", "d", "e"]


def test_candidates_take_the_transfer_set_their_source_rows_and_the_teachers_depth():
    from mahacompress.core.config import GridConfig

    specs, left_out = resolve_candidates(["kdp50", "p50+kd", "p25", "kd8", "static"], transfer=True, teacher_layers=4,
                                         teacher_hidden=64, grid_cfg=GridConfig(student_layers=2, static_dim=16))
    assert [s.name for s in specs] == ["kd+tr", "kdp50+tr", "p50+kd+tr", "p25", "static+tr"]  # p25 has no teacher
    assert left_out == {"kd8+tr": "a 8-layer student of a 4-layer teacher"}
    for bad, match in (("best+fused", "expected a compressed row"), ("mp", "expected a compressed row"),
                       ("tfidf", "expected a compressed row"), ("kd2+tr", "give --transfer-set"),
                       ):
        with pytest.raises(MahaError, match=match):
            resolve_candidates([bad], transfer=False, teacher_layers=4, teacher_hidden=64, grid_cfg=GridConfig())


def test_an_untrained_pruned_shape_has_the_target_sparsity(toy_splits):
    from mahacompress.train.pruning.compact import encoder_linear_count

    model = tiny_bert(3, vocab_size=64, num_hidden_layers=2, hidden_size=64, intermediate_size=128)
    dense = sum(encoder_linear_count(model))
    pruned = random_compaction(model, 0.5, block_size=16)
    assert sum(encoder_linear_count(pruned)) / dense == pytest.approx(0.5, abs=0.02)


# ---------------------------------------------------------------- whole runs on a tiny teacher

PRESET = """
finetune: {epochs: 2, batch_size: 16, lr: 1.0e-3, max_length: 32, freeze_embeddings: false, early_stopping_patience: 0}
distill: {epochs: 2, batch_size: 16, lr: 1.0e-3, max_length: 32, freeze_embeddings: false, early_stopping_patience: 0}
student_layers: 2
measure: {repeats: 1, warmup: 0, texts: 8, threads: 1}
"""


@pytest.fixture(scope="module")
def toy_data(toy_splits, tmp_path_factory):
    """The toy task as a folder of CSVs, and a preset that trains in seconds."""
    root = tmp_path_factory.mktemp("optimize")
    data = root / "data"
    data.mkdir()
    for name, ts in (("toy_train.csv", toy_splits.train), ("toy_test.csv", toy_splits.test)):
        lines = ["text,label"] + [f"{t},{toy_splits.labels[y]}" for t, y in zip(ts.texts, ts.labels)]
        (data / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "tiny.yaml").write_text(PRESET)
    return data, root / "tiny.yaml"


def _config(preset, **changes) -> OptimizeConfig:
    return OptimizeConfig(
        **{"budget": 100.0, "candidates": ["kd1", "kd2"], "runtimes": ["onnx"], "preset": str(preset), **changes})


@pytest.fixture(scope="module")
def first_run(teacher_dir, toy_data, tmp_path_factory):
    """One search, watched: every text a model scores, and when the test split is scored."""
    import mahacompress.deploy.export as export
    import mahacompress.search.optimize as optimize
    import mahacompress.search.scoring as scoring
    import mahacompress.search.winner as winner

    data, preset = toy_data
    splits = __import__("mahacompress.data.splits", fromlist=["load_splits"]).load_splits(DataConfig(str(data)))
    test_only = set(splits.test.texts) - set(splits.train.texts) - set(splits.dev.texts)
    events: list[str] = []
    mp = pytest.MonkeyPatch()
    real_load, real_score, real_predict = scoring.load, export.score_exported, winner.predict_ids

    def watched_load(model_dir, runtime, ctx):
        backend = real_load(model_dir, runtime, ctx)
        logits = backend.logits

        def spy(texts, batch_size=32):
            events.append("TEST" if test_only & set(texts) else "dev")
            return logits(texts, batch_size)

        backend.logits = spy
        return backend

    def watched_score(folder, s):
        events.append("test scored at the end")
        return real_score(folder, s)

    def watched_predict(model, s, split, **kwargs):  # the winner's and the teacher's test predictions, paired
        events.append(f"{split} predictions")
        return real_predict(model, s, split, **kwargs)

    mp.setattr(scoring, "load", watched_load)
    mp.setattr(export, "score_exported", watched_score)
    mp.setattr(winner, "predict_ids", watched_predict)
    out = tmp_path_factory.mktemp("run") / "out"
    try:
        report = optimize.optimize(str(teacher_dir), DataConfig(str(data)), _config(preset), out)
    finally:
        mp.undo()
    return out, report, events


@pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason="the openvino extra (openvino, nncf) is not installed")
def test_untrained_shapes_calibrate_on_a_few_texts_trained_models_on_the_full_sample(
        teacher_dir, toy_data, tmp_path, monkeypatch):
    """An int8 graph's latency does not depend on its ranges: the shapes' calibrated files are built from
    SHAPE_CALIBRATION_TEXTS texts (2 here), every trained model's (judged on dev, exported) from the full sample."""
    import mahacompress.infer.build as build
    import mahacompress.search.optimize as optimize

    seen: list[tuple[Path, int]] = []
    real = build.calibrated_file

    def spy(model_dir, fp32, backend, max_length, texts, *rest):
        seen.append((Path(model_dir), len(texts or ())))
        return real(model_dir, fp32, backend, max_length, texts, *rest)

    monkeypatch.setattr(build, "calibrated_file", spy)
    monkeypatch.setattr(optimize, "SHAPE_CALIBRATION_TEXTS", 2)
    data, preset = toy_data
    out = tmp_path / "out"
    optimize.optimize(str(teacher_dir), DataConfig(str(data)),
                      _config(preset, candidates=["kd1"], runtimes=["openvino-int8"]), out)
    shapes = {n for d, n in seen if d.is_relative_to(out / "shapes")}
    served = {n for d, n in seen if d.is_relative_to(out / "served")}  # trained models, trimmed as they ship
    assert shapes == {2} and served and min(served) > 2


def test_a_run_trains_only_what_can_win_exports_the_winner_and_reads_test_once_at_the_end(first_run):
    out, report, events = first_run
    assert "TEST" not in events and events.count("test scored at the end") == 1
    # then only the exported folder's and the teacher's test predictions, for their paired test difference
    assert events[events.index("test scored at the end"):] == ["test scored at the end"] + ["test predictions"] * 2
    rows = {c["name"]: c for c in report["candidates"]}
    assert set(rows) == {"kd1", "kd2"} and all(c["fastest_ms"] > 0 for c in rows.values())
    winner = report["winner"]
    assert winner["name"] in rows and rows[winner["name"]]["status"] == "passed" and winner["runtime"] == "onnx"
    assert winner["speedup_vs_teacher_fp32"] > 0 and winner["export"]["test"]["rows"] > 0
    for name, row in rows.items():  # a candidate is trained only while it could still win
        faster_passed = [
            r for r in rows.values()
            if r["status"] == "passed" and r["passing_ms"] <= row["fastest_ms"] * CLEARLY_FASTER and r is not row
        ]
        assert row["trained"] == (row["status"] in ("passed", "failed"))
        if row["status"] == "cannot win":  # a passing model, a candidate or the teacher, is not clearly slower
            # the passing model it names (its time as measured when the verdict was made; a later timing may differ)
            named = [r for r in rows.values() if r["status"] == "passed" and f"than {r['name']} (" in row["why"]]
            assert faster_passed or named or "than the teacher" in row["why"]
    assert json.loads((out / "export" / "export.json").read_text())["backend"] == "onnx"
    phases = report["meta"]["phases"]  # where the run's time went, step by step, adding up to it
    assert phases["trials"] > 0 and sum(phases.values()) == pytest.approx(report["meta"]["seconds"], abs=1.0)
    text = (out / "report.md").read_text()
    assert text.startswith("# optimize") and (out / "optimize.png").stat().st_size > 1000
    dev_rows = report["meta"]["dataset"]["splits"]["dev"]["rows"]
    assert f"\n- dev split: {dev_rows} texts, so 100 points = {dev_rows:.1f} texts" in text  # the tests' budget: 100
    assert "median half-width" in text
    # how sure the verdicts are: per trained candidate, the search's rates, and the winner's test difference
    assert all(0 <= r["certainty"]["p_wrong"] <= 1 for r in rows.values() if r["trained"])
    cert = report["certainty"]
    assert cert["winner"] == winner["name"] and cert["runtime"] == winner["runtime"]
    assert cert["false_pass"] == 0.0 and cert["within_target"]  # nothing is 100 points below the teacher
    assert 0 <= cert["false_fail"] <= 1 and cert["target"] == 0.10
    test = winner["export"]["test_vs_teacher"]
    assert test["metric"] == "accuracy" and test["rows"] == winner["export"]["test"]["rows"]
    assert test["ci_low_points"] <= test["difference_points"] <= test["ci_high_points"]
    assert "## How sure the verdicts are" in text and "within the 10% target" in text
    assert "- test vs the teacher: accuracy " in text and "interval is within the 100-point budget" in text
    assert json.loads((out / "optimize.json").read_text())["winner"]["name"] == winner["name"]


def test_what_is_timed_and_judged_has_the_vocabulary_the_export_ships(first_run):
    """Shapes are timed, and trained models judged on dev, trimmed to their training corpus, as export trims."""
    from mahacompress.models.folder import checkpoint_digest

    out, report, _ = first_run
    for shape in (p for p in (out / "shapes").iterdir() if p.is_dir()):
        assert json.loads((shape / "trim.json").read_text())["corpus"] == ["the training split"]
    trial = json.loads((out / "trials" / f"{report['winner']['name']}.json").read_text())
    served = Path(trial["served_dir"])
    assert served.is_relative_to(out / "served")
    assert json.loads((served / "trim.json").read_text())["source_checkpoint"] == checkpoint_digest(trial["model_dir"])
    vocab = lambda folder: json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]  # noqa: E731
    assert vocab(served) == vocab(out / "export")


def test_a_second_run_reuses_finished_trials_without_training(first_run, teacher_dir, toy_data, monkeypatch):
    import mahacompress.search.optimize as optimize
    import mahacompress.search.trials as search_trials

    out, report, _ = first_run
    trials = sorted((out / "trials").glob("*.json"))
    stamps = [t.stat().st_mtime_ns for t in trials]
    monkeypatch.setattr(optimize, "build", lambda *a, **k: pytest.fail("a finished candidate was trained again"))
    monkeypatch.setattr(search_trials, "build", lambda *a, **k: pytest.fail("a finished candidate was trained again"))
    data, preset = toy_data
    again = optimize.optimize(str(teacher_dir), DataConfig(str(data)), _config(preset), out)
    assert again["winner"]["name"] == report["winner"]["name"] and trials
    assert [t.stat().st_mtime_ns for t in trials] == stamps
    # the report's run time counts what the first run spent on the trials and shape timings reused here
    spent = (sum(json.loads(t.read_text())["seconds"]
                 for t in trials) + json.loads((out / "shapes" / "latency.json").read_text())["seconds"])
    assert again["meta"]["reused_seconds"] == pytest.approx(spent) and spent > 0
    assert "min in earlier ones" in (out / "report.md").read_text()


def test_a_reused_trial_is_judged_in_a_runtime_the_new_run_adds_without_training_again(
        first_run, teacher_dir, toy_data, tmp_path, monkeypatch):
    import shutil

    import mahacompress.search.optimize as optimize
    import mahacompress.search.trials as search_trials

    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)  # the first run's folder stays as the other tests read it
    finished = {p.stem for p in (out / "trials").glob("*.json")}
    real_build = search_trials.build

    def build_unless_finished(ctx, spec, folder, *args, **kwargs):
        # a candidate the first run did not train may open now (its int8 shape is faster): that one may train
        if folder_of(spec) in finished:
            pytest.fail(f"{spec.name}, a finished candidate, was trained again")
        return real_build(ctx, spec, folder, *args, **kwargs)

    monkeypatch.setattr(optimize, "build", build_unless_finished)
    monkeypatch.setattr(search_trials, "build", build_unless_finished)
    data, preset = toy_data
    report = optimize.optimize(str(teacher_dir), DataConfig(str(data)), _config(preset, runtimes=["onnx-int8"]), out)
    assert finished
    for trial in (out / "trials").glob("*.json"):
        assert set(json.loads(trial.read_text())["dev_predictions"]) == {"fp32", "onnx", "onnx-int8"}
    judged = [c for c in report["candidates"] if c.get("trained")]
    assert judged and all("onnx-int8" in c["runtimes"] for c in judged)


def test_a_budget_spent_in_the_teacher_phase_stops_there_with_its_report(teacher_dir, toy_data, tmp_path, monkeypatch):
    """The budget bounds the whole run: one that runs out before the shapes (a teacher's fine-tune longer than it,
    here a context that takes its time) stops in the teacher phase, with its report and nothing trained."""
    import time

    import mahacompress.search.optimize as optimize
    from mahacompress.search.budget import Stopped

    real_open = optimize.open_context

    def slow_open(*args, **kwargs):
        for _ in range(500):  # the deadline's SIGALRM lands here
            time.sleep(0.01)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(optimize, "open_context", slow_open)
    data, preset = toy_data
    out = tmp_path / "out"
    with pytest.raises(Stopped) as stop:
        optimize.optimize(str(teacher_dir), DataConfig(str(data)), _config(preset, time_budget_s=0.5), out)
    assert (stop.value.reason, stop.value.phase) == ("budget", "teacher")
    saved = json.loads((out / "optimize.json").read_text())
    assert saved["winner"] is None and saved["meta"]["stopped_in"] == "teacher" and saved["pareto"] == []
    assert all(c["status"] == "not reached" for c in saved["candidates"]) and not (out / "trials").exists()
    assert "## Stopped before its end" in (out / "report.md").read_text()


def test_a_folder_holding_a_search_for_other_data_is_refused_in_one_line(first_run, teacher_dir, toy_data):
    data, preset = toy_data
    result = CliRunner().invoke(app, [
        "optimize", "--teacher",
        str(teacher_dir), "--dataset",
        str(data), "--max-train-rows", "50", "--preset",
        str(preset), "--out",
        str(first_run[0]), "--candidates", "kd1", "--runtimes", "onnx"
    ])
    assert one_line_error(result).startswith("error: ") and "holds a search for another data" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "-1"], "--budget -1: expected a value at least 0"),
        (["--budget", "lots"], "Invalid value for '--budget'"),
        (["--budget", "nan"], "--budget nan"),
        (["--metric", "f2"], "--metric f2: expected one of accuracy, macro-f1"),
        (["--batch-size", "0"], "--batch-size 0: expected a value at least 1"),
        (["--time-budget", "soon"], "--time-budget soon: expected a duration"),
        (["--time-budget", "90"], "--time-budget 90: expected a duration"),
        (["--time-budget", "0m"], "--time-budget 0 s: expected more than zero"),
        (["--decide", "maybe"], "--decide maybe: expected one of point, risk, interval"),
        (["--runtimes", "onnx,turbo"], "--runtimes turbo"),
        (["--runtimes", "bf16"], "--runtimes bf16"),  # torch's bf16: no exported folder runs it
    ])
def test_bad_options_are_refused_in_one_line_before_anything_is_written(args, message, tmp_path):
    result = CliRunner().invoke(
        app, ["optimize", "--teacher",
              str(tmp_path / "no-such-teacher"), "--out",
              str(tmp_path / "out"), *args])
    assert message in one_line_error(result) and not (tmp_path / "out").exists()


def test_durations_parse():
    from mahacompress.core.validate import parse_duration

    assert [parse_duration("t", d) for d in ("90m", "2h", "3600s", "1h30m", "0s")] == [5400, 7200, 3600, 5400, 0]
    with pytest.raises(MahaError, match="expected a duration"):
        parse_duration("--time-budget", "2 hours")


def test_a_teacher_for_other_labels_is_refused_before_any_training(toy_splits, toy_data, tmp_path):
    data, preset = toy_data
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    model = tiny_bert(3, vocab_size=len(tok), id2label={0: "Kh", 1: "Kr", 2: "Ra"},
                      label2id={"Kh": 0, "Kr": 1, "Ra": 2})
    save_classifier(model, tok, tmp_path / "other", {})
    result = CliRunner().invoke(app, [
        "optimize", "--teacher",
        str(tmp_path / "other"), "--dataset",
        str(data), "--preset",
        str(preset), "--out",
        str(tmp_path / "out")
    ])
    assert "the teacher's labels ['Kh', 'Kr', 'Ra'] differ from the dataset's" in one_line_error(result)
    assert not (tmp_path / "out" / "models").exists()


def test_a_failure_prunes_only_faster_candidates_of_its_own_family():
    family = {"a": "static", "b": "kd", "c": "kd", "d": "prune", "e": "prune"}
    tried = {"d": {"passed": False, "ms": None}}  # a pruned model failed: faster pruned ones are assumed to fail
    assert open_candidates(ORDER, MS, 10.0, tried, family) == ["a", "b", "c", "e"]
    assert open_candidates(ORDER, MS, 10.0, tried) == ["e"]  # one family: everything faster is pruned
    status = verdicts(ORDER, MS, 10.0, tried | {"e": {"passed": True, "ms": 5.0}}, False, family)
    assert [status[n]["status"] for n in ORDER] == ["not tried"] * 3 + ["failed", "passed"]
    family["c"] = "prune"
    status = verdicts(ORDER, MS, 10.0, tried, False, family)
    assert status["c"]["status"] == "pruned by the search" and "d is slower and failed" in status["c"]["why"]
    assert status["b"]["status"] == "not tried"


def test_a_candidate_built_from_a_failed_model_comes_last():
    """kdp50 prunes kd's trained student further: when kd fails, kdp50 (faster, another family) waits until no other
    candidate is open, then is tried (a second distillation can recover what its source lost)."""
    family = {"a": "static", "b": "kdprune", "c": "kd", "d": "prune", "e": "prune"}
    sources = dict.fromkeys(ORDER) | {"b": "c"}
    tried = {"c": {"passed": False, "ms": None}}
    assert open_candidates(ORDER, MS, 10.0, tried, family, sources) == ["a", "d", "e"]
    assert open_candidates(ORDER, MS, 10.0, tried, family) == ["a", "b", "d", "e"]
    waits = "c failed and it is built from c's trained model, so it comes last"
    assert verdicts(ORDER, MS, 10.0, tried, False, family, sources)["b"] == {"status": "not tried", "why": waits}
    assert verdicts(ORDER, MS, 10.0, tried, True, family, sources)["b"] == {"status": "out of time", "why": waits}
    done = tried | {n: {"passed": False, "ms": None} for n in ("a", "d", "e")}
    assert open_candidates(ORDER, MS, 10.0, done, family, sources) == ["b"]
    order = []
    search(ORDER, MS, 10.0, dict(tried), lambda n: order.append(n) or {n: {"passed": False, "ms": None}}, lambda: False,
           family, sources)
    assert order[-1] == "b" and sorted(order) == ["a", "b", "d", "e"]


def test_the_model_others_are_built_from_is_trained_first_then_the_bisection_goes_on():
    """kd (slowest here) is what kdl2 and kdl3 are cut from: it trains first, alone, and the cheap cuts follow."""
    order = ["static", "kdl2", "kdl3", "kd"]
    ms = {"static": 1.0, "kdl2": 3.0, "kdl3": 4.0, "kd": 6.0}
    family = {"static": "static", "kdl2": "kdcut", "kdl3": "kdcut", "kd": "kd"}
    sources = {"static": None, "kdl2": "kd", "kdl3": "kd", "kd": None}
    assert next_candidate(order, sources) == "kd" and next_candidate(order) == "kdl3"
    trained: list[str] = []

    def run_trial(name: str) -> dict[str, dict]:
        trained.append(name)
        return {name: {"passed": name != "kdl2", "ms": ms[name]}}

    search(order, ms, 10.0, {}, run_trial, lambda: False, family, sources)
    # then the bisection: the middle of static, kdl2, kdl3 (kdl2, fails), what is left (kdl3, passes), static
    assert trained == ["kd", "kdl2", "kdl3", "static"]


def _report(dev_rows: int, budget: float, half_widths: list[float], metric: str = "accuracy") -> dict:
    dev = [{"dev": {"ci_low_points": -1.0 - h, "ci_high_points": -1.0 + h}} for h in half_widths]
    return {
        "meta": {"dataset": {"splits": {"dev": {"rows": dev_rows}}}, "config": {"budget": budget, "metric": metric}},
        "candidates": dev + [{"name": "untrained", "status": "out of time"}]
    }


def test_the_report_says_when_the_dev_split_is_too_small_to_decide_the_budget():
    wide = dev_resolution(_report(232, 1.0, [1.0, 4.0, 10.0]))  # the median, not the mean (5.0)
    assert wide.startswith("232 texts, so 1 point = 2.3 texts") and "+/-4.00 points" in wide
    assert "wider than the budget" in wide
    narrow = dev_resolution(_report(1500, 2.0, [1.0, 1.5]))
    assert "2 points = 30.0 texts" in narrow and "+/-1.25 points" in narrow and "wider" not in narrow
    assert "wider" not in dev_resolution(_report(1500, 2.0, [2.0]))  # as wide as the budget: no warning
    assert "0.5 points = 1.2 texts" in dev_resolution(_report(232, 0.5, [1.0]))
    assert dev_resolution(_report(100, 1.0, [])) == "100 texts, so 1 point = 1.0 texts"  # nothing trained yet
    assert dev_resolution(_report(100, 1.0, [], metric="macro-f1")) == "100 texts"  # a point of F1 is no text count


def test_only_a_runtime_an_exported_folder_runs_decides_a_verdict():
    """torch's bf16 (or the fp32 reference) may pass on dev and be fastest, but no folder ships it: it decides
    nothing."""
    y = [0, 1, 0, 1] * 25
    splits = type("S", (), {"dev": type("D", (), {"labels": y})(), "labels": ["a", "b"]})()
    cfg = OptimizeConfig(budget=1.0, decide="point")
    trial = {"dev_predictions": {"bf16": y, "fp32": y, "onnx-int8": y, "onnx": [1 - v for v in y]}}
    o = outcome(trial, {"bf16": 1.0, "fp32": 2.0, "onnx-int8": 3.0, "onnx": 4.0}, y, splits, cfg)
    assert o["passed"] and (o["runtime"], o["ms"]) == ("onnx-int8", 3.0)
    assert not outcome({"dev_predictions": {"bf16": y}}, {"bf16": 1.0}, y, splits, cfg)["passed"]
    assert "bf16" not in SHIPPABLE and "fp32" not in SHIPPABLE and "static" in SHIPPABLE


def test_the_shippable_runtimes_are_the_export_backends():
    from mahacompress.core.config import OPTIMIZE_RUNTIMES
    from mahacompress.deploy.export import EXPORT_BACKENDS

    assert SHIPPABLE == set(OPTIMIZE_RUNTIMES) | {"static"} == set(EXPORT_BACKENDS)


def test_a_candidate_not_clearly_faster_than_the_teacher_is_not_worth_a_trial():
    assert open_candidates(ORDER, MS, 5.0 * CLEARLY_FASTER + 0.01, {}) == ORDER
    assert open_candidates(ORDER, MS, 5.0 * CLEARLY_FASTER, {}) == ["a", "b", "c", "d"]  # e: not clearly faster
    status = verdicts(ORDER, MS, 5.0 * CLEARLY_FASTER, {}, False)
    assert status["e"]["status"] == "cannot win" and f"not {CLEARLY_FASTER:g}x faster" in status["e"]["why"]


def test_a_chain_stops_after_a_failure_an_error_or_the_time_budget():
    """A kdpNN's trial trains its kd row first: a failing kd row leaves its pruned copy untrained."""

    def trainer(verdict):
        trained = []

        def train_one(name):
            trained.append(name)
            return verdict(name)

        return trained, train_one

    trained, one = trainer(lambda n: {"passed": n != "kd"})
    assert train_chain(["kd", "kdp50"], one, lambda: False) == {"kd": {"passed": False}} and trained == ["kd"]
    trained, one = trainer(lambda n: {"passed": None, "error": "boom"})
    assert list(train_chain(["kd", "kdp50"], one, lambda: False)) == ["kd"]
    trained, one = trainer(lambda n: {"passed": True})
    assert list(train_chain(["kd", "kdp50"], one, lambda: True)) == ["kd"]  # a trial that started finishes
    assert list(train_chain(["kd", "kdp50"], one, lambda: False)) == ["kd", "kdp50"]


def test_a_student_no_faster_than_the_teacher_when_timed_again_leaves_the_teacher_to_ship(
        teacher_dir, toy_data, tmp_path, monkeypatch):
    import mahacompress.search.optimize as optimize
    import mahacompress.search.trials as search_trials

    data, preset = toy_data
    sessions = []

    def timed(models, *args):  # the shapes look fast; timed again, trained, beside the teacher, kd1 is slower
        sessions.append(list(models))
        slow = len(sessions) > 1
        return {name: {"fp32": 10.0, "onnx": 10.0 if name == "teacher" else 20.0 if slow else 1.0} for name in models}

    monkeypatch.setattr(optimize, "time_models", timed)
    monkeypatch.setattr(search_trials, "time_models", timed)  # the shapes' timing
    report = optimize.optimize(str(teacher_dir), DataConfig(str(data)), _config(preset, candidates=["kd1"]),
                               tmp_path / "out")
    w = report["winner"]
    assert [c["status"] for c in report["candidates"]] == ["passed"] and sessions[-1] == ["teacher", "kd1"]
    assert w["name"] == "teacher" and w["overtaken"] == {"name": "kd1", "ms": 20.0, "runtime": "onnx"}
    assert w["export"]["backend"] == "onnx" and "the teacher ships" in (tmp_path / "out" / "report.md").read_text()
