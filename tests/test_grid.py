"""The grid: row names, preset validation, the report, and SIGKILL + re-run on a tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mahacompress.errors import MahaError
from mahacompress.grid import load_preset, parse_row
from mahacompress.models import save_classifier, tiny_bert, tiny_tokenizer
from mahacompress.report import pareto_front, write_report


def test_row_names():
    assert parse_row("p25+kd+mp") == parse_row("p25+kd+mp")
    row = parse_row("p25+kd+mp")
    assert (row.make, row.sparsity, row.kd, row.mp, row.backend) == ("prune", 0.25, True, True, "bf16")
    assert parse_row("best+onnx").backend == "onnx-int8" and parse_row("best+int8").backend == "int8"
    assert parse_row("kd").make == "layers" and parse_row("mp").backend == "bf16"
    for bad in ("p100", "p25+fast", "best", "baseline+kd+kd"):
        with pytest.raises(MahaError, match="row"):
            parse_row(bad)


def test_presets_load_and_bad_keys_are_named(tmp_path):
    for name in ("cpu-quick", "cpu-full", "paper"):
        cfg, stem = load_preset(name)
        assert stem == name and "p25+kd" in cfg.rows
    bad = tmp_path / "bad.yaml"
    bad.write_text("prune:\n  sparsityy: 0.5\n")
    with pytest.raises(MahaError, match=r"prune: unknown key 'sparsityy'"):
        load_preset(bad)
    bad.write_text("finetune:\n  epochs: many\n")
    with pytest.raises(MahaError, match=r"finetune.epochs: bad value 'many'"):
        load_preset(bad)
    bad.write_text("rows: [baseline, p25+turbo]\n")
    with pytest.raises(MahaError, match="p25\\+turbo"):
        load_preset(bad)
    with pytest.raises(MahaError, match="not one of"):
        load_preset("no-such-preset")


def test_pareto_front():
    points = [("a", 1.0, 0.9), ("b", 2.0, 0.85), ("c", 1.5, 0.8), ("d", 3.0, 0.7)]
    assert pareto_front(points) == ["a", "b", "d"]


def test_report_is_made_from_results_json_alone(tmp_path):
    rows = [{"name": "baseline", "status": "done", "accuracy": 0.8, "macro_f1": 0.7, "speedup_b32": 1.0,
             "disk_mb": 400.0, "co2_kg": 0.01},
            {"name": "p50", "status": "done", "accuracy": 0.75, "macro_f1": 0.7, "speedup_b32": 1.8,
             "disk_mb": 380.0, "co2_kg": 0.02},
            {"name": "mp", "status": "failed", "reason": "bf16 unsupported"}]
    (tmp_path / "results.json").write_text(json.dumps({"meta": {"preset": "x"}, "rows": rows, "caveats": ["c1"]}))
    report = write_report(tmp_path).read_text()
    assert "| mp | not run: bf16 unsupported |" in report and "1.80x" in report and "- c1" in report
    for png in ("accuracy_vs_speedup.png", "size.png", "co2.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert (tmp_path / "results.csv").read_text().splitlines()[0].startswith("name,")
