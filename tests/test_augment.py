"""Teacher-labelled augmentation: seeded variants, none repeated, none overlapping dev/test, and its record."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from clirun import one_line_error, run
from conftest import save_tiny_classifier

from mahacompress.core.config import AugmentConfig, TrainConfig
from mahacompress.core.errors import MahaError
from mahacompress.data.transfer import OverlapFilter
from mahacompress.models.load import load_classifier, load_tokenizer
from mahacompress.train import distill as kd
from mahacompress.train.augment import augment, frequent_words, nearest, variants_of
from mahacompress.train.losses import UNLABELLED

CFG = AugmentConfig(per_text=3, seed=1)


@pytest.fixture(scope="module")
def toy_teacher(toy_splits, tmp_path_factory):
    """An untrained tiny teacher with the toy task's labels and a tokenizer of its words: vectors, not skill, matter."""
    texts = toy_splits.train.texts + toy_splits.dev.texts + toy_splits.test.texts
    return save_tiny_classifier(tmp_path_factory.mktemp("aug") / "teacher", texts, toy_splits.labels, vocab_size=200)


@pytest.fixture(scope="module")
def model_and_tokenizer(toy_teacher):
    return load_classifier(str(toy_teacher)), load_tokenizer(str(toy_teacher))


def test_the_words_and_their_neighbours_are_deterministic():
    assert frequent_words(["b a", "a  c b"], 3) == ["b", "a", "c"]  # a tie keeps the order first seen
    assert frequent_words(["b a", "a c b"], 2) == ["b", "a"]
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert nearest(vectors, 2).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]  # never itself, nearest first
    assert nearest(np.ones((3, 2)), 2).tolist() == [[1, 2], [0, 2], [0, 1]]  # ties: the lower index
    assert nearest(vectors, 9).shape == (4, 3) and nearest(vectors[:1], 2).shape == (1, 0)


def test_crops_are_spans_and_deletion_never_empties_a_text():
    words = "एक दोन तीन चार पाच सहा सात आठ नऊ दहा".split()
    crops = variants_of(words, {}, replace(CFG, per_text=20, crop_rate=1.0), np.random.default_rng(0))
    assert len(crops) == 20
    for crop in crops:
        assert 6 <= len(crop.split()) <= 9 and f" {crop} " in f" {' '.join(words)} "
    gone = variants_of(words, {}, replace(CFG, per_text=5, crop_rate=0.0, delete_rate=1.0), np.random.default_rng(0))
    assert all(len(v.split()) == 1 for v in gone)
    swapped = variants_of(words, {w: ["X"]
                                  for w in words},
                          replace(CFG, per_text=1, crop_rate=0.0, delete_rate=0.0, replace_rate=1.0),
                          np.random.default_rng(0))
    assert swapped == [" ".join(["X"] * len(words))]


def test_variants_are_seeded_new_and_made_of_the_texts_words(model_and_tokenizer, toy_splits):
    model, tok = model_and_tokenizer
    sources = toy_splits.train.texts[:30]
    first = augment(model, tok, sources, [], CFG)
    assert first.texts == augment(model, tok, sources, [], CFG).texts  # same seed, same variants
    assert first.texts != augment(model, tok, sources, [], replace(CFG, seed=2)).texts
    assert len(set(first.texts)) == len(first.texts) and not set(first.texts) & set(sources)
    vocab = {w for t in sources for w in t.split()}
    assert all(set(v.split()) <= vocab for v in first.texts)
    rec = first.record
    assert rec["asked"] == 90 and rec["made"] == len(first.texts) > 0 and rec["words_with_vectors"] == len(vocab)
    assert rec["made"] + rec["dropped_duplicate"] + rec["dropped_overlap"] + rec["dropped_empty"] == rec["asked"]
    assert rec["dropped_overlap"] == 0 and rec["settings"]["per_text"] == 3
    assert rec["vector_seconds"] >= 0 and rec["variant_seconds"] >= 0


