"""The paired bootstrap of accuracy and macro-F1 differences."""

from __future__ import annotations

import numpy as np
import pytest

from mahacompress.core.metrics import correctness, paired_difference, paired_macro_f1_difference


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
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 600)
    base = np.where(rng.random(600) < 0.85, y, (y + 1) % 4)
    other = np.where(rng.random(600) < 0.70, y, 3)  # errors all land on class 3: F1 suffers more than accuracy
    d = paired_macro_f1_difference(y, other, base, 4, resamples=500)
    expected = f1_score(y, other, labels=range(4), average="macro") - f1_score(y, base, labels=range(4), average="macro")
    assert d["difference"] == pytest.approx(expected) and d["ci_low"] < d["difference"] < d["ci_high"] < 0
    same = paired_macro_f1_difference(y, base, base, 4, resamples=200)
    assert same["difference"] == same["ci_low"] == same["ci_high"] == 0.0
