"""Serve a classifier: label and probability for each text."""

from __future__ import annotations

from scipy.special import softmax

from .data import MAX_TEXT_CHARS, read_text_column
from .errors import MahaError
from .evaluate import model_labels, model_logits

__all__ = ["predict_texts", "read_text_column"]


def predict_texts(model_name: str, texts: list[str], *, backend: str = "fp32", max_length: int = 128,
                  batch_size: int = 64) -> list[dict]:
    """[{text, label, probability}] for each text, in order. Empty or huge texts are refused by position."""
    if not texts:
        raise MahaError("no texts to classify (give them as arguments, on stdin, or with --csv)")
    for i, text in enumerate(texts, start=1):
        if not text.strip():
            raise MahaError(f"text {i}: empty")
        if len(text) > MAX_TEXT_CHARS:
            raise MahaError(f"text {i}: {len(text)} characters (limit {MAX_TEXT_CHARS})")
    labels = model_labels(model_name)
    logits = model_logits(model_name, texts, backend=backend, max_length=max_length, batch_size=batch_size)
    probs = softmax(logits, axis=-1)
    best = probs.argmax(-1)
    return [{"text": t, "label": labels[int(k)], "probability": float(probs[i, k])}
            for i, (t, k) in enumerate(zip(texts, best))]

