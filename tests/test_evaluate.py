"""Metrics, the variant without classes that have no training rows, and the TF-IDF reference."""

from __future__ import annotations

import numpy as np
import pytest

from mahacompress.data.splits import Splits, TextSet
from mahacompress.infer.evaluate import classification_metrics, unlearnable_classes
from mahacompress.study.tfidf import tfidf_baseline


def test_unlearnable_classes_come_from_the_training_rows():
    splits = Splits("x", ["A", "B", "C"], TextSet(["a", "c"], [0, 2]), TextSet(["b"], [1]), TextSet(["b"], [1]), {})
    assert unlearnable_classes(splits) == ["B"]


def test_metrics_with_and_without_unlearnable_classes():
    labels = ["Auto", "Film", "Sports"]
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 2, 2, 2, 0]  # every Film row wrong, one Sports row wrong
    assert "learnable" not in classification_metrics(y_true, y_pred, labels)
    m = classification_metrics(y_true, y_pred, labels, unlearnable=["Film"])
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["confusion_matrix"][1] == [0, 0, 2]
    assert m["per_class"]["Sports"]["precision"] == pytest.approx(1 / 3)
    sub = m["learnable"]
    assert sub["rows"] == 4 and sub["accuracy"] == pytest.approx(3 / 4)
    assert set(sub["per_class"]) == {"Auto", "Sports"} and sub["excluded"] == ["Film"]
    # Film rows are gone, so are their wrong Sports predictions. Auto: P=2/3 R=1 -> 0.8; Sports: P=1 R=1/2
    assert sub["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_tfidf_baseline_beats_chance_on_a_slice(shc_splits):
    result = tfidf_baseline(shc_splits, repeats=2)
    assert result["rows"] == len(shc_splits.test)
    assert result["accuracy"] > 0.3  # 12 classes: chance ~0.08
    assert result["latency_ms_b1_p50"] > 0 and result["latency_ms_b32_p50"] > 0
    assert result["e2e_ms_b32_p50"] > result["latency_ms_b32_p50"]  # featurisation is part of end to end


def test_a_saved_tfidf_folder_predicts_what_its_pipeline_does(shc_splits, tmp_path):
    """The grid's `tfidf` row: a label without training rows gets a column that is never chosen."""
    import numpy as np

    from mahacompress.infer.evaluate import model_labels, predict_ids
    from mahacompress.study.tfidf import fit_tfidf, save_tfidf

    starved = Splits(
        shc_splits.name, shc_splits.labels,
        TextSet(*zip(*[(t, y) for t, y in zip(shc_splits.train.texts, shc_splits.train.labels)
                       if y != 0])), shc_splits.dev, shc_splits.test, {})
    starved.train.texts, starved.train.labels = list(starved.train.texts), list(starved.train.labels)
    record = save_tfidf(starved, tmp_path / "tfidf")
    assert model_labels(str(tmp_path / "tfidf")) == shc_splits.labels and record["C"] in (1.0, 10.0, 100.0)
    pipeline, _, _ = fit_tfidf(starved)
    pred = predict_ids(str(tmp_path / "tfidf"), starved, "test", backend="tfidf")
    np.testing.assert_array_equal(pred, pipeline.predict(starved.test.texts))
    assert 0 not in set(pred.tolist())


def test_a_two_class_tfidf_backend_gives_the_regressions_own_probabilities():
    """sklearn scores two classes with one column; softmax of the backend's two logits must be predict_proba."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from mahacompress.infer.numpy_engine import TfidfBackend

    texts = ["चांगला चित्रपट", "छान कथा", "वाईट चित्रपट", "कंटाळवाणा शेवट"] * 3
    pipeline = make_pipeline(TfidfVectorizer(analyzer="char_wb"), LogisticRegression()).fit(texts, [1, 1, 0, 0] * 3)
    logits = TfidfBackend(pipeline, 2).logits(texts)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, pipeline.predict_proba(texts), atol=1e-6)
