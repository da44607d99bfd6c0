"""The command line: the documented JSON, predictions, and one clear line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mahacompress.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=True)


def _error(result) -> str:
    """The one stderr line of a refused command (exit status 2, no traceback)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_data_inspect_json_reports_2761_test_rows(shc_splits):
    result = _run("data", "inspect", "--dataset", "mahanews-shc", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["splits"]["test"]["rows"] == 2761
    assert set(summary["splits"]) == {"train", "dev", "test"}
    assert summary["cleaning"]  # what each cleaning step removed


def test_predict_and_evaluate_on_a_tiny_model(tiny_model_dir, shc_splits, tmp_path):
    result = _run("predict", "--model", str(tiny_model_dir), "--json", "पहिली बातमी", "दुसरी बातमी")
    rows = json.loads(result.stdout)
    assert [r["text"] for r in rows] == ["पहिली बातमी", "दुसरी बातमी"]
    assert all(r["label"] in shc_splits.labels and 0 < r["probability"] <= 1 for r in rows)
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("text\nएक\nदोन\n", encoding="utf-8")
    result = _run("predict", "--model", str(tiny_model_dir), "--csv", str(csv_file))
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == 2


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
    assert expect in _error(_run(*args))


def test_console_script_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mahacompress", "evaluate", "--model", str(tmp_path / "none")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such model folder" in proc.stderr


def test_prune_command_writes_a_compacted_model(tiny_model_dir, shc_splits, tmp_path):
    out = tmp_path / "p50"
    result = _run("prune", "--model", str(tiny_model_dir), "--out", str(out), "--sparsity", "0.5",
                  "--max-train-rows", "64", "--epochs", "1", "--block-size", "16", "--batch-size", "16",
                  "--no-freeze-embeddings")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "pruning.json").read_text())
    assert abs(summary["reached_sparsity"] - 0.5) <= 0.01 and "removed" in result.stdout
    bad = _run("prune", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x"), "--sparsity", "0.5",
               "--block-size", "7")
    assert "block" in _error(bad)
    assert not (tmp_path / "x").exists()


def test_cli_lists_the_same_backends_as_precision():
    from mahacompress import cli, precision

    assert cli.BACKENDS == precision.BACKENDS
