"""How each served file is built, and where it is found: the ONNX export first, every other file from it.

One builder per kind of file (registry.BackendSpec.file), each writing into the model's cache folder
(cache.derived_dir) under a name that says what it depends on beyond the checkpoint: `-r7` for 7-bit
int8 weights (a CPU without VNNI), the calibration texts' digest for the calibrated files. A file that
exists is complete (written atomically) and current (its folder is keyed by the checkpoint), so it is
reused as it is; the calibrated ones, asked for without texts, reuse the newest one built (the grid
builds it once with its training sample, then scores, times and sizes that same file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ..core.errors import MahaError
from ..core.files import write_json
from ..core.hardware import ort_int8_options
from ..core.registry import SPECS
from ..models.folder import ModelFolder
from ..models.load import load_tokenizer
from .cache import derived_dir, texts_digest
from .calibration import calibration_batches
from .onnx_export import export_onnx

SEVEN_BIT_SUFFIX = "-r7"  # int8 files with 7-bit weights (int8_file_name)
FUSION_RECORD = "fusion.json"


def int8_file_name(stem: str) -> str:
    """`stem`.onnx, or `stem`-r7.onnx when this CPU gets 7-bit weights (x86 without VNNI): files built for
    different CPUs never share a name, so a cache moved to another CPU builds the one that CPU needs."""
    return f"{stem}{SEVEN_BIT_SUFFIX if ort_int8_options()['reduce_range'] else ''}.onnx"


def served_file(model_dir: str | Path, backend: str, *, max_length: int = 128, cache_dir: str | Path | None = None,
                calibration_texts: Sequence[str] | None = None, trust_remote_code: bool = False) -> Path:
    """The file `backend` serves `model_dir` from, built first if this checkpoint has none yet (loading it with
    `trust_remote_code` to build)."""
    kind = SPECS[backend].file
    if kind is None:
        raise MahaError(f"{backend} runs the checkpoint itself; it serves no derived file")
    if not Path(model_dir).is_dir():
        raise MahaError(f"{model_dir}: ONNX export needs a local model folder")
    folder = derived_dir(model_dir, cache_dir)
    fp32 = folder / "model.onnx"
    if not fp32.is_file():
        export_onnx(model_dir, fp32, trust_remote_code=trust_remote_code)
    if kind == "onnx":
        return fp32
    return _BUILDERS[kind](model_dir, fp32, backend, max_length, calibration_texts, trust_remote_code)


def served_files(model_dir: str | Path, backend: str, *, max_length: int = 128, cache_dir: str | Path | None = None,
                 calibration_texts: Sequence[str] | None = None, trust_remote_code: bool = False) -> list[Path]:
    """Every file `backend` loads for `model_dir`, the served file first (OpenVINO IR is an .xml and a .bin: sizes
    on disk and exported folders need both)."""
    path = served_file(model_dir, backend, max_length=max_length, cache_dir=cache_dir,
                       calibration_texts=calibration_texts, trust_remote_code=trust_remote_code)
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def fusion_record(model_dir: str | Path, cache_dir: str | Path | None = None) -> dict:
    """What the optimizer fused for `model_dir` (written beside its fused file; empty before it is built)."""
    path = derived_dir(model_dir, cache_dir) / FUSION_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _int8(model_dir: Path, fp32: Path, backend: str, max_length: int, texts: Sequence[str] | None,
          trust_remote_code: bool) -> Path:
    from .onnxruntime_engine import quantize_dynamic_int8

    target = fp32.with_name(int8_file_name("model-int8"))
    if not target.is_file():
        quantize_dynamic_int8(fp32, target)
    return target


def _fused_int8(model_dir: Path, fp32: Path, backend: str, max_length: int, texts: Sequence[str] | None,
                trust_remote_code: bool) -> Path:
    from .onnxruntime_engine import fuse_int8

    target = fp32.with_name(int8_file_name("model-fused-int8"))
    if not target.is_file():
        folder = ModelFolder.of(model_dir, trust_remote_code=trust_remote_code)
        folder.check()
        config = folder.config  # the attention's shapes: no weights needed
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        record = fuse_int8(fp32, target, getattr(config, "heads_per_layer", None), config.num_attention_heads, head_dim)
        write_json(target.with_name(FUSION_RECORD), record)
    return target


def _static_int8(model_dir: Path, fp32: Path, backend: str, max_length: int, texts: Sequence[str] | None,
                 trust_remote_code: bool) -> Path:
    from .onnxruntime_engine import quantize_static_int8

    suffix = SEVEN_BIT_SUFFIX if ort_int8_options()["reduce_range"] else ""
    return calibrated_file(model_dir, fp32, backend, max_length, texts,
                           lambda key: f"model-int8-static-{key}{suffix}.onnx", quantize_static_int8, trust_remote_code)


def _openvino_int8(model_dir: Path, fp32: Path, backend: str, max_length: int, texts: Sequence[str] | None,
                   trust_remote_code: bool) -> Path:
    from .openvino_engine import full_range_int8, quantize_openvino_int8

    suffix = "" if full_range_int8() else SEVEN_BIT_SUFFIX
    return calibrated_file(model_dir, fp32, backend, max_length, texts,
                           lambda key: f"openvino-int8-{key}{suffix}/model.xml", quantize_openvino_int8,
                           trust_remote_code)


def calibrated_file(model_dir: Path, fp32: Path, backend: str, max_length: int, texts: Sequence[str] | None,
                    name: Callable[[str], str], build: Callable, trust_remote_code: bool) -> Path:
    """A calibrated file: the one of `texts` (built on first use), or without texts the newest one built."""
    if texts:
        target = fp32.parent / name(texts_digest(texts, max_length))
        if not target.is_file():
            tokenizer = load_tokenizer(str(model_dir), trust_remote_code=trust_remote_code)
            build(fp32, target, calibration_batches(tokenizer, texts, max_length))
        return target
    pattern = re.compile(re.escape(name("KEY")).replace("KEY", "[0-9a-f]{16}"))
    built = [p for p in fp32.parent.glob(name("*")) if pattern.fullmatch(p.relative_to(fp32.parent).as_posix())]
    if not built:
        raise MahaError(f"{model_dir}: {backend} calibrates activation ranges on training texts and none "
                        "are cached: pass calibration_texts (or build it once with benchmarks/runtimes.py)")
    return max(built, key=lambda p: p.stat().st_mtime_ns)


_BUILDERS = {
    "onnx-int8": _int8, "onnx-int8-fused": _fused_int8, "onnx-int8-static": _static_int8,
    "openvino-int8": _openvino_int8
}
