"""Elastic depth: the sub-networks trained beside a layer student are the cuts `kdlN` makes, training them makes those
cuts work, the full student is whole after every step, and the settings that cannot work are refused in one line."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from bad_inputs import COLS, make_template
from clirun import one_line_error, run

from mahacompress.core.config import GridConfig, TrainConfig, recorded
from mahacompress.core.errors import MahaError
from mahacompress.models.load import tiny_bert, tiny_tokenizer
from mahacompress.study.preset import load_preset
from mahacompress.study.recipes import parse_row
from mahacompress.study.rowspec import built_from, train_config
from mahacompress.train.distill import layer_student
from mahacompress.train.elastic import check_elastic, shallower, step_depths
from mahacompress.train.loop import TrainHooks, fit
from mahacompress.train.pruning.structure import layer_list

CFG = TrainConfig(epochs=8, batch_size=16, lr=5e-3, max_length=32, freeze_embeddings=False, early_stopping_patience=0,
                  evals_per_epoch=1, checkpoint_every=50)


class LastStepIsBest(TrainHooks):
    """Keeps the last step's weights: the dev choice of a checkpoint looks at the full student alone."""

    def may_select_best(self, step: int, total_steps: int) -> bool:
        return step >= total_steps


def _batch(tok, texts: list[str]) -> dict:
    return tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")


def test_a_sub_network_is_the_cut_kdl_makes_and_the_full_student_comes_back(toy_splits):
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    model = tiny_bert(3, vocab_size=len(tok), num_hidden_layers=6).eval()
    batch = _batch(tok, toy_splits.dev.texts[:8])
    with torch.no_grad():
        full = model(**batch).logits
        for depth in (1, 2, 3, 4, 5):
            with shallower(model, depth):
                sub = model(**batch).logits
            cut = layer_student(model, depth).eval()(**batch).logits
            assert torch.allclose(sub, cut, atol=1e-6), depth
            assert not torch.allclose(sub, full, atol=1e-5)  # an untrained head: near, but not the same
        assert len(layer_list(model)) == 6 and model.config.num_hidden_layers == 6
        assert torch.equal(model(**batch).logits, full)


def test_the_full_student_comes_back_when_a_sub_network_fails(toy_splits):
    model = tiny_bert(3, vocab_size=200, num_hidden_layers=4)
    layers = layer_list(model)
    with pytest.raises(RuntimeError), shallower(model, 2):
        assert len(layer_list(model)) == 2 and model.config.num_hidden_layers == 2
        raise RuntimeError("a forward pass failed")
    assert layer_list(model) is layers and model.config.num_hidden_layers == 4


def test_each_step_trains_the_shallowest_and_one_other_drawn_from_the_seed():
    torch.manual_seed(0)
    draws = [step_depths([4, 2, 3]) for _ in range(200)]
    assert all(d[0] == 2 and d[1] in (3, 4) for d in draws)
    assert {d[1] for d in draws} == {3, 4}
    torch.manual_seed(0)
    assert [step_depths([4, 2, 3]) for _ in range(200)] == draws  # the loop's checkpoints hold this random state
    assert step_depths([3]) == [3]


@pytest.mark.slow
def test_training_the_cuts_makes_the_cut_work(toy_splits, tmp_path):
    """The same 4-layer student trained with and without elastic depth: the 1-layer cut of the elastic one fits the
    training texts better (cross-entropy), as the training made it."""
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    base = tiny_bert(3, vocab_size=len(tok), num_hidden_layers=4)
    batch = _batch(tok, toy_splits.train.texts)
    labels = torch.tensor(toy_splits.train.labels)
    losses = {}
    for name, depths in (("plain", None), ("elastic", [1, 2])):
        model = copy.deepcopy(base)
        result = fit(model, tok, toy_splits, replace(CFG, elastic_depths=depths), tmp_path / name,
                     hooks=LastStepIsBest())
        assert result.steps > 0 and len(layer_list(model)) == 4
        with torch.no_grad():
            losses[name] = F.cross_entropy(layer_student(model.eval(), 1)(**batch).logits, labels).item()
    assert losses["elastic"] < 0.5 * losses["plain"], losses


@pytest.mark.parametrize("depth, depths, processes, message", [(None, [1], 1, "no transformer layers"),
                                                               (1, [1], 1, "a 1-layer student has no shallower cut"),
                                                               (6, [2, 6], 1, "from 1 to 5"),
                                                               (6, [0], 1, "from 1 to 5"),
                                                               (6, [3, 3], 1, "different layer counts"),
                                                               (6, [], 1, "different layer counts"),
                                                               (6, [2, 3], 2, "trains in one process"), ])
def test_impossible_elastic_depths_are_refused(depth, depths, processes, message):
    with pytest.raises(MahaError, match=message):
        check_elastic(depth, TrainConfig(elastic_depths=depths), processes)
    check_elastic(depth, TrainConfig(), processes)  # off: nothing to check


def test_the_el_modifier_trains_the_kd_row_elastic_and_cuts_kdl_rows_from_it():
    cfg = GridConfig(rows=["kd+tr", "kd+tr+el", "kdl3+tr+el"], elastic_depths=[2, 3])
    assert train_config(cfg, parse_row("kd+tr+el")).elastic_depths == [2, 3]
    assert train_config(cfg, parse_row("kdl3+tr+el")).elastic_depths is None  # the cut trains as any kdlN
    assert built_from(parse_row("kdl3+tr+el")) == "kd+tr+el" and built_from(parse_row("kdl3+tr")) == "kd+tr"
    assert "elastic_depths" not in recorded(train_config(cfg, parse_row("kd+tr")))  # recorded rows keep settings
    for name in ("p50+el", "static+tr+el", "kdp50+el", "baseline+el", "kdl3+ends+el"):
        with pytest.raises(MahaError, match="expected"):
            parse_row(name)


@pytest.mark.parametrize("body, message", [
    ("rows: [kd3+el]\nelastic_depths: [2, 3]\n", r"p.yaml: row 'kd3\+el': elastic_depths 2,3: expected .* from 1 to 2"),
    ("rows: [kd, kdl2]\ntrain_overrides: {kdl2: {elastic_depths: [2]}}\n", r"row 'kdl2': elastic_depths 2: .* 1 to 1"),
    ("rows: [p50+kd]\ntrain_overrides: {p50+kd: {elastic_depths: [2]}}\n", "trains a layer student"),
    ("rows: [static]\ntrain_overrides: {static: {elastic_depths: [2]}}\n", "trains a layer student"),
])
def test_a_preset_whose_elastic_depths_cannot_work_is_refused(tmp_path, body, message):
    preset = tmp_path / "p.yaml"
    preset.write_text(body, encoding="utf-8")
    with pytest.raises(MahaError, match=message):
        load_preset(str(preset))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_template(tmp_path_factory.mktemp("elastic"))


@pytest.mark.parametrize("student, depths, message", [("layers:2", "2", "from 1 to 1"),
                                                      ("layers:2", "1,x", "expected whole numbers separated by commas"),
                                                      ("static:32", "1", "trains a layer student"),
                                                      ("pruned:0.5", "1", "trains a layer student"), ])
def test_the_cli_refuses_elastic_depths_that_cannot_work(workspace, tmp_path, student, depths, message):
    out = tmp_path / "out"
    result = run("distill", "--teacher", str(workspace / "model"), "--student", student, "--out", str(out), "--dataset",
                 str(workspace / "data"), *COLS, "--epochs", "1", "--elastic-depths", depths)
    assert message in one_line_error(result)
    assert not out.exists() and not out.with_name("out.work").exists()
