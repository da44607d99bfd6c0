"""Run an exported mahacompress classifier folder with onnxruntime (or OpenVINO), tokenizers and numpy only.

This file is copied into every folder written by `mahacompress export`, so it must import nothing
else (no torch, no transformers, no mahacompress): a deployment installs the packages in the
folder's `requirements.txt` and runs

    from runtime import Classifier
    clf = Classifier("path/to/folder")
    clf.predict(["आज पुण्यात पाऊस पडला"])  # [{"label": ..., "probabilities": {label: p, ...}}]

A folder exported as `openvino-int8` (export.json's `engine` is "openvino") holds NNCF's int8 OpenVINO IR
(`model.xml` + `model.bin`) and runs with the `openvino` package instead of onnxruntime, compiled as
`openvino_config` says: the very settings the benchmarked `openvino-int8` backend compiles with. One exported
as `openvino` or `openvino-bf16` holds the fp32 ONNX graph, compiled by OpenVINO at the manifest's
`inference_precision` ("f32" or "bf16").

A static-embedding student's folder (export.json's `kind` is "static-embedding") holds no ONNX graph but
its per-piece logit table (`StaticTable`), run with numpy and tokenizers alone: onnxruntime is not imported
for it, and `threads` / `memory_arena` do not apply (a lookup and a mean, on the calling thread).
`StaticTable` is also what mahacompress's own `static.StaticBackend` computes with, so the exported
folder and the benchmarked backend share one formulation of the math.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MANIFEST = "export.json"
STATIC_KIND = "static-embedding"  # export.json's `kind` for a static-embedding student
OPENVINO_ENGINE = "openvino"  # export.json's `engine` for OpenVINO IR (absent or "onnxruntime": an ONNX graph)


def openvino_config(threads: int | None, precision: str = "f32") -> dict[str, str]:
    """OpenVINO CPU plugin settings: `precision` arithmetic outside the int8 layers, pinned (its default on a
    bf16-capable CPU would be bf16, another model than the one measured; "bf16" is asked for by name, and a
    CPU without native bf16 runs it as f32), latency-oriented, one stream (one request at a time, as the
    service batches them), `threads` intra-op threads (None: OpenVINO's default)."""
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return config


class StaticTable:
    """A static student with its linear head folded into the table: row i is piece i's logits (embedding_i @ W.T),
    so a text's logits are the mean of its counted pieces' rows plus the bias, exactly the model's output.
    Special pieces are zero rows and do not count in the mean (the model leaves them out)."""

    def __init__(self, piece_logits: np.ndarray, bias: np.ndarray, special_ids: Sequence[int]):
        self.special_ids = sorted({int(i) for i in special_ids})
        self.counted = np.ones(len(piece_logits), dtype=np.float32)
        self.counted[self.special_ids] = 0.0
        self.piece_logits = np.asarray(piece_logits, dtype=np.float32) * self.counted[:, None]
        self.bias = np.asarray(bias, dtype=np.float32)

    def logits(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits [n, labels] of the texts given as piece ids (unpadded; a text with no counted piece gets the bias)."""
        out = np.empty((len(batch), len(self.bias)), dtype=np.float32)
        for row, ids in enumerate(batch):
            out[row] = self.piece_logits[ids].sum(0) / max(1.0, float(self.counted[ids].sum())) + self.bias
        return out


class Classifier:
    """Tokeniser + ONNX session (or compiled OpenVINO model, or static table) of one exported folder; `predict`
    returns a label and probabilities per text. `threads` is the intra-op thread count the model runs with (1
    for a static table)."""

    def __init__(self, folder: str | Path, threads: int | None = None, memory_arena: bool = True,
                 memory_pattern: bool = False):
        """`memory_arena=False` turns off onnxruntime's CPU arena: without it, memory is returned after each
        call instead of kept at the largest (batch, length) shape seen. `memory_pattern` is onnxruntime's
        per-shape allocation plan cache, off by default: a service sees a new (batch, length) shape with
        nearly every batch and the cache keeps a plan for each (microsoft/onnxruntime#11118), so resident
        memory grows with the number of shapes served; see benchmarks/serve_load.py. Both are onnxruntime's
        and do not apply to an OpenVINO folder."""
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
        self.labels: list[str] = self.manifest["labels"]
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.manifest["max_length"])
        self.static: StaticTable | None = None
        if self.manifest.get("kind") == STATIC_KIND:
            self.tokenizer.no_padding()
            self.static = StaticTable(np.load(self.folder / self.manifest["model_file"]), self.manifest["bias"],
                                      self.manifest["special_ids"])
            self.threads = 1
            return
        self.tokenizer.enable_padding(pad_id=self.manifest["pad_id"], pad_token=self.manifest["pad_token"])
        self.compiled = None
        if self.manifest.get("engine") == OPENVINO_ENGINE:
            import openvino as ov

            self.compiled = ov.Core().compile_model(
                str(self.folder / self.manifest["model_file"]), "CPU",
                openvino_config(threads, self.manifest.get("inference_precision", "f32")))
            self.inputs = [next(iter(i.get_names())) for i in self.compiled.inputs]
            self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
            return
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0  # 0 = onnxruntime's default (one per physical core)
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = memory_arena
        opts.enable_mem_pattern = memory_pattern
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.folder / self.manifest["model_file"]), opts,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.threads = self.session.get_session_options().intra_op_num_threads

    def reserve(self, batch_size: int) -> None:
        """Run one batch of the largest shape this folder can be asked for (`batch_size` texts of
        `max_length` pieces), so onnxruntime's arena is sized once, before the first request. The arena keeps
        its largest allocation and reuses it for every smaller shape; without this a service's memory climbs
        for as long as it meets new, larger (batch, length) shapes (minutes, on short texts with a rare long
        one), which reads as a leak. Measured in-process on a fused int8 student (mixed lengths, random
        batch sizes): resident memory reaches its plateau with the largest shape and stays there; with the
        arena off it swings by hundreds of MiB instead (glibc keeps freed blocks). A static table has nothing
        to reserve."""
        if self.static is not None:
            return
        self._forward([" ".join(["a"] * self.manifest["max_length"])] * batch_size)

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
        if self.static is not None:
            return self.static.logits([e.ids for e in encs])
        arrays = {
            "input_ids": [e.ids for e in encs], "attention_mask": [e.attention_mask for e in encs],
            "token_type_ids": [e.type_ids for e in encs]
        }
        feed = {name: np.asarray(arrays[name], dtype=np.int64) for name in self.inputs}
        if self.compiled is not None:
            return np.asarray(self.compiled(feed)[self.compiled.output(0)], dtype=np.float32)
        return self.session.run(None, feed)[0].astype(np.float32)

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[dict]:
        """[{"label", "probabilities": {label: p}}] per text, in order."""
        logits = self.logits(texts, batch_size)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        return [{
            "label": self.labels[int(p.argmax())],
            "probabilities": {lab: round(float(x), 6)
                              for lab, x in zip(self.labels, p)}
        } for p in probs]
