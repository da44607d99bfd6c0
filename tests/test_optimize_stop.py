"""`optimize` stopped before its end (search/budget.py): the time budget bounds the whole run and skips a trial it
cannot cover; SIGINT, SIGTERM (and a SIGINT inherited as ignored) stop a real process cleanly in a trial, with its
report so far, one resume line and the exit status a shell expects; the same command then resumes and finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from clirun import one_line_error, run

from mahacompress.core.config import DataConfig, OptimizeConfig
from mahacompress.search.budget import BUDGET_EXIT, Schedule, Stopped, TrialTime, Watch, trial_estimate
from mahacompress.search.report import pareto_front, stop_line

SRC = str(Path(__file__).resolve().parents[1] / "src")
PRESET = """
finetune: {epochs: 2, batch_size: 16, lr: 1.0e-3, max_length: 32, freeze_embeddings: false, early_stopping_patience: 0}
distill: {epochs: EPOCHS, batch_size: 16, lr: 1.0e-3, max_length: 32, freeze_embeddings: false,
          early_stopping_patience: 0, checkpoint_every: 5}
student_layers: 2
measure: {repeats: 1, warmup: 0, texts: 8, threads: 1}
"""


@pytest.fixture(scope="module")
def toy_data(toy_splits, tmp_path_factory):
    """The toy task as a folder of CSVs; a preset that trains in seconds, and one whose trials last long enough to
    be signalled in (its checkpoints every 5 steps, so a stopped trial resumes)."""
    root = tmp_path_factory.mktemp("stop")
    data = root / "data"
    data.mkdir()
    for name, ts in (("toy_train.csv", toy_splits.train), ("toy_test.csv", toy_splits.test)):
        lines = ["text,label"] + [f"{t},{toy_splits.labels[y]}" for t, y in zip(ts.texts, ts.labels)]
        (data / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "quick.yaml").write_text(PRESET.replace("EPOCHS", "2"))
    (root / "long.yaml").write_text(PRESET.replace("EPOCHS", "40"))
    return data, root / "quick.yaml", root / "long.yaml"


# ---------------------------------------------------------------- the parts, without training


def test_a_trial_is_estimated_from_the_finished_trials_of_its_family_scaled_up_by_its_size():
    family = {"kd1": "kd", "kd2": "kd", "kd3": "kd", "static": "static"}
    ms = {"kd1": 1.0, "kd2": 2.0, "kd3": 4.0, "static": 0.5}
    t = TrialTime
    assert trial_estimate("kd1", family, ms, {}) is None  # nothing finished: the first trial starts
    assert trial_estimate("kd1", family, ms, {"kd2": t(60.0)}) == 60.0  # never scaled down
    assert trial_estimate("kd3", family, ms, {"kd2": t(60.0)}) == 120.0  # twice the latency, twice the training
    assert trial_estimate("kd1", family, ms, {"kd2": t(60.0), "static": t(600.0)}) == 60.0  # its own family first
    assert trial_estimate("kd1", family, ms, {"static": t(30.0)}) == 60.0  # else any: static at kd1's size
    # a kdlN (one epoch) after its kd row (four), the kd trial's training time unknown: scaled down by the epochs
    family |= {"kdl2": "kdcut", "kd": "kd"}
    ms |= {"kdl2": 2.0, "kd": 6.0}
    schedules = {
        "kdl2": Schedule("distill", 1.0, True), "kd": Schedule("distill", 4.0, True),
        "p50": Schedule("prune_train", 3.0, False), "static": Schedule("static", 20.0, True)
    }
    assert trial_estimate("kdl2", family, ms, {"kd": t(600.0)}, schedules) == 150.0
    assert trial_estimate("kd", family, ms, {"kdl2": t(150.0)}, schedules) == 450.0  # never up by epochs
    # a pruning trial after a distillation one: its steps are not its shape's, so not scaled down by its epochs
    family["p50"], ms["p50"] = "prune", 8.0
    assert trial_estimate("p50", family, ms, {"kd": t(600.0, 500.0)}, schedules) == 800.0


def test_a_cheaper_schedule_scales_another_familys_training_down_by_compute_and_epochs():
    family = {"kd": "kd", "static": "static", "p50": "prune"}
    ms = {"kd": 200.0, "static": 2.0, "p50": 400.0}
    schedules = {
        "kd": Schedule("distill", 4.0, True), "static": Schedule("static", 20.0, True),
        "p50": Schedule("prune_train", 4.0, False)
    }
    # a 6-layer kd trial of 1200 s, 1000 of them training: a static table's steps cost 1% of the student's, for
    # five times the epochs (50 s), and the trial's 200 s past training come on top
    assert trial_estimate("static", family, ms, {"kd": TrialTime(1200.0, 1000.0)}, schedules) == pytest.approx(250.0)
    # the rest as recorded, where a resumed trial's seconds (this process's) are fewer than its training (every one's)
    assert trial_estimate("static", family, ms, {"kd": TrialTime(300.0, 1000.0, 150.0)},
                          schedules) == pytest.approx(200.0)
    # a costlier schedule is never extrapolated from a cheap one's seconds: scaled up by latency alone
    assert trial_estimate("kd", family, ms, {"static": TrialTime(250.0, 50.0)}, schedules) == 25000.0
    # nor scaled down from a trial whose training time is unknown, or from a pruning trial (dense width)
    assert trial_estimate("static", family, ms, {"kd": TrialTime(1200.0)}, schedules) == 1200.0
    assert trial_estimate("static", family, ms, {"p50": TrialTime(900.0, 800.0)}, schedules) == 900.0
    # the longest estimate over the finished trials
    assert trial_estimate("static", family, ms, {"kd": TrialTime(1200.0, 1000.0), "p50": TrialTime(900.0, 800.0)},
                          schedules) == 900.0


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_watched_run_even_when_sigint_was_inherited_as_ignored(signum, code):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell's `cmd &` leaves it
    try:
        with pytest.raises(Stopped) as stop, Watch(None, time.monotonic):
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # the handler runs between two bytecodes of the main thread
                time.sleep(0.01)
        assert (stop.value.reason, stop.value.code) == ("interrupted", code)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the caller's handlers come back
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_deadline_stops_the_run_in_whatever_phase_it_is_and_a_spent_budget_at_a_phase_start():
    with pytest.raises(Stopped) as stop, Watch(0.05, time.monotonic) as watch:
        for _ in range(1000):  # SIGALRM at the deadline: no check needed inside a phase
            time.sleep(0.01)
    assert (stop.value.reason, stop.value.code) == ("budget", BUDGET_EXIT) and watch.phase == "teacher"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    now = [0.0]
    with pytest.raises(Stopped), Watch(10.0, lambda: now[0]) as watch:
        signal.setitimer(signal.ITIMER_REAL, 0)  # this clock is made up: only the phase check may stop it
        watch.enter("shapes")
        now[0] = 11.0
        watch.enter("trials")
    assert watch.phase == "trials" and watch.phases == {"teacher": 0.0, "shapes": 11.0}


def test_the_pareto_front_keeps_what_no_other_model_beats_on_speed_and_accuracy():
    dev = lambda d: {"difference_points": d}  # noqa: E731
    report = {
        "teacher": {
            "ms": {"fp32": 10.0, "onnx": 8.0, "onnx-int8": 4.0},
            "runtimes": {"fp32": dev(0.0), "onnx": dev(0.0), "onnx-int8": dev(-0.5)}
        },
        "candidates": [
            {
                "name": "kd2", "ms": {"onnx": 2.0, "onnx-int8": 1.0},
                "runtimes": {"onnx": dev(-1.0), "onnx-int8": dev(-3.0)}
            },
            {"name": "kd4", "ms": {"onnx": 5.0}, "runtimes": {"onnx": dev(-2.0)}},  # slower and worse than kd2
            {"name": "kd1", "status": "not reached"},
        ]
    }
    front = [(p["name"], p["runtime"]) for p in pareto_front(report)]
    assert front == [("kd2", "onnx-int8"), ("kd2", "onnx"), ("teacher", "onnx-int8"), ("teacher", "onnx")]


@pytest.mark.parametrize("value, message", [("0s", "--time-budget 0 s: expected more than zero"),
                                            ("0m0s", "--time-budget 0 s: expected more than zero"),
                                            ("-5m", "--time-budget -5m: expected a duration"),
                                            ("", "--time-budget : expected a duration"),
                                            ("5 minutes", "--time-budget 5 minutes: expected a duration")])
def test_a_time_budget_that_allows_no_work_is_refused_in_one_line(value, message, tmp_path):
    result = run("optimize", "--teacher", str(tmp_path / "no-such-teacher"), "--out", str(tmp_path / "out"),
                 "--time-budget", value)
    assert message in one_line_error(result) and not (tmp_path / "out").exists()


def test_a_time_budget_too_small_for_the_teachers_fine_tune_is_refused_before_any_training(
        toy_splits, toy_data, tmp_path, monkeypatch):
    """A bare model (no head for these labels) is fine-tuned first: a budget its fine-tune alone cannot fit is refused
    in one line that says how long it needs (here a made-up 120 min), with nothing trained and the folder unclaimed,
    and the fine-tune's own settings are what is measured."""
    from conftest import save_tiny_classifier

    import mahacompress.search.optimize as optimize

    bare = save_tiny_classifier(tmp_path / "bare", toy_splits.train.texts, ["LABEL_0", "LABEL_1", "LABEL_2"], 200)
    asked = []
    monkeypatch.setattr(optimize, "finetune_seconds",
                        lambda model, splits, cfg, **kw: asked.append(cfg) or (7200.0, 900, 8.0))
    data, preset, _ = toy_data
    out = tmp_path / "out"
    result = run("optimize", "--teacher", str(bare), "--dataset", str(data), "--preset", str(preset), "--out", str(out),
                 "--candidates", "kd1", "--runtimes", "onnx", "--time-budget", "60m")
    assert ("--time-budget 60.0 min: too small for the teacher's fine-tune alone, which needs about 120.0 min here or "
            "more (900 steps of 8.00 s") in one_line_error(result)
    assert not (out / "models").exists() and not (out / "search.json").exists()
    assert [(c.epochs, c.batch_size) for c in asked] == [(2.0, 16)]  # the preset's finetune section


