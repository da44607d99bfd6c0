"""The grid: row names, preset validation, the report, and SIGKILL + re-run on a tiny model."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from mahacompress.core.config import DataConfig, GridConfig
from mahacompress.core.errors import MahaError
from mahacompress.core.hardware import batch_int8_backend, unsupported_reason
from mahacompress.models.load import save_classifier, tiny_bert, tiny_tokenizer
from mahacompress.report.findings import findings
from mahacompress.report.render import write_report
from mahacompress.study.context import RecipeContext, RowSettings
from mahacompress.study.grid import Grid
from mahacompress.study.preset import load_preset
from mahacompress.study.recipes import left_out, parse_row, seeds_of
from mahacompress.study.results import Meta, Results, Row, read_results, write_results
from mahacompress.study.rowspec import train_config, transfer_set


def test_row_names():
    row = parse_row("p25+kd+mp")
    assert (row.kind, row.sparsity, row.kd, row.mp, row.backend) == ("prune", 0.25, True, True, "bf16")
    assert parse_row("best+onnx").backend == "onnx-int8" and parse_row("best+int8").backend == "int8"
    assert parse_row("baseline+onnx").served_from_another and parse_row("baseline+onnx").backend == "onnx-int8"
    assert (parse_row("best+fused").backend == "onnx-int8-fused"
            and parse_row("best+openvino").backend == "openvino-int8")
    assert parse_row("kd").kind == "kd" and parse_row("kd").number is None and parse_row("mp").backend == "bf16"
    assert parse_row("kd4").number == 4 and parse_row("kd12").kind == "kd"
    assert parse_row("kd3+ends+tr").ends and parse_row("kd3+ends+tr").tr and not parse_row("kd3").ends
    for bad in ("p100", "p0", "p25+fast", "best", "baseline+kd+kd", "kd0", "baseline+int8+onnx", "p25+onnx", "mp+mp",
                "p25+ends", "kd+ends+ends",
                ):
        with pytest.raises(MahaError, match="row"):
            parse_row(bad)


def test_kd_rows_take_their_depth_from_the_name(tmp_path):
    grid = Grid("teacher", GridConfig(student_layers=6), "x", "d", tmp_path)
    assert grid.settings_of(parse_row("kd"))["student_layers"] == 6
    assert grid.settings_of(parse_row("kd2"))["student_layers"] == 2
    assert "layer_choice" not in grid.settings_of(parse_row("kd2"))  # evenly spaced: settings as before
    assert grid.settings_of(parse_row("kd2+ends"))["layer_choice"] == "ends"
    assert "seeds" not in grid.settings_of(parse_row("kd"))  # one seed: settings as before, no rebuild
    assert Grid("t", GridConfig(seeds=3), "x", "d", tmp_path).settings_of(parse_row("kd"))["seeds"] == 3


def test_best_is_chosen_on_dev_accuracy_then_fewest_weights(tmp_path):
    grid = Grid("teacher", GridConfig(rows=["baseline", "kd", "kd2", "p50+kd", "p75+kd"]), "x", "d", tmp_path)

    def row(name, dev, weights, test=0.5):
        return {
            "name": name, "status": "done", "seeds": [], "dev_accuracy": dev, "encoder_linear_weights": weights,
            "accuracy": test
        }

    grid.rows = {
        "baseline": row("baseline", 0.90, 100), "kd": row("kd", 0.895, 50), "kd2": row("kd2", 0.85, 17, test=0.99),
        "p50+kd": row("p50+kd", 0.899, 50), "p75+kd": row("p75+kd", 0.80, 25)
    }
    name, how = grid.pick_best()
    assert name == "p50+kd" and "within 1 point" in how  # kd2's test accuracy never counts
    grid.rows["baseline"]["dev_accuracy"] = 0.99
    assert grid.pick_best()[0] == "p50+kd"  # none close: the most accurate on dev


def test_a_row_needing_a_missing_feature_is_skipped_with_its_reason(tmp_path, monkeypatch):
    import mahacompress.study.grid as grid

    monkeypatch.setattr(grid, "unsupported", lambda spec: "needs AVX512-BF16" if spec.mp else None)
    g = Grid("teacher", GridConfig(rows=["baseline", "mp"]), "x", "d", tmp_path)
    assert g.build_row(parse_row("mp")) == {"name": "mp", "status": "skipped", "reason": "needs AVX512-BF16"}


def test_presets_load_and_bad_keys_are_named(tmp_path):
    for name in ("cpu-quick", "cpu-full", "paper", "sentiment-quick"):
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
    bad.write_text("served_backend: int8\n")  # torch's int8: no exported folder runs it
    with pytest.raises(MahaError, match=rf"^{re.escape(str(bad))}: served_backend 'int8': expected auto or one of "):
        load_preset(bad)
    with pytest.raises(MahaError, match="not one of"):
        load_preset("no-such-preset")


def test_train_overrides_change_one_row_only(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text(
        "rows: [baseline, p50, p50+kd]\nprune_train: {epochs: 4}\ntrain_overrides: {p50+kd: {epochs: 6, lr: 3.0e-5}}\n")
    cfg, _ = load_preset(preset)
    assert train_config(cfg, parse_row("p50+kd")).epochs == 6 and train_config(cfg, parse_row("p50")).epochs == 4
    assert train_config(cfg, parse_row("p50+kd")).lr == 3.0e-5 and cfg.prune_train.epochs == 4
    grid = Grid("teacher", cfg, "p", "d", tmp_path)
    assert grid.settings_of(parse_row("p50+kd"))["prune_train"]["epochs"] == 6  # a change rebuilds that row alone
    assert grid.settings_of(parse_row("p50"))["prune_train"]["epochs"] == 4
    for text, match in (("train_overrides: {p75: {epochs: 6}}", "names 'p75', not a trained row"),
                        ("train_overrides: {baseline: {epochs: 6}}", "names 'baseline', not a trained row"),
                        ("train_overrides: {p50: {epocs: 6}}", r"train_overrides.p50: unknown key 'epocs'"),
                        ("train_overrides: {p50: {epochs: six}}",
                         r"train_overrides.p50: epochs: bad value 'six' \(expected a number\)",
                         ), ("train_overrides: [p50]", "train_overrides: bad value"),
                        ):
        preset.write_text(f"rows: [baseline, p50]\n{text}\n")
        with pytest.raises(MahaError, match=match):
            load_preset(preset)


def test_row_seeds_give_some_rows_more_seeds_and_name_trained_rows_only(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("rows: [baseline, kd, p50+kd]\nrow_seeds: {kd: 3}\n")
    cfg, _ = load_preset(preset)
    grid = Grid("teacher", cfg, "p", "d", tmp_path)
    assert seeds_of(cfg, parse_row("kd")) == 3 and grid.settings_of(parse_row("kd"))["seeds"] == 3
    assert seeds_of(cfg, parse_row("p50+kd")) == 1 and "seeds" not in grid.settings_of(parse_row("p50+kd"))
    assert seeds_of(cfg, parse_row("baseline")) == 1  # the teacher is fine-tuned once unless row_seeds asks
    preset.write_text("rows: [baseline, kd]\nseeds: 3\nrow_seeds: {baseline: 2}\n")
    cfg = load_preset(preset)[0]
    assert seeds_of(cfg, parse_row("baseline")) == 2 and seeds_of(cfg, parse_row("kd")) == 3
    for text, match in (("row_seeds: {p75: 3}", "row_seeds names 'p75', not a trained row"),
                        ("row_seeds: {best+int8: 3}", "row_seeds names 'best\\+int8', not a trained row"),
                        ("train_overrides: {baseline: {epochs: 2}}", "train_overrides names 'baseline', not a trained"),
                        ("row_seeds: {kd: 0}", r"row_seeds.kd is 0: expected a whole number of 1 or more"),
                        ("row_seeds: {kd: 2.5}",
                         r"row_seeds.kd: bad value 2.5 \(expected a whole number\)"), ("row_seeds: [kd]",
                                                                                       "row_seeds: bad value"),
                        ):
        preset.write_text(f"rows: [baseline, kd]\n{text}\n")
        with pytest.raises(MahaError, match=match):
            load_preset(preset)


def test_row_seeds_for_a_teacher_that_is_not_fine_tuned_here_stop_before_any_work(toy_splits, tmp_path):
    teacher, cfg, data = _tiny_grid(toy_splits, tmp_path)
    labels = dict(enumerate(toy_splits.labels))  # already a classifier for the data: used as it is, one seed
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    save_classifier(tiny_bert(3, vocab_size=len(tok), id2label=labels, label2id={v: k
                                                                                 for k, v in labels.items()}), tok,
                    tmp_path / "tuned", {})
    grid = Grid(str(tmp_path / "tuned"), replace(cfg, row_seeds={"baseline": 2}), "tiny", data, tmp_path / "out")
    with pytest.raises(MahaError, match="row_seeds.baseline: .*tuned already knows the labels"):
        grid.run()
    assert not (tmp_path / "out" / "models").exists()


TINY_PRESET = """
datasets: [{data}]
rows: [baseline, kd, p50, p50+kd, best+int8]
finetune: {{epochs: 3, batch_size: 16, lr: 1.0e-3, max_length: 32,
  freeze_embeddings: false, early_stopping_patience: 0, checkpoint_every: 2}}
