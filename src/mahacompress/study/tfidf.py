"""The reference every transformer must beat: character n-gram TF-IDF + logistic regression.

Same splits and metrics as the transformers. It is also a grid row (`tfidf`): `fit_tfidf` chooses C on
dev, `save_tfidf` writes it as a folder (the fitted pipeline plus `tfidf.json` with its labels), and
the `tfidf` backend (backends/numpy_engine.py) runs that folder with the same `encode` (featurisation: the
analogue of tokenisation) / `forward` (the linear model) split as every other backend, so it is timed in
the grid's one session.
"""

from __future__ import annotations

import time
from pathlib import Path

import joblib
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from ..core.files import TFIDF_RECORD, atomic_path, staged_dir, write_json
from ..core.metrics import labels_present, macro_f1
from ..data.splits import Splits
from ..infer.evaluate import classification_metrics, unlearnable_classes
from ..infer.numpy_engine import PIPELINE, TfidfBackend

C_GRID = (1.0, 10.0, 100.0)  # inverse regularisation strengths tried, chosen on dev macro-F1
# What the vectoriser is (part of the grid row's settings: a change refits the row).
VECTORIZER = {"analyzer": "char_wb", "ngram_range": [2, 5], "sublinear_tf": True, "min_df": 2, "max_features": 300_000}


def _pipeline(c: float) -> Pipeline:
    # char_wb n-grams handle Marathi inflection (suffixes glued to stems) without a tokenizer.
    vectorizer = TfidfVectorizer(**{**VECTORIZER, "ngram_range": tuple(VECTORIZER["ngram_range"])})
    return make_pipeline(vectorizer, LogisticRegression(C=c, max_iter=3000))


def fit_tfidf(splits: Splits) -> tuple[Pipeline, float, float]:
    """The pipeline fitted on train with C chosen on dev macro-F1; (pipeline, C, dev macro-F1)."""
    best_c, best_f1 = C_GRID[0], -1.0
    for c in C_GRID:
        predicted = _pipeline(c).fit(splits.train.texts, splits.train.labels).predict(splits.dev.texts)
        # over the classes dev holds or the pipeline predicts, as training's dev macro-F1 (train.loop)
        f1 = macro_f1(splits.dev.labels, predicted, labels_present(splits.dev.labels, predicted))
        if f1 > best_f1:
            best_c, best_f1 = c, f1
    return _pipeline(best_c).fit(splits.train.texts, splits.train.labels), best_c, best_f1


def tfidf_baseline(splits: Splits, repeats: int = 5, timed_texts: int = 256) -> dict:
    """Fit on train, choose C on dev, report test metrics and latency (measure.latency: median of
    `repeats`, model-only and end to end, on the first `timed_texts` test texts)."""
    from ..measure.latency import latency

    model, best_c, best_f1 = fit_tfidf(splits)
    pred = model.predict(splits.test.texts)
    result = classification_metrics(splits.test.labels, pred, splits.labels, unlearnable_classes(splits))
    timing = latency({"tfidf": TfidfBackend(model, len(splits.labels))}, splits.test.texts[:timed_texts],
                     repeats=repeats, batches_per_repeat={1: 64}, progress=False)["tfidf"]
    result.update(C=best_c, dev_macro_f1=best_f1, **timing)
    return result


def save_tfidf(splits: Splits, out_dir: Path) -> dict:
    """Fit (as fit_tfidf) and write the model folder; returns its record (labels, C, dev macro-F1, seconds)."""
    start = time.time()
    model, best_c, best_f1 = fit_tfidf(splits)
    record = {
        "labels": list(splits.labels), "C": best_c, "dev_macro_f1": best_f1, "vectorizer": VECTORIZER,
        "dataset": splits.summary(), "result": {"seconds": time.time() - start}
    }
    with staged_dir(out_dir, TFIDF_RECORD) as tmp:
        with atomic_path(tmp / PIPELINE) as path:
            joblib.dump(model, path)
        write_json(tmp / TFIDF_RECORD, record)
    return record
