"""Intermediate-layer distillation: MiniLMv2 attention relations, the hidden-state projection, explicit layer maps,
and the one-line refusals (a map that does not fit, relation heads that do not divide, a student without layers)."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from bad_inputs import COLS, make_template
from clirun import one_line_error, run
from transformers import AutoModelForSequenceClassification

from mahacompress.core.config import PruneConfig, TrainConfig
from mahacompress.core.errors import MahaError
from mahacompress.models.load import load_classifier, load_tokenizer, tiny_bert
from mahacompress.train import distill as kd
from mahacompress.train.intermediate import ProjectionCapture, check_intermediate, intermediate_terms
from mahacompress.train.loop import TrainHooks, fit
from mahacompress.train.losses import attention_relation_loss, layer_map, relation_head_count

CFG = TrainConfig(epochs=1, batch_size=16, lr=1e-3, max_length=32, freeze_embeddings=False, early_stopping_patience=0,
                  evals_per_epoch=1, checkpoint_every=50, relation_heads=4)
MASK = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])


class LastStepIsBest(TrainHooks):
    """Keeps the last step's weights, so the relation distance is measured after all of training."""

    def may_select_best(self, step: int, total_steps: int) -> bool:
        return step >= total_steps


def _qkv(width: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, 5, width, generator=g) for _ in range(3))


def test_relations_of_identical_projections_match_and_of_different_ones_do_not():
    t = _qkv(64, 0)
    assert attention_relation_loss([t, t], [t, t], MASK, 4) == 0
    assert attention_relation_loss([_qkv(64, 1)], [t], MASK, 4) > 0.01


def test_only_real_tokens_count():
    s, t = _qkv(64, 1), _qkv(64, 0)
    padded = tuple(x.clone() for x in t)
    for x in padded:
        x[0, 3:] = 100.0  # the first text's padding positions: neither keys nor queries
    assert torch.allclose(attention_relation_loss([s], [padded], MASK, 4), attention_relation_loss([s], [t], MASK, 4))


def test_relations_compare_models_of_other_widths_and_head_counts():
    """Each side splits its own width, so a pruned or narrower student still has [seq, seq] relations."""
    teacher, narrow = _qkv(64, 0), _qkv(48, 1)
    loss = attention_relation_loss([narrow], [teacher], MASK, 4)
    assert torch.isfinite(loss) and loss > 0
    # 48 is not a multiple of 32: the pair falls back to the largest count dividing both widths (16)
    assert relation_head_count(48, 64, 32) == 16 and relation_head_count(768, 768, 12) == 12
    assert relation_head_count(448, 768, 12) == 8  # a BERT-base layer left with 7 of its 12 heads
    assert torch.isfinite(attention_relation_loss([narrow], [teacher], MASK, 32))
    # a layer with every head pruned has no relations: left out, and with nothing left the term is 0
    assert attention_relation_loss([None, narrow], [teacher, teacher], MASK, 4) == loss
    assert attention_relation_loss([None], [teacher], MASK, 4) == 0


def test_the_relation_term_has_gradients_for_the_student():
    s = tuple(x.requires_grad_() for x in _qkv(32, 1))
    attention_relation_loss([s], [_qkv(64, 0)], MASK, 4).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)


def test_an_explicit_layer_map_is_followed_and_checked():
    student, teacher = tiny_bert(3, num_hidden_layers=2).config, tiny_bert(3, num_hidden_layers=4).config
    assert layer_map(student, teacher, [0, 2]) == [1, 3]
    with pytest.raises(MahaError, match=r"layer 20 is outside the teacher's 4 layers \(0\.\.3\)"):
        layer_map(student, teacher, [0, 20])
    with pytest.raises(MahaError, match="3 teacher layers for a student of 2"):
        layer_map(student, teacher, [0, 1, 2])
    with pytest.raises(MahaError, match="give --hidden-weight / --attention-weight above 0"):
        check_intermediate(student, teacher, replace(CFG, kd_layer_map=[0, 2]))
    with pytest.raises(MahaError, match="--relation-heads 12 does not divide the teacher's width 64"):
        check_intermediate(student, teacher, replace(CFG, kd_attention_weight=1.0, relation_heads=12))


def test_hooks_capture_the_projections_only_while_recording():
    torch.manual_seed(0)
    model = tiny_bert(3, num_hidden_layers=2).eval()
    ids = torch.tensor([[2, 7, 9, 3]])
    capture = ProjectionCapture(model, [1])
    model(input_ids=ids)
    assert capture.outputs == {}  # dev evaluation keeps nothing
    with capture.recording():
        model(input_ids=ids)
    (q, k, v), = capture.taken()
    assert q.shape == k.shape == v.shape == (1, 4, 64)
    hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[1]
    assert torch.allclose(q, model.bert.encoder.layer[1].attention.self.query(hidden), atol=1e-6)
    capture.remove()
    assert not model.bert.encoder.layer[1].attention.self.query._forward_hooks


