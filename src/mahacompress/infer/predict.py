"""Serve a classifier: label and probability for each text."""

from __future__ import annotations

import numpy as np

from ..core.errors import MahaError
from ..data.csvfiles import MAX_TEXT_CHARS, read_text_column
from .evaluate import model_labels, model_logits

__all__ = ["predict_texts", "read_text_column"]


def predict_texts(model_name: str, texts: list[str], *, backend: str = "fp32", max_length: int = 128,
                  batch_size: int = 64, trust_remote_code: bool = False) -> list[dict]:
    """[{text, label, probability}] for each text, in order. Empty or huge texts are refused by position.
    `trust_remote_code` lets the model run the Python code its folder ships."""
    if not texts:
        raise MahaError("no texts to classify (give them as arguments, on stdin, or with --csv)")
    for i, text in enumerate(texts, start=1):
        if not text.strip():
            raise MahaError(f"text {i}: empty")
        if len(text) > MAX_TEXT_CHARS:
            raise MahaError(f"text {i}: {len(text)} characters (limit {MAX_TEXT_CHARS})")
    labels = model_labels(model_name, trust_remote_code=trust_remote_code)
    logits = model_logits(model_name, texts, backend=backend, max_length=max_length, batch_size=batch_size,
                          trust_remote_code=trust_remote_code)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))  # as runtime.py: numpy alone, no scipy
    probs = exp / exp.sum(axis=-1, keepdims=True)
    best = probs.argmax(-1)
    return [{"text": t, "label": labels[int(k)], "probability": float(probs[i, k])}
            for i, (t, k) in enumerate(zip(texts, best))]
