"""Run an exported mahacompress classifier folder with onnxruntime, tokenizers and numpy only.

This file is copied into every folder written by `mahacompress export`, so it must import nothing
else (no torch, no transformers, no mahacompress): a deployment installs the three packages in the
folder's `requirements.txt` and runs

    from runtime import Classifier
    clf = Classifier("path/to/folder")
    clf.predict(["आज पुण्यात पाऊस पडला"])  # [{"label": ..., "probabilities": {label: p, ...}}]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

MANIFEST = "export.json"


class Classifier:
    """Tokeniser + ONNX session of one exported folder; `predict` returns a label and probabilities per text."""

    def __init__(self, folder: str | Path, threads: int | None = None, memory_arena: bool = True):
        """`memory_arena=False` turns off onnxruntime's CPU arena: without it, memory is returned after each
        call instead of kept at the largest (batch, length) shape seen; see benchmarks/serve_load.py."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
        self.labels: list[str] = self.manifest["labels"]
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.manifest["max_length"])
        self.tokenizer.enable_padding(pad_id=self.manifest["pad_id"], pad_token=self.manifest["pad_token"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0  # 0 = onnxruntime's default (one per physical core)
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = memory_arena
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.folder / self.manifest["model_file"]), opts,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def logits(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Logits [n, labels] in input order; batches are length-sorted so each pads to similar lengths."""
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self._forward([texts[i] for i in idx])
        return out

    def _forward(self, texts: list[str]) -> np.ndarray:
        encs = self.tokenizer.encode_batch(texts)
        arrays = {"input_ids": [e.ids for e in encs], "attention_mask": [e.attention_mask for e in encs],
                  "token_type_ids": [e.type_ids for e in encs]}
        feed = {name: np.asarray(arrays[name], dtype=np.int64) for name in self.inputs}
        return self.session.run(None, feed)[0].astype(np.float32)

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[dict]:
        """[{"label", "probabilities": {label: p}}] per text, in order."""
        logits = self.logits(texts, batch_size)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        return [{"label": self.labels[int(p.argmax())],
                 "probabilities": {lab: round(float(x), 6) for lab, x in zip(self.labels, p)}} for p in probs]