def test_the_fine_tune_check_measures_only_with_a_budget_and_before_a_fine_tune_has_begun(
        toy_splits, tmp_path, monkeypatch):
    from conftest import save_tiny_classifier

    import mahacompress.search.optimize as optimize
    from mahacompress.core.config import TrainConfig
    from mahacompress.core.errors import MahaError
    from mahacompress.train.loop import finetune_seconds, schedule

    bare = save_tiny_classifier(tmp_path / "bare", toy_splits.train.texts, ["LABEL_0", "LABEL_1", "LABEL_2"], 200)
    cfg = TrainConfig(epochs=5, batch_size=16, max_length=32, early_stopping_patience=1, evals_per_epoch=2,
                      freeze_embeddings=False)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    need, steps, per_step = finetune_seconds(str(bare), toy_splits, cfg)
    assert torch.equal(torch.rand(3), expected)  # the probe leaves the random state as it found it
    _, total, eval_every = schedule(len(toy_splits.train), cfg)
    assert steps == 2 * eval_every < total and 0 < per_step < 1 and need == pytest.approx(steps * per_step)

    monkeypatch.setattr(optimize, "finetune_seconds", lambda *a, **k: (120.0, 10, 12.0))
    folder = tmp_path / "models" / "baseline"

    def check(budget):
        optimize.check_finetune_fits(str(bare), toy_splits, cfg, folder, Watch(budget, time.monotonic), False)

    check(600.0)  # fits
    with pytest.raises(MahaError, match=r"^--time-budget 1.0 min: too small for the teacher's fine-tune alone"):
        check(60.0)
    monkeypatch.setattr(optimize, "finetune_seconds", lambda *a, **k: pytest.fail("measured"))
    check(None)  # no budget: nothing measured
    (tmp_path / "models" / "baseline.work").mkdir(parents=True)
    check(60.0)  # a fine-tune already begun resumes whatever the budget


