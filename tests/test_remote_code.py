"""No code from a model folder runs unless the user asks (--trust-remote-code); mahacompress's own pruned and
static folders load without it; a fresh classification head loads without transformers' LOAD REPORT."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from clirun import one_line_error, run
from conftest import save_tiny_classifier
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

from mahacompress.core.errors import MahaError
from mahacompress.core.model_source import OWN_MODEL_TYPES
from mahacompress.models.load import load_classifier, load_config, save_classifier, tiny_tokenizer
from mahacompress.models.modeling_pruned import PRUNED_CLASSES, PrunedBertForSequenceClassification
from mahacompress.models.modeling_static import StaticConfig, StaticForSequenceClassification
from mahacompress.train.pruning.compact import compact, save_pruned
from mahacompress.train.pruning.structure import structure_of

MARKER = "MAHACOMPRESS_TEST_REMOTE_MARKER"
# The folder's own code: it leaves a file behind when imported, so a test sees whether it ran.
REMOTE_MODELLING = f'''
import os
from pathlib import Path

from transformers import BertConfig, BertForSequenceClassification

if os.environ.get("{MARKER}"):
    Path(os.environ["{MARKER}"]).write_text("imported")


class RemoteBertConfig(BertConfig):
    model_type = "remote-test-bert"


class RemoteBertForSequenceClassification(BertForSequenceClassification):
    config_class = RemoteBertConfig
'''


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory, toy_splits) -> Path:
    """A tiny stock BERT classifier folder (no code of its own)."""
    return save_tiny_classifier(tmp_path_factory.mktemp("plain") / "model", toy_splits.train.texts, toy_splits.labels,
                                vocab_size=200)


@pytest.fixture
def remote_dir(plain_dir, tmp_path, monkeypatch) -> Path:
    """`plain_dir` whose config names its own code (auto_map) for a model_type transformers does not know.

    Its folder name is unique per test: transformers imports the code as a module named after the folder, and
    a module imported by an earlier test would not run (and leave its marker) again."""
    folder = tmp_path / f"remote_{tmp_path.name}"
    shutil.copytree(plain_dir, folder)
    (folder / "modeling_remote.py").write_text(REMOTE_MODELLING)
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="remote-test-bert", architectures=["RemoteBertForSequenceClassification"], auto_map={
            "AutoConfig": "modeling_remote.RemoteBertConfig",
            "AutoModelForSequenceClassification": "modeling_remote.RemoteBertForSequenceClassification"
        })
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv(MARKER, str(tmp_path / "marker"))
    return folder


def _marker(folder: Path) -> Path:
    return folder.parent / "marker"


def _commands(model: str, out: Path) -> dict[str, list[str]]:
    """Every command that loads a transformers model, pointed at `model`."""
    return {
        "predict": ["predict", "--model", model, "पहिली बातमी"], "evaluate": [
            "evaluate", "--model", model, "--dataset", "mahanews-shc"
        ], "compare": ["compare", "--model", model, "--out",
                       str(out / "m.json")], "finetune": ["finetune", "--model", model, "--out",
                                                          str(out / "f")],
        "distill": ["distill", "--teacher", model, "--student", "layers:1", "--out",
                    str(out / "d")], "prune": ["prune", "--model", model, "--out",
                                               str(out / "p"), "--sparsity", "0.5"],
        "reproduce": ["reproduce", "--teacher", model, "--out",
                      str(out / "r")], "optimize": ["optimize", "--teacher", model, "--out",
                                                    str(out / "o")], "trim": ["trim", model, "--out",
                                                                              str(out / "t")],
        "export": ["export", model, "--out", str(out / "e")]
    }


@pytest.mark.parametrize("command", list(_commands("m", Path("o"))))
def test_a_folder_with_its_own_code_is_refused_before_any_work(command, remote_dir, tmp_path):
    line = one_line_error(run(*_commands(str(remote_dir), tmp_path)[command]))
    assert line == (f"error: {remote_dir}: its config.json names Python code to run (auto_map: "
                    "modeling_remote.RemoteBertForSequenceClassification); pass --trust-remote-code if you trust "
                    "this model")
    assert not _marker(remote_dir).exists()
    assert [p.name for p in tmp_path.iterdir()] == [remote_dir.name]  # no output, no marker


def test_trust_remote_code_runs_the_folders_code(remote_dir, toy_splits):
    result = run("predict", "--model", str(remote_dir), "--trust-remote-code", "--json", "गाडी नवीन")
    assert result.exit_code == 0, result.output
    assert _marker(remote_dir).read_text() == "imported"
    assert json.loads(result.stdout)[0]["label"] in toy_splits.labels


def test_the_library_refuses_too(remote_dir):
    with pytest.raises(MahaError, match="auto_map: modeling_remote.*pass --trust-remote-code"):
        load_classifier(str(remote_dir))
    # transformers' own refusal (what a hub id gets: its config.json cannot be read first) is the same one line
    with pytest.raises(MahaError) as refused:
        load_config(str(remote_dir))
    assert str(refused.value) == (
        f"{remote_dir}: its config names Python code to run; pass --trust-remote-code if you trust this model")
    assert not _marker(remote_dir).exists()


def test_the_flag_is_accepted_for_a_folder_that_needs_no_code(plain_dir, toy_splits):
    result = run("predict", "--model", str(plain_dir), "--trust-remote-code", "--json", "गाडी")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["label"] in toy_splits.labels


def test_own_model_types_are_the_registered_ones():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    registered = [config for config, _, _ in PRUNED_CLASSES.values()] + [StaticConfig]
    assert sorted(c.model_type for c in registered) == sorted(OWN_MODEL_TYPES)
    assert all(CONFIG_MAPPING[c.model_type] is c for c in registered)


def test_a_pruned_folder_loads_with_the_packages_class_and_no_flag(plain_dir, tmp_path):
    folder = tmp_path / "pruned"
    model = load_classifier(str(plain_dir))
    save_pruned(compact(model, structure_of(model)), folder, tiny_tokenizer(["गाडी"], vocab_size=50))
    assert "auto_map" in json.loads((folder / "config.json").read_text())  # it names its code, like any remote model
    assert type(load_classifier(str(folder))) is PrunedBertForSequenceClassification
    assert type(AutoModelForSequenceClassification.from_pretrained(folder)) is PrunedBertForSequenceClassification
    assert run("predict", "--model", str(folder), "गाडी").exit_code == 0


def test_a_static_folder_loads_with_the_packages_class_and_no_flag(toy_splits, tmp_path):
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    config = StaticConfig(vocab_size=len(tok), hidden_size=8, special_ids=[0, 1, 2, 3], num_labels=3)
    save_classifier(StaticForSequenceClassification(config), tok, tmp_path / "static", {})
    assert "auto_map" in json.loads((tmp_path / "static" / "config.json").read_text())
    assert type(load_classifier(str(tmp_path / "static"))) is StaticForSequenceClassification


# ---------------------------------------------------------------- transformers' load report


@pytest.fixture
def load_reports():
    """What transformers logs at WARNING or above (the LOAD REPORT is a warning of `transformers.modeling_utils`):
    its records stop at the `transformers` logger, which does not propagate, so caplog would not see them."""
    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, toy_splits) -> Path:
    """A bare encoder with no pooler and no head, as `models.build_e5` writes the rebuilt e5."""
    out = tmp_path_factory.mktemp("encoder") / "e5-like"
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    BertModel(
        BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64), add_pooling_layer=False).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_a_new_head_loads_without_a_load_report(encoder_dir, load_reports, capsys):
    AutoModelForSequenceClassification.from_pretrained(encoder_dir, num_labels=3)  # what the report would be
    assert any("LOAD REPORT" in r for r in load_reports)
    load_reports.clear()
    model = load_classifier(str(encoder_dir), ["a", "b", "c"])
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert load_reports == []
    captured = capsys.readouterr()
    assert "LOAD REPORT" not in captured.out + captured.err and "warning" not in captured.err


def test_a_missing_encoder_weight_is_one_warning(plain_dir, tmp_path, load_reports, capsys):
    folder = tmp_path / "broken"
    shutil.copytree(plain_dir, folder)
    weights = load_file(folder / "model.safetensors")
    del weights["bert.encoder.layer.0.attention.self.query.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    load_classifier(str(folder), ["a", "b", "c"])  # a new head as well: only the encoder weight is news
    err = capsys.readouterr().err  # transformers' "Loading weights" progress bar is there too
    assert [line for line in err.splitlines() if line.startswith("warning:")] == [
        f"warning: {folder}: weights missing from the checkpoint, initialised at random: "
        "bert.encoder.layer.0.attention.self.query.weight"
    ]
    assert load_reports == [] and "LOAD REPORT" not in err
