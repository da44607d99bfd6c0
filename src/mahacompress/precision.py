"""Which numeric precision to train in, and the inference backends every results row is measured with.

Training: `training_precision` turns "auto" / "no" / "bf16" / "fp16" into the value Accelerate's
`mixed_precision` takes, refusing (one line, with alternatives) what the hardware cannot run or only
emulates (bf16 on a CPU without AVX512-BF16/AMX; hardware.py says what the CPU has).

Inference: `load_backend(model_dir, name)` gives one small interface (`Backend`) over ten ways to run
the same checkpoint, so `measure.latency` can time them side by side on identical batches:

- fp32 / bf16 / fp16: the PyTorch model cast to that dtype (fp16 only on CUDA);
- int8: PyTorch dynamic quantisation of every nn.Linear (int8 weights, activations quantised per batch
  with 7-bit range, which torch's dynamic Linear always uses: no saturation without VNNI either);
- onnx / onnx-int8: an ONNX export run by onnxruntime on the CPU, the second with int8 weights;
- onnx-int8-fused / onnx-int8-static / openvino / openvino-int8: other runtimes (runtimes.py);
- static / tfidf: the models that are no transformer, run with numpy (static.py, baseline.py).

Measured on this project's 2-core AMD EPYC (avx512_bf16, avx512_vnni) with e5-small (12 layers, hidden
384), batch 32, median of 3, while a training job shared the two cores (absolute numbers inflated;
the ranking is what was sought):

| variant                 | 2 threads, 96 tokens | 1 thread, 64 tokens |
| fp32                    | 3257 ms              | 1693 ms             |
| bf16 torch.autocast     | 3298 ms              |  853 ms             |
| bf16 model.to(bfloat16) | 2312 ms              |  793 ms             |
| int8, engine x86        | 1580 ms              |  630 ms             |
| int8, engine fbgemm     | 1656 ms              |  606 ms             |
| int8, engine onednn     | 2200 ms              |  724 ms             |
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
import torch

from .batching import length_sorted_batches
from .config import BACKENDS, RUNTIME_BACKENDS, TRAINING_PRECISIONS
from .errors import MahaError
from .files import atomic_path
from .hardware import cpu_bf16_gap, native_bf16, ort_int8_options
from .models import load_classifier, load_tokenizer

SEVEN_BIT_SUFFIX = "-r7"  # int8 ONNX files with 7-bit weights (int8_file_name)
INT8_ENGINE = "x86"  # x86 ~ fbgemm (within noise), onednn slower (module docstring); x86 dispatches per op
ONNX_OPSET = 18
_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Two texts of different lengths: torch.export treats sizes 0 and 1 as constants, so the example
# batch needs batch >= 2 and sequence >= 2 for both axes to stay symbolic.
_EXAMPLE_TEXTS = ["नमस्कार, आज पुण्यात पाऊस पडला आणि वाहतूक मंदावली.", "नमस्कार"]


# ---------------------------------------------------------------- training

def training_precision(requested: str, device: torch.device | str, *, force: bool = False) -> str:
    """Accelerate's `mixed_precision` value for `requested` on `device`.

    "auto" picks bf16 where it is native (GPUs from Ampere on; CPUs with AVX512-BF16 or AMX), else
    fp16 on a GPU (Accelerate adds a gradient scaler) and fp32 ("no") on a CPU. bf16 asked for on a
    CPU that only emulates it is refused unless `force`: there it runs many times slower than fp32.
    """
    if requested not in TRAINING_PRECISIONS:
        raise MahaError(f"unknown precision {requested!r}: choose one of {', '.join(TRAINING_PRECISIONS)}")
    device = torch.device(device)
    if requested == "auto":
        if native_bf16(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "no"
    if requested == "fp16" and device.type != "cuda":
        raise MahaError(f"fp16 training needs a CUDA GPU; {_hardware(device)}: use bf16 or no")
    if requested == "bf16" and not native_bf16(device) and not force:
        raise MahaError(_bf16_refusal("training", device, "fp16 or no" if device.type == "cuda" else "no (fp32)"))
    return requested


def _bf16_refusal(what: str, device: torch.device, instead: str) -> str:
    if device.type == "cpu":
        return f"bf16 {what} {cpu_bf16_gap()}: use {instead}, or force it"
    return f"bf16 {what} needs a GPU with native bfloat16 (Ampere or newer); {_hardware(device)}: use {instead}"


def _hardware(device: torch.device) -> str:
    """The hardware, in words, for error messages."""
    if device.type == "cuda":
        return f"this GPU is a {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return "the model runs on the CPU" if torch.cuda.is_available() else "this machine has CPU only"
    return f"the device is {device.type}"


# ---------------------------------------------------------------- backends

class Backend(Protocol):
    """One way to run a classifier. `encode` + `forward` let timing leave tokenisation out."""

    name: str
    device: str

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...

    def forward(self, batch: Any) -> np.ndarray: ...

    def encode(self, texts: list[str]) -> Any: ...


class _Batched:
    """`logits` shared by all backends: length-sorted batches (less padding), results in input order."""

    name: str
    num_labels: int

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.num_labels), dtype=np.float32)
        for idx in length_sorted_batches(texts, batch_size):
            out[idx] = self.forward(self.encode([texts[i] for i in idx]))
        return out


class TorchBackend(_Batched):
    """A PyTorch model; `forward` returns float32 numpy logits, which also waits for a GPU to finish."""

    def __init__(self, name: str, model: torch.nn.Module, tokenizer, max_length: int, device: str):
        self.name, self.model, self.tokenizer = name, model.eval(), tokenizer
        self.max_length, self.device = max_length, device
        self.num_labels = model.config.num_labels

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        return self.model(**batch).logits.float().cpu().numpy()


class OnnxBackend(_Batched):
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

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        return {k: enc[k].astype(np.int64) for k in self.inputs}

    def forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, batch)[0].astype(np.float32)


def default_backend(model_dir: str) -> str:
    """The backend `predict` and `evaluate` run a model with when none is named: `static` for a
    static-embedding student (numpy, as it is served; torch would run the same logits slower), else fp32."""
    from .static import is_static  # imports training code: loaded only when asked for

    return "static" if is_static(model_dir) else "fp32"


def load_backend(model_dir: str, backend: str, *, max_length: int = 128, threads: int | None = None,
                 device: str | None = None, cache_dir: str | Path | None = None,
                 calibration_texts: Sequence[str] | None = None, force: bool = False) -> Backend:
    """Load `model_dir` to run with `backend` (one of BACKENDS).

    fp32/bf16/fp16 run on `device` (default: CUDA when present, else CPU); int8, the ONNX and the
    OpenVINO backends run on the CPU. `threads` sets torch's (process-wide) thread count for torch
    backends and the runtime's intra-op threads for the others. ONNX and OpenVINO files are cached
    beside the model, or under `cache_dir`, and rebuilt when the checkpoint is newer. The calibrated
    int8 backends (onnx-int8-static, openvino-int8) need `calibration_texts` (training texts) the first
    time (runtimes.py). bf16 on a CPU that only emulates it is refused unless `force`.
    """
    if backend not in BACKENDS:
        raise MahaError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "static":
        from .static import StaticBackend  # imports training code: loaded only when asked for

        return StaticBackend(model_dir, max_length)
    if backend == "tfidf":
        from .baseline import load_tfidf

        return load_tfidf(model_dir)
    if backend in RUNTIME_BACKENDS:
        from .runtimes import load_runtime  # imports precision: loaded here, not at module level

        return load_runtime(model_dir, backend, max_length=max_length, threads=threads, cache_dir=cache_dir,
                            calibration_texts=calibration_texts)
    tokenizer = load_tokenizer(str(model_dir))
    if backend.startswith("onnx"):
        path = ensure_onnx(model_dir, quantized=backend == "onnx-int8", cache_dir=cache_dir)
        return OnnxBackend(backend, path, tokenizer, max_length, threads)
    if threads:
        torch.set_num_threads(threads)
    if backend == "int8":
        if device not in (None, "cpu"):
            raise MahaError(f"int8 (dynamic quantisation) runs on the CPU only, not {device}: "
                            "use fp16 or bf16 on a GPU")
        return TorchBackend(backend, quantize_int8(load_classifier(str(model_dir))), tokenizer, max_length, "cpu")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if backend == "fp16" and dev.type != "cuda":
        raise MahaError(f"fp16 inference needs a CUDA GPU; {_hardware(dev)}: use bf16, int8 or onnx-int8")
    if backend == "bf16" and not native_bf16(dev) and not force:
        raise MahaError(_bf16_refusal("inference", dev, "fp16 or fp32" if dev.type == "cuda" else "fp32, int8 or onnx-int8"))
    # bf16 casts the weights instead of using torch.autocast: autocast re-casts every weight on every
    # call; the cast model was faster in both measurements (module docstring), by 7% to 30%.
    model = load_classifier(str(model_dir)).to(dev, _TORCH_DTYPES[backend])
    return TorchBackend(backend, model, tokenizer, max_length, str(dev))


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of every nn.Linear, with the engine measured fastest here.

    torch.ao.quantization is deprecated in favour of torchao (warning says "removed in 2.10") but
    still present and working in torch 2.13; its warnings are silenced so every run doesn't print them.
    """
    from torch.ao.quantization import quantize_dynamic

    if INT8_ENGINE in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = INT8_ENGINE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)


