"""Knowledge distillation: cached teacher logits, layer-subset students, compatibility checks."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from mahacompress.core.config import TrainConfig
from mahacompress.core.errors import MahaError
from mahacompress.models.load import load_classifier, load_tokenizer, save_classifier, tiny_bert, tiny_tokenizer
from mahacompress.train import distill as kd
from mahacompress.train.loop import TrainHooks, fit
from mahacompress.train.losses import hidden_state_loss, layer_map


class LastStepIsBest(TrainHooks):
    """Keeps the weights of the last step, so two runs are compared after equal training."""

    def may_select_best(self, step: int, total_steps: int) -> bool:
        return step >= total_steps


CFG = TrainConfig(epochs=10, batch_size=16, lr=1e-3, max_length=32, freeze_embeddings=False, early_stopping_patience=0,
                  evals_per_epoch=1, checkpoint_every=50)


def test_layer_student_keeps_first_and_last_layers(teacher_dir):
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    student = kd.layer_student(teacher, 2)
    assert student.config.num_hidden_layers == 2 and student.config.distilled_from_layers == [0, 3]
    last_t, last_s = teacher.bert.encoder.layer[3], student.bert.encoder.layer[1]
    assert torch.equal(last_t.output.dense.weight, last_s.output.dense.weight)
    x = torch.randint(5, 50, (2, 7))
    assert student(input_ids=x).logits.shape == (2, 3)
    with pytest.raises(MahaError, match="choose 1..4"):
        kd.layer_student(teacher, 5)


def test_an_ends_student_keeps_the_bottom_and_top_layers(teacher_dir):
    assert kd.bottom_and_top(6, 12) == [0, 1, 2, 9, 10, 11] and kd.bottom_and_top(3, 12) == [0, 1, 11]
    assert kd.bottom_and_top(1, 12) == [0] and kd.bottom_and_top(12, 12) == list(range(12))
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    student = kd.layer_student(teacher, 3, "ends")  # 4 teacher layers: even spacing would keep [0, 2, 3]
    assert student.config.distilled_from_layers == [0, 1, 3]
    assert torch.equal(teacher.bert.encoder.layer[1].output.dense.weight,
                       student.bert.encoder.layer[1].output.dense.weight)
    assert kd.describe("layers:3:ends") == {"kind": "layers", "layers": 3, "choice": "ends"}
    assert kd.describe("layers:3")["choice"] == "even"
    with pytest.raises(MahaError, match="expected pruned:S, layers:N"):
        kd.describe("layers:3:middle")


def test_teacher_logits_are_cached(teacher_dir, toy_splits, tmp_path, monkeypatch):
    first = kd.teacher_logits(str(teacher_dir), toy_splits.train.texts, max_length=32, cache_dir=tmp_path)
    monkeypatch.setattr(kd, "predict_logits", lambda *a, **k: pytest.fail("teacher ran again"))
    again = kd.teacher_logits(str(teacher_dir), toy_splits.train.texts, max_length=32, cache_dir=tmp_path)
    assert np.array_equal(first, again) and first.shape == (len(toy_splits.train), 3)
    assert len(list(tmp_path.glob("*.npy"))) == 1


def test_distilled_layer_student_learns_from_the_teacher(teacher_dir, toy_splits, tmp_path, monkeypatch):
    monkeypatch.setenv("MAHACOMPRESS_CACHE", str(tmp_path / "cache"))
    info = kd.distill(str(teacher_dir), "layers:2", toy_splits, replace(CFG, kd_alpha=0.7), tmp_path / "student")
    assert info["result"]["best_dev_macro_f1"] > 0.9
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    assert student.config.num_hidden_layers == 2


def test_the_kd_term_pulls_the_student_to_the_teachers_soft_targets(toy_splits, teacher_dir, tmp_path):
    """The control the test above lacks: its toy label is given away by a keyword, so a student learns it with
    alpha 0 as well. What only the KD term can teach is the teacher's soft targets; these rank the class after
    the label well above the third (which no hard label says, and which a confident real teacher's nearly
    one-hot targets would not show). Same start (a layer student of the confident toy teacher), seed and steps:
    with alpha 0.9 the student's softened outputs end far closer to them than with alpha 0."""
    tok = load_tokenizer(str(teacher_dir))

    def soft_logits(labels: list[int]) -> np.ndarray:  # the label 2, the class after it 1, the last 0
        rows = np.arange(len(labels))
        out = np.zeros((len(labels), 3), dtype=np.float32)
        out[rows, labels] = 2.0
        out[rows, (np.asarray(labels) + 1) % 3] = 1.0
        return out

    cfg = replace(CFG, kd_temperature=2.0)
    batch = tok(toy_splits.dev.texts, padding=True, return_tensors="pt")
    targets = torch.log_softmax(torch.from_numpy(soft_logits(toy_splits.dev.labels)) / cfg.kd_temperature, -1)

    def distance(student) -> float:
        """KL(soft targets || the student's softened outputs) on dev."""
        with torch.no_grad():
            logits = student.eval()(**batch).logits
        return float(
            torch.nn.functional.kl_div(torch.log_softmax(logits / cfg.kd_temperature, -1), targets, log_target=True,
                                       reduction="batchmean"))

    start = kd.layer_student(AutoModelForSequenceClassification.from_pretrained(teacher_dir), 2)
    plain, taught = copy.deepcopy(start), copy.deepcopy(start)
    teacher = soft_logits(toy_splits.train.labels)
    last = LastStepIsBest()
    fit(plain, tok, toy_splits, replace(cfg, kd_alpha=0.0), tmp_path / "a", teacher_logits=teacher, hooks=last)
    fit(taught, tok, toy_splits, replace(cfg, kd_alpha=0.9), tmp_path / "b", teacher_logits=teacher, hooks=last)
    assert distance(taught) < 0.2 * distance(plain)  # measured: 0.001 against 0.077


