"""Inference over a list of texts, and the classification metrics every report shows.

Metrics come in two flavours: over all classes, and over the classes a model can learn. A class with
no training rows (after cleaning, every copy may have been a duplicate or also in the test file)
cannot be predicted by any trained model, so its test rows cost every row the same points; reports
give figures with and without them. Which classes those are is computed from the data, per dataset.
This module scores; how a model is run (PyTorch, int8, ONNX) is `backends`' job.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from ..core.errors import MahaError
from ..core.metrics import accuracy, macro_f1
from ..core.model_source import exported_manifest
from ..models.load import check_model_dir, config_labels, load_config
from . import load_backend
from .batching import length_sorted_batches


def unlearnable_classes(splits) -> list[str]:
    """Labels of `splits` that no training row carries: no model trained on these splits can predict them."""
    present = set(splits.train.labels)
    return [name for i, name in enumerate(splits.labels) if i not in present]


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, tokenizer, texts: Sequence[str], *, batch_size: int = 64,
                   max_length: int = 128, device: torch.device | str | None = None) -> np.ndarray:
    """Logits [n, num_labels] of a PyTorch classifier, in the input order."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    for idx in length_sorted_batches(texts, batch_size):
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        out[idx] = model(**enc).logits.float().cpu().numpy()
    model.train(was_training)
    return out


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: list[str],
                           unlearnable: Sequence[str] = ()) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix; with `unlearnable` classes, also
    `learnable`: the same figures over the test rows of the other classes (and `excluded`: which).
    Macro-F1 averages over every class of `labels` (the learnable ones for `learnable`), one absent from the split
    and never predicted included at 0, so every model's figure on a dataset averages over the same classes."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    result = _metrics(y_true, y_pred, labels, list(range(len(labels))))
    drop = [labels.index(name) for name in unlearnable]
    if drop:
        keep = ~np.isin(y_true, drop)
        others = [i for i in range(len(labels)) if i not in drop]
        sub = _metrics(y_true[keep], y_pred[keep], labels, others)
        sub.pop("confusion_matrix")
        result["learnable"] = {**sub, "excluded": list(unlearnable)}
    return result


def _metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], ids: list[int]) -> dict:
    p, r, f, n = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {
        "rows": int(len(y_true)), "accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred, ids),
        "per_class": {
            labels[i]: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(n[k])}
            for k, i in enumerate(ids)
        }, "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist()
    }


def model_labels(model_name: str, *, trust_remote_code: bool = False) -> list[str]:
    """The label names of a classifier folder or hub id, in id order (read from its config, a TF-IDF
    folder's record, or an exported folder's manifest, only; `trust_remote_code`: the config may be the
    Python code its folder ships)."""
    from .numpy_engine import is_tfidf, tfidf_labels

    if is_tfidf(model_name):
        return tfidf_labels(model_name)
    manifest = exported_manifest(model_name)
    if manifest is not None:
        return list(manifest["labels"])
    check_model_dir(model_name, trust_remote_code=trust_remote_code)
    return config_labels(load_config(model_name, trust_remote_code=trust_remote_code))


def model_logits(model_name: str, texts: Sequence[str], *, backend: str = "fp32", max_length: int = 128,
                 batch_size: int = 64, trust_remote_code: bool = False) -> np.ndarray:
    """Logits on `texts` in `model_labels` order: an exported folder (export.json) runs with its own
    runtime, as deployed, at the sequence length it was exported with; any other model with `backend`
    (and, with `trust_remote_code`, the Python code its folder ships)."""
    return _runner(model_name, backend, max_length, trust_remote_code).logits(texts, batch_size=batch_size)


def _runner(model_name: str, backend: str, max_length: int, trust_remote_code: bool):
    """What `model_logits` runs the model with: an exported folder's own runtime, else `backend`."""
    if exported_manifest(model_name) is not None:
        from .runtime import Classifier

        return Classifier(model_name)
    return load_backend(model_name, backend, max_length=max_length, trust_remote_code=trust_remote_code)


def predict_splits(model_name: str, splits, names: Sequence[str] = ("test", ), *, backend: str = "fp32",
                   batch_size: int = 64, max_length: int = 128,
                   trust_remote_code: bool = False) -> dict[str, np.ndarray]:
    """Predicted dataset label ids of a classifier folder (or hub id), run with `backend`, on each split of
    `names` (by name), the model loaded once for them all.

    The model's labels are matched to the dataset's by name, so a model trained with another label
    order still scores correctly; a dataset label the model does not know is an error.
    """
    labels = model_labels(model_name, trust_remote_code=trust_remote_code)
    unknown = sorted(set(splits.labels) - set(labels))
    if unknown:
        raise MahaError(f"{model_name}: the model does not know the dataset labels {unknown} (it knows {labels})")
    runner = _runner(model_name, backend, max_length, trust_remote_code)
    to_dataset = np.array([splits.labels.index(lab) if lab in splits.labels else -1 for lab in labels])
    return {
        name: to_dataset[runner.logits(getattr(splits, name).texts, batch_size=batch_size).argmax(-1)]
        for name in names
    }


def predict_ids(model_name: str, splits, split: str = "test", *, backend: str = "fp32", batch_size: int = 64,
                max_length: int = 128, trust_remote_code: bool = False) -> np.ndarray:
    """Predicted dataset label ids of a classifier folder (or hub id), run with `backend`, on one split (see
    `predict_splits`)."""
    return predict_splits(model_name, splits, (split, ), backend=backend, batch_size=batch_size, max_length=max_length,
                          trust_remote_code=trust_remote_code)[split]


def evaluate_model(model_name: str, splits, split: str = "test", *, backend: str = "fp32", batch_size: int = 64,
                   max_length: int = 128, trust_remote_code: bool = False) -> dict:
    """Score a classifier folder (or hub id), run with `backend`, on one split of `splits` (see predict_ids)."""
    pred = predict_ids(model_name, splits, split, backend=backend, batch_size=batch_size, max_length=max_length,
                       trust_remote_code=trust_remote_code)
    result = classification_metrics(getattr(splits, split).labels, pred, splits.labels, unlearnable_classes(splits))
    manifest = exported_manifest(model_name)
    result.update(model=str(model_name), split=split,
                  backend=f"exported {manifest.get('backend', 'onnx')}" if manifest else backend,
                  max_length=manifest["max_length"] if manifest else max_length)
    return result
