"""Precision decisions follow the CPU: simulated AVX2-only, AVX-512 without bf16, AVX512-BF16 and Arm CPUs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnxruntime.quantization import QuantType

from mahacompress.core import hardware
from mahacompress.core.config import GridConfig
from mahacompress.core.errors import MahaError
from mahacompress.core.hardware import CpuFeatures
from mahacompress.infer import load_backend
from mahacompress.infer.build import served_file
from mahacompress.study.recipes import parse_row, served_backend, unsupported
from mahacompress.train.precision import training_precision

ZEN3 = CpuFeatures("AMD EPYC 7B13", "x86_64", "AVX2", frozenset({"sse4_2", "avx", "avx2", "fma"}), False)
SKYLAKE = CpuFeatures("Intel Xeon Gold 6148", "x86_64", "AVX512", frozenset({"avx2", "avx512f", "avx512bw"}), True)
COOPER_LAKE = CpuFeatures("Intel Xeon 8380H", "x86_64", "AVX512",
                          frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}), True)
GRAVITON3 = CpuFeatures("Neoverse-V1", "aarch64", "SVE256", frozenset({"asimddp", "i8mm", "bf16", "sve"}), True)


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be another CPU (no GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def use(features: CpuFeatures) -> None:
        monkeypatch.setattr(hardware, "cpu_features", lambda: features)

    return use


@pytest.mark.parametrize("features", [ZEN3, SKYLAKE])
def test_cpu_that_emulates_bf16(cpu, features):
    cpu(features)
    isa = "AVX512F" if features is SKYLAKE else "AVX2"
    assert training_precision("auto", "cpu") == "no"
    with pytest.raises(MahaError,
                       match=rf"bf16 training needs AVX512-BF16 or AMX \(this CPU: {isa}\).*use no \(fp32\)"):
        training_precision("bf16", "cpu")
    assert training_precision("bf16", "cpu", force=True) == "bf16"
    assert hardware.unsupported_reason("bf16").startswith(f"needs AVX512-BF16 or AMX (this CPU: {isa})")
    for row in ("mp", "baseline+bf16", "p25+kd+mp"):  # a row asks for its backend and training precision
        assert unsupported(parse_row(row)).startswith(f"needs AVX512-BF16 or AMX (this CPU: {isa})")
    for backend in ("fp32", "int8", "onnx-int8", "onnx-int8-static"):
        assert hardware.unsupported_reason(backend) is None
    assert hardware.unsupported_reason("openvino-bf16").startswith(f"needs AVX512-BF16 or AMX (this CPU: {isa})")
    assert unsupported(parse_row("p50+kd")) is None and unsupported(parse_row("baseline+int8")) is None
    assert hardware.ort_int8_options() == {
        "reduce_range": True, "activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8
    }
    line = hardware.describe()
    assert isa in line and "bf16 emulated" in line and "without VNNI" in line


@pytest.mark.parametrize("features", [COOPER_LAKE, GRAVITON3])
def test_cpu_with_native_bf16(cpu, features):
    cpu(features)
    assert training_precision("auto", "cpu") == "bf16"
    assert training_precision("bf16", "cpu") == "bf16"
    assert hardware.unsupported_reason("openvino-bf16") in (None, hardware.unsupported_reason("openvino"))
    assert hardware.unsupported_reason("bf16") is None and unsupported(parse_row("mp")) is None
    options = hardware.ort_int8_options()
    assert options["reduce_range"] is False
    # onnxruntime's guidance: asymmetric u8 activations on x86, symmetric s8 on Arm
    assert options["activation_type"] == (QuantType.QUInt8 if features.x86 else QuantType.QInt8)
    assert "native bf16" in hardware.describe()


def test_fp16_and_missing_packages_are_reasons(cpu, monkeypatch):
    cpu(COOPER_LAKE)
    assert hardware.unsupported_reason("fp16") == "needs a CUDA GPU (this machine has CPU only)"
    for row in ("baseline+fp16", "best+fp16"):  # fp16 serving rows are skipped with that reason, not run
        assert unsupported(parse_row(row)) == "needs a CUDA GPU (this machine has CPU only)"
    monkeypatch.setattr(hardware.importlib.util, "find_spec", lambda name: None if name == "nncf" else object())
    assert hardware.unsupported_reason("openvino") is None
    assert "needs the nncf package" in hardware.unsupported_reason("openvino-int8")
    assert "needs the nncf package" in unsupported(parse_row("best+openvino"))


def test_served_rows_run_in_the_int8_runtime_that_serves_batches_fastest_here(cpu, monkeypatch):
    """OpenVINO int8 where x86 has VNNI and the openvino extra is installed; fused ONNX Runtime int8 elsewhere. A
    preset's own served_backend is used as given, and one no exported folder ships is refused in one line."""
    for features, vnni in ((ZEN3, False), (SKYLAKE, False), (COOPER_LAKE, True), (GRAVITON3, False)):
        cpu(features)
        monkeypatch.setattr(hardware.importlib.util, "find_spec", lambda name: object())
        assert hardware.batch_int8_backend() == ("openvino-int8" if vnni else "onnx-int8-fused"), features.model
        assert served_backend(GridConfig()) == hardware.batch_int8_backend()
        assert served_backend(GridConfig(served_backend="onnx-int8")) == "onnx-int8"
    monkeypatch.setattr(hardware.importlib.util, "find_spec", lambda name: None if name == "nncf" else object())
    assert hardware.batch_int8_backend() == "onnx-int8-fused"  # COOPER_LAKE without the openvino extra
    for name in ("int8", "tfidf", "static", "nope"):
        with pytest.raises(MahaError, match=rf"^p.yaml: served_backend '{name}': expected auto or one of onnx-int8-fu"):
            served_backend(GridConfig(served_backend=name), "p.yaml")
    with pytest.raises(MahaError, match=r"^preset: served_backend 'openvino-int8' needs the nncf package \(pip "):
        served_backend(GridConfig(served_backend="openvino-int8"))
    cpu(ZEN3)
    with pytest.raises(MahaError, match=r"^preset: served_backend 'openvino-bf16' needs AVX512-BF16 or AMX"):
        served_backend(GridConfig(served_backend="openvino-bf16"))