distill: {{epochs: 3, batch_size: 16, lr: 1.0e-3, max_length: 32,
  freeze_embeddings: false, early_stopping_patience: 0, checkpoint_every: 2}}
prune_train: {{epochs: 4, batch_size: 16, lr: 1.0e-3, max_length: 32,
  freeze_embeddings: false, early_stopping_patience: 0, checkpoint_every: 2}}
prune: {{block_size: 16}}
student_layers: 1
served_blocks: false
measure: {{repeats: 2, warmup: 1, texts: 16, threads: 1}}
"""


def _toy_csvs(folder, splits):
    folder.mkdir()
    for name, ts in (("toy_train.csv", splits.train), ("toy_test.csv", splits.test)):
        lines = ["text,label"] + [f"{t},{splits.labels[y]}" for t, y in zip(ts.texts, ts.labels)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _tiny_grid(toy_splits, tmp_path, extra: str = "") -> tuple[str, GridConfig, str]:
    """A 2-layer teacher folder, the toy data as CSVs and TINY_PRESET (plus `extra` YAML): (teacher, preset, data)."""
    data = tmp_path / "data"
    _toy_csvs(data, toy_splits)
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    save_classifier(tiny_bert(3, vocab_size=len(tok), num_hidden_layers=2), tok, tmp_path / "base", {})
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY_PRESET.format(data=data) + extra)
    return str(tmp_path / "base"), load_preset(preset)[0], str(data)


def _assert_schema(results: dict) -> None:
    """Every key the grid wrote is declared in `results.Row` / `Meta` / `Results`: the schema cannot drift."""
    assert set(results) == set(Results.__annotations__)
    assert set(results["meta"]) <= set(Meta.__annotations__), set(results["meta"]) - set(Meta.__annotations__)
    undeclared = {k for row in results["rows"] for k in row} - set(Row.__annotations__)
    assert not undeclared, f"written by the grid, not declared in results.Row: {sorted(undeclared)}"


@pytest.mark.slow
def test_sigkill_mid_row_then_rerun_completes_without_recomputing(toy_splits, tmp_path):
    data = tmp_path / "data"
    _toy_csvs(data, toy_splits)
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    save_classifier(tiny_bert(3, vocab_size=len(tok)), tok, tmp_path / "base", {})
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY_PRESET.format(data=data))
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "mahacompress", "reproduce", "--teacher",
        str(tmp_path / "base"), "--preset",
        str(preset), "--out",
        str(out)
    ]
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
    assert rows["baseline"]["speedup_b32"] > 0 and rows["best+int8"]["source_row"] in {"kd", "p50", "p50+kd"}
    assert abs(rows["p50"]["encoder_sparsity"] - 0.5) <= 0.01
    assert (out / "report.md").is_file() and (out / "accuracy_vs_speedup.png").is_file()


@pytest.mark.slow
def test_seeds_served_blocks_and_paired_differences(toy_splits, tmp_path):
    teacher, cfg, data = _tiny_grid(toy_splits, tmp_path)
    cfg = replace(cfg, rows=["baseline", "kd1", "best+onnx", "best+fused", "best+openvino"],
                  row_seeds={"kd1": 2, "baseline": 2}, served_blocks=True)  # `seeds: 2` builds kd1 the same way
    write_report(Grid(teacher, cfg, "tiny", data, tmp_path / "out").run())
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    _assert_schema(results)
    rows = {r["name"]: r for r in results["rows"]}
    openvino = rows.pop("best+openvino")  # runs where the optional openvino extra is installed, else says why not
    missing = unsupported_reason("openvino-int8")
    assert (openvino["status"], openvino.get("reason")) == (("skipped", missing) if missing else ("done", None))
    assert all(r["status"] == "done" for r in rows.values()), rows

    kd = rows["kd1"]  # kdN: a 1-layer student, built with seeds 42 and 43 into two folders
    assert [s["seed"] for s in kd["seeds"]] == [42, 43] and kd["settings"]["student_layers"] == 1
    assert json.loads((tmp_path / "out/models/kd1_seed43/config.json").read_text())["num_hidden_layers"] == 1
    assert kd["accuracy"] == pytest.approx(sum(s["accuracy"] for s in kd["seeds"]) / 2) and "accuracy_sd" in kd
    assert len(kd["seeds"][1]["test_predictions"]) == len(toy_splits.test) == len(results["meta"]["test_labels"])
    served = kd["served"]  # the same (first-seed) model in this CPU's int8 runtime for batches, timed in the session
    assert served["backend"] == batch_int8_backend() and served["speedup_b32"] > 0 and served["disk_mb"] > 0
    assert "served" not in rows["baseline"] and rows["best+onnx"]["backend"] == "onnx-int8"
    teacher = rows["baseline"]  # fine-tuned twice to show its spread; the students learned from seed 42's model
    assert [s["model_dir"]
            for s in teacher["seeds"]] == [str(tmp_path / "out/models" / f) for f in ("baseline", "baseline_seed43")]
    assert json.loads((tmp_path / "out/models/kd1/training.json").read_text())["teacher"] == teacher["model_dir"]
    base = teacher["vs_baseline"]  # both seeds' correctness against the first seed's
    assert base["ci_low"] <= base["difference"] <= base["ci_high"] and base["resamples"] >= 1000
    assert kd["vs_baseline"]["ci_low"] <= kd["vs_baseline"]["difference"] <= kd["vs_baseline"]["ci_high"]
    assert "vs_baseline" in served
    assert rows["best+onnx"]["source_row"] == "kd1" and "dev accuracy" in rows["best+onnx"]["chosen_by"]
    found = findings(read_results(tmp_path / "out" / "results.json"))
    assert ("kd1", True) in {(v.row, v.served) for v in found.verdicts} and found.within == 1.0
    assert [(f.batch, f.source_row) for f in found.fastest] == [(32, "kd1"), (1, "kd1")]
    assert [s.row for s in found.seed_ranges] == ["baseline", "kd1"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "± " in report and "max_length 32" in report and "seeds per row: baseline 2, kd1 2;" in report
    assert "every `Δ acc.` is against the baseline's first seed" in report
    assert "a seeded random sample of 16 test texts" in report and "{n}" not in report  # TINY_PRESET's 16


def test_a_preset_with_two_datasets_makes_one_grid_each(tmp_path, monkeypatch):
    import mahacompress.study.grid as grid
    import mahacompress.study.preset as preset

    runs = []
    monkeypatch.setattr(preset, "check_model", lambda name, **_: None)  # "teacher" stands for a model folder here
    monkeypatch.setattr(grid.Grid, "run", lambda self: runs.append((self.dataset, self.out)) or self.out)
    grid.reproduce("teacher", "cpu-full", tmp_path)
    assert runs == [("mahanews-shc", tmp_path / "mahanews-shc"), ("mahanews-lpc", tmp_path / "mahanews-lpc")]
    runs.clear()
    grid.reproduce("teacher", "cpu-full", tmp_path, dataset="mahanews-lpc")
    assert runs == [("mahanews-lpc", tmp_path)]
    monkeypatch.setattr(grid.Grid, "run", lambda self: runs.append(self.trust_remote_code) or self.out)
    grid.reproduce("teacher", "cpu-full", tmp_path, dataset="mahanews-lpc", trust_remote_code=True)
    assert runs[-1] is True  # every load of the grid's run honours --trust-remote-code


def test_rows_whose_settings_changed_are_built_again(tmp_path):
    cfg = GridConfig(rows=["baseline", "kd", "p50", "best+int8"])
    first = Grid("teacher", cfg, "x", "mahanews-shc", tmp_path)
    rows = [{"name": n, "status": "done", "settings": first.settings_of(parse_row(n))} for n in cfg.rows]
    write_results(tmp_path / "results.json", {}, rows, [])
    same = Grid("teacher", cfg, "x", "mahanews-shc", tmp_path)
    assert set(same.rows) == set(cfg.rows) and not same.stale
    kd_changed = Grid("teacher", replace(cfg, distill=replace(cfg.distill, kd_alpha=0.9)), "x", "mahanews-shc",
                      tmp_path)
    assert set(kd_changed.rows) == {"baseline", "p50"} and kd_changed.stale == ["kd", "best+int8"]  # best may be kd
    pruning_changed = Grid("teacher", replace(cfg, prune=replace(cfg.prune, block_size=16)), "x", "mahanews-shc",
                           tmp_path)
    assert pruning_changed.stale == ["p50", "best+int8"]  # best+X may be served from a pruned row
    # an interrupted row with several seeds keeps its finished seeds when its settings still hold
    three = replace(cfg, seeds=3)
    partial = {
        "name": "kd", "status": "partial",
        "settings": Grid("t", three, "x", "d", tmp_path).settings_of(parse_row("kd")), "seeds": [{"seed": 42}]
    }
    write_results(tmp_path / "results.json", {}, [partial], [])
    assert Grid("teacher", three, "x", "mahanews-shc", tmp_path).partial == {}  # other dataset: settings differ
    partial["settings"]["dataset"] = "mahanews-shc"
    write_results(tmp_path / "results.json", {}, [partial], [])
    resumed = Grid("teacher", three, "x", "mahanews-shc", tmp_path)
    assert resumed.partial == {"kd": [{"seed": 42}]} and resumed.rows["kd"]["status"] == "partial"


@pytest.mark.slow
def test_tr_rows_distil_on_the_transfer_set_and_record_what_was_dropped(toy_splits, tmp_path):
    transfer = tmp_path / "unlabelled.txt"  # one toy text of each split: the test one must be dropped
    transfer.write_text(f"{toy_splits.train.texts[0]} नवीन\n{toy_splits.test.texts[0]}\n", encoding="utf-8")
    teacher, cfg, data = _tiny_grid(toy_splits, tmp_path, f"transfer: {{path: {transfer}, ngram: 8}}\n")
    cfg = replace(cfg, rows=["baseline", "kd1", "kd1+tr"])
    write_report(Grid(teacher, cfg, "tiny", data, tmp_path / "out").run())
    rows = {r["name"]: r for r in json.loads((tmp_path / "out" / "results.json").read_text())["rows"]}
    assert rows["kd1+tr"]["status"] == "done", rows["kd1+tr"]
    assert rows["kd1+tr"]["transfer"]["kept"] == 1 and rows["kd1+tr"]["transfer"]["dropped_overlap"] == 1
    assert rows["kd1+tr"]["settings"]["transfer"]["path"] == str(transfer) and "transfer" not in rows["kd1"]["settings"]
    assert findings(read_results(tmp_path / "out" / "results.json")).transfer.uses[0].rows == ("kd1+tr", )


def test_transfer_overrides_give_one_tr_row_its_own_transfer_set(toy_splits, tmp_path):
    transfer = tmp_path / "unlabelled.txt"  # four new texts: the preset's cap keeps two, the static row all
    transfer.write_text("".join(f"{w} नवीन शब्द\n" for w in ("एक", "दोन", "तीन", "चार")), encoding="utf-8")
    preset = tmp_path / "p.yaml"
    preset.write_text(f"rows: [baseline, kd+tr, static+tr]\ntransfer: {{path: {transfer}, max_pieces: 2}}\n"
                      "transfer_overrides: {static+tr: {max_pieces: null}}\n")
    cfg, _ = load_preset(preset)
    ctx = RecipeContext(RowSettings(cfg, "teacher", "d"), "teacher", toy_splits, DataConfig("d"))
    assert len(transfer_set(ctx, parse_row("kd+tr")).texts) == 2
    assert len(transfer_set(ctx, parse_row("static+tr")).texts) == 4
    # the override is part of the row's settings (a change rebuilds that row alone)
    grid = Grid("teacher", cfg, "p", "d", tmp_path / "out")
    assert grid.settings_of(parse_row("static+tr"))["transfer"]["max_pieces"] is None
    assert grid.settings_of(parse_row("kd+tr"))["transfer"]["max_pieces"] == 2
    for text, match in (("transfer_overrides: {kd: {max_pieces: 5}}", "names 'kd', not a row marked"),
                        ("transfer_overrides: {kd+tr: {max_peices: 5}}", r"transfer_overrides.kd\+tr: unknown key"),
                        ("transfer_overrides: {kd+tr: {max_pieces: many}}", r"max_pieces: bad value 'many'"),
                        ):
        preset.write_text(f"rows: [baseline, kd, kd+tr]\ntransfer: {{path: {transfer}}}\n{text}\n")
        with pytest.raises(MahaError, match=match):
            load_preset(preset)


def test_tr_rows_need_a_teacher_and_a_named_transfer_set(tmp_path):
    assert parse_row("kd4+tr").tr and parse_row("p50+kd+tr").tr and not parse_row("p50+kd").tr
    with pytest.raises(MahaError, match="row 'p50\\+tr'"):
        parse_row("p50+tr")  # pruning without a teacher has nothing to label the transfer set
    preset = tmp_path / "p.yaml"
    preset.write_text("rows: [baseline, kd2+tr]\n")
    with pytest.raises(MahaError, match="names none"):
        load_preset(preset)


@pytest.mark.slow
def test_tfidf_and_static_rows_are_built_scored_and_timed_end_to_end(toy_splits, tmp_path):
    transfer = tmp_path / "unlabelled.txt"  # a labelled training text (dropped and counted) and a new one
    transfer.write_text(f"{toy_splits.train.texts[0]}\n{toy_splits.train.texts[1]} नवीन\n", encoding="utf-8")
    teacher, cfg, data = _tiny_grid(
        toy_splits, tmp_path, f"transfer: {{path: {transfer}, ngram: 8}}\n"
        "static: {epochs: 5, batch_size: 16, lr: 5.0e-2, max_length: 32, "
        "freeze_embeddings: false}\nstatic_dim: 16\n")
    cfg = replace(cfg, rows=["baseline", "tfidf", "static", "static+tr"])
    write_report(Grid(teacher, cfg, "tiny", data, tmp_path / "out").run())
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    _assert_schema(results)
    rows = {r["name"]: r for r in results["rows"]}
    assert all(r["status"] == "done" for r in rows.values()), rows
    assert rows["tfidf"]["backend"] == "tfidf" and rows["static"]["backend"] == "static"
    assert rows["static+tr"]["transfer"]["dropped_labelled"] == 1 and rows["static+tr"]["transfer"]["kept"] == 1
    static_record = json.loads((tmp_path / "out/models/static_tr/training.json").read_text())
    assert static_record["data_config"]["dataset"] == data
    for row in rows.values():  # model-only and end-to-end timings, arrival order and length-sorted
        assert row["latency_ms_b32_p50"] > 0 and row["e2e_ms_b32_p50"] > 0 and row["e2e_ms_b32_sorted_p50"] > 0
        assert row["e2e_ms_b1_p50"] > 0 and row["e2e_speedup_b32"] > 0 and row["disk_mb"] > 0
        assert row["peak_rss_mb"] > 0 and "served" not in row
    assert rows["tfidf"]["vs_baseline"]["ci_low"] <= rows["tfidf"]["vs_baseline"]["difference"]
    assert rows["static"]["encoder_linear_weights"] == 0 and rows["tfidf"]["params_total"] > 0
    found = findings(read_results(tmp_path / "out" / "results.json"))
    assert found.frontier and found.reference.accuracy == rows["tfidf"]["accuracy"]
    assert "e2e b32 ms" in (tmp_path / "out" / "report.md").read_text()


def test_a_row_the_teacher_cannot_shape_is_left_out_with_its_reason(toy_splits, tmp_path):
    """A student deeper than the teacher, or a static table wider: the row is skipped with the reason (as optimize
    leaves such a candidate out), and the rest of the grid runs; a preset asking for no layer at all is refused."""
    cfg = GridConfig(rows=["baseline", "kd3", "kd2", "kdp50", "static"], student_layers=3, static_dim=65)
    assert left_out(parse_row("kd3"), cfg, 2, 64) == "a 3-layer student of a 2-layer teacher"
    assert left_out(parse_row("kdp50"), cfg, 2, 64) == "a 3-layer student of a 2-layer teacher"  # prunes kd's
    assert left_out(parse_row("kd2"), cfg, 2, 64) is None and left_out(parse_row("kd3"), cfg, None, None) is None
    assert left_out(parse_row("static"), cfg, 2, 64) == "static_dim 65 exceeds the teacher's hidden size 64"
    grid = Grid("teacher", cfg, "x", "d", tmp_path)
    grid.ctx = RecipeContext(grid.settings, "teacher", toy_splits, DataConfig("d"), teacher_layers=2, teacher_hidden=64)
    assert grid.build_row(parse_row("kd3")) == {
        "name": "kd3", "status": "skipped", "reason": "a 3-layer student of a 2-layer teacher"
    }
    preset = tmp_path / "p.yaml"
    for text, match in (("rows: [baseline, kd]\nstudent_layers: 0\n", "student_layers 0: expected 1 or more"),
                        ("rows: [baseline, static]\nstatic_dim: 0\n", "static_dim 0: expected 1 or more"),
                        ):
        preset.write_text(text)
        with pytest.raises(MahaError, match=match):
            load_preset(preset)


@pytest.mark.slow
def test_kdp_rows_prune_each_seed_of_the_kd_student_with_kd(toy_splits, tmp_path):
    """Depth, then width: `kdp50` prunes the `kd` row's student of the same seed, distilling from the teacher."""
    assert (parse_row("kdp50").kind, parse_row("kdp50").sparsity, parse_row("kdp50").kd) == ("kdprune", 0.5, True)
    assert parse_row("kdp50+tr").tr
    order = tmp_path / "order.yaml"
    order.write_text("rows: [baseline, kdp50, kd]\n")
    with pytest.raises(MahaError, match="list that row before it"):
        load_preset(order)
    teacher, cfg, data = _tiny_grid(toy_splits, tmp_path)
    Grid(teacher, replace(cfg, rows=["baseline", "kd", "kdp50"], seeds=2), "tiny", data, tmp_path / "out").run()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    _assert_schema(results)
    rows = {r["name"]: r for r in results["rows"]}
    kdp = rows["kdp50"]
    assert kdp["status"] == "done", kdp
    assert [s["seed"] for s in kdp["seeds"]] == [42, 43] and kdp["settings"]["pruned_student"]["kd"]
    for folder in ("kdp50", "kdp50_seed43"):  # each seed pruned from the 1-layer student, not the 2-layer teacher
        pruning = json.loads((tmp_path / "out/models" / folder / "pruning.json").read_text())
        assert json.loads((tmp_path / "out/models" / folder / "config.json").read_text())["num_hidden_layers"] == 1
        assert pruning["reached_sparsity"] == pytest.approx(0.5, abs=0.05)
    # half of one of the teacher's two layers is left: about 75% sparsity against the teacher
    assert kdp["encoder_sparsity"] == pytest.approx(0.75, abs=0.05)
    assert kdp["dev_history"] and rows["kd"]["dev_history"]
    # every row's folder records the grid's whole data configuration, which trim/export rebuild the corpus from
    for folder, record in (("kd", "training.json"), ("kdp50", "pruning.json")):
        recorded = json.loads((tmp_path / "out/models" / folder / record).read_text())["data_config"]
        assert recorded["dataset"] == data and recorded["max_train_rows"] == cfg.max_train_rows


