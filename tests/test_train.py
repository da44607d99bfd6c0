"""The one training loop: it learns, it resumes exactly, KD loss is right, the output loads anywhere."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from mahacompress.core.config import TrainConfig
from mahacompress.core.errors import MahaError
from mahacompress.models.load import tiny_bert, tiny_tokenizer
from mahacompress.train import precision, progress
from mahacompress.train.loop import TrainHooks, finetune, fit
from mahacompress.train.losses import kd_loss
from mahacompress.train.progress import LOG_EVERY_SECONDS, Heartbeat

CFG = TrainConfig(epochs=2, batch_size=16, lr=1e-3, max_length=32, freeze_embeddings=False, early_stopping_patience=0,
                  evals_per_epoch=2, checkpoint_every=3)


def _load(model_dir):
    return AutoModelForSequenceClassification.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)


def test_kd_loss_reduces_to_cross_entropy_and_kl():
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert torch.allclose(kd_loss(s, t, y, alpha=0.0, temperature=2.0), torch.nn.functional.cross_entropy(s, y))
    assert kd_loss(s, s, y, alpha=1.0, temperature=3.0).abs() < 1e-6  # student == teacher: no KL
    assert kd_loss(s, t, y, alpha=1.0, temperature=3.0) > 0


@pytest.mark.slow
def test_fit_learns_a_toy_task(toy_splits, tmp_path, capsys):
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    model = tiny_bert(3, vocab_size=len(tok))
    result = fit(model, tok, toy_splits, replace(CFG, epochs=10), tmp_path)
    assert result.best_dev_macro_f1 > 0.9  # chance is 0.33
    steps = [s for s, _ in result.dev_history]  # the curve: one point per evaluation, in order
    assert len(steps) >= 10 and steps == sorted(steps) and steps[-1] <= result.steps
    assert max(f1 for _, f1 in result.dev_history) == pytest.approx(result.best_dev_macro_f1, abs=1e-5)
    # progress a log file keeps (no terminal here, so no live bar): one line per evaluation
    lines = [
        line for line in capsys.readouterr().out.splitlines()
        if line.startswith("fine-tune: step ") and "dev macro-F1" in line
    ]
    assert [int(line.split()[2].split("/")[0].rstrip(",")) for line in lines] == steps


def test_heartbeat_says_step_rate_and_time_left():
    beat = Heartbeat("fine-tune", total=100, first_step=20, enabled=True)
    assert beat.line(21, 0.5, now=beat.started + 1) is None  # too soon after the start
    line = beat.line(40, 0.5, now=beat.started + LOG_EVERY_SECONDS)  # 20 steps in 30 s: 60 left at 0.67/s
    assert line == "fine-tune: step 40/100 (40%), 0.67 steps/s, loss 0.500, 1.5 min left"
    assert beat.line(41, 0.5, now=beat.started + LOG_EVERY_SECONDS + 1) is None  # the last line was just now
    assert Heartbeat("x", 10, 0, enabled=False).line(5, 0.1, now=1e9) is None  # a terminal has its live bar


@pytest.mark.slow
def test_a_log_file_gets_heartbeat_lines_between_evaluations(toy_splits, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.0)
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    fit(tiny_bert(3, vocab_size=len(tok)), tok, toy_splits, replace(CFG, epochs=1), tmp_path)
    beats = [line for line in capsys.readouterr().out.splitlines() if "steps/s" in line]
    assert beats and all("min left" in line and line.startswith("fine-tune: step ") for line in beats)


class _Crash(TrainHooks):
    """Simulates a kill after `at` steps (the checkpoint of step `at - at % 3` survives)."""

    def __init__(self, at: int):
        self.at = at

    def on_step(self, step: int, total_steps: int) -> None:
        if step == self.at:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(tiny_model_dir, shc_splits, tmp_path):
    torch.manual_seed(0)
    full, tok = _load(tiny_model_dir)
    first = fit(full, tok, shc_splits, CFG, tmp_path / "a")
    interrupted, _ = _load(tiny_model_dir)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, tok, shc_splits, CFG, tmp_path / "b", hooks=_Crash(at=20))
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 18
    resumed, _ = _load(tiny_model_dir)
    again = fit(resumed, tok, shc_splits, CFG, tmp_path / "b", resume=True)
    assert [s for s, _ in again.dev_history] == [s for s, _ in first.dev_history]  # the curve survives resume
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.mark.slow
def test_a_resumed_run_draws_the_same_sub_networks(toy_splits, tmp_path):
    """Interrupted and resumed, an elastic run ends with the weights of an uninterrupted one: the depths each step
    draws come from the random state its checkpoint holds."""
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    base = tiny_bert(3, vocab_size=len(tok), num_hidden_layers=4)
    cfg = replace(CFG, epochs=3, lr=5e-3, evals_per_epoch=1, elastic_depths=[1, 2, 3], checkpoint_every=5)
    full = copy.deepcopy(base)
    fit(full, tok, toy_splits, cfg, tmp_path / "a")
    interrupted = copy.deepcopy(base)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, tok, toy_splits, cfg, tmp_path / "b", hooks=_Crash(at=12))
    resumed = copy.deepcopy(base)
    fit(resumed, tok, toy_splits, cfg, tmp_path / "b", resume=True)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.mark.slow
def test_finetune_writes_a_standard_classifier_folder(tiny_model_dir, shc_splits, tmp_path):
    out = tmp_path / "ft"
    summary = finetune(str(tiny_model_dir), shc_splits, replace(CFG, epochs=1), out)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label[0] == shc_splits.labels[0] and model.config.label2id["Travel"] == 11
    assert json.loads((out / "training.json").read_text())["result"]["steps"] == summary["result"]["steps"]
    assert not (tmp_path / "ft.work").exists()


@pytest.mark.slow
def test_fp32_and_bf16_runs_share_one_process(toy_splits, tmp_path, monkeypatch):
    """The grid trains fp32 and bf16 rows in one process (Accelerate's own mixed precision cannot).

    The CPU is told it has native bf16, so the test runs on AVX2-only machines too (there the
    precision check refuses bf16; test_precision.py and test_hardware.py cover that refusal).
    """
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    for mode in ("no", "bf16", "no"):
        result = fit(tiny_bert(3, vocab_size=len(tok)), tok, toy_splits, replace(CFG, epochs=1, mixed_precision=mode),
                     tmp_path / mode)
        assert result.steps == 6


def test_fp16_training_on_cpu_is_refused(toy_splits, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine can train in fp16")
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    with pytest.raises(MahaError, match="fp16 training needs a CUDA GPU"):
        fit(tiny_bert(3, vocab_size=len(tok)), tok, toy_splits, replace(CFG, mixed_precision="fp16"), tmp_path)


class _NaNAt(TrainHooks):
    """Adds a NaN to the loss of step `at` (counted from 0)."""

    def __init__(self, at: int):
        self.at, self.step = at, -1

    def on_step(self, step: int, total_steps: int) -> None:
        self.step = step

    def extra_loss(self, model):
        return torch.tensor(float("nan")) if self.step == self.at else None


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(toy_splits, tmp_path):
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    with pytest.raises(MahaError, match=r"step 5: the training loss is not finite .*checkpoint.pt"):
        fit(tiny_bert(3, vocab_size=len(tok)), tok, toy_splits, CFG, tmp_path, hooks=_NaNAt(4))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 3 and all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.slow
def test_non_finite_loss_writes_no_model_folder(tiny_model_dir, shc_splits, tmp_path, monkeypatch):
    import mahacompress.train.loop as train

    calls, real = [], train.F.cross_entropy

    def nan_on_third_step(logits, y):
        calls.append(1)
        return real(logits, y) * (float("inf") if len(calls) == 3 else 1.0)

    monkeypatch.setattr(train.F, "cross_entropy", nan_on_third_step)
    with pytest.raises(MahaError, match="step 3: the training loss is not finite"):
        finetune(str(tiny_model_dir), shc_splits, replace(CFG, checkpoint_every=2), tmp_path / "ft")
    assert not (tmp_path / "ft").exists() and (tmp_path / "ft.work" / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_gradients_are_clipped(toy_splits, tmp_path, monkeypatch):
    import mahacompress.train.loop as train

    seen = []
    real = train.Accelerator.clip_grad_norm_

    def record(self, parameters, max_norm, *args, **kwargs):
        seen.append(max_norm)
        return real(self, parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(train.Accelerator, "clip_grad_norm_", record)
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    fit(tiny_bert(3, vocab_size=len(tok)), tok, toy_splits, replace(CFG, epochs=1, max_grad_norm=0.5), tmp_path)
    assert seen == [0.5] * 6
