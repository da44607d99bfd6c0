"""Where the files backends serve live: one cache, keyed by what they are made from, never the model folder.

A served file (ONNX export, int8 files, OpenVINO IR) is a function of the checkpoint's own files, of the
tools that built it and, for calibrated int8, of the calibration texts and length. Each model gets one
folder named by a digest of its checkpoint files, those tools' versions and mahacompress's own build recipe
(`BUILD_RECIPE`, bumped with any change to a builder), under `$MAHACOMPRESS_CACHE/
derived` (files.cache_root) or the caller's `cache_dir`; inside it, a file's name says the rest (-r7: 7-bit
weights for a CPU without VNNI; a calibrated file: the digest of its texts). A changed checkpoint is a
new folder, so a stale file cannot be served and nothing checks modification times; the model folder is
only read, so a read-only one (a hub snapshot, a shared volume) works. Files are written atomically
(files.py): a crash leaves no half file under a served name. Old folders are never deleted here (the
cache root may be shared; delete `derived/` to reclaim the space).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from ..core.files import cache_root
from ..models.folder import checkpoint_digest

# The tools whose versions change what is built (export graph, quantised weights, OpenVINO IR).
_TOOLS = ("torch", "transformers", "onnxruntime", "onnx", "openvino", "nncf")
# How mahacompress itself builds them (onnx_export's opset and example texts, the fusion and quantisation
# arguments, NNCF's preset and overflow fix, the calibration batches): bump it with any change to a builder, so
# files built by the old recipe are never served as current
BUILD_RECIPE = 1


@functools.lru_cache(maxsize=1)
def _tool_versions() -> str:
    versions = []
    for tool in _TOOLS:
        try:
            versions.append(f"{tool}={metadata.version(tool)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{tool}=-")
    return ",".join(versions)


def derived_dir(model_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The cache folder of `model_dir`'s served files: its folder name (for people) plus the key."""
    key = hashlib.sha256(
        f"{checkpoint_digest(model_dir)}|{_tool_versions()}|recipe={BUILD_RECIPE}".encode()).hexdigest()[:20]
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "derived"
    return root / f"{Path(model_dir).resolve().name}-{key}"


def texts_digest(texts: Sequence[str], max_length: int) -> str:
    """Key of a calibrated file: its calibration texts, in order, and the length they were cut to."""
    h = hashlib.sha256(f"max_length={max_length}\0".encode())
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:16]
