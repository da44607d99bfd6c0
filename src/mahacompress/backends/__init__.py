"""Inference backends: every way to run a classifier, behind one interface (`Backend`) and one switch
(`load_backend(model_dir, name)`), so `measure.latency` times them side by side on identical batches.

- registry.py: the table of backends (name, engine, served file, needs), importable without torch;
- load.py: `load_backend`, `default_backend`;
- base.py: the `Backend` interface and the length-sorted `logits` all share;
- torch_engine.py, onnxruntime_engine.py, openvino_engine.py: one runner per engine (and its int8 files);
  the numpy backends live with their models (static.py, baseline.py);
- onnx_export.py: the one ONNX export; build.py: every served file built from it; cache.py: where they
  live (a cache keyed by the checkpoint, never the model folder); calibration.py: the calibration texts.
"""

from .base import Backend
from .load import default_backend, load_backend
from .registry import BACKENDS, CALIBRATED_BACKENDS, SPECS

__all__ = ["Backend", "BACKENDS", "CALIBRATED_BACKENDS", "SPECS", "default_backend", "load_backend"]
