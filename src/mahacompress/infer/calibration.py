"""Calibration texts for the static int8 backends: which training texts, and how they are batched.

A seeded sample, so every run calibrates on the same texts and so finds the file it built before
(its name carries the texts' digest, cache.texts_digest).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from .batching import length_sorted_batches

CALIBRATION_BATCH = 8
CALIBRATION_TEXTS = 512  # training texts that calibrate activation ranges (benchmarks/runtimes.py's default)


def calibration_sample(texts: Sequence[str], n: int = CALIBRATION_TEXTS, seed: int = 0) -> list[str]:
    """A seeded sample of `n` training texts (never dev or test texts: the caller passes training ones)."""
    return random.Random(seed).sample(list(texts), min(n, len(texts)))


def calibration_batches(tokenizer, texts: Sequence[str], max_length: int) -> list[dict[str, np.ndarray]]:
    """Tokenised batches of the calibration texts, as the served model will see them."""
    out = []
    for idx in length_sorted_batches(texts, CALIBRATION_BATCH):
        enc = tokenizer([texts[i]
                         for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="np")
        out.append({k: v.astype(np.int64) for k, v in enc.items()})
    return out
