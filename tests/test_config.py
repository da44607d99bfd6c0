"""Presets load into the settings dataclasses through `config.from_dict` (pydantic): the values they always had,
and one line naming the key for anything else (tests/test_grid.py covers the preset files and their rows)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict

import pytest
import yaml

from mahacompress.core.config import GridConfig, MeasureConfig, PruneConfig, TrainConfig, TransferConfig, from_dict
from mahacompress.core.errors import MahaError
from mahacompress.core.validate import check_train_config

GOOD = """
datasets: [mahanews-shc, mahasent-mr]
max_train_rows: 4000
rows: [baseline, kd, p50+kd]
finetune: {epochs: 2, lr: 1e-4, batch_size: 16, freeze_embeddings: false}
prune: {sparsity: 0.5, binarizer: sigmoid}
static: {epochs: 5}
row_seeds: {kd: 3}
train_overrides: {p50+kd: {epochs: 6}}
run_to_run_points: 2.2
transfer: {path: unlabelled.txt, max_pieces: null}
measure: {repeats: 3, country: FRA}
"""


def load(text: str, where: str = "tiny.yaml") -> GridConfig:
    return from_dict(GridConfig, yaml.safe_load(text), where)


def test_a_good_preset_loads_the_values_it_always_did():
    """Equal to the dataclasses built by hand (`asdict` equal, floats as floats): grid rows' settings and
    optimize's identity are these dicts, so a difference would retrain a resumed run's rows."""
    expected = GridConfig(datasets=["mahanews-shc", "mahasent-mr"], max_train_rows=4000, rows=[
        "baseline", "kd", "p50+kd"
    ], finetune=TrainConfig(epochs=2.0, lr=1e-4, batch_size=16, freeze_embeddings=False), prune=PruneConfig(
        sparsity=0.5, binarizer="sigmoid"), static=TrainConfig(epochs=5.0), row_seeds={"kd": 3}, train_overrides={
            "p50+kd": {"epochs": 6}
        }, run_to_run_points=2.2, transfer=TransferConfig(path="unlabelled.txt"),
                          measure=MeasureConfig(repeats=3, country="FRA"))
    cfg = load(GOOD)
    assert asdict(cfg) == asdict(expected) and cfg == expected
    assert repr(asdict(cfg)) == repr(asdict(expected))  # 2 read as 2.0 (epochs), 1e-4 (YAML 1.1 text) a float
    assert type(cfg.finetune.epochs) is float and type(cfg.finetune.lr) is float
    assert asdict(load("{}")) == asdict(GridConfig())  # defaults, the static student's own included
    assert from_dict(TrainConfig, {"lr": "3e-5"}, "x") == TrainConfig(lr=3e-5)


@pytest.mark.parametrize("text, line", [
    ("prune: {sparsityy: 0.5}", ("tiny.yaml: prune: unknown key 'sparsityy' (known: binarizer, block_size, "
                                 "final_warmup, initial_warmup, penalty, score_lr, sparsity)"),
     ), ("epochs: 3", "tiny.yaml: unknown key 'epochs' (known: augment, base_model, "),
    ("finetune: {epochs: lots}", "tiny.yaml: finetune.epochs: bad value 'lots' (expected a number)"),
    ("finetune: {epochs: true}", "tiny.yaml: finetune.epochs: bad value True (expected a number)"),
    ("finetune: {batch_size: '8'}", "tiny.yaml: finetune.batch_size: bad value '8' (expected a whole number)"),
    ("finetune: {batch_size: 8.0}", "tiny.yaml: finetune.batch_size: bad value 8.0 (expected a whole number)"),
    ("finetune: {freeze_embeddings: 1}", "tiny.yaml: finetune.freeze_embeddings: bad value 1 (expected true or false)",
     ), ("run_to_run_points: '2'", "tiny.yaml: run_to_run_points: bad value '2' (expected a number)"),
    ("transfer: {max_pieces: many}", "tiny.yaml: transfer.max_pieces: bad value 'many' (expected a whole number)"),
    ("rows: [baseline, 3]", "tiny.yaml: rows.1: bad value 3 (expected text)"),
    ("row_seeds: {kd: 2.5}", "tiny.yaml: row_seeds.kd: bad value 2.5 (expected a whole number)"),
    ("row_seeds: {1: 2}", "tiny.yaml: row_seeds: bad key 1 (expected text)"),
    ("train_overrides: {kd: 6}", "tiny.yaml: train_overrides.kd: bad value 6 (expected a mapping)"),
    ("finetune: [1]", "tiny.yaml: finetune: expected a mapping, got list"),
    ("[1]", "tiny.yaml: expected a mapping, got list")
])
def test_a_bad_key_or_value_is_one_line_naming_the_key(text, line):
    with pytest.raises(MahaError) as caught:
        load(text)
    assert str(caught.value).startswith(line) and "\n" not in str(caught.value)


def test_an_out_of_range_value_is_one_line_naming_the_key():
    """Ranges are `validate`'s (one table for options and presets), checked where the grid checks a preset."""
    cfg = load("distill: {kd_alpha: 2}\nfinetune: {epochs: 0}")
    with pytest.raises(MahaError, match=r"^preset tiny: distill.kd_alpha 2: expected a value in \[0, 1\]$"):
        check_train_config(cfg.distill, where="preset tiny: distill")
    with pytest.raises(MahaError, match=r"^preset tiny: finetune.epochs 0: expected a value above 0$"):
        check_train_config(cfg.finetune, where="preset tiny: finetune")
    with pytest.raises(MahaError, match=r"^--epochs 0: expected a value above 0$"):
        check_train_config(cfg.finetune)


@pytest.mark.slow
def test_the_settings_import_without_pydantic():
    """The CLI imports the settings at start-up; pydantic (100+ ms) is imported only when a preset loads."""
    code = ("import sys; import mahacompress.core.config as c; assert 'pydantic' not in sys.modules; "
            "c.from_dict(c.TrainConfig, {}, 'x'); assert 'pydantic' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
