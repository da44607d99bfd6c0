"""The static-embedding student: built from the teacher, trained by KD, served by numpy with the same logits."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from mahacompress.core.config import TrainConfig
from mahacompress.core.errors import MahaError
from mahacompress.infer import load_backend
from mahacompress.infer.evaluate import predict_ids
from mahacompress.infer.numpy_engine import is_static
from mahacompress.models.load import load_classifier, load_tokenizer
from mahacompress.train.static import build_table, distill_static

CFG = TrainConfig(epochs=15, batch_size=16, lr=5e-2, max_length=32, freeze_embeddings=False, early_stopping_patience=0,
                  checkpoint_every=50)


@pytest.fixture(scope="module")
def static_dir(teacher_dir, toy_splits, tmp_path_factory):
    out = tmp_path_factory.mktemp("static") / "student"
    distill_static(str(teacher_dir), toy_splits, CFG, out, dim=16)
    return out


def test_table_keeps_only_corpus_pieces_and_zeroes_specials(teacher_dir, toy_splits):
    model, tokenizer, record = build_table(str(teacher_dir), toy_splits.train.texts, dim=8)
    assert record["pieces_kept"] == len(tokenizer) < record["pieces_before"]
    assert model.embeddings.weight.shape == (len(tokenizer), 8)
    specials = model.config.special_ids
    assert specials and torch.all(model.embeddings.weight[specials] == 0)
    assert torch.count_nonzero(model.embeddings.weight) > 0


def test_numpy_backend_gives_the_model_logits(static_dir, toy_splits):
    texts = toy_splits.test.texts[:12] + ["", "एक नवीन शब्द जो कुठेही नाही"]
    torch_logits = load_backend(str(static_dir), "fp32", max_length=32).logits(texts)
    numpy_logits = load_backend(str(static_dir), "static", max_length=32).logits(texts)
    np.testing.assert_allclose(numpy_logits, torch_logits, rtol=1e-4, atol=1e-5)


def test_student_learns_the_teacher_task_and_loads_without_mahacompress(static_dir, toy_splits):
    assert is_static(static_dir)
    pred = predict_ids(str(static_dir), toy_splits, "test", backend="static", max_length=32)
    assert np.mean(pred == np.asarray(toy_splits.test.labels)) >= 0.9  # chance is 1/3
    code = ("import sys; sys.modules['mahacompress'] = None\n"
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
            f"m = AutoModelForSequenceClassification.from_pretrained({str(static_dir)!r}, trust_remote_code=True)\n"
            f"t = AutoTokenizer.from_pretrained({str(static_dir)!r}, trust_remote_code=True)\n"
            "print(m(**t(['गाडी'], return_tensors='pt')).logits.shape[-1])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr[-500:]
    record = json.loads((static_dir / "training.json").read_text())
    assert record["student"] == "static-embedding" and record["static"]["dim"] == 16


def test_frozen_table_trains_only_the_head(teacher_dir, toy_splits, tmp_path):
    out = tmp_path / "frozen"
    distill_static(str(teacher_dir), toy_splits,
                   TrainConfig(**{**CFG.__dict__, "epochs": 2, "freeze_embeddings": True}), out, dim=8)
    before, _, _ = build_table(str(teacher_dir), toy_splits.train.texts, dim=8)
    after = load_classifier(str(out))
    assert torch.equal(after.embeddings.weight, before.embeddings.weight)
    assert load_tokenizer(str(out)).get_vocab() == load_tokenizer(str(out)).get_vocab()


def test_a_table_wider_than_the_teacher_is_refused(teacher_dir, toy_splits):
    with pytest.raises(MahaError, match="static_dim 65: choose 1..64"):
        build_table(str(teacher_dir), toy_splits.train.texts, dim=65)


# ---------------------------------------------------------------- shipping: export, runtime, serve, CLI

TEXTS = ["गाडी आज शहर", "क्रिकेट सामना उद्या", "नवीन मोबाईल बातमी", "", "एक नवीन शब्द जो कुठेही नाही"]


@pytest.fixture(scope="module")
def static_export(static_dir, toy_splits):
    from mahacompress.deploy.export import export

    folder = static_dir.parent / "shipped"
    export(static_dir, folder, splits=toy_splits, max_length=32)
    return folder


def test_the_exported_table_runs_without_torch_or_onnxruntime_as_the_backend_does(static_dir, static_export):
    from scipy.special import softmax
    from test_deploy import _torch_free

    from mahacompress.infer.runtime import Classifier

    manifest = json.loads((static_export / "export.json").read_text())
    assert manifest["kind"] == "static-embedding" and manifest["backend"] == "static"
    assert {p.name
            for p in static_export.iterdir()} == {
                "piece_logits.npy", "tokenizer.json", "runtime.py", "server.py", "export.json", "README.md",
                "requirements.txt"
            }
    needs = (static_export / "requirements.txt").read_text().split()
    assert needs == manifest["needs"] and not any(n.startswith("onnxruntime") for n in needs)
    backend = load_backend(str(static_dir), "static", max_length=32)
    table = np.load(static_export / "piece_logits.npy")
    assert table.dtype == np.float32 and table.shape == (manifest["static"]["pieces"], 3)
    assert not table[manifest["special_ids"]].any()
    expected = backend.logits(TEXTS)
    got = _torch_free(static_export, TEXTS, also_unimportable=("onnxruntime", ))
    np.testing.assert_allclose(np.array(got["logits"]), expected, rtol=1e-6, atol=1e-6)
    labels = ["Auto", "Sports", "Tech"]
    assert got["labels"] == [labels[k] for k in expected.argmax(-1)]
    probs = [list(p["probabilities"].values()) for p in Classifier(static_export).predict(TEXTS)]
    np.testing.assert_allclose(probs, softmax(expected, axis=-1), atol=1e-6)


def test_the_model_card_says_what_the_static_folder_is(teacher_dir, static_export):
    manifest = json.loads((static_export / "export.json").read_text())
    card = (static_export / "README.md").read_text()
    assert "static-embedding student" in card and "no attention" in card and str(teacher_dir) in card
    assert f"pieces kept: {manifest['static']['pieces']} of the teacher's" in card
    assert f"accuracy {manifest['test']['accuracy']:.4f}" in card and manifest["test"]["accuracy"] >= 0.9
    assert "the first 2 are enough for runtime.py" in card


def test_the_static_folder_serves_through_the_app(static_export):
    from test_deploy import _asgi, _assert_answers

    from mahacompress.deploy.serve import create_app
    from mahacompress.infer.runtime import Classifier

    async def go():
        async with _asgi(create_app(static_export)) as client:
            return await client.post("/predict", json={"texts": TEXTS[:3]}), await client.get("/info")

    answer, info = asyncio.run(go())
    _assert_answers(answer, TEXTS[:3], dict(zip(TEXTS[:3], Classifier(static_export).predict(TEXTS[:3]))))
    assert info.json()["backend"] == "static" and info.json()["intra_op_threads"] == 1


def test_static_export_refusals_are_one_line(static_dir, tmp_path):
    from typer.testing import CliRunner

    from mahacompress.cli.app import app

    bare = tmp_path / "bare"
    shutil.copytree(static_dir, bare)
    (bare / "tokenizer.json").unlink()
    cases = {(str(bare), ): "export needs a fast tokenizer (tokenizer.json)",
             (str(static_dir), "--backend", "onnx"): "onnx does not apply",
             (str(static_dir), "--trim-vocab"): "export it without --trim-vocab"}
    for args, reason in cases.items():
        result = CliRunner().invoke(app, ["export", *args, "--out", str(tmp_path / "out")])
        assert result.exit_code == 2 and reason in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "out").exists()


def test_predict_and_evaluate_run_a_static_student_with_numpy_by_default(static_dir, static_export, toy_splits,
                                                                         tmp_path):
    """The checkpoint (default backend: static) and its exported folder (its own runtime) predict alike."""
    from typer.testing import CliRunner

    from mahacompress.cli.app import app

    expected = load_backend(str(static_dir), "static", max_length=32).logits(TEXTS[:3]).argmax(-1)
    for model, length in ((static_dir, ["--max-length", "32"]), (static_export, [])):
        result = CliRunner().invoke(app, ["predict", "--model", str(model), *length, "--json", *TEXTS[:3]])
        assert result.exit_code == 0, result.output
        assert [row["label"] for row in json.loads(result.stdout)] == [toy_splits.labels[k] for k in expected]
    data = tmp_path / "data"
    data.mkdir()
    for name, ts in (("toy_train.csv", toy_splits.train), ("toy_test.csv", toy_splits.test)):
        rows = ["text,label"] + [f"{t},{toy_splits.labels[y]}" for t, y in zip(ts.texts, ts.labels)]
        (data / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["evaluate", "--model",
              str(static_dir), "--dataset",
              str(data), "--max-length", "32", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout[result.stdout.index("{"):])["backend"] == "static"
