"""Serving runtimes beyond plain ONNX Runtime: graph fusion, static int8, OpenVINO (fp32 and int8).

Why these: published CPU results for small transformers credit them (FastFormers: ONNX Runtime with
fused attention + int8; sentence-transformers' benchmark: OpenVINO static int8 ahead of ONNX dynamic
int8). Each backend here builds its file once from the model's cached fp32 ONNX export (precision.
ensure_onnx) and caches it beside it, rebuilt when that export is newer:

- onnx-int8-fused: ONNX Runtime's transformer optimizer (fused SkipLayerNorm, BiasGelu and, where it
  recognises the pattern, Attention), then dynamic int8. Attention fuses only for stock BERT/XLM-R
  (e5) models exported by TorchScript with eager attention and the head count given explicitly
  (checked with onnxruntime 1.32, transformers 5.24): the dynamo export's attention is never matched,
  head-count auto-detection (num_heads=0) fails on both exports, and pruned checkpoints' own attention
  code is not matched even when every layer keeps the same heads. So pruned models get SkipLayerNorm
  and BiasGelu fusion only; `fusion.json` beside the file records what fused.
- onnx-int8-static: activations and weights int8 (QDQ, weights per channel), activation ranges
  calibrated on `calibration_texts` (MinMax); can lose accuracy, so measure it.
- openvino: the ONNX export compiled by OpenVINO's CPU plugin, fp32 (its default on bf16-capable CPUs
  would be bf16; pinned to f32 so the row means what it says).
- openvino-int8: NNCF post-training quantisation (transformer preset) of the OpenVINO model, calibrated
  on `calibration_texts`.

int8 settings follow the CPU (hardware.py): without VNNI, 7-bit weights (ONNX Runtime's reduce_range,
named -r7 like the plain int8 file; NNCF's overflow fix on every layer). Calibrated files record a hash
of their texts in a sidecar `.json`: given other texts they are rebuilt; given none, the cached file is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .batching import length_sorted_batches
from .errors import MahaError
from .files import atomic_path, staged_dir, write_json
from .hardware import cpu_features, ort_int8_options
from .models import load_classifier, load_tokenizer
from .precision import _EXAMPLE_TEXTS, ONNX_OPSET, OnnxBackend, _Batched, _quiet_logs, \
    _stale, checkpoint_files, ensure_onnx, int8_file_name, onnx_path

CALIBRATION_BATCH = 8
CALIBRATION_TEXTS = 512  # training texts that calibrate activation ranges (benchmarks/runtimes.py's default)
CALIBRATED_BACKENDS = ("onnx-int8-static", "openvino-int8")
_FILES = {"onnx-int8-static": "model-int8-static.onnx",
          "openvino": "model.onnx", "openvino-int8": "openvino-int8/model.xml"}


def calibration_sample(texts: Sequence[str], n: int = CALIBRATION_TEXTS, seed: int = 0) -> list[str]:
    """A seeded sample of `n` training texts: the same texts every run, so a calibrated file is reused."""
    return random.Random(seed).sample(list(texts), min(n, len(texts)))


def runtime_file(model_dir: str | Path, backend: str, cache_dir: str | Path | None = None) -> Path:
    """Where `backend`'s served file of `model_dir` is cached (openvino serves the plain ONNX export;
    the fused int8 file is named by precision.int8_file_name, as the plain int8 file is)."""
    name = int8_file_name("model-fused-int8") if backend == "onnx-int8-fused" else _FILES[backend]
    return onnx_path(model_dir, cache_dir=cache_dir).parent / name


def served_files(model_dir: str | Path, backend: str, cache_dir: str | Path | None = None) -> list[Path]:
    """The files an ONNX or OpenVINO backend of `model_dir` serves from (for sizes on disk)."""
    if backend in ("onnx", "onnx-int8"):
        return [onnx_path(model_dir, quantized=backend == "onnx-int8", cache_dir=cache_dir)]
    path = runtime_file(model_dir, backend, cache_dir)
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def ensure_runtime(model_dir: str | Path, backend: str, *, max_length: int = 128, cache_dir: str | Path | None = None,
                   calibration_texts: Sequence[str] | None = None) -> Path:
    """The file `backend` (one of RUNTIME_BACKENDS) serves `model_dir` from, built first if missing or
    stale; the calibrated ones also when `calibration_texts` differ from those they were built with."""
    if backend == "onnx-int8-fused":  # made from its own TorchScript export, not from the fp32 ONNX file
        return ensure_fused_int8(model_dir, cache_dir)
    fp32 = ensure_onnx(model_dir, cache_dir=cache_dir)
    if backend == "openvino":
        return fp32
    target = runtime_file(model_dir, backend, cache_dir)
    stamp = _calibration_stamp(calibration_texts, max_length) if calibration_texts else None
    if _stale(target, [fp32]) or (stamp and _recorded_stamp(target) != stamp):
        if not calibration_texts:
            raise MahaError(f"{model_dir}: {backend} calibrates activation ranges on training texts and none "
                            "are cached: pass calibration_texts (or build it once with benchmarks/runtimes.py)")
        batches = _calibration_batches(load_tokenizer(str(model_dir)), calibration_texts, max_length)
        if backend == "onnx-int8-static":
            _quantize_static(fp32, target, batches)
        else:
            _quantize_openvino(fp32, target, batches)
        write_json(target.with_suffix(".json"), stamp)
    return target


def load_runtime(model_dir: str | Path, backend: str, *, max_length: int, threads: int | None,
                 cache_dir: str | Path | None = None, calibration_texts: Sequence[str] | None = None):
    """A Backend for one of RUNTIME_BACKENDS, building (or reusing) its cached file first."""
    path = ensure_runtime(model_dir, backend, max_length=max_length, cache_dir=cache_dir,
                          calibration_texts=calibration_texts)
    runner = OnnxBackend if backend.startswith("onnx") else OpenVinoBackend
    return runner(backend, path, load_tokenizer(str(model_dir)), max_length, threads)


class OpenVinoBackend(_Batched):
    """An ONNX or OpenVINO IR file compiled by OpenVINO for the CPU, fp32 arithmetic, one stream."""

    def __init__(self, name: str, path: Path, tokenizer, max_length: int, threads: int | None):
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.inputs = [next(iter(i.get_names())) for i in self.compiled.inputs]
        self.output = self.compiled.output(0)
        self.name, self.path, self.tokenizer, self.max_length, self.device = name, path, tokenizer, max_length, "cpu"
        self.num_labels = self.output.get_partial_shape()[1].get_length()

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        return {k: enc[k].astype(np.int64) for k in self.inputs}

    def forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.compiled(batch)[self.output], dtype=np.float32)


# ---------------------------------------------------------------- graph fusion

def ensure_fused_int8(model_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The fused, dynamically quantised ONNX file of `model_dir` (see the module docstring)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    target = runtime_file(model_dir, "onnx-int8-fused", cache_dir)
    if not _stale(target, checkpoint_files(model_dir)):
        return target
    config = load_classifier(str(model_dir)).config
    heads = getattr(config, "heads_per_layer", None)
    uniform = heads is None or len(set(heads)) == 1
    exported = target.with_name("model-torchscript.onnx")
    exported.parent.mkdir(parents=True, exist_ok=True)
    _export_torchscript(model_dir, exported)
    num_heads = (heads[0] if heads else config.num_attention_heads) if uniform else 0
    hidden = (num_heads * (getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
              if uniform else 0)
    with _quiet_logs(logging.WARNING):
        fused = optimize_model(str(exported), model_type="bert", num_heads=num_heads, hidden_size=hidden)
    stats = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    fused_path = target.with_name("model-fused.onnx")
    fused.save_model_to_file(str(fused_path))
    exported.unlink()
    # Shape inference cannot type the outputs of fused (com.microsoft) operators; they are float.
    with atomic_path(target) as tmp, _quiet_logs(logging.WARNING):
        quantize_dynamic(fused_path, str(tmp), weight_type=QuantType.QInt8, reduce_range=ort_int8_options()["reduce_range"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    fused_path.unlink()
    record = {"fused_operators": stats, "num_heads": num_heads, "hidden_size": hidden,
              "heads_per_layer": heads, "attention_fused": bool(stats.get("Attention"))}
    write_json(target.with_name("fusion.json"), record)
    return target


def fusion_record(model_dir: str | Path, cache_dir: str | Path | None = None) -> dict:
    """What the optimizer fused for `model_dir` (written by ensure_fused_int8)."""
    path = runtime_file(model_dir, "onnx-int8-fused", cache_dir).with_name("fusion.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _export_torchscript(model_dir: str | Path, out: Path) -> None:
    """TorchScript export with eager attention: the graph pattern ORT's attention fusion matches
    (the dynamo export's attention is never fused). Stock models switch to eager attention; pruned
    checkpoints' own code is explicit attention already."""
    import torch

    model = load_classifier(str(model_dir)).float().eval()
    if getattr(model.config, "heads_per_layer", None) is None:
        model.set_attn_implementation("eager")
    example = dict(load_tokenizer(str(model_dir))(_EXAMPLE_TEXTS, padding=True, return_tensors="pt"))
    with warnings.catch_warnings(), _quiet_logs(logging.WARNING):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(example.values()), str(out), dynamo=False, input_names=list(example),
                          output_names=["logits"], opset_version=min(ONNX_OPSET, 17),
                          dynamic_axes={k: {0: "batch", 1: "sequence"} for k in example})


