"""Every score a prediction gets: accuracy, macro-F1 over an explicit set of classes, and how sure a difference
in either is (a paired bootstrap over the same texts).

Macro-F1 averages per-class F1 (2 tp / (2 tp + fp + fn)) over a set of classes, and which set changes the figure
when a class is neither in the truth nor predicted: such a class scores 0 if it is averaged over, nothing if it is
not. So the set is always an argument: the dataset's classes (`range(len(labels))`, what every reported test
figure uses: `evaluate.classification_metrics`, `paired_macro_f1_difference`) or the classes the texts or the
predictions hold (`labels_present`, what training's dev macro-F1, an exported folder's test score and the
TF-IDF reference's choice of C have always used).

The bootstrap: with ~2,800 test rows a single run cannot resolve a 1-point gap by its point estimate alone. Both
models are scored on the same texts, so resampling texts (not models) and recomputing the difference
each time gives an interval that accounts for which texts happen to be in the test split. Several
seeds of a row enter as their per-text mean correctness, so the interval is the one of the seed mean.
Macro-F1 is no mean over texts, so its difference is recomputed from each resample's confusion counts
(same resamples, same seed, so its interval is comparable to accuracy's). The resampled differences themselves
(`resampled_difference`, `resampled_macro_f1_difference`) are what the intervals are read from, and what
`search.certainty` reads a verdict's chance of being wrong from: one bootstrap for both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

RESAMPLES = 2000
SEED = 0


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """The share of texts whose predicted label id is their true one."""
    return float(accuracy_score(y_true, y_pred))


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> float:
    """The mean F1 of the label ids `labels`; a class of `labels` neither true nor predicted scores 0."""
    return float(f1_score(y_true, y_pred, labels=list(labels), average="macro", zero_division=0))


def labels_present(y_true: Sequence[int], y_pred: Sequence[int]) -> list[int]:
    """The label ids the truth or the predictions hold, in order: macro-F1 over these leaves out a class that
    neither holds (sklearn's default set)."""
    return [int(i) for i in np.union1d(np.asarray(y_true), np.asarray(y_pred))]


def correctness(y_true: Sequence[int], predictions: Sequence[Sequence[int]]) -> np.ndarray:
    """Per-text share of correct predictions over one or several runs (rows of `predictions`)."""
    runs = np.atleast_2d(np.asarray(predictions))
    return (runs == np.asarray(y_true)[None, :]).mean(axis=0)


def resampled_difference(correct: np.ndarray, reference: np.ndarray, *, resamples: int = RESAMPLES,
                         seed: int = SEED) -> np.ndarray:
    """The paired bootstrap of an accuracy difference: `correct`'s accuracy minus `reference`'s (per-text
    correctness, same texts in the same order) in each of `resamples` seeded resamples of texts. Returned whole
    (not only its interval) because `search.certainty` reads the share of resamples beyond a budget from it."""
    correct, reference = np.asarray(correct, dtype=float), np.asarray(reference, dtype=float)
    if correct.shape != reference.shape or correct.ndim != 1 or not len(correct):
        raise ValueError(f"paired texts needed: got shapes {correct.shape} and {reference.shape}")
    diff = correct - reference
    means = np.empty(resamples)
    for start, idx in _resampled_texts(len(diff), resamples, seed):
        means[start:start + len(idx)] = diff[idx].mean(axis=1)
    return means


def resampled_macro_f1_difference(y_true: Sequence[int], predicted: Sequence[int], reference: Sequence[int],
                                  num_labels: int, *, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The paired bootstrap of a macro-F1 difference (over `range(num_labels)`): `predicted`'s minus
    `reference`'s, recomputed from each resample's texts (the same resamples as `resampled_difference` draws for
    as many texts and the same seed)."""
    y, a, b = (np.asarray(v, dtype=int) for v in (y_true, predicted, reference))
    if not (y.shape == a.shape == b.shape) or y.ndim != 1 or not len(y):
        raise ValueError(f"paired texts needed: got shapes {y.shape}, {a.shape} and {b.shape}")
    diffs = np.empty(resamples)
    for start, idx in _resampled_texts(len(y), resamples, seed):
        diffs[start:start + len(idx)] = _macro_f1(y[idx], a[idx], num_labels) - _macro_f1(y[idx], b[idx], num_labels)
    return diffs


def paired_difference(correct: np.ndarray, reference: np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED,
                      level: float = 0.95) -> dict:
    """Accuracy of `correct` minus that of `reference` (per-text correctness, same texts in the same
    order), with a percentile bootstrap interval at `level` from `resamples` seeded resamples of texts."""
    means = resampled_difference(correct, reference, resamples=resamples, seed=seed)
    diff = np.asarray(correct, dtype=float) - np.asarray(reference, dtype=float)
    return _interval(float(diff.mean()), means, level, resamples, seed, len(diff))


def paired_macro_f1_difference(y_true: Sequence[int], predicted: Sequence[int], reference: Sequence[int],
                               num_labels: int, *, resamples: int = RESAMPLES, seed: int = SEED,
                               level: float = 0.95) -> dict:
    """Macro-F1 of `predicted` minus that of `reference` (label ids of the same texts, every one of the
    `num_labels` classes averaged: `macro_f1` over `range(num_labels)`, as every reported test figure), with a
    percentile bootstrap interval over resampled texts."""
    diffs = resampled_macro_f1_difference(y_true, predicted, reference, num_labels, resamples=resamples, seed=seed)
    y, a, b = (np.asarray(v, dtype=int) for v in (y_true, predicted, reference))
    full = float(_macro_f1(y[None], a[None], num_labels)[0] - _macro_f1(y[None], b[None], num_labels)[0])
    return _interval(full, diffs, level, resamples, seed, len(y))


def _resampled_texts(texts: int, resamples: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """The bootstrap's one draw: (offset, rows of text indices) in chunks of at most 250 resamples (bounding memory
    at 250 x texts indices), seeded, so every difference over as many texts sees the same resamples."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, 250):
        yield start, rng.integers(0, texts, size=(min(250, resamples - start), texts))


def _macro_f1(y: np.ndarray, pred: np.ndarray, num_labels: int) -> np.ndarray:
    """`macro_f1` over `range(num_labels)` of each row of `y` / `pred` (resamples x texts), vectorised over the
    resamples, so a bootstrap is a few array operations instead of one sklearn call per resample."""
    scores = np.zeros(len(y))
    for c in range(num_labels):
        tp = ((y == c) & (pred == c)).sum(1)
        wrong = ((y == c) != (pred == c)).sum(1)  # fp + fn
        denominator = 2 * tp + wrong
        scores += np.divide(2 * tp, denominator, out=np.zeros(len(y)), where=denominator > 0)
    return scores / num_labels


def _interval(difference: float, resampled: np.ndarray, level: float, resamples: int, seed: int, texts: int) -> dict:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return {
        "difference": difference, "ci_low": float(low), "ci_high": float(high), "level": level, "resamples": resamples,
        "seed": seed, "texts": texts
    }
