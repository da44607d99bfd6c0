"""Serve a classifier: label and probability for each text."""

from __future__ import annotations

from scipy.special import softmax

from .data import MAX_TEXT_CHARS, read_text_column
from .errors import MahaError
from .evaluate import predict_logits
from .models import load_classifier, load_tokenizer

__all__ = ["predict_texts", "read_text_column"]


def predict_texts(model_name: str, texts: list[str], *, max_length: int = 128, batch_size: int = 64) -> list[dict]:
    """[{text, label, probability}] for each text, in order. Empty or huge texts are refused by position."""
    if not texts:
        raise MahaError("no texts to classify (give them as arguments, on stdin, or with --csv)")
    for i, text in enumerate(texts, start=1):
        if not text.strip():
            raise MahaError(f"text {i}: empty")
        if len(text) > MAX_TEXT_CHARS:
            raise MahaError(f"text {i}: {len(text)} characters (limit {MAX_TEXT_CHARS})")
    model, tokenizer = load_classifier(model_name), load_tokenizer(model_name)
    probs = softmax(predict_logits(model, tokenizer, texts, batch_size=batch_size, max_length=max_length), axis=-1)
    best = probs.argmax(-1)
    return [{"text": t, "label": model.config.id2label[int(k)], "probability": float(probs[i, k])}
            for i, (t, k) in enumerate(zip(texts, best))]

