"""Metrics, the Manoranjan-free variant, and the TF-IDF reference."""

from __future__ import annotations

import pytest

from mahacompress.baseline import tfidf_baseline
from mahacompress.evaluate import classification_metrics


def test_metrics_with_and_without_the_corrupted_class():
    labels = ["Auto", "Manoranjan", "Sports"]
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 2, 2, 2, 0]  # every Manoranjan row wrong, one Sports row wrong
    m = classification_metrics(y_true, y_pred, labels)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["confusion_matrix"][1] == [0, 0, 2]
    assert m["per_class"]["Sports"]["precision"] == pytest.approx(1 / 3)
    sub = m["without_manoranjan"]
    assert sub["rows"] == 4 and sub["accuracy"] == pytest.approx(3 / 4)
    assert set(sub["per_class"]) == {"Auto", "Sports"}
    # Manoranjan rows are gone, so are their wrong Sports predictions. Auto: P=2/3 R=1 -> 0.8; Sports: P=1 R=1/2
    assert sub["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_tfidf_baseline_beats_chance_on_a_slice(shc_splits):
    result = tfidf_baseline(shc_splits, repeats=2)
    assert result["rows"] == len(shc_splits.test)
    assert result["accuracy"] > 0.3  # 12 classes: chance ~0.08
    assert result["latency_ms_b1_p50"] > 0 and result["latency_ms_b32_p50"] > 0
