"""ONNX Runtime: the runner, and the int8 files it serves, each made from the ONNX export (onnx_export.py).

Why these files: published CPU results for small transformers credit them (FastFormers: ONNX Runtime
with fused attention + int8; sentence-transformers' benchmark: static int8 and OpenVINO ahead of plain
dynamic int8).

- onnx-int8: dynamic int8 weights. onnxruntime's suggested pre-processing (symbolic shape inference)
  is skipped: only quantised weights are needed, so its warning about it is silenced.
- onnx-int8-fused: ONNX Runtime's transformer optimizer (fused SkipLayerNorm, BiasGelu and, where it
  recognises the pattern, Attention), then dynamic int8. Attention fuses only for stock BERT/XLM-R
  (e5) models with the head count given explicitly (checked with onnxruntime 1.32, transformers 5.24):
  head-count auto-detection (num_heads=0) fails, and pruned checkpoints' own attention code is not
  matched even when every layer keeps the same heads. So pruned models get SkipLayerNorm and BiasGelu
  fusion only; the record `fuse` returns (fusion.json beside the file) says what fused.
- onnx-int8-static: activations and weights int8 (QDQ, weights per channel), activation ranges
  calibrated on training texts (MinMax); can lose accuracy, so measure it.

int8 settings follow the CPU (hardware.ort_int8_options): without VNNI, 7-bit weights (reduce_range)
against U8S8 saturation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..core.files import atomic_path
from ..core.hardware import ort_int8_options
from .base import TokenizedBackend, quiet_logs


class OnnxRuntimeBackend(TokenizedBackend):
    """An ONNX file run by onnxruntime's CPU provider with `threads` intra-op threads."""

    def __init__(self, name: str, path: Path, tokenizer, max_length: int, threads: int | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0  # 0 = onnxruntime's default (one per physical core)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.name, self.path, self.tokenizer, self.max_length, self.device = name, path, tokenizer, max_length, "cpu"
        self.num_labels = self.session.get_outputs()[0].shape[1]

    def forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, batch)[0].astype(np.float32)


def quantize_dynamic_int8(fp32: Path, target: Path, *, typed_outputs: bool = False) -> None:
    """Dynamic int8 weights of `fp32`, written atomically to `target`. `typed_outputs`: a fused graph,
    whose com.microsoft operators' outputs shape inference cannot type (they are float)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT} if typed_outputs else {}
    with atomic_path(target) as tmp, quiet_logs():
        quantize_dynamic(fp32, str(tmp), weight_type=QuantType.QInt8, reduce_range=ort_int8_options()["reduce_range"],
                         extra_options=extra)


def fuse_int8(fp32: Path, target: Path, heads_per_layer: list[int] | None, num_attention_heads: int,
              head_dim: int) -> dict:
    """The transformer optimizer's fusions of `fp32`, then dynamic int8, to `target`; returns what fused."""
    from onnxruntime.transformers.optimizer import optimize_model

    uniform = heads_per_layer is None or len(set(heads_per_layer)) == 1
    num_heads = (heads_per_layer[0] if heads_per_layer else num_attention_heads) if uniform else 0
    hidden = num_heads * head_dim if uniform else 0
    with quiet_logs():
        fused = optimize_model(str(fp32), model_type="bert", num_heads=num_heads, hidden_size=hidden)
    stats = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fuse-") as work:
        fused_path = Path(work) / "model-fused.onnx"
        fused.save_model_to_file(str(fused_path))
        quantize_dynamic_int8(fused_path, target, typed_outputs=True)
    return {
        "fused_operators": stats, "num_heads": num_heads, "hidden_size": hidden, "heads_per_layer": heads_per_layer,
        "attention_fused": bool(stats.get("Attention"))
    }


def quantize_static_int8(fp32: Path, target: Path, batches: list[dict[str, np.ndarray]]) -> None:
    """onnxruntime static int8: QDQ, per-channel weights, MatMul/Gemm only (quantising Add, Softmax or
    LayerNorm inputs costs accuracy in transformers for little speed), settings per CPU (hardware.py)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    names = [i.name for i in onnx.load(str(fp32), load_external_data=False).graph.input]

    class Reader(CalibrationDataReader):

        def __init__(self):
            self.items = iter([{k: b[k] for k in names} for b in batches])

        def get_next(self):
            return next(self.items, None)

    with atomic_path(target) as tmp, quiet_logs():
        quantize_static(str(fp32), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=["MatMul", "Gemm"], **ort_int8_options())
