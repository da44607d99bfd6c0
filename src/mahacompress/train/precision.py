"""Which numeric precision to train in.

`training_precision` turns "auto" / "no" / "bf16" / "fp16" into the value Accelerate's `mixed_precision`
takes, refusing (one line, with alternatives) what the hardware cannot run or only emulates (bf16 on a
CPU without AVX512-BF16/AMX; hardware.py says what the CPU has). Inference precisions (bf16, int8, ...)
are backends: backends/.
"""

from __future__ import annotations

import torch

from ..core.config import TRAINING_PRECISIONS
from ..core.errors import MahaError
from ..core.hardware import bf16_refusal, device_in_words, native_bf16


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
        raise MahaError(f"fp16 training needs a CUDA GPU; {device_in_words(device)}: use bf16 or no")
    if requested == "bf16" and not native_bf16(device) and not force:
        raise MahaError(bf16_refusal("training", device, "fp16 or no" if device.type == "cuda" else "no (fp32)"))
    return requested
