"""Pruning: masks and gradients, schedule, the physical target, exact compaction, portable checkpoints."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

from mahacompress.core.config import PruneConfig, TrainConfig
from mahacompress.core.errors import MahaError
from mahacompress.models.load import tiny_bert, tiny_tokenizer
from mahacompress.train.pruning.compact import (
    compact,
    dense_count,
    encoder_linear_count,
    natural_sparsity,
    plan,
    save_pruned,
)
from mahacompress.train.pruning.masks import MaskedModel, SigmoidThresholdBinarizer, TopKBinarizer
from mahacompress.train.pruning.prune import prune
from mahacompress.train.pruning.schedule import CubicSchedule
from mahacompress.train.pruning.structure import structure_of

TINY = dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            num_labels=3)
CFG = TrainConfig(epochs=2, batch_size=16, lr=1e-3, max_length=32, freeze_embeddings=False, early_stopping_patience=0,
                  evals_per_epoch=2, checkpoint_every=4)


def _bert(**overrides) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**{**TINY, **overrides})).eval()


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    ids[0, 7:], mask[0, 7:] = 1, 0  # padding (id 1 = XLM-R's pad) must be handled as the original does
    return {"input_ids": ids, "attention_mask": mask}


def _wrapped(binarizer, block: int = 16, **overrides) -> MaskedModel:
    model = _bert(**overrides)
    masked = MaskedModel(model, structure_of(model), block, binarizer)
    torch.manual_seed(2)
    for s in masked.scores():
        torch.nn.init.normal_(s)
    return masked


def test_topk_keeps_exactly_the_target_fraction_of_blocks():
    scores = torch.randn(10, 8)  # 80 blocks: every target below is a whole number of them
    for target, progress in ((0.5, 1.0), (0.75, 1.0), (0.75, 0.4), (0.3, 0.0)):
        b = TopKBinarizer(target)
        b.progress = progress
        (mask, ) = b.masks([scores], [1024])
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert int(mask.sum()) == round((1 - target * progress) * scores.numel())
        assert mask[scores >= scores[mask.bool()].min()].all()  # the kept ones are the highest


def test_straight_through_gradient_reaches_every_score():
    masked = _wrapped(TopKBinarizer(0.5))
    masked.binarizer.progress = 1.0
    masked.model(**_inputs()).logits.sum().backward()
    for s in masked.scores():
        assert s.grad is not None and s.grad.abs().sum() > 0
    ffn = masked.layers[0]
    assert ffn["ffn_in"].scores is ffn["ffn_out"].scores  # one score per neuron, shared by row and column


def test_sigmoid_penalty_pulls_scores_down():
    masked = _wrapped(SigmoidThresholdBinarizer(penalty=1.0))
    masked.binarizer.progress = 1.0
    masked.penalty().backward()
    assert all((s.grad > 0).all() for s in masked.scores())


def test_cubic_schedule_endpoints():
    s = CubicSchedule(initial_warmup=0.1, final_warmup=0.2)
    assert s.ramp(100) == (10, 80)
    assert s.progress(0, 100) == 0.0 and s.progress(10, 100) == 0.0
    assert s.progress(80, 100) == 1.0 and s.progress(99, 100) == 1.0
    values = [s.progress(i, 100) for i in range(100)]
    assert values == sorted(values) and values[45] > 0.5  # cubic: fast early, slow late
    assert not s.final_phase(79, 100) and s.final_phase(80, 100)


@pytest.mark.parametrize("target", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("binarizer", ["topk", "sigmoid"])
def test_calibrated_structure_hits_the_target_physically(binarizer, target):
    b = TopKBinarizer(target) if binarizer == "topk" else SigmoidThresholdBinarizer(penalty=1.0)
    masked = _wrapped(b)
    b.progress = 1.0
    model, structure = masked.model, masked.structure
    dense = dense_count(model, structure)
    p = plan(masked, target)
    masked.freeze(p.removed_heads, p.removed_neurons)
    with torch.no_grad():
        expected = model(**_inputs()).logits
    pruned = compact(masked.unwrap(), structure)
    reached = 1 - sum(encoder_linear_count(pruned)) / dense
    assert abs(reached - target) <= 0.01
    with torch.no_grad():
        assert (pruned(**_inputs()).logits - expected).abs().max() <= 1e-4


def test_sigmoid_binarizer_alone_misses_the_target_that_calibration_hits():
    masked = _wrapped(SigmoidThresholdBinarizer(penalty=1.0))
    masked.binarizer.progress = 1.0
    assert abs(natural_sparsity(masked) - 0.5) > 0.01  # why the calibration step exists


def _zero_out(model, structure_rows: dict) -> None:
    """Apply hand-made masks: per layer, zero V rows / O columns / FFN rows / FFN columns / single blocks."""
    layers = model.bert.encoder.layer if hasattr(model, "bert") else model.roberta.encoder.layer
    with torch.no_grad():
        for i, spec in structure_rows.items():
            layer = layers[i]
            for h in spec.get("v_heads", []):
                layer.attention.self.value.weight[h * 16:(h + 1) * 16] = 0
            for h in spec.get("qkv_heads", []):
                for lin in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
                    lin.weight[h * 16:(h + 1) * 16] = 0
            for h in spec.get("o_heads", []):
                layer.attention.output.dense.weight[:, h * 16:(h + 1) * 16] = 0
            layer.intermediate.dense.weight[spec.get("ffn_rows", [])] = 0
            layer.output.dense.weight[:, spec.get("ffn_cols", [])] = 0
            layer.attention.self.query.weight[:8, :8] = 0  # a block masked inside a kept head stays as zeros


MASKS = {
    0: {"qkv_heads": [0, 1], "v_heads": [2], "o_heads": [3], "ffn_rows": [0, 5], "ffn_cols": [7]},
    1: {"v_heads": [1], "ffn_rows": list(range(0, 128, 2)), "ffn_cols": list(range(1, 128, 2))}
}


@pytest.mark.parametrize("family", ["bert", "xlm-roberta"])
def test_compaction_keeps_logits_with_empty_sublayers(family):
    if family == "bert":
        model = _bert()
    else:
        torch.manual_seed(0)
        model = XLMRobertaForSequenceClassification(XLMRobertaConfig(**TINY, max_position_embeddings=40)).eval()
    _zero_out(model, MASKS)
    with torch.no_grad():
        expected = model(**_inputs()).logits
    pruned = compact(model, structure_of(model))
    assert pruned.config.heads_per_layer == [0, 3] and pruned.config.intermediate_sizes == [125, 0]
    with torch.no_grad():
        assert (pruned(**_inputs()).logits - expected).abs().max() <= 1e-4


@pytest.fixture
def pruned_dir(tmp_path):
    """A compacted tiny BERT with different sizes per layer (one with no heads), saved with its code."""
    model = _bert()
    _zero_out(model, MASKS)
    pruned = compact(model, structure_of(model))
    save_pruned(pruned, tmp_path / "pruned")
    with torch.no_grad():
        logits = pruned(**_inputs()).logits
    return tmp_path / "pruned", logits


_LOAD_ELSEWHERE = """
import json, sys
sys.modules["mahacompress"] = None  # any import of mahacompress now fails
sys.path = [p for p in sys.path if not p.rstrip("/").endswith("src")]
import torch
from transformers import AutoModelForSequenceClassification
m = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
ids, mask = (torch.tensor(x) for x in json.loads(sys.argv[2]))
with torch.no_grad():
    print(json.dumps(m(input_ids=ids, attention_mask=mask).logits.tolist()))