def test_a_narrower_student_learns_the_teachers_relations(teacher_dir, toy_splits, tmp_path):
    """A 32-wide student of a 64-wide teacher: relations across widths, hidden states through a projection that
    trains with the student and is not saved with it."""
    teacher = load_classifier(str(teacher_dir)).eval()
    tok = load_tokenizer(str(teacher_dir))
    batch = tok(toy_splits.dev.texts, padding=True, return_tensors="pt")
    cfg = replace(CFG, epochs=4, kd_hidden_weight=1.0, kd_attention_weight=50.0)

    def distance(student) -> float:
        s_cap, t_cap = ProjectionCapture(student, [0, 1]), ProjectionCapture(teacher, [0, 3])
        with torch.no_grad(), s_cap.recording(), t_cap.recording():
            student.eval()(**batch)
            teacher(**batch)
        out = attention_relation_loss(s_cap.taken(), t_cap.taken(), batch["attention_mask"], 4)
        s_cap.remove()
        t_cap.remove()
        return float(out)

    torch.manual_seed(0)
    start = tiny_bert(3, vocab_size=teacher.config.vocab_size, hidden_size=32, num_attention_heads=2,
                      intermediate_size=64, id2label=teacher.config.id2label, label2id=teacher.config.label2id)
    student = copy.deepcopy(start)
    result = fit(student, tok, toy_splits, cfg, tmp_path / "work", teacher_model=load_classifier(str(teacher_dir)),
                 hooks=LastStepIsBest())
    assert result.steps == 24
    assert distance(student) < 0.7 * distance(start)
    assert student.state_dict().keys() == start.state_dict().keys()  # no projection in the model
    attention = [layer.attention.self for layer in student.bert.encoder.layer]
    assert not any(getattr(a, n)._forward_hooks for a in attention for n in ("query", "key", "value"))  # gone


def test_a_pruned_student_learns_relations_while_masked_and_once_compacted(teacher_dir, toy_splits, tmp_path):
    """While pruning the hooks see the masking Linears' output; a compacted folder has fewer heads in a layer."""
    from mahacompress.train.pruning.prune import prune

    cfg = replace(CFG, kd_attention_weight=1.0, kd_hidden_weight=1.0)
    summary = prune(str(teacher_dir), toy_splits, cfg, PruneConfig(sparsity=0.5, block_size=16), tmp_path / "pruned",
                    distill_from=str(teacher_dir))
    assert abs(summary["reached_sparsity"] - 0.5) <= 0.02
    assert summary["result"]["steps"] == 6
    info = kd.distill(str(teacher_dir), str(tmp_path / "pruned"), toy_splits, cfg, tmp_path / "out")
    assert info["result"]["steps"] == 6
    heads = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out", trust_remote_code=True).config
    assert sum(heads.heads_per_layer) < 16  # some heads went: the relation widths differed from the teacher's


def test_a_student_without_layers_is_refused_in_one_line(teacher_dir, toy_splits, tmp_path):
    from mahacompress.models.modeling_static import StaticConfig, StaticForSequenceClassification
    from mahacompress.train.static import distill_static

    with pytest.raises(MahaError, match="^the static student has no layers: --hidden-weight / --attention-weight"):
        distill_static(str(teacher_dir), toy_splits, replace(CFG, kd_attention_weight=1.0), tmp_path / "out")
    assert not (tmp_path / "out.work").exists()
    static = StaticForSequenceClassification(StaticConfig(vocab_size=10, hidden_size=8, num_labels=3))
    with pytest.raises(MahaError, match="^the static student has no layers"):
        intermediate_terms(static, load_classifier(str(teacher_dir)), replace(CFG, kd_hidden_weight=1.0))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_template(tmp_path_factory.mktemp("intermediate"))


@pytest.mark.parametrize("extra, message", [
    (("--attention-weight", "1", "--relation-heads", "4", "--layer-map", "5"), "layer 5 is outside the teacher's 2"),
    (("--hidden-weight", "1", "--layer-map", "0,1"), "2 teacher layers for a student of 1"),
    (("--layer-map", "1"), "give --hidden-weight / --attention-weight above 0"),
    (("--attention-weight", "1"), "--relation-heads 12 does not divide the teacher's width 64"),
])
def test_the_cli_refuses_a_layer_map_or_relation_heads_that_do_not_fit(workspace, tmp_path, extra, message):
    out = tmp_path / "out"
    result = run("distill", "--teacher", str(workspace / "model"), "--student", "layers:1", "--out", str(out),
                 "--dataset", str(workspace / "data"), *COLS, "--epochs", "1", *extra)
    assert message in one_line_error(result)
    assert not out.exists() and not out.with_name("out.work").exists()


def test_the_cli_refuses_intermediate_terms_for_a_static_student(workspace, tmp_path):
    result = run("distill", "--teacher", str(workspace / "model"), "--student", "static:32", "--out",
                 str(tmp_path / "o"), "--dataset", str(workspace / "data"), *COLS, "--hidden-weight", "1")
    assert "static student has no layers" in one_line_error(result)
