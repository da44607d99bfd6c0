"""The reference every transformer must beat: character n-gram TF-IDF + logistic regression.

Same splits and metrics as the transformers, plus its own prediction latency, so a user sees what
a compressed transformer costs relative to a model that runs in microseconds.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline, make_pipeline

from .data import Splits
from .evaluate import classification_metrics, unlearnable_classes

C_GRID = (1.0, 10.0, 100.0)  # inverse regularisation strengths tried, chosen on dev macro-F1


def _pipeline(c: float) -> Pipeline:
    # char_wb n-grams handle Marathi inflection (suffixes glued to stems) without a tokenizer.
    return make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, max_features=300_000),
        LogisticRegression(C=c, max_iter=3000),
    )


def tfidf_baseline(splits: Splits, repeats: int = 5) -> dict:
    """Fit on train, choose C on dev, report test metrics and latency (median of `repeats`)."""
    best_c, best_f1 = C_GRID[0], -1.0
    for c in C_GRID:
        f1 = f1_score(splits.dev.labels, _pipeline(c).fit(splits.train.texts, splits.train.labels)
                      .predict(splits.dev.texts), average="macro")
        if f1 > best_f1:
            best_c, best_f1 = c, float(f1)
    model = _pipeline(best_c).fit(splits.train.texts, splits.train.labels)
    pred = model.predict(splits.test.texts)
    result = classification_metrics(splits.test.labels, pred, splits.labels, unlearnable_classes(splits))
    result.update(C=best_c, dev_macro_f1=best_f1, **_latency(model, splits.test.texts, repeats))
    return result


def _latency(model: Pipeline, texts: list[str], repeats: int) -> dict:
    """Median milliseconds for batch 1 (first 64 texts, one at a time) and batch 32."""
    def timed(batches: list[list[str]]) -> float:
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for b in batches:
                model.predict(b)
            runs.append((time.perf_counter() - t0) * 1000 / len(batches))
        return float(np.median(runs))

    b32 = [texts[i:i + 32] for i in range(0, min(len(texts), 32 * 8), 32)]
    return {"latency_ms_b1_p50": timed([[t] for t in texts[:64]]), "latency_ms_b32_p50": timed(b32)}