"""


@pytest.mark.slow
def test_checkpoint_loads_without_mahacompress(pruned_dir, tmp_path):
    folder, logits = pruned_dir
    config = json.loads((folder / "config.json").read_text())
    assert config["heads_per_layer"] == [0, 3] and config["intermediate_sizes"] == [125, 0]
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_pruned.")
    tree = ast.parse((folder / "modeling_pruned.py").read_text())
    imported = {(n.module if isinstance(n, ast.ImportFrom) else n.names[0].name).split(".")[0]
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))}
    assert imported <= {"__future__", "torch", "transformers"}
    x = _inputs()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    out = subprocess.run([
        sys.executable, "-I", "-c", _LOAD_ELSEWHERE,
        str(folder),
        json.dumps([x["input_ids"].tolist(), x["attention_mask"].tolist()])
    ], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))
    assert (loaded - logits).abs().max() <= 1e-5


def test_onnx_export_matches(pruned_dir, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from mahacompress.models.modeling_pruned import PrunedBertForSequenceClassification

    folder, logits = pruned_dir
    model = PrunedBertForSequenceClassification.from_pretrained(folder).eval()

    class Logits(torch.nn.Module):

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    x = _inputs()
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        Logits(model).eval(), (x["input_ids"], x["attention_mask"]), str(path),
        input_names=["input_ids", "attention_mask"], output_names=["logits"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got, ) = session.run(None, {k: v.numpy() for k, v in x.items()})
    assert abs(torch.from_numpy(got) - logits).max() <= 1e-4


def _masked_and_pruned(family: str):
    """A model with hand-made masks (layer 0: no heads; layer 1: no FFN neurons) and its compacted form."""
    if family == "bert":
        model = _bert()
    else:
        torch.manual_seed(0)
        model = XLMRobertaForSequenceClassification(XLMRobertaConfig(**TINY, max_position_embeddings=40)).eval()
    _zero_out(model, MASKS)
    return model, compact(model, structure_of(model))


@pytest.mark.parametrize("family", ["bert", "xlm-roberta"])
def test_compacted_model_is_the_stock_class_with_the_dense_kernel(family):
    model, pruned = _masked_and_pruned(family)
    assert isinstance(pruned, type(model))  # the stock forward code runs, only Linear sizes differ
    assert pruned.config._attn_implementation == model.config._attn_implementation == "sdpa"
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape[1])  # heads of the layer
        return real(*args, **kwargs)

    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
        pruned(**_inputs())
    assert calls == [3]  # layer 0 has no heads left; layer 1 keeps 3 of 4


@pytest.mark.parametrize("family", ["bert", "xlm-roberta"])
def test_compacted_model_returns_hidden_states_like_the_masked_one(family):
    model, pruned = _masked_and_pruned(family)
    with torch.no_grad():
        want = model(**_inputs(), output_hidden_states=True).hidden_states
        got = pruned(**_inputs(), output_hidden_states=True).hidden_states
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        assert (g - w).abs().max() <= 1e-4


def test_compacted_model_returns_attentions_under_eager(tmp_path):
    _, pruned = _masked_and_pruned("bert")
    save_pruned(pruned, tmp_path / "p")
    from transformers import AutoModelForSequenceClassification

    eager = AutoModelForSequenceClassification.from_pretrained(tmp_path / "p", trust_remote_code=True,
                                                               attn_implementation="eager").eval()
    with torch.no_grad():
        out = eager(**_inputs(), output_attentions=True)
    assert [tuple(a.shape) for a in out.attentions] == [(3, 0, 11, 11), (3, 3, 11, 11)]
    assert torch.allclose(out.attentions[1].sum(-1), torch.ones(3, 3, 11))  # rows are softmax weights
    assert (out.logits - pruned(**_inputs()).logits).abs().max() <= 1e-4


def test_compacted_model_honours_problem_type(tmp_path):
    model = _bert(problem_type="multi_label_classification")
    _zero_out(model, MASKS)
    save_pruned(compact(model, structure_of(model)), tmp_path / "p")
    from transformers import AutoModelForSequenceClassification

    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "p", trust_remote_code=True)
    assert loaded.config.problem_type == "multi_label_classification"
    targets = torch.tensor([[1.0, 0.0, 1.0]] * 3)
    with torch.no_grad():
        out = loaded(**_inputs(), labels=targets)
    want = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets)
    assert torch.isclose(out.loss, want)


def test_compacted_folder_exports_with_the_grid_exporter(pruned_dir, tmp_path):
    """The one ONNX exporter (backends/onnx_export.py), plain and fused int8, on a folder holding an empty
    attention and an empty FFN."""
    from mahacompress.infer import load_backend

    folder, _ = pruned_dir
    texts = ["नमस्कार, आज पुण्यात पाऊस पडला", "आणि वाहतूक मंदावली.", "नमस्कार"]
    tok = tiny_tokenizer(texts * 3, vocab_size=100)
    assert len(tok) <= 100  # the tiny model's vocabulary
    tok.save_pretrained(folder)
    ref = load_backend(str(folder), "fp32", device="cpu", max_length=16).logits(texts)
    got = load_backend(str(folder), "onnx", max_length=16, cache_dir=tmp_path / "onnx").logits(texts)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    fused = load_backend(str(folder), "onnx-int8-fused", max_length=16, cache_dir=tmp_path / "onnx").logits(texts)
    assert np.abs(fused - ref).max() < 0.1 * np.abs(ref).max()


@pytest.fixture(scope="module")
def toy_tok(toy_splits):
    return tiny_tokenizer(toy_splits.train.texts + toy_splits.dev.texts, vocab_size=200)


def _toy_model(toy_splits, toy_tok):
    torch.manual_seed(0)
    labels = toy_splits.labels
    return tiny_bert(len(labels), vocab_size=len(toy_tok), id2label=dict(enumerate(labels)),
                     label2id={lab: i
                               for i, lab in enumerate(labels)})


@pytest.mark.slow
@pytest.mark.parametrize("binarizer", ["topk", "sigmoid"])
def test_prune_end_to_end(toy_splits, toy_tok, tmp_path, binarizer):
    out = tmp_path / "pruned"
    cfg = PruneConfig(sparsity=0.5, binarizer=binarizer, block_size=16)
    teacher = np.random.default_rng(0).normal(size=(len(toy_splits.train), 3)).astype(np.float32)
    summary = prune(_toy_model(toy_splits, toy_tok), toy_splits, replace(CFG, epochs=1), cfg, out, tokenizer=toy_tok,
                    distill_from=teacher if binarizer == "sigmoid" else None)
    assert abs(summary["reached_sparsity"] - 0.5) <= 0.01, summary["layers"]
    assert json.loads((out / "pruning.json").read_text())["reached_sparsity"] == summary["reached_sparsity"]
    assert len(summary["layers"]) == 2 and all("removed_heads" in layer for layer in summary["layers"])
    assert (out / "modeling_pruned.py").is_file() and (out / "tokenizer.json").is_file()
    assert not (tmp_path / "pruned.work").exists()
    from transformers import AutoModelForSequenceClassification

    loaded = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    assert sum(encoder_linear_count(loaded)) == summary["kept_encoder_linear_weights"]


@pytest.mark.slow
def test_prune_from_a_folder_distilling_hidden_states(toy_splits, toy_tok, tmp_path):
    src = tmp_path / "model"
    _toy_model(toy_splits, toy_tok).save_pretrained(src)
    toy_tok.save_pretrained(src)
    summary = prune(str(src), toy_splits, replace(CFG, epochs=1, kd_hidden_weight=1.0),
                    PruneConfig(sparsity=0.25, block_size=16), tmp_path / "out", distill_from=str(src))
    assert abs(summary["reached_sparsity"] - 0.25) <= 0.01
    assert summary["distilled_from"] == str(src)  # its own unpruned self, run live for hidden states


@pytest.mark.parametrize("make, cfg, message", [
    (lambda s, t: _toy_model(s, t), PruneConfig(sparsity=0.0), "strictly between 0 and 1"),
    (lambda s, t: _toy_model(s, t), PruneConfig(sparsity=1.0), "strictly between 0 and 1"),
    (lambda s, t: _toy_model(s, t), PruneConfig(binarizer="magnitude"), "binarizer"),
    (lambda s, t: _toy_model(s, t), PruneConfig(block_size=24), "does not divide"),
    (lambda s, t: DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=len(t), dim=64, n_layers=1, n_heads=2, hidden_dim=64, num_labels=3)), PruneConfig(),
     "does not support model type 'distilbert'",
     ),
    (lambda s, t: BertModel(BertConfig(**{**TINY, "vocab_size": len(t)})), PruneConfig(), "not a sequence classifier",
     )
])
def test_bad_inputs_fail_before_training(toy_splits, toy_tok, tmp_path, make, cfg, message):
    with pytest.raises(MahaError, match=message):
        prune(make(toy_splits, toy_tok), toy_splits, CFG, cfg, tmp_path / "out", tokenizer=toy_tok)
    assert not (tmp_path / "out.work").exists() and not (tmp_path / "out").exists()


def test_bad_folder_inputs(toy_splits, toy_tok, tmp_path):
    bare = tmp_path / "bare"
    BertModel(BertConfig(**{**TINY, "vocab_size": len(toy_tok)})).save_pretrained(bare)
    toy_tok.save_pretrained(bare)
    with pytest.raises(MahaError, match="not a sequence classifier"):
        prune(str(bare), toy_splits, CFG, PruneConfig(), tmp_path / "out")
    other = tmp_path / "other"
    _toy_model(toy_splits, toy_tok).save_pretrained(other)
    toy_tok.save_pretrained(other)
    renamed = replace(toy_splits, labels=["A", "B", "C"])
    with pytest.raises(MahaError, match="labels"):
        prune(str(other), renamed, CFG, PruneConfig(block_size=16), tmp_path / "out")


@pytest.mark.slow
def test_resume_restores_the_frozen_structure(toy_splits, toy_tok, tmp_path, monkeypatch):
    from mahacompress.train.pruning import prune as prune_module

    cfg, out = replace(CFG, checkpoint_every=1), tmp_path / "pruned"
    original = prune_module.PruningHooks.on_step

    def crash(self, step, total_steps):
        if step == 11:  # after the structure was frozen at step 10 (of 12) and checkpointed
            raise KeyboardInterrupt
        original(self, step, total_steps)

    monkeypatch.setattr(prune_module.PruningHooks, "on_step", crash)
    with pytest.raises(KeyboardInterrupt):
        prune(_toy_model(toy_splits, toy_tok), toy_splits, cfg, PruneConfig(block_size=16), out, tokenizer=toy_tok)
    frozen = torch.load(tmp_path / "pruned.work" / "checkpoint.pt", weights_only=False)["hooks"]["plan"]
    monkeypatch.setattr(prune_module.PruningHooks, "on_step", original)
    resumed = prune(_toy_model(toy_splits, toy_tok), toy_splits, cfg, PruneConfig(block_size=16), out,
                    tokenizer=toy_tok, resume=True)
    assert [layer["removed_heads"] for layer in resumed["layers"]] == frozen["removed_heads"]
    assert [layer["ffn_width"] for layer in resumed["layers"]] == [128 - len(n) for n in frozen["removed_neurons"]]
