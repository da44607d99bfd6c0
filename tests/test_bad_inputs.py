"""Every bad input: one line on stderr, exit status 2, no traceback, nothing new left behind.

The corpus (tests/bad_inputs.py) runs in-process through the CLI runner; a sample also runs as real
subprocesses. Beside it: outputs get the user's normal file mode, and a full disk (ENOSPC) while
writing a checkpoint or results.json loses nothing that a re-run cannot complete.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bad_inputs import CORPUS, argv, make_template, prepare, run_in_process

SAMPLE = [
    "truncated-weights/evaluate", "utf16/data inspect", "alpha-above-1/distill", "out-is-file/reproduce",
    "markup-in-name/finetune", "mistyped-folder/predict"
]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return make_template(tmp_path_factory.mktemp("bad-inputs") / "template")


def test_the_corpus_covers_every_command():
    from typer.main import get_command

    from mahacompress.cli.app import app

    def names(group, prefix=""):
        for name, cmd in group.commands.items():
            yield from names(cmd, f"{prefix}{name} ") if hasattr(cmd, "commands") else [f"{prefix}{name}"]

    tried = {" ".join(c.args[:2]) if c.args[0] in ("data", "models", "baseline") else c.args[0] for c in CORPUS}
    assert set(names(get_command(app))) <= tried


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_bad_input(case, template, tmp_path):
    root = prepare(case, template, tmp_path / "case")
    out = run_in_process(case, root)
    if case.ok:
        assert out.exit_code == 0, out.stderr
        assert case.expect in out.stdout + out.stderr
    else:
        assert out.exit_code == 2, out.stdout + out.stderr
        assert out.one_line(), out.stderr
        assert out.stderr.startswith("error: ") and case.expect in out.stderr, out.stderr
    assert out.left_behind == []


@pytest.mark.slow
@pytest.mark.parametrize("case_id", SAMPLE)
def test_bad_input_as_a_real_process(case_id, template, tmp_path):
    case = next(c for c in CORPUS if c.id == case_id)
    root = prepare(case, template, tmp_path / "case")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "mahacompress", *argv(case, root)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and case.expect in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_shipped_data_raises_no_alarm():
    from conftest import SHARED

    from mahacompress.data.csvfiles import read_labeled_csv
    from mahacompress.data.sources import NAMED

    files = [(path, spec) for spec in NAMED.values() for path in sorted((SHARED / spec.folder).glob("*.csv"))]
    if not files:
        pytest.skip("the shared data files are absent")
    for path, spec in files:  # every file of every named dataset here reads with the columns its entry names
        texts, labels, _ = read_labeled_csv(path, spec.text_col, spec.label_col)
        assert len(texts) >= 1500 and len(set(labels)) == (3 if spec.folder == "mahasent-mr" else 12)


def test_a_folder_validation_file_is_the_dev_split(template, tmp_path):
    from mahacompress.core.config import DataConfig
    from mahacompress.data.splits import load_splits

    data = template / "data"
    splits = load_splits(DataConfig(str(data), text_col="marathi_sentence", label_col="label"))
    assert len(splits.dev) == 12 and len(splits.train) == 48
    assert splits.cleaning["files"]["dev"].endswith("x_Val.csv")
    assert "x_Val.csv" in splits.cleaning["dev_source"]


def test_mahanews_shc_still_trains_on_valid_and_carves_dev():
    from mahacompress.data.sources import resolve_files

    try:
        files = resolve_files("mahanews-shc")
    except Exception:
        pytest.skip("the shared data files are absent")
    assert files["train"].name == "SHC_Valid.csv" and "dev" not in files


def test_outputs_get_the_normal_file_mode(tmp_path):
    from mahacompress.core.files import atomic_path, staged_dir, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "results.json", {"a": 1})
        with atomic_path(tmp_path / "w.pt") as tmp:
            torch.save({"x": 1}, tmp)
        with staged_dir(tmp_path / "model", "config.json") as folder:
            (folder / "config.json").write_text("{}")
            (folder / "model.safetensors").write_text("")  # as transformers leaves its shards: private
            (folder / "model.safetensors").chmod(0o600)
    finally:
        os.umask(old)
    for path, mode in ((tmp_path / "results.json", 0o644), (tmp_path / "w.pt", 0o644), (tmp_path / "model", 0o755),
                       (tmp_path / "model" / "config.json", 0o644), (tmp_path / "model" / "model.safetensors", 0o644),
                       ):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "results.json", "w.pt"]


def _enospc_after(real, calls: int):
    """A writer that works `calls` times, then writes half a file and fails as a full disk does."""
    count = {"n": 0}

    def writer(obj, path, *args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            Path(path).write_bytes(b"\x00" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(obj, path, *args, **kwargs)

    return writer


@pytest.mark.slow
def test_disk_full_while_checkpointing_then_rerun_completes(toy_splits, tmp_path, monkeypatch):
    import mahacompress.train.loop as train
    from mahacompress.core.config import TrainConfig
    from mahacompress.models.load import load_classifier, save_classifier, tiny_bert, tiny_tokenizer

    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    save_classifier(tiny_bert(3, vocab_size=len(tok)), tok, tmp_path / "base", {})
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, max_length=32, freeze_embeddings=False,
                      early_stopping_patience=0, checkpoint_every=2)
    out = tmp_path / "out"
    monkeypatch.setattr(train.torch, "save", _enospc_after(torch.save, 3))
    with pytest.raises(OSError) as info:
        train.finetune(str(tmp_path / "base"), toy_splits, cfg, out)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    work = tmp_path / "out.work"
    assert not out.exists() and sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []
    state = torch.load(work / "checkpoint.pt", map_location="cpu", weights_only=False)  # the last good one
    assert state["step"] > 0
    summary = train.finetune(str(tmp_path / "base"), toy_splits, cfg, out, resume=True)
    assert summary["result"]["steps"] > state["step"] and not work.exists()
    assert load_classifier(str(out)).config.id2label[0] == toy_splits.labels[0]


def test_disk_full_while_writing_results_keeps_the_finished_rows(tmp_path, monkeypatch):
    """results.json is written whole or not at all (`write_results`, the grid's one writer), so a re-run's
    Grid resumes the rows finished before the disk filled and builds only the rest."""
    from mahacompress.core.config import GridConfig
    from mahacompress.study.grid import Grid
    from mahacompress.study.recipes import parse_row
    from mahacompress.study.results import write_results

    path, meta = tmp_path / "results.json", {"preset": "x", "dataset": "mahanews-shc"}
    grid = Grid("teacher", GridConfig(rows=["baseline", "kd"]), "x", "mahanews-shc", tmp_path)
    baseline = {"name": "baseline", "status": "done", "settings": grid.settings_of(parse_row("baseline"))}
    kd = {"name": "kd", "status": "done", "settings": {}}
    write_results(path, meta, [baseline], [])
    first = path.read_text()

    real = Path.write_text

    def full_disk(self, text, *args, **kwargs):
        real(self, text[:len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError):
        write_results(path, meta, [baseline, kd], [])
    monkeypatch.undo()
    assert path.read_text() == first  # untouched, still valid JSON
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    again = Grid("teacher", GridConfig(rows=["baseline", "kd"]), "x", "mahanews-shc", tmp_path)
    assert set(again.rows) == {"baseline"}  # the finished row survived; the re-run builds only kd
    write_results(path, meta, [*again.rows.values(), kd], [])
    assert {r["name"] for r in json.loads(path.read_text())["rows"]} == {"baseline", "kd"}


def test_a_full_disk_is_one_line_from_the_cli(template, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import mahacompress.cli.app as cli

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "m.json"))

    monkeypatch.setattr("mahacompress.core.files.write_json", full)
    result = CliRunner().invoke(cli.app, [
        "compare", "--model",
        str(template / "model"), "--out",
        str(tmp_path / "m.json"), "--dataset",
        str(template / "data"), "--text-col", "marathi_sentence", "--label-col", "label"
    ])
    assert result.exit_code == 2 and "No space left on device" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_reproduce_and_presets_take_the_column_names(template, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import mahacompress.study.grid as grid
    from mahacompress.cli.app import app

    seen = []
    monkeypatch.setattr(grid.Grid, "run", lambda self: seen.append((self.cfg.text_col, self.cfg.label_col)) or self.out)
    monkeypatch.setattr("mahacompress.report.render.write_report", lambda out: out / "report.md")  # nothing ran
    preset = tmp_path / "cols.yaml"
    preset.write_text("text_col: marathi_sentence\nlabel_col: label\nrows: [baseline]\n", encoding="utf-8")
    grid.reproduce(str(template / "model"), preset, tmp_path / "a", dataset=str(template / "data"))
    plain = (tmp_path / "plain.yaml"
             )  # no column names: the options give them (cpu-quick's 6-layer kd needs a deeper teacher)
    plain.write_text("rows: [baseline, kd1]\n", encoding="utf-8")
    result = CliRunner().invoke(app, [
        "reproduce", "--teacher",
        str(template / "model"), "--preset",
        str(plain), "--out",
        str(tmp_path / "b"), "--dataset",
        str(template / "data"), "--text-col", "marathi_sentence", "--label-col", "label"
    ])
    assert result.exit_code == 0, result.output
    assert seen == [("marathi_sentence", "label")] * 2
