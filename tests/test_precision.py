"""Training precision follows the hardware (tests/test_hardware.py covers CPUs that emulate bf16)."""

from __future__ import annotations

import pytest
import torch

from mahacompress.core.errors import MahaError
from mahacompress.train import precision
from mahacompress.train.precision import training_precision


def test_training_precision_on_cpu(monkeypatch):
    """A CPU with native bf16 (tests/test_hardware.py covers CPUs that emulate it)."""
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert training_precision("auto", "cpu") == "bf16"
    assert training_precision("bf16", "cpu") == "bf16"
    assert training_precision("no", "cpu") == "no"
    with pytest.raises(MahaError, match="fp16 training needs a CUDA GPU; .*CPU.*use bf16 or no"):
        training_precision("fp16", "cpu")
    with pytest.raises(MahaError, match="unknown precision"):
        training_precision("fp8", "cpu")


@pytest.mark.parametrize("has_bf16, auto", [(True, "bf16"), (False, "fp16")])
def test_training_precision_on_gpus(monkeypatch, has_bf16, auto):
    """Faked GPUs: an A100-like one with native bf16, a T4-like one without."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: has_bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert training_precision("auto", "cuda") == auto
    assert training_precision("fp16", "cuda") == "fp16"
    if has_bf16:
        assert training_precision("bf16", "cuda") == "bf16"
    else:
        with pytest.raises(MahaError, match="Tesla T4: use fp16 or no"):
            training_precision("bf16", "cuda")