def test_kdl_rows_cut_the_trained_kd_student_and_distil_it_for_cut_epochs(toy_splits, tmp_path):
    """Depth twice: `kdl1` copies one layer of the `kd` row's TRAINED 2-layer student (not the teacher's), keeps the
    teacher layer it stands for, and trains for `cut_epochs`; listed before its kd row, or deeper than it, refused."""
    spec = parse_row("kdl1+tr")
    assert (spec.kind, spec.number, spec.kd, spec.tr) == ("kdcut", 1, True, True)
    cfg = GridConfig(rows=["baseline", "kd", "kdl3"], student_layers=2)
    assert left_out(parse_row("kdl3"), cfg, 12, 64) == "3 layers cut from the 2-layer kd student"
    preset = tmp_path / "order.yaml"
    for text, match in (("rows: [baseline, kdl1, kd]\n", "list that row before it"),
                        ("rows: [baseline, kd, kdl1]\ncut_epochs: 0\n", "cut_epochs 0.0: expected a number above 0")):
        preset.write_text(text)
        with pytest.raises(MahaError, match=match):
            load_preset(preset)
    teacher, cfg, data = _tiny_grid(toy_splits, tmp_path, "cut_epochs: 0.5\n")
    Grid(teacher, replace(cfg, rows=["baseline", "kd", "kdl1"], student_layers=2), "tiny", data, tmp_path / "out").run()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    _assert_schema(results)
    rows = {r["name"]: r for r in results["rows"]}
    assert rows["kdl1"]["status"] == "done", rows["kdl1"]
    assert rows["kdl1"]["settings"]["cut_student"]["kd"] and rows["kdl1"]["settings"]["distill"]["epochs"] == 0.5
    models = tmp_path / "out" / "models"
    record = json.loads((models / "kdl1" / "training.json").read_text())
    assert record["cut_from"] == str(models / "kd") and record["train_config"]["epochs"] == 0.5
    config = json.loads((models / "kdl1" / "config.json").read_text())
    kd_layers = json.loads((models / "kd" / "config.json").read_text())["distilled_from_layers"]
    assert config["num_hidden_layers"] == 1 and config["distilled_from_layers"][0] in kd_layers  # the teacher's


