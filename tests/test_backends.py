"""Every inference backend agrees with fp32 on a trained tiny model; served files live in the cache, never the
model folder."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mahacompress.core.errors import MahaError
from mahacompress.infer import BACKENDS, load_backend
from mahacompress.infer.build import served_file
from mahacompress.infer.cache import derived_dir
from mahacompress.models.folder import checkpoint_files
from mahacompress.models.load import load_tokenizer

# Backends are compared on the trained 4-layer toy teacher (conftest's `teacher_dir`): an untrained
# model's top two logits lie ~0.004 apart, so int8 noise flipped up to 84 of 240 of its argmaxes in
# some processes (its WordPiece vocabulary, and so its inputs, differ from process to process).
# Tolerances on max |logit - fp32 logit|, relative to the largest |fp32 logit| on the texts: bf16 keeps
# 8 mantissa bits; int8 rounds every weight to 1/255 of its tensor's range and every activation per
# batch, errors that add up over the layers.
TOLERANCE = {"bf16": 0.05, "int8": 0.10, "onnx": 1e-4, "onnx-int8": 0.10}
# At most this share of the texts may change prediction.
MAX_FLIPPED = {"bf16": 0.05, "int8": 0.05, "onnx": 0.0, "onnx-int8": 0.05}

SLIM_MODELLING = '''
import torch
from transformers import BertConfig, BertForSequenceClassification


class SlimBertConfig(BertConfig):
    model_type = "slim-bert"

    def __init__(self, intermediate_sizes=None, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_sizes = intermediate_sizes


class SlimBertForSequenceClassification(BertForSequenceClassification):
    """A BERT whose layers have their own feed-forward widths, as a pruned checkpoint does."""

    config_class = SlimBertConfig

    def __init__(self, config):
        super().__init__(config)
        for layer, size in zip(self.bert.encoder.layer, config.intermediate_sizes):
            layer.intermediate.dense = torch.nn.Linear(config.hidden_size, size)
            layer.output.dense = torch.nn.Linear(size, config.hidden_size)
        self.post_init()
'''


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory) -> Path:
    """Exports go here, not into the shared fixture folder."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def reference(tiny_model_dir, shc_splits) -> np.ndarray:
    return load_backend(str(tiny_model_dir), "fp32", device="cpu").logits(shc_splits.test.texts)


@pytest.mark.parametrize("name", ["bf16", "int8", "onnx", "onnx-int8"])
def test_backend_agrees_with_fp32(name, teacher_dir, toy_splits, onnx_cache):
    texts = toy_splits.train.texts + toy_splits.dev.texts + toy_splits.test.texts
    reference = load_backend(str(teacher_dir), "fp32", device="cpu").logits(texts)
    backend = load_backend(str(teacher_dir), name, device="cpu" if name == "bf16" else None, threads=1,
                           cache_dir=onnx_cache, force=True)  # bf16 also where the CPU emulates it
    logits = backend.logits(texts, batch_size=17)  # a batch size that leaves a ragged last batch
    assert logits.shape == reference.shape and logits.dtype == np.float32
    rel = np.abs(logits - reference).max() / np.abs(reference).max()
    assert rel < TOLERANCE[name], f"{name}: max |diff| is {rel:.2%} of the largest fp32 logit"
    flipped = int((logits.argmax(1) != reference.argmax(1)).sum())
    assert flipped <= MAX_FLIPPED[name] * len(texts), f"{name}: {flipped}/{len(texts)} predictions differ from fp32"


def test_logits_keep_input_order(tiny_model_dir, shc_splits, reference):
    """Batches are length-sorted inside `logits`; rows must come back where they were."""
    backend = load_backend(str(tiny_model_dir), "fp32", device="cpu")
    texts = shc_splits.test.texts[:20]
    single = np.concatenate([backend.forward(backend.encode([t])) for t in texts])
    np.testing.assert_allclose(backend.logits(texts, batch_size=8), single, atol=1e-5)
    np.testing.assert_allclose(reference[:20], single, atol=1e-5)


def test_onnx_is_cached_by_checkpoint(tiny_model_dir, onnx_cache):
    """Built once into the model's cache folder, reused whatever the files' times; the model folder gains nothing."""
    path = served_file(tiny_model_dir, "onnx", cache_dir=onnx_cache)
    assert path.parent == derived_dir(tiny_model_dir, onnx_cache) and path.parent.parent == onnx_cache
    assert not (Path(tiny_model_dir) / "model.onnx").exists()
    stamp = path.stat().st_mtime_ns
    weights = Path(tiny_model_dir) / "model.safetensors"
    os.utime(weights, (weights.stat().st_atime, path.stat().st_mtime + 10))  # touched, not changed
    assert served_file(tiny_model_dir, "onnx", cache_dir=onnx_cache).stat().st_mtime_ns == stamp


def test_checkpoint_is_its_model_and_tokenizer_files(tmp_path):
    """Records beside a model say how it was made; they are not what an export is made from."""
    for name in ("config.json", "model.safetensors", "modeling_pruned.py", "tokenizer.json", "tokenizer_config.json",
                 "training.json", "pruning.json", "README.md",
                 ):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in checkpoint_files(tmp_path)
            ] == ["config.json", "model.safetensors", "modeling_pruned.py", "tokenizer.json", "tokenizer_config.json"]


def test_onnx_export_of_remote_code_model(tmp_path, tiny_model_dir, shc_splits):
    """A checkpoint that ships its own modelling code exports too, once the user trusts it (trust_remote_code)."""
    src = tmp_path / "modeling_slim.py"
    src.write_text(SLIM_MODELLING)
    spec = importlib.util.spec_from_file_location("modeling_slim", src)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    vocab = len(load_tokenizer(str(tiny_model_dir)))
    config = module.SlimBertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, intermediate_sizes=[48, 16], num_labels=3)
    config.auto_map = {
        "AutoConfig": "modeling_slim.SlimBertConfig",
        "AutoModelForSequenceClassification": "modeling_slim.SlimBertForSequenceClassification"
    }
    out = tmp_path / "slim"
    module.SlimBertForSequenceClassification(config).save_pretrained(out)
    shutil.copy(src, out / src.name)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(tiny_model_dir) / name, out / name)
    texts = [t for t in shc_splits.test.texts[:12]]
    with pytest.raises(MahaError, match="pass --trust-remote-code"):
        load_backend(str(out), "onnx", max_length=32)
    ref = load_backend(str(out), "fp32", device="cpu", max_length=32, trust_remote_code=True).logits(texts)
    got = load_backend(str(out), "onnx", max_length=32, trust_remote_code=True).logits(texts)
    assert not (out / "model.onnx").exists()  # in the cache, not beside the model
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_fp16_on_cpu_names_the_hardware(tiny_model_dir):
    with pytest.raises(MahaError, match="CUDA GPU.*CPU.*bf16"):
        load_backend(str(tiny_model_dir), "fp16", device="cpu")


def test_unknown_backend(tiny_model_dir):
    with pytest.raises(MahaError, match=", ".join(BACKENDS)):
        load_backend(str(tiny_model_dir), "int4")
