"""PyTorch backends: the checkpoint cast to fp32 / bf16 / fp16, or with dynamic int8 Linear layers.

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

int8 is PyTorch dynamic quantisation of every nn.Linear (int8 weights, activations quantised per batch
with 7-bit range, which torch's dynamic Linear always uses: no saturation without VNNI either).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..core.errors import MahaError
from ..core.hardware import bf16_refusal, device_in_words, native_bf16
from ..core.registry import SPECS
from ..models.load import load_classifier, load_tokenizer
from .base import BatchedBackend

INT8_ENGINE = "x86"  # x86 ~ fbgemm (within noise), onednn slower (module docstring); x86 dispatches per op
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchBackend(BatchedBackend):
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


def load_torch(model_dir: str, backend: str, *, max_length: int, threads: int | None, device: str | None, force: bool,
               trust_remote_code: bool = False) -> TorchBackend:
    """`backend` (fp32, bf16, fp16, int8) of `model_dir`; refuses, in one line, a device that cannot run it."""
    tokenizer = load_tokenizer(str(model_dir), trust_remote_code=trust_remote_code)
    if threads:
        torch.set_num_threads(threads)
    if backend == "int8":
        if device not in (None, "cpu"):
            raise MahaError(
                f"int8 (dynamic quantisation) runs on the CPU only, not {device}: use fp16 or bf16 on a GPU")
        model = load_classifier(str(model_dir), trust_remote_code=trust_remote_code)
        return TorchBackend(backend, quantize_int8(model), tokenizer, max_length, "cpu")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    needs = SPECS[backend].needs
    if "gpu" in needs and dev.type != "cuda":
        raise MahaError(f"{backend} inference needs a CUDA GPU; {device_in_words(dev)}: use bf16, int8 or onnx-int8")
    if "native-bf16" in needs and not native_bf16(dev) and not force:
        raise MahaError(
            bf16_refusal("inference", dev, "fp16 or fp32" if dev.type == "cuda" else "fp32, int8 or onnx-int8"))
    # bf16 casts the weights instead of using torch.autocast: autocast re-casts every weight on every
    # call; the cast model was faster in both measurements (module docstring), by 7% to 30%.
    model = load_classifier(str(model_dir), trust_remote_code=trust_remote_code).to(dev, _DTYPES[backend])
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