def test_bf16_inference_refused_on_avx2_unless_forced(cpu, tiny_model_dir, shc_splits):
    cpu(ZEN3)
    with pytest.raises(MahaError, match=r"bf16 inference needs AVX512-BF16 or AMX \(this CPU: AVX2\)"):
        load_backend(str(tiny_model_dir), "bf16", device="cpu")
    backend = load_backend(str(tiny_model_dir), "bf16", device="cpu", force=True)
    assert backend.logits(shc_splits.test.texts[:4]).shape == (4, len(shc_splits.labels))


def _largest_int8_weight(path) -> int:
    weights = [
        onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and t.dims
    ]
    assert weights
    return max(int(np.abs(w.astype(np.int32)).max()) for w in weights)


@pytest.mark.parametrize("backend", ["onnx-int8", "onnx-int8-fused"])
def test_onnx_int8_uses_7_bit_weights_without_vnni(cpu, tiny_model_dir, tmp_path, backend):
    """ONNX Runtime's U8S8 kernels can saturate without VNNI: weights then stay within 7 bits, and the
    file's name says so, so a model folder moved to a CPU with VNNI gets its own full-range file."""

    def build():
        return served_file(tiny_model_dir, backend, cache_dir=tmp_path)

    stem = "model-int8" if backend == "onnx-int8" else "model-fused-int8"
    cpu(ZEN3)
    narrow = build()
    assert narrow.name == f"{stem}-r7.onnx" and _largest_int8_weight(narrow) <= 64
    cpu(COOPER_LAKE)
    full = build()
    assert full.name == f"{stem}.onnx" and _largest_int8_weight(full) > 64
