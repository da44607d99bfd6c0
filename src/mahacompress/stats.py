"""How sure a difference in accuracy is: a paired bootstrap over the same test texts.

With ~2,800 test rows a single run cannot resolve a 1-point gap by its point estimate alone. Both
models are scored on the same texts, so resampling texts (not models) and recomputing the difference
each time gives an interval that accounts for which texts happen to be in the test split. Several
seeds of a row enter as their per-text mean correctness, so the interval is the one of the seed mean.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

RESAMPLES = 2000
SEED = 0


def correctness(y_true: Sequence[int], predictions: Sequence[Sequence[int]]) -> np.ndarray:
    """Per-text share of correct predictions over one or several runs (rows of `predictions`)."""
    runs = np.atleast_2d(np.asarray(predictions))
    return (runs == np.asarray(y_true)[None, :]).mean(axis=0)


def paired_difference(correct: np.ndarray, reference: np.ndarray, *, resamples: int = RESAMPLES,
                      seed: int = SEED, level: float = 0.95) -> dict:
    """Accuracy of `correct` minus that of `reference` (per-text correctness, same texts in the same
    order), with a percentile bootstrap interval at `level` from `resamples` seeded resamples of texts."""
    correct, reference = np.asarray(correct, dtype=float), np.asarray(reference, dtype=float)
    if correct.shape != reference.shape or correct.ndim != 1 or not len(correct):
        raise ValueError(f"paired texts needed: got shapes {correct.shape} and {reference.shape}")
    diff = correct - reference
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 250):  # chunks bound memory at 250 x n indices
        idx = rng.integers(0, len(diff), size=(min(250, resamples - start), len(diff)))
        means[start:start + len(idx)] = diff[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"difference": float(diff.mean()), "ci_low": float(low), "ci_high": float(high),
            "level": level, "resamples": resamples, "seed": seed, "texts": len(diff)}
