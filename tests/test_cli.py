"""The command line: the documented JSON, predictions, and one clear line for every bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from clirun import one_line_error, run, runner

from mahacompress.cli.app import app
from mahacompress.core.config import TrainConfig


def test_data_inspect_json_reports_2761_test_rows(shc_splits):
    result = run("data", "inspect", "--dataset", "mahanews-shc", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["splits"]["test"]["rows"] == 2761
    assert set(summary["splits"]) == {"train", "dev", "test"}
    assert summary["cleaning"]  # what each cleaning step removed


def test_predict_and_evaluate_on_a_tiny_model(tiny_model_dir, shc_splits, tmp_path):
    result = run("predict", "--model", str(tiny_model_dir), "--json", "पहिली बातमी", "दुसरी बातमी")
    rows = json.loads(result.stdout)
    assert [r["text"] for r in rows] == ["पहिली बातमी", "दुसरी बातमी"]
    assert all(r["label"] in shc_splits.labels and 0 < r["probability"] <= 1 for r in rows)
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("text\nएक\nदोन\n", encoding="utf-8")
    result = run("predict", "--model", str(tiny_model_dir), "--csv", str(csv_file))
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == 2
    result = run("evaluate", "--model", str(tiny_model_dir), "--dataset", "mahanews-shc", "--split", "dev", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["split"] == "dev" and set(metrics["per_class"]) == set(shc_splits.labels)
    assert metrics["rows"] == sum(c["support"] for c in metrics["per_class"].values()) > 0
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1
    assert metrics["max_length"] == TrainConfig.max_length  # no training record: the training default


def test_evaluate_scores_a_model_at_the_length_it_was_trained_with(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "pruning.json").write_text(json.dumps({"train_config": {"max_length": 24}}))
    args = ["evaluate", "--model", str(model), "--split", "dev", "--json"]
    assert json.loads(run(*args).stdout)["max_length"] == 24
    assert json.loads(run(*args, "--max-length", "40").stdout)["max_length"] == 40


@pytest.mark.parametrize("case", ["missing-file", "bad-columns", "unknown-label", "not-utf8", "no-weights"])
def test_bad_input_is_one_clear_error(case, tmp_path, tiny_model_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    train, test = folder / "my_train.csv", folder / "my_test.csv"
    train.write_text("text,label\nअ,x\nब,y\nक,x\nड,y\n", encoding="utf-8")
    test.write_text("text,label\nअ,x\nब,y\n", encoding="utf-8")
    args = ["data", "inspect", "--dataset", str(folder)]
    expect = "my_test.csv"
    if case == "missing-file":
        test.unlink()
        expect = "test"
    elif case == "bad-columns":
        test.write_text("body,topic\nअ,x\n", encoding="utf-8")
    elif case == "unknown-label":
        test.write_text("text,label\nअ,x\nब,z\n", encoding="utf-8")
        expect = "row 3"
    elif case == "not-utf8":
        test.write_bytes("text,label\nअ,x\n".encode() + b"\xff\xfe,y\n")
        expect = "row 3"
    elif case == "no-weights":
        empty = tmp_path / "model"
        empty.mkdir()
        (empty / "config.json").write_text("{}")
        args, expect = ["predict", "--model", str(empty), "text"], "no model weights"
    assert expect in one_line_error(run(*args))


def test_near_miss_labels_on_the_command_line(tmp_path, tiny_model_dir):
    """A validation label spelt differently from training: one line naming the near match and both fixes,
    which both work; a label map that renames to a label the model lacks is refused before any work."""
    folder = tmp_path / "emotion"
    folder.mkdir()
    (folder / "emo_train.csv").write_text("text,label\nअ,Sadness\nब,Joy\nक,Sadness\nड,Joy\n", encoding="utf-8")
    (folder / "emo_valid.csv").write_text("text,label\nइ,sadness\n", encoding="utf-8")
    (folder / "emo_test.csv").write_text("text,label\nउ,Joy\n", encoding="utf-8")
    args = ["data", "inspect", "--dataset", str(folder), "--json"]
    line = one_line_error(run(*args))
    assert f"{folder / 'emo_valid.csv'}, row 2: label 'sadness'" in line and "did you mean 'Sadness'?" in line
    assert "--fold-label-case" in line and "--label-map FILE" in line
    mapping = tmp_path / "labels.csv"
    mapping.write_text("sadness,Sadness\n", encoding="utf-8")
    for fix in (["--fold-label-case"], ["--label-map", str(mapping)]):
        result = run(*args, *fix)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["splits"]["dev"]["labels"] == {"Joy": 0, "Sadness": 1}
    mapping.write_text("from,to\nsadness,Sadness\n", encoding="utf-8")  # the tiny model has MahaNews' labels
    line = one_line_error(
        run("evaluate", "--model", str(tiny_model_dir), "--dataset", str(folder), "--label-map", str(mapping)))
    assert line.startswith(f"error: {mapping}: maps to 'Sadness', which the model") and "does not have" in line


@pytest.mark.slow
def test_console_script_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mahacompress", "evaluate", "--model",
                           str(tmp_path / "none")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such model folder" in proc.stderr


@pytest.mark.slow
def test_prune_command_writes_a_compacted_model(tiny_model_dir, shc_splits, tmp_path):
    out = tmp_path / "p50"
    result = run("prune", "--model", str(tiny_model_dir), "--out", str(out), "--sparsity", "0.5", "--max-train-rows",
                 "64", "--epochs", "1", "--block-size", "16", "--batch-size", "16", "--no-freeze-embeddings")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "pruning.json").read_text())
    assert abs(summary["reached_sparsity"] - 0.5) <= 0.01 and "removed" in result.stdout
    bad = run("prune", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x"), "--sparsity", "0.5",
              "--block-size", "7")
    assert "block" in one_line_error(bad)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_bad_option_is_refused_before_torch_is_imported(tmp_path):
    """A usage error costs a fraction of a second, not the seconds torch and transformers take to import."""
    code = ("import sys; from typer.testing import CliRunner; from mahacompress.cli.app import app; "
            f"r = CliRunner().invoke(app, ['prune', '--model', {str(tmp_path)!r}, '--out', {str(tmp_path / 'o')!r}, "
            "'--sparsity', '0']); print(r.exit_code, 'torch' in sys.modules, r.stderr.strip())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.startswith("2 False error: sparsity 0.0"), proc.stdout + proc.stderr


def test_dataset_help_names_every_named_dataset():
    from mahacompress.data.sources import NAMED

    result = runner.invoke(app, ["finetune", "--help"], env={"COLUMNS": "400"})
    assert all(name in result.output for name in NAMED), result.output