# ---------------------------------------------------------------- whole runs on a tiny teacher


def _config(preset, **changes) -> OptimizeConfig:
    return OptimizeConfig(
        **{"budget": 100.0, "candidates": ["kd1", "kd2"], "runtimes": ["onnx"], "preset": str(preset), **changes})


def test_a_budget_spent_after_the_first_trial_leaves_a_report_and_the_next_run_skips_what_it_cannot_cover(
        teacher_dir, toy_data, tmp_path, monkeypatch):
    """The clock is made up (the deadline's SIGALRM an hour away): it jumps past the budget once the first trial
    has finished, and the run stops at the winner phase's start with its report; a second run, its budget short of
    what the remaining trial is estimated at, skips it and ships the reused trial."""
    import mahacompress.search.optimize as optimize
    import mahacompress.search.trials as search_trials

    data, preset, _ = toy_data
    ms = {"teacher": 10.0, "kd1": 1.0, "kd2": 2.0}  # kd2 is the middle one: trained first, then kd1 could win
    for module in (optimize, search_trials):
        monkeypatch.setattr(module, "time_models",
                            lambda models, *a: {name: {"fp32": ms[name], "onnx": ms[name]}
                                                for name in models})
    now = [0.0]  # the run's clock: it moves only when the test moves it
    real_train = optimize.train_trial

    def train_then_spend(*args, **kwargs):
        trial = real_train(*args, **kwargs)
        now[0] = 3600.0
        return trial

    monkeypatch.setattr(optimize, "train_trial", train_then_spend)
    out = tmp_path / "out"
    with pytest.raises(Stopped) as stop:
        optimize.optimize(str(teacher_dir), DataConfig(str(data)), _config(preset, time_budget_s=3600.0), out,
                          clock=lambda: now[0])
    assert (stop.value.reason, stop.value.phase, stop.value.code) == ("budget", "winner", BUDGET_EXIT)
    saved = json.loads((out / "optimize.json").read_text())
    assert saved["meta"]["stop"] == "budget" and saved["meta"]["stopped_in"] == "winner" and saved["winner"] is None
    assert set(saved["meta"]["phases"]) == {"teacher", "shapes", "trials", "winner"}
    status = {c["name"]: c["status"] for c in saved["candidates"]}
    assert status == {"kd2": "passed", "kd1": "out of time"} and saved["not_tried"] == ["kd1"]
    assert {p["name"] for p in saved["pareto"]} <= {"teacher", "kd2"} and saved["pareto"]
    text = (out / "report.md").read_text()
    assert "## Stopped before its end" in text and "Pareto front" in text
    line = stop_line(saved, out)
    assert "the time budget ran out in the winner phase" in line and "run the same command again" in line

    # the same search again, with less time left than kd1's trial is estimated at (kd2's recorded seconds)
    monkeypatch.setattr(optimize, "train_trial", lambda *a, **k: pytest.fail("a trial started that cannot finish"))
    real_search = optimize.search

    def search_with_little_time(*args, **kwargs):
        now[0] = 3600.0 - json.loads((out / "trials" / "kd2.json").read_text())["seconds"] / 2
        return real_search(*args, **kwargs)

    now[0] = 0.0
    monkeypatch.setattr(optimize, "search", search_with_little_time)
    report = optimize.optimize(str(teacher_dir), DataConfig(str(data)), _config(preset, time_budget_s=3600.0), out,
                               clock=lambda: now[0])
    status = {c["name"]: c for c in report["candidates"]}
    assert report["winner"]["name"] in ("kd2", "teacher") and report["meta"]["stop"] == "budget"
    assert status["kd1"]["status"] == "skipped for budget" and "estimated at" in status["kd1"]["why"]
    assert report["meta"]["stopped_in"] is None and "skipped for budget" in (out / "report.md").read_text()