def test_a_variant_that_overlaps_dev_or_test_is_dropped_and_counted(model_and_tokenizer, toy_splits):
    model, tok = model_and_tokenizer
    sources = toy_splits.train.texts[:30]
    free = augment(model, tok, sources, [], CFG)
    leaked = next(v for v in free.texts if len(v.split()) >= 5)  # long enough for the n-gram filter
    protected = [f"आणखी {leaked} शेवट", *toy_splits.test.texts]  # a test text holding the variant whole
    guarded = augment(model, tok, sources, protected, CFG)
    assert leaked not in guarded.texts and guarded.record["dropped_overlap"] >= 1
    overlap = OverlapFilter(protected, CFG.ngram)
    assert not any(overlap.hits(v) for v in guarded.texts)
    assert set(guarded.texts) <= set(free.texts)  # the filter drops, it never makes other variants


def test_no_new_variant_is_one_line_error(model_and_tokenizer, toy_splits):
    model, tok = model_and_tokenizer
    same = replace(CFG, replace_rate=0.0, delete_rate=0.0, crop_rate=0.0)  # every variant is its source
    with pytest.raises(MahaError, match="augmentation made no new text") as err:
        augment(model, tok, toy_splits.train.texts[:10], [], same)
    assert "\n" not in str(err.value) and "replace_rate" in str(err.value)


def test_variants_join_training_unlabelled_and_their_logits_are_cached(toy_teacher, toy_splits, tmp_path, monkeypatch):
    monkeypatch.setenv("MAHACOMPRESS_CACHE", str(tmp_path / "cache"))
    cfg = TrainConfig(max_length=32, augment=replace(CFG, per_text=2))
    splits, args, transfer, record = kd.distillation_inputs(str(toy_teacher), toy_splits, cfg)
    n = len(toy_splits.train)
    assert transfer is None and len(splits.train) == n + record["made"] and record["asked"] == 2 * n
    assert splits.train.texts[:n] == toy_splits.train.texts and set(splits.train.labels[n:]) == {UNLABELLED}
    assert args["teacher_logits"].shape == (len(splits.train), 3)
    assert record["labelling_runtime"] == "torch fp32" and record["labelling_seconds"] >= 0
    monkeypatch.setattr(kd, "predict_logits", lambda *a, **k: pytest.fail("the teacher labelled them again"))
    again, args_again, _, _ = kd.distillation_inputs(str(toy_teacher), toy_splits, cfg)
    assert again.train.texts == splits.train.texts
    assert np.array_equal(args_again["teacher_logits"], args["teacher_logits"])
    with pytest.raises(MahaError, match="needs the teacher model"):
        kd.distillation_inputs(np.zeros((n, 3)), toy_splits, cfg)


def _toy_folder(splits, root):
    root.mkdir()
    for name, part in (("x_Train.csv", splits.train), ("x_Val.csv", splits.dev), ("x_Test.csv", splits.test)):
        rows = [f"{t},{splits.labels[y]}" for t, y in zip(part.texts, part.labels)]
        (root / name).write_text("\n".join(["text,label", *rows]) + "\n", encoding="utf-8")
    return root


def test_distill_with_augment_records_it_in_training_json(toy_teacher, toy_splits, tmp_path, monkeypatch):
    monkeypatch.setenv("MAHACOMPRESS_CACHE", str(tmp_path / "cache"))
    data = _toy_folder(toy_splits, tmp_path / "data")
    common = ("--dataset", str(data), "--text-col", "text", "--label-col", "label", "--epochs", "1", "--batch-size",
              "16", "--max-length", "32")
    result = run("distill", "--teacher", str(toy_teacher), "--student", "layers:1", "--out", str(tmp_path / "s"),
                 "--augment", "2", *common)
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "s" / "training.json").read_text(encoding="utf-8"))
    record, rows = info["augment"], info["dataset"]["splits"]["train"]["rows"]
    assert record["asked"] == 2 * rows and 0 < record["made"] <= record["asked"]
    assert record["settings"]["per_text"] == 2 and record["labelling_runtime"] == "torch fp32"
    assert info["train_config"]["augment"]["per_text"] == 2 and info["transfer"] is None
    assert info["result"]["steps"] > -(-rows // 16)  # the variants were trained on
    refused = run("prune", "--model", str(toy_teacher), "--out", str(tmp_path / "p"), "--sparsity", "0.5", "--augment",
                  "2", *common)
    assert "--distill-from" in one_line_error(refused) and not (tmp_path / "p").exists()