# ---------------------------------------------------------------- ONNX export and cache

def onnx_path(model_dir: str | Path, *, quantized: bool = False, cache_dir: str | Path | None = None) -> Path:
    """Where the (int8) ONNX file of `model_dir` is cached: beside the model, or in a per-model folder
    of `cache_dir` (named by the folder name plus a hash of its absolute path, so models don't clash)."""
    model_dir = Path(model_dir)
    folder = model_dir
    if cache_dir is not None:
        resolved = str(model_dir.resolve())
        folder = Path(cache_dir) / f"{model_dir.resolve().name}-{hashlib.sha1(resolved.encode()).hexdigest()[:8]}"
    if not quantized:
        return folder / "model.onnx"
    return folder / int8_file_name("model-int8")


def int8_file_name(stem: str) -> str:
    """`stem`.onnx, or `stem`-r7.onnx when this CPU gets 7-bit weights (x86 without VNNI): files built for
    different CPUs never share a name, so a model folder moved to another CPU builds the one it needs."""
    return f"{stem}{SEVEN_BIT_SUFFIX if ort_int8_options()['reduce_range'] else ''}.onnx"


def ensure_onnx(model_dir: str | Path, *, quantized: bool = False, cache_dir: str | Path | None = None) -> Path:
    """The cached ONNX (or int8 ONNX) file of `model_dir`, exported or quantised first if missing or stale."""
    if not Path(model_dir).is_dir():
        raise MahaError(f"{model_dir}: ONNX export needs a local model folder")
    fp32 = onnx_path(model_dir, cache_dir=cache_dir)
    if _stale(fp32, checkpoint_files(model_dir)):
        export_onnx(model_dir, fp32)
    if not quantized:
        return fp32
    int8 = onnx_path(model_dir, quantized=True, cache_dir=cache_dir)
    if _stale(int8, [fp32]):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Skips onnxruntime's suggested pre-processing: its symbolic shape inference fails on the
        # dynamo export ("unsupported broadcast between Min(128, sequence) sequence"), and only
        # quantised weights are needed, so its warning about it is silenced. Without VNNI, weights
        # get 7 bits against U8S8 saturation (hardware.ort_int8_options); the file name says so.
        with atomic_path(int8) as tmp, _quiet_logs(logging.WARNING):
            quantize_dynamic(fp32, str(tmp), weight_type=QuantType.QInt8,
                             reduce_range=ort_int8_options()["reduce_range"])
    return int8


