"""`load_backend`: a model folder and a backend name in, a `Backend` out (the registry says how).

Only the registry is imported here at module level: the engines (torch, onnxruntime, openvino) are
imported when a backend that needs them is loaded, so `config` and the CLI can import the names cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..core.errors import MahaError
from ..core.registry import BACKENDS, SPECS
from .base import Backend


def default_backend(model_dir: str) -> str:
    """The backend `predict` and `evaluate` run a model with when none is named: `static` for a
    static-embedding student (numpy, as it is served; torch would run the same logits slower), else fp32."""
    from .numpy_engine import is_static

    return "static" if is_static(model_dir) else "fp32"


def load_backend(model_dir: str, backend: str, *, max_length: int = 128, threads: int | None = None, device: str
                 | None = None, cache_dir: str | Path | None = None, calibration_texts: Sequence[str] | None = None,
                 force: bool = False, trust_remote_code: bool = False) -> Backend:
    """Load `model_dir` to run with `backend` (one of BACKENDS).

    fp32/bf16/fp16 run on `device` (default: CUDA when present, else CPU); int8, the ONNX and the
    OpenVINO backends run on the CPU. `threads` sets torch's (process-wide) thread count for torch
    backends and the runtime's intra-op threads for the others. ONNX and OpenVINO files are built once
    per checkpoint into the derived-file cache (cache.py; `cache_dir` instead of its default root), never
    into `model_dir`. The calibrated int8 backends (onnx-int8-static, openvino-int8) need
    `calibration_texts` (training texts) the first time (build.py). bf16 on a CPU that only emulates it is
    refused unless `force`. `trust_remote_code` lets the checkpoint run the Python code its folder ships.
    """
    if backend not in SPECS:
        raise MahaError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    engine = SPECS[backend].engine
    if engine == "numpy":
        from .numpy_engine import StaticBackend, load_tfidf

        return StaticBackend(model_dir, max_length) if backend == "static" else load_tfidf(model_dir)
    if engine == "torch":
        from .torch_engine import load_torch

        return load_torch(model_dir, backend, max_length=max_length, threads=threads, device=device, force=force,
                          trust_remote_code=trust_remote_code)
    from ..models.load import load_tokenizer
    from .build import served_file

    path = served_file(model_dir, backend, max_length=max_length, cache_dir=cache_dir,
                       calibration_texts=calibration_texts, trust_remote_code=trust_remote_code)
    if engine == "onnxruntime":
        from .onnxruntime_engine import OnnxRuntimeBackend as runner
    else:
        from .openvino_engine import OpenVinoBackend as runner
    return runner(backend, path, load_tokenizer(str(model_dir), trust_remote_code=trust_remote_code), max_length,
                  threads)
