"""The other serving runtimes agree with fp32 on tiny models, dense and pruned (heads per layer)."""

from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import pytest
import torch

from mahacompress.core.errors import MahaError
from mahacompress.core.hardware import unsupported_reason
from mahacompress.infer import load_backend
from mahacompress.infer.build import fusion_record, served_file
from mahacompress.models.load import load_classifier, load_tokenizer, tiny_bert
from mahacompress.train.pruning.compact import compact, save_pruned
from mahacompress.train.pruning.structure import structure_of

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
    load_backend(str(tiny_model_dir), "onnx-int8-static", cache_dir=tmp_path,
                 calibration_texts=shc_splits.train.texts[:16])
    path = served_file(tiny_model_dir, "onnx-int8-static", cache_dir=tmp_path)  # cached: no texts needed
    stamp = path.stat().st_mtime_ns
    assert (load_backend(str(tiny_model_dir), "onnx-int8-static", cache_dir=tmp_path,
                         calibration_texts=shc_splits.train.texts[:16]).path == path)
    assert path.stat().st_mtime_ns == stamp
    other = load_backend(str(tiny_model_dir), "onnx-int8-static", cache_dir=tmp_path,
                         calibration_texts=shc_splits.train.texts[:8]).path
    assert other != path and path.stat().st_mtime_ns == stamp  # other texts: another file, the first one kept
    assert load_backend(str(tiny_model_dir), "onnx-int8-static", max_length=64, cache_dir=tmp_path,
                        calibration_texts=shc_splits.train.texts[:8]).path not in (path, other)  # another length too


def test_read_only_model_folder(tiny_model_dir, shc_splits, tmp_path):
    """A model folder is only read: every served file goes to the cache, so a read-only folder (a hub
    snapshot, a shared volume) runs with every ONNX and OpenVINO backend, and gains no file (checked
    by listing too: root may write into a folder whatever its mode)."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    before = {p: p.stat().st_mtime_ns for p in [model_dir, *model_dir.rglob("*")]}
    model_dir.chmod(0o555)
    try:
        for name in ("onnx", "onnx-int8", "onnx-int8-fused", "onnx-int8-static", "openvino", "openvino-int8"):
            if not unsupported_reason(name):
                backend = load_backend(str(model_dir), name, threads=1, calibration_texts=shc_splits.train.texts[:16])
                assert backend.logits(shc_splits.test.texts[:4]).shape == (4, len(shc_splits.labels))
                assert model_dir not in backend.path.parents
    finally:
        model_dir.chmod(0o755)
    assert {p: p.stat().st_mtime_ns for p in [model_dir, *model_dir.rglob("*")]} == before


def test_changed_checkpoint_gets_new_files(tiny_model_dir, shc_splits, tmp_path):
    """Served files are keyed by the checkpoint's bytes: changed weights get a new file (no stale one is
    served), unchanged ones the same file whatever their modification time."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    first = served_file(model_dir, "onnx-int8-fused")
    weights = model_dir / "model.safetensors"
    os.utime(weights, (weights.stat().st_atime, weights.stat().st_mtime + 10))
    assert served_file(model_dir, "onnx-int8-fused") == first  # same bytes: same key
    model = load_classifier(str(model_dir))
    with torch.no_grad():
        model.classifier.bias += 1.0
    model.save_pretrained(model_dir)
    second = served_file(model_dir, "onnx-int8-fused")
    assert second != first and second.parent != first.parent and first.is_file()
    fp32 = load_backend(str(model_dir), "fp32", device="cpu").logits(shc_splits.test.texts[:8])
    fused = load_backend(str(model_dir), "onnx-int8-fused").logits(shc_splits.test.texts[:8])
    assert np.abs(fused - fp32).max() < 0.1 * np.abs(fp32).max()  # the new file is the changed model
