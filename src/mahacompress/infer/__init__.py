"""Stage 3, running a model: every inference backend behind one interface (`Backend`) and one switch
(`load_backend(model_dir, name)`), so `measure.latency` times them side by side on identical batches; and what runs
them over a split (`evaluate`) or a list of texts (`predict`).

- load.py: `load_backend`, `default_backend` (the backend table itself is `core/registry.py`, importable without
  torch);
- base.py: the `Backend` interface and the length-sorted `logits` all share; batching.py: length-sorted batches;
- torch_engine.py, onnxruntime_engine.py, openvino_engine.py, numpy_engine.py: one runner per engine (and its
  int8 files; numpy: the static student's table and TF-IDF);
- onnx_export.py: the one ONNX export; build.py: every served file built from it; cache.py: where they live (a
  cache keyed by the checkpoint's digest, `models/folder.py`, never the model folder); calibration.py: the
  calibration texts;
- runtime.py: the torch-free runtime copied into every exported folder (the engines share its OpenVINO settings
  and static table).

Imports `core`, `data` and `models`.
"""

from ..core.registry import BACKENDS, CALIBRATED_BACKENDS, SPECS
from .base import Backend
from .load import default_backend, load_backend

__all__ = ["Backend", "BACKENDS", "CALIBRATED_BACKENDS", "SPECS", "default_backend", "load_backend"]
