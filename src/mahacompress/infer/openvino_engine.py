"""OpenVINO: the runner (the ONNX export, or NNCF int8 IR, compiled for the CPU) and the int8 file.

- openvino: the ONNX export compiled by OpenVINO's CPU plugin, fp32 (its default on bf16-capable CPUs
  would be bf16; pinned to f32 so the row means what it says: `runtime.openvino_config`, the settings an
  exported OpenVINO folder compiles with too).
- openvino-bf16: the same ONNX export compiled with bf16 inference precision (native bf16 CPUs: AVX512-BF16,
  AMX), which an exported folder ships with the same setting.
- openvino-int8: NNCF post-training quantisation (transformer preset) of the OpenVINO model, calibrated
  on training texts; without VNNI, NNCF's overflow fix on every layer (7-bit weights, as ONNX Runtime's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.files import staged_dir
from ..core.hardware import cpu_features
from .base import TokenizedBackend, quiet_logs
from .runtime import openvino_config


class OpenVinoBackend(TokenizedBackend):
    """An ONNX or OpenVINO IR file compiled by OpenVINO for the CPU, one stream, at the backend's precision."""

    def __init__(self, name: str, path: Path, tokenizer, max_length: int, threads: int | None):
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(path), "CPU", openvino_config(threads, inference_precision(name)))
        self.inputs = [next(iter(i.get_names())) for i in self.compiled.inputs]
        self.output = self.compiled.output(0)
        self.name, self.path, self.tokenizer, self.max_length, self.device = name, path, tokenizer, max_length, "cpu"
        self.num_labels = self.output.get_partial_shape()[1].get_length()

    def forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.compiled(batch)[self.output], dtype=np.float32)


def inference_precision(backend: str) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT for `backend`: bf16 for openvino-bf16, else f32."""
    return "bf16" if backend.endswith("-bf16") else "f32"


def full_range_int8() -> bool:
    """NNCF's overflow fix is needed on every layer, not just the first, where VNNI is missing."""
    return cpu_features().vnni


def quantize_openvino_int8(fp32: Path, target: Path, batches: list[dict[str, np.ndarray]]) -> None:
    """NNCF post-training int8 of the OpenVINO model (transformer preset: attention MatMuls and Softmax
    handled as NNCF recommends), saved as `target` (model.xml + .bin) in a folder renamed in whole."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    model = ov.Core().read_model(str(fp32))
    names = [next(iter(i.get_names())) for i in model.inputs]
    fix = OverflowFix.FIRST_LAYER if full_range_int8() else OverflowFix.ENABLE
    with quiet_logs():
        quantized = nncf.quantize(model, nncf.Dataset([{k: b[k]
                                                        for k in names} for b in batches]),
                                  model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches),
                                  advanced_parameters=AdvancedQuantizationParameters(overflow_fix=fix))
    with staged_dir(target.parent, target.name) as tmp:
        ov.save_model(quantized, str(tmp / target.name))
