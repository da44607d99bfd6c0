"""The one handle a model folder is read through (`models/folder.py`), and how often one grid row and one export
open their folders, counted by wrapping the loaders' public names."""

from __future__ import annotations

import pathlib
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from mahacompress.deploy.export import export
from mahacompress.models.folder import ModelFolder
from mahacompress.models.load import (
    load_classifier,
    load_config,
    load_skeleton,
    load_tokenizer,
    save_classifier,
    tiny_bert,
    tiny_tokenizer,
)
from mahacompress.models.modeling_static import (
    StaticConfig,
    StaticForSequenceClassification,
)
from mahacompress.study.grid import Grid
from mahacompress.study.preset import load_preset
from mahacompress.train.pruning.compact import compact, save_pruned
from mahacompress.train.pruning.structure import structure_of

PRESET = """
datasets: [{data}]
rows: [baseline, kd1]
distill: {{epochs: 2, batch_size: 16, lr: 1.0e-3, max_length: 32,
  freeze_embeddings: false, early_stopping_patience: 0, checkpoint_every: 50}}
finetune: {{max_length: 32}}
served_blocks: true
measure: {{repeats: 1, warmup: 0, texts: 8, threads: 1}}
"""


@pytest.fixture
def opened(monkeypatch) -> Counter:
    """Counts per (what, folder): `weights` (a full load of the classifier), `config` (config.json parsed into a
    transformers config), `tokenizer` (a tokenizer read from the folder) and `header` (a weights file opened in
    Python: the safetensors header check; transformers reads weights in Rust)."""
    counts: Counter = Counter()

    def wrap(owner, name: str, what: str) -> None:
        original = getattr(owner, name)

        def counted(source, *args, **kwargs):
            counts[what, Path(source).resolve()] += 1
            return original(source, *args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    wrap(AutoModelForSequenceClassification, "from_pretrained", "weights")
    wrap(AutoConfig, "from_pretrained", "config")
    wrap(AutoTokenizer, "from_pretrained", "tokenizer")
    path_open = pathlib.Path.open

    def counted_open(self, *args, **kwargs):
        if self.suffix == ".safetensors":
            counts["header", self.parent.resolve()] += 1
        return path_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", counted_open)
    return counts


def _of(counts: Counter, folder: Path) -> dict[str, int]:
    folder = folder.resolve()
    return {what: n for (what, where), n in counts.items() if where == folder}


def _teacher(toy_splits, folder: Path, labels: list[str] | None = None) -> Path:
    """A 2-layer classifier that already knows the toy labels (so the grid does not fine-tune it)."""
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    labels = labels or toy_splits.labels
    model = tiny_bert(3, vocab_size=len(tok), num_hidden_layers=2, id2label=dict(enumerate(labels)),
                      label2id={lab: i
                                for i, lab in enumerate(labels)})
    save_classifier(model, tok, folder, {})
    return folder


def test_a_folder_is_read_and_checked_once_until_its_files_change(toy_splits, tmp_path, opened):
    folder = _teacher(toy_splits, tmp_path / "model")
    handle = ModelFolder.of(folder)
    assert ModelFolder.of(folder) is handle and ModelFolder.of(folder, trust_remote_code=True) is not handle
    configs = [load_config(str(folder)) for _ in range(2)]
    tokenizers = [load_tokenizer(str(folder)) for _ in range(2)]
    assert _of(opened, folder) == {"config": 2, "tokenizer": 1, "header": 1}  # AutoTokenizer reads the config too
    assert configs[0] is not configs[1] and configs[0].id2label == configs[1].id2label  # copies: callers may edit

    tokenizers[0](["गाडी " * 40], truncation=True, max_length=4)  # a fast tokenizer keeps its last call's truncation
    assert tokenizers[1].backend_tokenizer.truncation is None

    _teacher(toy_splits, folder, labels=["a", "b", "c"])  # written again: a new handle reads it afresh
    assert ModelFolder.of(folder) is not handle and ModelFolder.of(folder).labels == ["a", "b", "c"]


def test_a_skeleton_has_the_shapes_of_the_loaded_model_without_its_weights(toy_splits, tmp_path):
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    dense = tiny_bert(3, vocab_size=len(tok))
    layers = dense.bert.encoder.layer
    with torch.no_grad():  # layer 0 loses two heads, layer 1 half of its FFN: sizes differ per layer
        for lin in (layers[0].attention.self.query, layers[0].attention.self.key, layers[0].attention.self.value):
            lin.weight[:32] = 0
        layers[1].intermediate.dense.weight[::2] = 0
    pruned = compact(dense, structure_of(dense))
    assert pruned.config.heads_per_layer == [2, 4]
    save_pruned(pruned, tmp_path / "pruned", tok)
    save_classifier(dense, tok, tmp_path / "dense", {})
    static = StaticForSequenceClassification(StaticConfig(vocab_size=len(tok), hidden_size=8, num_labels=3))
    save_classifier(static, tok, tmp_path / "static", {})
    for folder in ("dense", "pruned", "static"):
        skeleton, loaded = load_skeleton(str(tmp_path / folder)), load_classifier(str(tmp_path / folder))
        assert {p.device.type for p in skeleton.parameters()} == {"meta"}, folder
        assert [(name, p.shape)
                for name, p in skeleton.named_parameters()] == [(name, p.shape)
                                                                for name, p in loaded.named_parameters()], folder


@pytest.mark.slow
def test_one_grid_row_opens_its_model_folder_a_bounded_number_of_times(toy_splits, tmp_path, opened):
    data = tmp_path / "data"
    data.mkdir()
    for name, ts in (("toy_train.csv", toy_splits.train), ("toy_test.csv", toy_splits.test)):
        lines = ["text,label"] + [f"{t},{toy_splits.labels[y]}" for t, y in zip(ts.texts, ts.labels)]
        (data / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    teacher = _teacher(toy_splits, tmp_path / "teacher")
    preset = tmp_path / "count.yaml"
    preset.write_text(PRESET.format(data=data))
    cfg = load_preset(preset)[0]
    opened.clear()  # saving the teacher is not the row's work
    Grid(str(teacher), cfg, "count", str(data), tmp_path / "out").run()
    # kd1 is distilled, then scored (fp32, test and dev), served (this CPU's int8 runtime: ONNX export, then its file),
    # counted, sized and timed: a load per step re-read its config and tokenizer and re-checked its weights each time
    row = _of(opened, tmp_path / "out" / "models" / "kd1")
    assert row["weights"] <= 3, row  # scored once for both splits, exported to ONNX once, timed once
    assert (row["tokenizer"], row["header"]) == (1, 1), row  # one weights file, checked once
    assert row["config"] <= 2, row  # the handle's, and AutoTokenizer's own look at it
    teacher_opened = _of(opened, teacher)
    assert (teacher_opened["tokenizer"], teacher_opened["header"]) == (1, 1), teacher_opened
    assert teacher_opened["config"] <= 2, teacher_opened


def test_export_opens_its_model_folder_a_bounded_number_of_times(toy_splits, tmp_path, opened):
    model_dir = _teacher(toy_splits, tmp_path / "model")
    opened.clear()
    export(model_dir, tmp_path / "out", corpus=toy_splits.train.texts, splits=toy_splits)
    # the source and its trimmed copy: each loaded once (to trim it; to export it to ONNX), read and checked once
    folders = {where for _, where in opened}
    assert model_dir.resolve() in folders and len(folders) == 2, folders
    for folder in folders:
        counts = _of(opened, folder)
        assert (counts["weights"], counts["tokenizer"], counts["header"]) == (1, 1, 1), (folder, counts)
        assert counts["config"] <= 2, (folder, counts)
