"""The one interface every backend has, so `measure.latency` times them all the same way.

`encode` (tokenise, or featurise) and `forward` (the model alone) are separate so model-only timings can
leave tokenisation out; `logits` runs both over length-sorted batches (less padding), rows in input order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from .batching import length_sorted_batches


class Backend(Protocol):
    """One way to run a classifier."""

    name: str
    device: str

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        ...

    def forward(self, batch: Any) -> np.ndarray:
        ...

    def encode(self, texts: list[str]) -> Any:
        ...


class BatchedBackend:
    """`logits` shared by all backends: length-sorted batches, results put back in input order."""

    name: str
    num_labels: int

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.num_labels), dtype=np.float32)
        for idx in length_sorted_batches(texts, batch_size):
            out[idx] = self.forward(self.encode([texts[i] for i in idx]))
        return out


class TokenizedBackend(BatchedBackend):
    """A runtime fed numpy int64 arrays of the inputs its graph declares (`self.inputs`): ONNX Runtime, OpenVINO."""

    tokenizer: Any
    max_length: int
    inputs: list[str]

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        return {k: enc[k].astype(np.int64) for k in self.inputs}


@contextmanager
def quiet_logs(level: int = logging.WARNING) -> Iterator[None]:
    """Drop log records up to `level` for the duration (export and quantisation log through the root
    logger: "torchvision is not installed", "consider pre-processing")."""
    logging.disable(level)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
