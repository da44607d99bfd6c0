"""What this CPU can run fast, and the precision decisions that follow from it.

Why: bf16 and int8 are only fast where the CPU has instructions for them. On an AVX2-only CPU
(e.g. AMD Zen 3) PyTorch runs bf16 through a conversion fallback: a 800x384 by 384x1536 matmul was
7.7x slower than fp32 and its backward 95x slower, so a bf16 training row ran for hours. int8 works
everywhere, but without VNNI x86 kernels multiply u8 by s8 with VPMADDUBSW, whose 16-bit
intermediate sums can saturate (ONNX Runtime's quantisation guide), so weights are quantised to 7
bits there (`reduce_range`).

Everything here reads `cpu_features()`, detected once per process; tests replace that function to
simulate other CPUs.
"""

from __future__ import annotations

import functools
import importlib.util
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from .registry import SPECS

# /proc/cpuinfo flag -> name used in reports, in the order reports list them.
_X86_FLAGS = {
    "avx2": "AVX2", "avx512f": "AVX512F", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16", "avx512_fp16": "AVX512-FP16", "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8"
}
# aarch64 "Features": bf16 (BFDOT/BFMMLA), i8mm and asimddp (int8 dot products).
_ARM_FLAGS = {"asimddp": "DOTPROD", "i8mm": "I8MM", "bf16": "BF16", "sve": "SVE"}
NATIVE_BF16_NEEDS = "AVX512-BF16 or AMX"


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU as the precision decisions see it."""

    model: str  # "Intel(R) Xeon(R) Processor"
    arch: str  # platform.machine(): "x86_64", "aarch64", ...
    capability: str  # torch's kernel dispatch level: "AVX512", "AVX2", "DEFAULT", ...
    flags: frozenset[str]  # lower-case /proc/cpuinfo flags; empty where unreadable
    onednn_bf16: bool  # oneDNN has bf16 kernels here (includes AVX512 emulation on x86)

    @property
    def x86(self) -> bool:
        return self.arch.lower() in ("x86_64", "amd64", "i686", "x86")

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware: AVX512-BF16 or AMX on x86, BF16 on Arm. Where the flags are
        unreadable (no /proc/cpuinfo), oneDNN's own check is the best evidence there is."""
        if not self.flags:
            return self.onednn_bf16
        if self.x86:
            return bool({"avx512_bf16", "amx_bf16"} & self.flags)
        return "bf16" in self.flags and self.onednn_bf16

    @property
    def vnni(self) -> bool:
        """int8 dot products without 16-bit saturation (VNNI / AMX on x86; Arm has no such issue)."""
        return not self.x86 or bool({"avx512_vnni", "avx_vnni", "amx_int8"} & self.flags)

    @property
    def instruction_sets(self) -> list[str]:
        names = _X86_FLAGS if self.x86 else _ARM_FLAGS
        return [label for flag, label in names.items() if flag in self.flags]


@functools.cache
def cpu_features() -> CpuFeatures:
    """Detect once: torch's CPU capability, /proc/cpuinfo flags and oneDNN's bf16 check."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "model name" and value.strip():
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = frozenset(value.split())
    is_bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    onednn_bf16 = bool(is_bf16 and torch.backends.mkldnn.is_available() and is_bf16())
    return CpuFeatures(model, platform.machine(), torch.backends.cpu.get_cpu_capability(), flags, onednn_bf16)


def describe() -> str:
    """One line for reports: the CPU, its vector/matrix instruction sets and what they mean for precision."""
    cpu = cpu_features()
    isa = " ".join(cpu.instruction_sets) or ("none of AVX2/AVX-512/VNNI/AMX" if cpu.flags else "CPU flags unreadable")
    bf16 = "native bf16" if cpu.native_bf16 else "bf16 emulated (slow)"
    int8 = "int8 VNNI" if cpu.vnni else "int8 without VNNI (7-bit weights)"
    return f"{cpu.model} ({cpu.arch}; {isa}; torch kernels {cpu.capability}; {bf16}; {int8})"


def native_bf16(device: torch.device | str) -> bool:
    """bf16 runs natively: on CUDA, GPUs from Ampere on; on the CPU, AVX512-BF16 or AMX (or Arm BF16)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return cpu_features().native_bf16
    return True  # mps, xpu, ...: their own runtimes decide; nothing here to check


