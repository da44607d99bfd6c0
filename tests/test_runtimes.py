"""The other serving runtimes agree with fp32 on tiny models, dense and pruned (heads per layer)."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
import torch

from mahacompress.errors import MahaError
from mahacompress.models import load_tokenizer, tiny_bert
from mahacompress.precision import load_backend
from mahacompress.pruning.compact import compact, save_pruned
from mahacompress.pruning.structure import structure_of
from mahacompress.hardware import unsupported_reason
from mahacompress.runtimes import ensure_runtime, fusion_record, runtime_file

# Same scale as tests/test_precision.py: max |logit - fp32| over the largest |fp32 logit|. Observed on
# the tiny model: fused 1.6%, static 1.3%, openvino 2e-7, openvino-int8 2.5%.
TOLERANCE = {"onnx-int8-fused": 0.10, "onnx-int8-static": 0.10, "openvino": 1e-4, "openvino-int8": 0.10}
MAX_FLIPPED = {"onnx-int8-fused": 0.05, "onnx-int8-static": 0.05, "openvino": 0.0, "openvino-int8": 0.05}
NEEDS = {"openvino": ["openvino"], "openvino-int8": ["openvino", "nncf"]}


def _needs(backend: str) -> None:
    for package in NEEDS.get(backend, []):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{backend} needs the {package} package (pip install 'mahacompress[openvino]')")


@pytest.fixture(scope="module")
def pruned_model_dir(tmp_path_factory, tiny_model_dir):
    """The tiny model compacted to 2 heads in layer 0 and 4 in layer 1, saved with its own code."""
    torch.manual_seed(0)
    tok = load_tokenizer(str(tiny_model_dir))
    model = tiny_bert(3, vocab_size=len(tok)).eval()
    with torch.no_grad():
        layer = model.bert.encoder.layer[0]
        layer.attention.self.value.weight[:16] = 0  # head 0 (head size 16)
        layer.attention.output.dense.weight[:, 16:32] = 0  # head 1
        model.bert.encoder.layer[1].intermediate.dense.weight[:40] = 0
    pruned = compact(model, structure_of(model))
    assert pruned.config.heads_per_layer == [2, 4]
    out = tmp_path_factory.mktemp("pruned") / "model"
    save_pruned(pruned, out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize("name", ["onnx-int8-fused", "onnx-int8-static", "openvino", "openvino-int8"])
@pytest.mark.parametrize("which", ["dense", "pruned"])
def test_runtime_agrees_with_fp32(name, which, tiny_model_dir, pruned_model_dir, shc_splits, tmp_path):
    _needs(name)
    model_dir = str(tiny_model_dir if which == "dense" else pruned_model_dir)
    texts = shc_splits.test.texts
    reference = load_backend(model_dir, "fp32", device="cpu").logits(texts)
    backend = load_backend(model_dir, name, threads=1, cache_dir=tmp_path,
                           calibration_texts=shc_splits.train.texts[:64])
    logits = backend.logits(texts, batch_size=17)
    assert logits.shape == reference.shape and logits.dtype == np.float32
    rel = np.abs(logits - reference).max() / np.abs(reference).max()
    assert rel < TOLERANCE[name], f"{name}: max |diff| is {rel:.2%} of the largest fp32 logit"
    # The tiny models are untrained (random weights each process): many texts are near-ties that any rounding
    # flips (40/240 once for static int8). Only texts whose fp32 top-2 margin exceeds 2% of the largest logit
    # are decided; int8 must keep those.
    top2 = np.sort(reference, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 0.02 * np.abs(reference).max()
    flipped = int((logits.argmax(1) != reference.argmax(1))[decided].sum())
    assert flipped <= MAX_FLIPPED[name] * decided.sum(), f"{name}: {flipped}/{decided.sum()} decided predictions differ"
    if name == "onnx-int8-fused":
        # Attention fuses only where every layer has the same head count (module docstring).
        assert fusion_record(model_dir, tmp_path)["attention_fused"] is (which == "dense")
        assert fusion_record(model_dir, tmp_path)["fused_operators"]["SkipLayerNormalization"] == 4


def test_calibrated_int8_needs_texts_once(tiny_model_dir, shc_splits, tmp_path):
    with pytest.raises(MahaError, match="onnx-int8-static calibrates .* pass calibration_texts"):
        load_backend(str(tiny_model_dir), "onnx-int8-static", cache_dir=tmp_path)
    load_backend(str(tiny_model_dir), "onnx-int8-static", cache_dir=tmp_path, calibration_texts=shc_splits.train.texts[:16])
    path = runtime_file(tiny_model_dir, "onnx-int8-static", tmp_path)
    stamp = path.stat().st_mtime_ns
    load_backend(str(tiny_model_dir), "onnx-int8-static", cache_dir=tmp_path)  # cached: no texts needed
    load_backend(str(tiny_model_dir), "onnx-int8-static", cache_dir=tmp_path, calibration_texts=shc_splits.train.texts[:16])
    assert path.stat().st_mtime_ns == stamp
    load_backend(str(tiny_model_dir), "onnx-int8-static", cache_dir=tmp_path, calibration_texts=shc_splits.train.texts[:8])
    assert path.stat().st_mtime_ns != stamp  # other texts: recalibrated


def test_files_cached_beside_the_model_stay_fresh(tiny_model_dir, shc_splits, tmp_path):
    """Records the caches write beside the model (fusion.json, calibration stamps) must not make the
    model's own exports stale: a second load rebuilds nothing (the grid times what it scored)."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    texts = shc_splits.train.texts[:16]
    names = [n for n in ("onnx-int8-fused", "onnx-int8-static", "openvino-int8") if not unsupported_reason(n)]
    for name in names:
        ensure_runtime(model_dir, name, calibration_texts=texts)
    built = {p: p.stat().st_mtime_ns for p in model_dir.rglob("*") if p.is_file()}
    for name in names:
        ensure_runtime(model_dir, name)
    assert {p: p.stat().st_mtime_ns for p in model_dir.rglob("*") if p.is_file()} == built
