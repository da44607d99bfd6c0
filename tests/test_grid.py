"""The grid: row names, preset validation, the report, and SIGKILL + re-run on a tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from mahacompress.config import GridConfig
from mahacompress.errors import MahaError
from mahacompress.grid import Grid, load_preset, parse_row
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


TINY_PRESET = """
datasets: [{data}]
rows: [baseline, kd, p50, p50+kd, best+int8]
finetune: {{epochs: 3, batch_size: 16, lr: 1.0e-3, max_length: 32, freeze_embeddings: false, early_stopping_patience: 0, checkpoint_every: 2}}
distill: {{epochs: 3, batch_size: 16, lr: 1.0e-3, max_length: 32, freeze_embeddings: false, early_stopping_patience: 0, checkpoint_every: 2}}
prune_train: {{epochs: 4, batch_size: 16, lr: 1.0e-3, max_length: 32, freeze_embeddings: false, early_stopping_patience: 0, checkpoint_every: 2}}
prune: {{block_size: 16}}
student_layers: 1
measure: {{repeats: 2, warmup: 1, texts: 16, threads: 1}}
"""


def _toy_csvs(folder, splits):
    folder.mkdir()
    for name, ts in (("toy_train.csv", splits.train), ("toy_test.csv", splits.test)):
        lines = ["text,label"] + [f"{t},{splits.labels[y]}" for t, y in zip(ts.texts, ts.labels)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_sigkill_mid_row_then_rerun_completes_without_recomputing(toy_splits, tmp_path):
    data = tmp_path / "data"
    _toy_csvs(data, toy_splits)
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    save_classifier(tiny_bert(3, vocab_size=len(tok)), tok, tmp_path / "base", {})
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY_PRESET.format(data=data))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mahacompress", "reproduce", "--teacher", str(tmp_path / "base"),
           "--preset", str(preset), "--out", str(out)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}

    # first run: kill it (SIGKILL) once the pruning row has written a checkpoint, i.e. mid-row
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / "models" / "p50.work" / "checkpoint.pt"
    deadline = time.time() + 240
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), "the run ended before the pruning row checkpointed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = json.loads((out / "results.json").read_text())
    finished = {r["name"]: r for r in first["rows"] if r["status"] == "done"}
    assert set(finished) == {"baseline", "kd"}
    stamps = {n: os.stat(out / "models" / n / "config.json").st_mtime_ns for n in finished}

    # second run: same command, completes the grid without rebuilding finished rows
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    final = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in final["rows"]}
    assert list(rows) == ["baseline", "kd", "p50", "p50+kd", "best+int8"]
    assert all(r["status"] == "done" for r in rows.values()), rows
    for name in finished:
        assert rows[name]["build_seconds"] == finished[name]["build_seconds"]
        assert os.stat(out / "models" / name / "config.json").st_mtime_ns == stamps[name]
    assert rows["baseline"]["speedup_b32"] > 0 and rows["best+int8"]["source_row"] == "p50+kd"
    assert abs(rows["p50"]["encoder_sparsity"] - 0.5) <= 0.01
    assert (out / "report.md").is_file() and (out / "accuracy_vs_speedup.png").is_file()


def test_a_preset_with_two_datasets_makes_one_grid_each(tmp_path, monkeypatch):
    import mahacompress.grid as grid

    runs = []
    monkeypatch.setattr(grid, "check_model", lambda name: None)  # "teacher" stands for a model folder here
    monkeypatch.setattr(grid.Grid, "run", lambda self: runs.append((self.dataset, self.out)) or self.out / "report.md")
    grid.reproduce("teacher", "cpu-full", tmp_path)
    assert runs == [("mahanews-shc", tmp_path / "mahanews-shc"), ("mahanews-lpc", tmp_path / "mahanews-lpc")]
    runs.clear()
    grid.reproduce("teacher", "cpu-full", tmp_path, dataset="mahanews-lpc")
    assert runs == [("mahanews-lpc", tmp_path)]


def test_rows_whose_settings_changed_are_built_again(tmp_path):
    cfg = GridConfig(rows=["baseline", "kd", "p50", "best+int8"])
    first = Grid("teacher", cfg, "x", "mahanews-shc", tmp_path)
    rows = [{"name": n, "status": "done", "settings": first._settings(parse_row(n))} for n in cfg.rows]
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows}))
    same = Grid("teacher", cfg, "x", "mahanews-shc", tmp_path)
    assert set(same.rows) == set(cfg.rows) and not same.stale
    kd_changed = Grid("teacher", replace(cfg, distill=replace(cfg.distill, kd_alpha=0.9)), "x", "mahanews-shc", tmp_path)
    assert set(kd_changed.rows) == {"baseline", "p50", "best+int8"} and kd_changed.stale == ["kd"]
    pruning_changed = Grid("teacher", replace(cfg, prune=replace(cfg.prune, block_size=16)), "x", "mahanews-shc",
                           tmp_path)
    assert pruning_changed.stale == ["p50", "best+int8"]  # best+X is served from a pruned row
