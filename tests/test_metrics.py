"""Accuracy and macro-F1 over an explicit set of classes, and the paired bootstrap of their differences."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from mahacompress.core.metrics import (
    accuracy,
    correctness,
    labels_present,
    macro_f1,
    paired_difference,
    paired_macro_f1_difference,
)
from mahacompress.infer.evaluate import classification_metrics

# Four dataset classes: 2 is in the truth but never predicted, 3 is neither in the truth nor predicted.
LABELS = ["A", "B", "C", "D"]
Y_TRUE = [0, 0, 1, 1, 2, 2]
Y_PRED = [0, 1, 1, 1, 0, 0]


def _cases(count: int = 300):
    """Random (truth, predictions, classes) with classes missing from either side."""
    rng = np.random.default_rng(3)
    for _ in range(count):
        classes, texts = int(rng.integers(2, 13)), int(rng.integers(1, 60))
        y = rng.integers(0, classes, texts)
        pred = np.where(rng.random(texts) < rng.random(), y, rng.integers(0, classes, texts))
        yield y, pred, classes


def test_macro_f1_over_the_classes_present_or_all_of_them():
    # A: tp 1, fp 2, fn 1 -> 0.4; B: tp 2, fp 1 -> 0.8; C: never predicted -> 0; D: absent -> 0 when averaged in
    assert labels_present(Y_TRUE, Y_PRED) == [0, 1, 2]
    assert macro_f1(Y_TRUE, Y_PRED, labels_present(Y_TRUE, Y_PRED)) == pytest.approx(1.2 / 3)
    assert macro_f1(Y_TRUE, Y_PRED, range(len(LABELS))) == pytest.approx(1.2 / 4)
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(3 / 6)


def test_the_present_classes_give_what_training_export_and_tfidf_computed():
    """Their old path: sklearn's macro-F1 with its default classes (those in the truth or the predictions)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns of a class never predicted (its precision is undefined)
        for y, pred, _ in _cases():
            assert macro_f1(y, pred, labels_present(y, pred)) == float(f1_score(y, pred, average="macro"))
            assert accuracy(y, pred) == float(accuracy_score(y, pred))
        # an export scores in the folder's label order: the same figure once its ids are the dataset's
        to_model = [3, 0, 2, 1]
        truth, predicted = [to_model[v] for v in Y_TRUE], [to_model[v] for v in Y_PRED]
        assert macro_f1(truth, predicted,
                        labels_present(truth,
                                       predicted)) == pytest.approx(float(f1_score(Y_TRUE, Y_PRED, average="macro")))


def test_every_class_gives_what_evaluate_and_the_bootstrap_compute():
    """evaluate's old path: sklearn over every dataset class, 0 where a class has nothing; the bootstrap's own
    vectorised macro-F1 agrees."""
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert (m["macro_f1"] == macro_f1(Y_TRUE, Y_PRED, range(4)) == float(
        f1_score(Y_TRUE, Y_PRED, labels=range(4), average="macro", zero_division=0)))
    assert m["accuracy"] == accuracy(Y_TRUE, Y_PRED)
    for y, pred, classes in _cases(60):
        everything = range(classes)
        assert macro_f1(y, pred,
                        everything) == float(f1_score(y, pred, labels=everything, average="macro", zero_division=0))
        d = paired_macro_f1_difference(y, pred, y, classes, resamples=10)
        assert d["difference"] == pytest.approx(macro_f1(y, pred, everything) - macro_f1(y, y, everything), abs=1e-12)


def test_identical_models_differ_by_exactly_zero():
    c = correctness([0, 1, 2, 1], [0, 1, 0, 1])
    d = paired_difference(c, c, resamples=1000)
    assert d["difference"] == d["ci_low"] == d["ci_high"] == 0.0 and d["resamples"] == 1000


def test_interval_brackets_the_difference_is_seeded_and_narrows_with_more_texts():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 2000)
    base = np.where(rng.random(2000) < 0.80, y, (y + 1) % 3)
    other = np.where(rng.random(2000) < 0.75, y, (y + 1) % 3)
    d = paired_difference(correctness(y, other), correctness(y, base), resamples=1000)
    assert d["difference"] == pytest.approx((other == y).mean() - (base == y).mean())
    assert d["ci_low"] < d["difference"] < d["ci_high"] < 0  # a 5-point loss on 2000 texts is resolved
    assert d == paired_difference(correctness(y, other), correctness(y, base), resamples=1000)
    small = paired_difference(correctness(y[:200], other[:200]), correctness(y[:200], base[:200]), resamples=1000)
    assert small["ci_high"] - small["ci_low"] > d["ci_high"] - d["ci_low"]


def test_several_seeds_count_as_their_per_text_mean():
    assert correctness([1, 1], [[1, 0], [1, 1]]).tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match="paired"):
        paired_difference(np.ones(3), np.ones(4))


def test_macro_f1_difference_matches_sklearn_and_brackets_it():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 600)
    base = np.where(rng.random(600) < 0.85, y, (y + 1) % 4)
    other = np.where(rng.random(600) < 0.70, y, 3)  # errors all land on class 3: F1 suffers more than accuracy
    d = paired_macro_f1_difference(y, other, base, 4, resamples=500)
    expected = f1_score(y, other, labels=range(4), average="macro") - f1_score(y, base, labels=range(4),
                                                                               average="macro")
    assert d["difference"] == pytest.approx(expected) and d["ci_low"] < d["difference"] < d["ci_high"] < 0
    same = paired_macro_f1_difference(y, base, base, 4, resamples=200)
    assert same["difference"] == same["ci_low"] == same["ci_high"] == 0.0