def test_the_accuracy_budget_is_one_setting_for_best_and_the_report(tmp_path):
    grid = Grid("teacher", GridConfig(rows=["baseline", "kd", "kd2"], best_within_points=3.0), "x", "d", tmp_path)

    def row(name, dev, weights):
        return {"name": name, "status": "done", "dev_accuracy": dev, "encoder_linear_weights": weights}

    grid.rows = {"baseline": row("baseline", 0.90, 100), "kd": row("kd", 0.885, 50), "kd2": row("kd2", 0.875, 20)}
    assert grid.pick_best()[0] == "kd2" and "within 3 points" in grid.pick_best()[1]  # 2.5 points down: within 3
    one = Grid("teacher", GridConfig(rows=["baseline", "kd", "kd2"]), "x", "d", tmp_path)
    one.rows = grid.rows
    assert one.pick_best()[0] == "kd"  # the default budget: 1 point
    d = {"difference": -0.02, "ci_low": -0.025, "ci_high": -0.015}
    rows = [{
        "name": "baseline", "status": "done", "accuracy": 0.9, "macro_f1": 0.9,
        "vs_baseline": {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    }, {"name": "kd2", "status": "done", "accuracy": 0.88, "macro_f1": 0.88, "vs_baseline": d}, ]
    write_results(tmp_path / "results.json", {"config": {"best_within_points": 3.0}}, rows, [])
    found = findings(read_results(tmp_path / "results.json"))
    assert found.within == 3.0 and [(v.row, v.estimate_within) for v in found.verdicts] == [("kd2", True)]
