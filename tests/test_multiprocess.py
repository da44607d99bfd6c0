"""Two CPU processes (torchrun, gloo): shared work, one writer, the same result as one process, no hang.

Each run is a real `torchrun --nproc_per_node 2` of the CLI (through tests/mp_worker.py, which
records the rows each process trained on and the folders it saved). Every launch has a timeout, so
a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from mahacompress.models.load import tiny_bert, tiny_tokenizer

pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs torch's gloo backend")

WORKER = Path(__file__).with_name("mp_worker.py")
SRC = Path(__file__).resolve().parents[1] / "src"
TRAIN = [
    "--dataset", "data", "--epochs", "10", "--batch-size", "16", "--lr", "1e-3", "--max-length", "32",
    "--no-freeze-embeddings", "--patience", "0", "--evals-per-epoch", "2", "--checkpoint-every", "3"
]
# Dropout is off and every process sees the same weights, so the runs differ only in float summation order.
LOGIT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, toy_splits) -> Path:
    """A CSV dataset folder and a dropout-free tiny classifier folder with the dataset's labels."""
    root = tmp_path_factory.mktemp("mp")
    (root / "data").mkdir()
    for name, parts in (("train.csv", (toy_splits.train, toy_splits.dev)), ("test.csv", (toy_splits.test, ))):
        with open(root / "data" / name, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows((t, toy_splits.labels[y]) for part in parts for t, y in zip(part.texts, part.labels))
    labels = toy_splits.labels
    tok = tiny_tokenizer(toy_splits.train.texts + toy_splits.dev.texts, vocab_size=200)
    for folder, names in (("model", labels), ("other-labels", ["x", "y", "z"])):
        torch.manual_seed(0)
        model = tiny_bert(3, vocab_size=len(tok), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                          id2label=dict(enumerate(names)), label2id={n: i
                                                                     for i, n in enumerate(names)})
        model.save_pretrained(root / folder)
        tok.save_pretrained(root / folder)
    return root


def _launch(workdir: Path, args: list[str], record: str, processes: int = 2, **env: str):
    cmd = [sys.executable, str(WORKER), *args]
    if processes > 1:
        cmd[1:1] = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--standalone"]
    full_env = {**os.environ, "PYTHONPATH": str(SRC), "MP_RECORD": str(workdir / record), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(cmd, cwd=workdir, env=full_env, capture_output=True, text=True, timeout=300)


def _records(workdir: Path, record: str, processes: int) -> list[dict]:
    return [json.loads((workdir / record / f"rank{r}.json").read_text()) for r in range(processes)]


def _our_lines(out: subprocess.CompletedProcess) -> list[str]:
    """Lines our processes printed (torchrun's own launcher report excluded)."""
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith(("error:", "wrote", "[rank"))]


@pytest.mark.slow
def test_two_processes_share_batches_and_score_like_one(workdir):
    two = _launch(workdir, ["finetune", "--model", "model", "--out", "out2", *TRAIN], "rec2")
    assert two.returncode == 0, two.stderr[-3000:]
    one = _launch(workdir, ["finetune", "--model", "model", "--out", "out1", *TRAIN], "rec1", processes=1)
    assert one.returncode == 0, one.stderr[-3000:]

    (single, ), (rank0, rank1) = _records(workdir, "rec1", 1), _records(workdir, "rec2", 2)
    assert len(rank0["rows"]) == len(rank1["rows"]) == len(single["rows"]) == 80  # 10 epochs of 8 batches
    for rows, mine, theirs in zip(single["rows"], rank0["rows"], rank1["rows"]):
        if len(rows) >= 2:
            assert not set(mine) & set(theirs)  # disjoint shares ...
            assert sorted(mine + theirs) == sorted(rows)  # ... of the same global batch
        else:  # the epoch's last batch holds one row: both processes take it (weighted so the step is the same)
            assert mine == theirs == rows
    assert any(len(rows) == 1 for rows in single["rows"])
    assert rank0["saved"] == ["out2"] and rank1["saved"] == []
    assert len([line for line in _our_lines(two) if line.startswith("wrote out2")]) == 1

    results = [json.loads((workdir / d / "training.json").read_text())["result"] for d in ("out1", "out2")]
    assert results[0]["best_dev_macro_f1"] == results[1]["best_dev_macro_f1"] > 0.9  # chance is 0.33
    tok = AutoTokenizer.from_pretrained(workdir / "out1")
    x = tok(["आज गाडी शहर", "क्रिकेट राज्य देश लोक नवीन"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = (AutoModelForSequenceClassification.from_pretrained(workdir / d)(**x).logits for d in ("out1", "out2"))
    assert (a - b).abs().max() <= LOGIT_TOLERANCE


@pytest.mark.slow
def test_out_of_memory_in_one_process_ends_both_with_one_line(workdir):
    out = _launch(workdir, ["finetune", "--model", "model", "--out", "oom", *TRAIN], "rec-oom", MP_OOM_RANK="1")
    assert out.returncode != 0
    assert sorted(_our_lines(out)) == [
        "error: process 0 of 2, step 2: another process stopped (its message says why); no model written",
        "error: process 1 of 2, step 2: out of memory; use a smaller --batch-size or --max-length "
        "(checkpoints so far are kept, no model written)"
    ]
    assert not (workdir / "oom").exists()


@pytest.mark.parametrize("args, message", [
    (["finetune", "--model", "model", "--out", "bad", *TRAIN, "--batch-size", "1"
      ], "error: batch size 1 is the global batch: it cannot be split over 2 processes",
     ),
    (["distill", "--teacher", "other-labels", "--student", "layers:1", "--out", "bad", "--dataset", "data"
      ], "error: other-labels: the teacher's labels ['x', 'y', 'z'] differ from the dataset's",
     )
])
@pytest.mark.slow
def test_bad_input_ends_the_run_with_one_line_from_each_process_that_checks(workdir, args, message):
    out = _launch(workdir, args, "rec-bad")
    assert out.returncode != 0
    lines = _our_lines(out)
    # each process that reaches the check prints the one line; torchrun stops the rest of the group as soon as one
    # process exits with an error, so on a loaded machine the slower one can be stopped before its check (the
    # likely cause of one failure in a full run on 2 cores; it passed alone): one or two lines, each the error
    assert 1 <= len(lines) <= 2 and all(line.startswith(message) for line in lines), lines
    assert not (workdir / "bad").exists()


def test_the_grid_refuses_to_run_as_several_processes(tmp_path, monkeypatch, capsys):
    from mahacompress.cli import app as cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(sys, "argv", ["mahacompress", "reproduce", "--teacher", "t", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2 and "reproduce runs as one process" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
