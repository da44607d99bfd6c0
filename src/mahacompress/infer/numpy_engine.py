"""The backends that are no transformer, run with numpy: the static-embedding student and TF-IDF.

Their models are made elsewhere (static.py builds and distils the table; baseline.py fits the TF-IDF
pipeline); here is how their folders are recognised and run, so loading one needs no training code.

- static: the head is linear, so it is folded into the table once at load time (per-piece logits =
  table @ W.T): a text's logits are the mean of its pieces' rows plus the bias, exactly the model's
  output. The folded table and the mean are `runtime.StaticTable`, the very code an exported static
  folder runs (export.py writes this backend's table), so the benchmarked backend and the shipped
  folder cannot drift apart.
- tfidf: `encode` is featurisation (the analogue of tokenisation), `forward` the linear model, so it is
  timed like every other backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
from sklearn.pipeline import Pipeline

from ..core.errors import MahaError
from ..core.files import TFIDF_RECORD
from ..models.modeling_static import StaticConfig
from .runtime import StaticTable

PIPELINE = "tfidf.joblib"  # the fitted pipeline in a TF-IDF folder (baseline.save_tfidf writes it)


def is_static(model_dir: str | Path) -> bool:
    """Whether a folder holds a static-embedding student (its config names the class's model type)."""
    config = Path(model_dir) / "config.json"
    return (config.is_file()
            and json.loads(config.read_text(encoding="utf-8")).get("model_type") == StaticConfig.model_type)


class StaticBackend:
    """A static student run with numpy and the `tokenizers` library: a lookup in the per-piece logit table
    (table @ W.T, folded at load into a `runtime.StaticTable`) and a mean. `encode` is tokenisation,
    `forward` the rest."""

    device = "cpu"

    def __init__(self, model_dir: str | Path, max_length: int):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        if not is_static(model_dir):
            raise MahaError(
                f"{model_dir}: not a static-embedding student (config.json model_type is not {StaticConfig.model_type})"
            )
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        weights = load_file(str(model_dir / "model.safetensors"))
        table = weights["embeddings.weight"].astype(np.float32)
        self.table = StaticTable(table @ weights["classifier.weight"].astype(np.float32).T, weights["classifier.bias"],
                                 config.get("special_ids", []))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.no_padding()
        self.name, self.num_labels = "static", len(self.table.bias)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(list(texts))]

    def forward(self, batch: list[list[int]]) -> np.ndarray:
        return self.table.logits(batch)

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self.forward(self.encode(texts)) if texts else np.zeros((0, self.num_labels), dtype=np.float32)


def is_tfidf(model_dir: str | Path) -> bool:
    return (Path(model_dir) / TFIDF_RECORD).is_file()


def tfidf_labels(model_dir: str | Path) -> list[str]:
    return json.loads((Path(model_dir) / TFIDF_RECORD).read_text(encoding="utf-8"))["labels"]


def load_tfidf(model_dir: str | Path) -> TfidfBackend:
    """The backend of a folder `save_tfidf` wrote."""
    model_dir = Path(model_dir)
    if not is_tfidf(model_dir) or not (model_dir / PIPELINE).is_file():
        raise MahaError(f"{model_dir}: not a TF-IDF folder ({TFIDF_RECORD} and {PIPELINE} expected)")
    return TfidfBackend(joblib.load(model_dir / PIPELINE), len(tfidf_labels(model_dir)))


class TfidfBackend:
    """A fitted pipeline: `encode` = featurisation (sparse matrix), `forward` = decision scores, one column
    per dataset label (a label with no training rows, which the regression never saw, scores -inf)."""

    name, device = "tfidf", "cpu"

    def __init__(self, pipeline: Pipeline, num_labels: int):
        self.vectorizer, self.classifier = pipeline.steps[0][1], pipeline.steps[-1][1]
        self.num_labels = num_labels
        self.columns = np.asarray(self.classifier.classes_, dtype=int)

    def encode(self, texts: list[str]):
        return self.vectorizer.transform(texts)

    def forward(self, features) -> np.ndarray:
        scores = self.classifier.decision_function(features)
        if scores.ndim == 1:  # two classes: sklearn gives the positive class's score alone; softmax of
            scores = np.stack([np.zeros_like(scores), scores], axis=1)  # (0, s) is its sigmoid(s), as predict_proba
        out = np.full((scores.shape[0], self.num_labels), -np.inf, dtype=np.float32)
        out[:, self.columns] = scores
        return out

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self.forward(self.encode(texts))
