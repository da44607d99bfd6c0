"""A grid row's figures: its model scored on test (all classes, and the learnable ones) and dev (`score`, a
calibrated int8 file built first: `calibrate`), the same model as a user deploys it (`served_block`), the row's
figures over its seeds (`summary`), its structure (`structure`: parameters, encoder Linear weights, sparsity), and
every row's paired accuracy difference to the baseline (`compare_to_baseline`).

The runner (`grid.Grid`) calls these for every row alike; nothing here builds or times a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..core.metrics import correctness, paired_difference
from ..infer import CALIBRATED_BACKENDS
from ..infer.build import served_file
from ..infer.evaluate import classification_metrics, predict_splits
from ..infer.numpy_engine import is_static, is_tfidf, load_tfidf
from ..measure.footprint import count_params
from ..models.load import load_skeleton
from ..train.pruning.compact import encoder_linear_count
from .context import RecipeContext


def score(ctx: RecipeContext, model_dir: str, backend: str, unlearnable: list[str]) -> dict:
    """Test figures (all classes and learnable ones), the test predictions, and dev accuracy (for `best`)."""
    calibrate(ctx, model_dir, backend)
    pred = predict_splits(model_dir, ctx.splits, ("test", "dev"), backend=backend, max_length=ctx.max_length,
                          trust_remote_code=ctx.trust_remote_code)  # the model loaded once for both
    test, dev = pred["test"], pred["dev"]
    m = classification_metrics(ctx.splits.test.labels, test, ctx.splits.labels, unlearnable)
    sub = m.get("learnable", {})
    return {
        "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "accuracy_learnable": sub.get("accuracy"),
        "macro_f1_learnable": sub.get("macro_f1"), "dev_accuracy": float(
            np.mean(dev == np.asarray(ctx.splits.dev.labels))),
        "per_class_f1": {k: v["f1"]
                         for k, v in m["per_class"].items()}, "test_predictions": test.tolist()
    }


def calibrate(ctx: RecipeContext, model_dir: str, backend: str) -> None:
    """Calibrated int8 backends learn activation ranges from training texts (never dev or test): their
    file is built here once, so every later load (scoring, timing, peak memory) serves the same file."""
    if backend in CALIBRATED_BACKENDS:
        served_file(model_dir, backend, max_length=ctx.max_length, calibration_texts=ctx.calibration,
                    trust_remote_code=ctx.trust_remote_code)


def served_block(ctx: RecipeContext, model_dir: str, backend: str, unlearnable: list[str]) -> dict:
    """The row's (first-seed) model as a user would deploy it (in `recipes.served_backend`)."""
    scores = score(ctx, model_dir, backend, unlearnable)
    scores.pop("per_class_f1")
    return {"backend": backend, **scores}


def summary(runs: list[dict], structure: dict) -> dict:
    """Row figures from its seeds: scores as the mean (and sample SD) over seeds; the model, its
    structure (`structure` of the first seed's model), dev accuracy and per-class F1 of the first seed, which is
    the one timed and served."""
    first = runs[0]
    row = {
        "model_dir": first["model_dir"], "train_seconds": first["train_seconds"], "dev_accuracy": first["dev_accuracy"],
        "test_rows": len(first["test_predictions"]), "per_class_f1": first["per_class_f1"], **structure
    }
    if first.get("transfer"):
        row["transfer"] = first["transfer"]  # its counts and the teacher's agreement with the file's labels
    if first.get("augment"):
        row["augment"] = first["augment"]  # variants asked, made and dropped, and the teacher's labelling time
    if first.get("dev_history"):
        row["dev_history"] = first["dev_history"]  # to choose epochs from: still rising at the end?
    for key in ("accuracy", "macro_f1", "accuracy_learnable", "macro_f1_learnable"):
        values = [r[key] for r in runs if r[key] is not None]
        row[key] = float(np.mean(values)) if values else None
        if len(values) > 1:
            row[f"{key}_sd"] = float(np.std(values, ddof=1))
    row["seeds"] = [{k: v for k, v in r.items() if k != "per_class_f1"} for r in runs]
    return row


def structure(model_dir: str, teacher_weights: Callable[[], int], *, trust_remote_code: bool = False) -> dict:
    """Parameters and encoder Linear weights; a model with no encoder (static, tfidf) has no sparsity.
    `teacher_weights` gives the dense teacher's encoder Linear weights, asked for only when there is an encoder."""
    if is_tfidf(model_dir):
        linear = load_tfidf(model_dir).classifier
        return {
            "params_total": int(linear.coef_.size + linear.intercept_.size), "params_encoder": 0,
            "encoder_linear_weights": 0
        }
    model = load_skeleton(str(model_dir), trust_remote_code=trust_remote_code)  # shapes: no weights read
    if is_static(model_dir):
        return {
            "params_total": sum(p.numel() for p in model.parameters()), "params_encoder": 0, "encoder_linear_weights": 0
        }
    params, weights = count_params(model), sum(encoder_linear_count(model))
    return {
        "params_total": params["total"], "params_encoder": params["encoder"], "encoder_linear_weights": weights,
        "encoder_sparsity": 1 - weights / teacher_weights()
    }


def compare_to_baseline(rows: dict[str, dict], labels: Sequence[int]) -> None:
    """Every row's (and served block's) paired accuracy difference to the baseline, with a bootstrap CI, added to
    the row: `labels` are the test split's."""
    base = rows.get("baseline", {})
    if base.get("status") != "done":
        return
    y = labels
    reference = correctness(y, [base["seeds"][0]["test_predictions"]])
    for row in rows.values():
        if row.get("status") != "done":
            continue
        row["vs_baseline"] = paired_difference(correctness(y, [s["test_predictions"] for s in row["seeds"]]), reference)
        if "served" in row:
            row["served"]["vs_baseline"] = paired_difference(correctness(y, [row["served"]["test_predictions"]]),
                                                             reference)
