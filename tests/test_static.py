"""The static-embedding student: built from the teacher, trained by KD, served by numpy with the same logits."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mahacompress.config import TrainConfig
from mahacompress.errors import MahaError
from mahacompress.evaluate import predict_ids
from mahacompress.models import load_classifier, load_tokenizer
from mahacompress.precision import load_backend
from mahacompress.static import build_table, distill_static, is_static

CFG = TrainConfig(epochs=15, batch_size=16, lr=5e-2, max_length=32, freeze_embeddings=False,
                  early_stopping_patience=0, checkpoint_every=50)


@pytest.fixture(scope="module")
def static_dir(teacher_dir, toy_splits, tmp_path_factory):
    out = tmp_path_factory.mktemp("static") / "student"
    distill_static(str(teacher_dir), toy_splits, CFG, out, dim=16)
    return out


def test_table_keeps_only_corpus_pieces_and_zeroes_specials(teacher_dir, toy_splits):
    model, tokenizer, record = build_table(str(teacher_dir), toy_splits.train.texts, dim=8)
    assert record["pieces_kept"] == len(tokenizer) < record["pieces_before"]
    assert model.embeddings.weight.shape == (len(tokenizer), 8)
    specials = model.config.special_ids
    assert specials and torch.all(model.embeddings.weight[specials] == 0)
    assert torch.count_nonzero(model.embeddings.weight) > 0


def test_numpy_backend_gives_the_model_logits(static_dir, toy_splits):
    texts = toy_splits.test.texts[:12] + ["", "एक नवीन शब्द जो कुठेही नाही"]
    torch_logits = load_backend(str(static_dir), "fp32", max_length=32).logits(texts)
    numpy_logits = load_backend(str(static_dir), "static", max_length=32).logits(texts)
    np.testing.assert_allclose(numpy_logits, torch_logits, rtol=1e-4, atol=1e-5)


def test_student_learns_the_teacher_task_and_loads_without_mahacompress(static_dir, toy_splits):
    assert is_static(static_dir)
    pred = predict_ids(str(static_dir), toy_splits, "test", backend="static", max_length=32)
    assert np.mean(pred == np.asarray(toy_splits.test.labels)) >= 0.9  # chance is 1/3
    code = ("import sys; sys.modules['mahacompress'] = None\n"
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
            f"m = AutoModelForSequenceClassification.from_pretrained({str(static_dir)!r}, trust_remote_code=True)\n"
            f"t = AutoTokenizer.from_pretrained({str(static_dir)!r}, trust_remote_code=True)\n"
            "print(m(**t(['गाडी'], return_tensors='pt')).logits.shape[-1])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr[-500:]
    record = json.loads((static_dir / "training.json").read_text())
    assert record["student"] == "static-embedding" and record["static"]["dim"] == 16


def test_frozen_table_trains_only_the_head(teacher_dir, toy_splits, tmp_path):
    out = tmp_path / "frozen"
    distill_static(str(teacher_dir), toy_splits, TrainConfig(**{**CFG.__dict__, "epochs": 2, "freeze_embeddings": True}),
                   out, dim=8)
    before, _, _ = build_table(str(teacher_dir), toy_splits.train.texts, dim=8)
    after = load_classifier(str(out))
    assert torch.equal(after.embeddings.weight, before.embeddings.weight)
    assert load_tokenizer(str(out)).get_vocab() == load_tokenizer(str(out)).get_vocab()


def test_a_table_wider_than_the_teacher_is_refused(teacher_dir, toy_splits):
    with pytest.raises(MahaError, match="static_dim 65: choose 1..64"):
        build_table(str(teacher_dir), toy_splits.train.texts, dim=65)