def export_onnx(model_dir: str | Path, out: Path) -> Path:
    """Export the classifier to `out` with symbolic batch and sequence axes.

    Uses torch 2.13's default exporter (dynamo=True: torch.export, non-strict), which traces the
    Python forward as it runs, so checkpoints with their own modelling code (trust_remote_code, e.g.
    pruned models with per-layer sizes) export like stock BERT. A single file (no external data):
    BERT-family classifiers stay far below protobuf's 2 GB limit.
    """
    model = load_classifier(str(model_dir)).float().eval()
    example = dict(load_tokenizer(str(model_dir))(_EXAMPLE_TEXTS, padding=True, return_tensors="pt"))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with atomic_path(out) as tmp, warnings.catch_warnings(), _quiet_logs(logging.WARNING):
        warnings.simplefilter("ignore")  # tracer chatter about transformers internals, not about the result
        torch.onnx.export(model, (), str(tmp), kwargs=example, dynamo=True, external_data=False, verbose=False,
                          input_names=list(example), output_names=["logits"], opset_version=ONNX_OPSET,
                          dynamic_shapes={k: {0: batch, 1: seq} for k in example})
    return out


def checkpoint_files(model_dir: str | Path) -> list[Path]:
    """The files an export is made from (config, weights, modelling code): a served file older than one
    of them is stale. Not every .json: the caches' own records (fusion.json, calibration stamps) are
    written beside the model after its files, and must not make them stale."""
    return [p for p in Path(model_dir).iterdir() if p.suffix in (".safetensors", ".bin", ".py") or p.name == "config.json"]


def _stale(target: Path, sources: list[Path]) -> bool:
    return not target.is_file() or any(s.stat().st_mtime > target.stat().st_mtime for s in sources)


@contextmanager
def _quiet_logs(level: int) -> Iterator[None]:
    """Drop log records up to `level` for the duration (onnx export and quantisation log through the
    root logger: "torchvision is not installed", "consider pre-processing")."""
    logging.disable(level)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