# The command line in a child whose timings are made up (public names patched there, as the in-process tests
# do): kd1 is then clearly faster than the teacher, so it is trained, and the shapes cost no timing session
_CHILD = """
import sys
import mahacompress.search.optimize as o, mahacompress.search.trials as t
ms = {"teacher": 10.0, "kd1": 1.0}
o.time_models = t.time_models = lambda models, *a, **k: {n: {"fp32": ms[n], "onnx": ms[n]} for n in models}
from mahacompress.cli.app import main
sys.argv[0] = "mahacompress"
main()
"""


def _start(teacher_dir, data, preset, out, **popen) -> subprocess.Popen:
    cmd = [
        sys.executable, "-c", _CHILD, "optimize", "--teacher",
        str(teacher_dir), "--dataset",
        str(data), "--preset",
        str(preset), "--out",
        str(out), "--candidates", "kd1", "--runtimes", "onnx", "--budget", "100"
    ]
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, **popen)


def _signal_in_a_trial(proc: subprocess.Popen, signum: int) -> list[str]:
    """Send `signum` once the process says it trains a candidate; its stderr lines, to its end."""
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("training kd1"):
            proc.send_signal(signum)
            break
    lines += proc.stderr.readlines()
    proc.wait(timeout=120)
    return lines


def test_sigint_and_sigterm_in_a_trial_stop_cleanly_and_the_same_command_resumes(teacher_dir, toy_data, tmp_path):
    data, _, preset = toy_data
    out = tmp_path / "out"
    for signum, code, popen in ((signal.SIGINT, 130, {
            "preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
    }), (signal.SIGTERM, 143, {})):
        # first SIGINT inherited as ignored (started from a script with `&`), then SIGTERM in the resumed trial
        proc = _start(teacher_dir, data, preset, out, **popen)
        lines = _signal_in_a_trial(proc, signum)
        name = signal.Signals(signum).name
        assert proc.returncode == code, "".join(lines)
        assert not any("Traceback" in line for line in lines), "".join(lines)
        assert lines[-1].startswith(f"stopped: interrupted by {name} in the trials phase"), "".join(lines)
        assert sum("run the same command again" in line for line in lines) == 1
        saved = json.loads((out / "optimize.json").read_text())
        assert saved["meta"]["stop"] == "interrupted" and saved["meta"]["stopped_by"] == name
        assert [c["status"] for c in saved["candidates"]] == ["stopped in training"]
    proc = _start(teacher_dir, data, preset, out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "winner kd1 in onnx" in err and "Traceback" not in err, err
    report = json.loads((out / "optimize.json").read_text())
    assert report["meta"]["stop"] == "finished" and report["winner"] and report["candidates"][0]["trained"]


def test_a_guard_disables_an_alternate_signal_stack_registered_after_the_watch_began():
    """A native library may register an alternate signal stack mid-run (OpenVINO, NNCF): each phase and trial
    disables it again, so the next signal's handler runs on the thread's own stack."""
    import ctypes

    from mahacompress.search.budget import _SS_DISABLE, _StackT

    libc = ctypes.CDLL(None, use_errno=True)
    memory = ctypes.create_string_buffer(1 << 16)
    with Watch(None, time.monotonic) as watch:
        libc.sigaltstack(ctypes.byref(_StackT(ctypes.addressof(memory), 0, len(memory))), None)
        now = _StackT()
        libc.sigaltstack(None, ctypes.byref(now))
        assert not now.ss_flags & _SS_DISABLE  # registered, as a library would leave it
        watch.enter("shapes")
        libc.sigaltstack(None, ctypes.byref(now))
        assert now.ss_flags & _SS_DISABLE