# ---------------------------------------------------------------- calibrated int8

def _calibration_batches(tokenizer, texts: Sequence[str], max_length: int) -> list[dict[str, np.ndarray]]:
    """Tokenised batches of the calibration texts, as the served model will see them."""
    out = []
    for idx in length_sorted_batches(texts, CALIBRATION_BATCH):
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                        return_tensors="np")
        out.append({k: v.astype(np.int64) for k, v in enc.items()})
    return out


def _quantize_static(fp32: Path, target: Path, batches: list[dict[str, np.ndarray]]) -> None:
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

    with atomic_path(target) as tmp, _quiet_logs(logging.WARNING):
        quantize_static(str(fp32), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=["MatMul", "Gemm"], **ort_int8_options())


def _quantize_openvino(fp32: Path, target: Path, batches: list[dict[str, np.ndarray]]) -> None:
    """NNCF post-training int8 of the OpenVINO model (transformer preset: attention MatMuls and
    Softmax handled as NNCF recommends), overflow fix on every layer where VNNI is missing."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    model = ov.Core().read_model(str(fp32))
    names = [next(iter(i.get_names())) for i in model.inputs]
    fix = OverflowFix.FIRST_LAYER if cpu_features().vnni else OverflowFix.ENABLE
    with _quiet_logs(logging.WARNING):
        quantized = nncf.quantize(model, nncf.Dataset([{k: b[k] for k in names} for b in batches]),
                                  model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches),
                                  advanced_parameters=AdvancedQuantizationParameters(overflow_fix=fix))
    with staged_dir(target.parent, target.name) as tmp:
        ov.save_model(quantized, str(tmp / target.name))


def _calibration_stamp(texts: Sequence[str], max_length: int) -> dict:
    digest = hashlib.sha1("\n".join(texts).encode("utf-8")).hexdigest()
    return {"calibration_texts": len(texts), "sha1": digest, "max_length": max_length}


def _recorded_stamp(target: Path) -> dict | None:
    record = target.with_suffix(".json")
    return json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None