def test_teacher_and_student_must_match(teacher_dir, toy_splits, tmp_path):
    other_tok = tiny_tokenizer(["पूर्णपणे वेगळा मजकूर इथे आहे"] * 5, vocab_size=60)
    labels = toy_splits.labels
    student = tiny_bert(3, vocab_size=len(other_tok), id2label=dict(enumerate(labels)),
                        label2id={lab: i
                                  for i, lab in enumerate(labels)})
    save_classifier(student, other_tok, tmp_path / "s1", {})
    with pytest.raises(MahaError, match="tokenizer differs"):
        kd.check_compatible(str(teacher_dir), str(tmp_path / "s1"), toy_splits)
    wrong = tiny_bert(2, vocab_size=len(other_tok))
    save_classifier(wrong, other_tok, tmp_path / "s2", {})
    with pytest.raises(MahaError, match="labels"):
        kd.check_compatible(str(teacher_dir), str(tmp_path / "s2"), toy_splits)
    with pytest.raises(MahaError, match="expected pruned:S, layers:N"):
        kd.describe("layers:x")


def test_hidden_state_loss_compares_real_tokens_only():
    a = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    noisy = a.clone()
    noisy[0, 3:] = torch.randn(2, 8)  # padding positions differ: no loss
    states = (a, a)
    assert hidden_state_loss((a, noisy), states, mask, [1]) < 1e-6
    assert hidden_state_loss((a, 3 * a), states, mask, [1]) < 1e-6  # cosine: blind to scale
    assert hidden_state_loss((a, -a), states, mask, [1]) == pytest.approx(2.0)


def test_layer_map_follows_the_layers_a_student_was_made_from(teacher_dir):
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    assert layer_map(kd.layer_student(teacher, 2).config, teacher.config) == [1, 4]
    assert layer_map(teacher.config, teacher.config) == [1, 2, 3, 4]  # same depth (a model being pruned)
    shallow = tiny_bert(3, num_hidden_layers=3)
    assert layer_map(shallow.config, teacher.config) == [1, 3, 4]


def test_hidden_state_distillation_pulls_student_states_to_the_teacher(teacher_dir, toy_splits, tmp_path):
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    tok = load_tokenizer(str(teacher_dir))
    batch = tok(toy_splits.dev.texts, padding=True, return_tensors="pt")

    def distance(student) -> float:
        with torch.no_grad():
            s = student.eval()(**batch, output_hidden_states=True).hidden_states
            t = teacher(**batch, output_hidden_states=True).hidden_states
        return float(hidden_state_loss(s, t, batch["attention_mask"], layer_map(student.config, teacher.config)))

    # Students start from random weights (the same for both), so their states owe nothing to the teacher's
    # unless the hidden-state term puts it there; a copied-layer student starts too close to tell.
    torch.manual_seed(0)
    start = tiny_bert(3, vocab_size=teacher.config.vocab_size, num_hidden_layers=2, id2label=teacher.config.id2label,
                      label2id=teacher.config.label2id)
    plain, taught = copy.deepcopy(start), copy.deepcopy(start)
    cfg = replace(CFG, epochs=10, kd_hidden_weight=5.0)
    last = LastStepIsBest()  # both compared after the same steps, not at whichever epoch dev F1 first hit 1.0
    fit(plain, tok, toy_splits, replace(cfg, kd_hidden_weight=0.0), tmp_path / "a", hooks=last)
    fit(taught, tok, toy_splits, cfg, tmp_path / "b", teacher_model=load_classifier(str(teacher_dir)), hooks=last)
    assert distance(taught) < 0.5 * distance(plain)
    with pytest.raises(MahaError, match="needs a teacher model"):
        fit(kd.layer_student(teacher, 2), tok, toy_splits, cfg, tmp_path / "c")
    with pytest.raises(MahaError, match="not only its logits"):
        kd.teacher_for_fit(np.zeros((len(toy_splits.train), 3)), toy_splits, cfg)


def test_a_pruned_folder_is_a_student_with_hidden_state_distillation(teacher_dir, toy_splits, tmp_path):
    """Compacted models are the stock class: they return hidden states, so `--hidden-weight` works on them."""
    from mahacompress.train.pruning.compact import compact, save_pruned
    from mahacompress.train.pruning.structure import structure_of

    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    with torch.no_grad():
        teacher.bert.encoder.layer[1].attention.self.value.weight[:16] = 0  # one head less
        teacher.bert.encoder.layer[2].intermediate.dense.weight[:] = 0  # no FFN neurons left
    student_dir = tmp_path / "pruned"
    save_pruned(compact(teacher, structure_of(teacher)), student_dir, load_tokenizer(str(teacher_dir)))
    info = kd.distill(str(teacher_dir), str(student_dir), toy_splits, replace(CFG, epochs=1, kd_hidden_weight=1.0),
                      tmp_path / "out")
    assert info["result"]["steps"] == 6
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out", trust_remote_code=True)
    assert loaded.config.heads_per_layer == [4, 3, 4, 4] and loaded.config.intermediate_sizes[2] == 0