def unsupported_reason(name: str) -> str | None:
    """Why the inference backend or training precision `name` ("bf16", "fp16", "openvino-int8", ...) would
    crawl or cannot run on this machine, or None when it runs at full speed. (A grid row asks for its
    backend and its training precision: `recipes.unsupported`.)

    Only CPU-side gaps are reported: bf16 on a CPU that emulates it would run for hours (see the module
    docstring). int8 always runs (with 7-bit weights where VNNI is missing).
    """
    spec = SPECS.get(name)
    if name == "bf16" and not torch.cuda.is_available() and not cpu_features().native_bf16:
        return cpu_bf16_gap()
    if spec and spec.engine == "openvino" and "native-bf16" in spec.needs and not cpu_features().native_bf16:
        return cpu_bf16_gap()  # OpenVINO's CPU plugin: a GPU beside it does not help
    if name == "fp16" and not torch.cuda.is_available():
        return "needs a CUDA GPU (this machine has CPU only)"
    missing = [p for p in spec.packages if importlib.util.find_spec(p) is None] if spec else []
    if missing:
        return f"needs the {' and '.join(missing)} package (pip install 'mahacompress[openvino]')"
    return None


def batch_int8_backend() -> str:
    """The int8 runtime an exported folder ships that serves batches fastest on this CPU: OpenVINO's NNCF int8
    where x86 multiplies int8 without saturation (VNNI or AMX) and openvino is installed, fused ONNX Runtime int8
    elsewhere. On the VNNI and AMX CPUs measured OpenVINO int8 ran batches of 32 faster than fused ONNX Runtime;
    without VNNI it ran them slower, and fused ONNX Runtime was the faster at batch 1 on every CPU
    (reports/sentiment-quick, reports/cpu-quick, reports/cpu-quick-avx2)."""
    cpu = cpu_features()
    if cpu.x86 and cpu.vnni and unsupported_reason("openvino-int8") is None:
        return "openvino-int8"
    return "onnx-int8-fused"


def device_in_words(device: torch.device) -> str:
    """The hardware, in words, for error messages."""
    if device.type == "cuda":
        return f"this GPU is a {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return "the model runs on the CPU" if torch.cuda.is_available() else "this machine has CPU only"
    return f"the device is {device.type}"


def bf16_refusal(what: str, device: torch.device, instead: str) -> str:
    """Why bf16 `what` ("training", "inference") is refused on `device`, and what to `use instead`."""
    if device.type == "cpu":
        return f"bf16 {what} {cpu_bf16_gap()}: use {instead}, or force it"
    return f"bf16 {what} needs a GPU with native bfloat16 (Ampere or newer); {device_in_words(device)}: use {instead}"


def cpu_bf16_gap() -> str:
    """What bf16 lacks on this CPU, in one phrase (for a CPU without native bf16)."""
    return f"needs {NATIVE_BF16_NEEDS} (this CPU: {_best_isa()}); bf16 is emulated here, many times slower than fp32"


def ort_int8_options() -> dict:
    """onnxruntime quantisation settings for this CPU, from `quantize_static`'s own guidance
    ("Choosing parameters for CPU inference", onnxruntime 1.32): x86 without VNNI quantises weights to
    7 bits (reduce_range) against U8S8 saturation; x86 with VNNI needs no reduction; Arm prefers
    symmetric int8 activations. Weights are signed int8 everywhere."""
    from onnxruntime.quantization import QuantType

    cpu = cpu_features()
    return {
        "reduce_range": cpu.x86 and not cpu.vnni, "activation_type": QuantType.QUInt8 if cpu.x86 else QuantType.QInt8,
        "weight_type": QuantType.QInt8
    }


def _best_isa() -> str:
    """The strongest instruction set present, for one-line reasons ("AVX2", "AVX512F", ...)."""
    cpu = cpu_features()
    present = cpu.instruction_sets
    if not present:
        return cpu.capability
    return next((label for label in ("AVX512F", "AVX2") if label in present), present[-1])


__all__ = [
    "CpuFeatures", "cpu_features", "describe", "native_bf16", "unsupported_reason", "cpu_bf16_gap", "device_in_words",
    "bf16_refusal", "ort_int8_options", "batch_int8_backend", "NATIVE_BF16_NEEDS"
]
