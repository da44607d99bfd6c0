"""Every inference backend in one table: its name, the engine that runs it, the file it serves and what it needs.

Plain data, importable without torch (`config.BACKENDS` is this table's names, so the CLI checks
`--backend` before loading anything). `load.py` reads it to build a backend's file and pick its runner;
`hardware.unsupported_reason` reads `packages`; the grid reads `needs` for the calibrated ones.

Needs (`needs`):
- "gpu": runs on a CUDA GPU only (fp16);
- "native-bf16": bf16 on a device that only emulates it is refused (unless forced): many times slower
  (torch's bf16; OpenVINO's bf16 inference precision, which an exported folder can ship);
- "vnni": int8 weights at full range need VNNI on x86; without it they get 7 bits (the file name says -r7);
- "calibration": activation ranges learnt from training texts, needed the first time its file is built.

Served files (`file`, built from the checkpoint and kept in the derived-file cache, cache.py):
- "onnx": the ONNX export (onnx_export.py), which every other file is made from;
- "onnx-int8": dynamic int8 weights; "onnx-int8-fused": transformer graph fusion, then dynamic int8;
- "onnx-int8-static": static int8 (QDQ), calibrated; "openvino-int8": NNCF int8 in OpenVINO IR, calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendSpec:
    """One way to run a classifier."""

    name: str
    engine: str  # "torch", "onnxruntime", "openvino" or "numpy" (models that are no transformer)
    file: str | None = None  # the derived file it serves; None: it runs the checkpoint itself
    needs: frozenset[str] = frozenset()
    packages: tuple[str, ...] = ()  # optional packages beyond the base install


SPECS: dict[str, BackendSpec] = {s.name: s for s in (
    BackendSpec("fp32", "torch"),
    BackendSpec("bf16", "torch", needs=frozenset({"native-bf16"})),
    BackendSpec("fp16", "torch", needs=frozenset({"gpu"})),
    BackendSpec("int8", "torch"),  # dynamic quantisation; torch's dynamic Linear always uses 7-bit activations
    BackendSpec("onnx", "onnxruntime", file="onnx"),
    BackendSpec("onnx-int8", "onnxruntime", file="onnx-int8", needs=frozenset({"vnni"})),
    BackendSpec("onnx-int8-fused", "onnxruntime", file="onnx-int8-fused", needs=frozenset({"vnni"})),
    BackendSpec("onnx-int8-static", "onnxruntime", file="onnx-int8-static", needs=frozenset({"vnni", "calibration"})),
    BackendSpec("openvino", "openvino", file="onnx", packages=("openvino",)),
    # the ONNX export compiled by OpenVINO with bf16 inference precision (runtime.openvino_config)
    BackendSpec("openvino-bf16", "openvino", file="onnx", needs=frozenset({"native-bf16"}), packages=("openvino",)),
    BackendSpec("openvino-int8", "openvino", file="openvino-int8", needs=frozenset({"vnni", "calibration"}),
                packages=("openvino", "nncf")),
    BackendSpec("static", "numpy"),  # static.py: the static-embedding student
    BackendSpec("tfidf", "numpy"),  # baseline.py: TF-IDF + logistic regression
)}
BACKENDS = tuple(SPECS)
CALIBRATED_BACKENDS = tuple(n for n, s in SPECS.items() if "calibration" in s.needs)
