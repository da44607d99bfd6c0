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


# ---------------------------------------------------------------- the table pre-trained against the teacher's features

PRE = TrainConfig(**{**CFG.__dict__, "pretrain_epochs": 40})


def _pretrained(teacher_dir, texts):
    """A fresh table pre-trained on the teacher's features of `texts`, with its projection, record and features."""
    from mahacompress.train.static_pretrain import pretrain_table, teacher_features

    model, tokenizer, _ = build_table(str(teacher_dir), texts, dim=16)
    features = teacher_features(str(teacher_dir), texts, max_length=PRE.max_length)
    projection, record = pretrain_table(model, tokenizer, texts, features, PRE)
    return model, tokenizer, projection, record, features


def test_pretraining_regresses_the_teacher_features_and_the_head_is_the_teachers_composed(teacher_dir, toy_splits):
    from mahacompress.infer.evaluate import predict_logits
    from mahacompress.train.static_pretrain import compose_head, final_linear

    texts = toy_splits.train.texts
    model, tokenizer, projection, record, features = _pretrained(teacher_dir, texts)
    teacher = load_classifier(str(teacher_dir))
    head = final_linear(teacher)
    assert head is teacher.classifier and features.shape == (len(texts), head.in_features)
    with torch.no_grad():  # the features are what the teacher's head reads: its logits follow from them
        np.testing.assert_allclose(
            head(torch.from_numpy(features)).numpy(),
            predict_logits(teacher, load_tokenizer(str(teacher_dir)), texts, max_length=32), rtol=1e-4, atol=1e-4)
    assert record["held_out_texts"] == 5 and record["texts"] == len(texts) and record["feature_width"] == 64
    assert record["held_out_cosine_after"] > record["held_out_cosine_before"]  # the cosine loss went down

    compose_head(model, head, projection)
    enc = tokenizer([toy_splits.test.texts[0]], return_tensors="pt")
    with torch.no_grad():
        composed = head(projection(model.pooled(enc["input_ids"], enc["attention_mask"])))
        np.testing.assert_allclose(model(**enc).logits.numpy(), composed.numpy(), rtol=1e-5, atol=1e-5)


def test_pretraining_is_deterministic_for_a_seed(teacher_dir, toy_splits):
    texts = toy_splits.train.texts[:60]
    first, _, p1, r1, _ = _pretrained(teacher_dir, texts)
    second, _, p2, r2, _ = _pretrained(teacher_dir, texts)
    assert torch.equal(first.embeddings.weight, second.embeddings.weight) and torch.equal(p1.weight, p2.weight)
    assert {k: v for k, v in r1.items() if k != "seconds"} == {k: v for k, v in r2.items() if k != "seconds"}


def _toy_csvs(splits, root):
    root.mkdir()
    for name, part in (("x_train.csv", splits.train), ("x_valid.csv", splits.dev), ("x_test.csv", splits.test)):
        rows = [f"{t},{splits.labels[y]}" for t, y in zip(part.texts, part.labels)]
        (root / name).write_text("\n".join(["text,label", *rows]) + "\n", encoding="utf-8")
    return root


def test_distill_static_with_pretraining_from_the_cli(teacher_dir, toy_splits, tmp_path):
    from clirun import run

    data, out = _toy_csvs(toy_splits, tmp_path / "data"), tmp_path / "pre"
    result = run("distill", "--teacher", str(teacher_dir), "--student", "static:16", "--pretrain-epochs", "1", "--out",
                 str(out), "--dataset", str(data), "--epochs", "1", "--batch-size", "16", "--max-length", "32",
                 "--no-freeze-embeddings")
    assert result.exit_code == 0, result.output
    assert "pretrain static table: epoch 1/1" in result.output
    info = json.loads((out / "training.json").read_text(encoding="utf-8"))
    pre = info["pretrain"]
    assert info["student"] == "static-embedding" and info["static"]["dim"] == 16
    assert pre["epochs"] == 1 and pre["texts"] == info["dataset"]["splits"]["train"]["rows"]
    assert pre["seconds"] >= 0 and {"held_out_cosine_before", "held_out_cosine_after"} <= set(pre)
    assert info["train_config"]["pretrain_epochs"] == 1
    # the table trains too (--no-freeze-embeddings), so dev chose between KD of the head alone and of head and table
    scores = pre["dev_macro_f1"]
    assert set(scores) == {"head_only", "head_and_table"}
    assert pre["kept"] == ("head only" if scores["head_only"] > scores["head_and_table"] else "head and table")
    assert info["result"]["best_dev_macro_f1"] == max(scores.values())
    predicted = run("predict", "--model", str(out), "--json", *TEXTS[:2])
    assert predicted.exit_code == 0, predicted.output
    assert {row["label"] for row in json.loads(predicted.stdout)} <= set(toy_splits.labels)
    evaluated = run("evaluate", "--model", str(out), "--dataset", str(data), "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout[evaluated.stdout.index("{"):])["backend"] == "static"


def test_pretrain_epochs_refusals_are_one_line(teacher_dir, tmp_path):
    from clirun import one_line_error, run

    common = ("--out", str(tmp_path / "o"), "--dataset", str(tmp_path / "nowhere"))
    cases = {("--student", "static", "--pretrain-epochs", "-1"): "--pretrain-epochs -1: expected a value at least 0",
             ("--student", "layers:2", "--pretrain-epochs", "1"): "--pretrain-epochs pre-trains a static student",
             ("--student", "static:65"): "--student static:DIM 65: expected a value in [1, 64]"}
    for args, reason in cases.items():
        assert reason in one_line_error(run("distill", "--teacher", str(teacher_dir), *args, *common))
    hub = run("distill", "--teacher", "owner/name", "--student", "static", *common)
    assert "a static student is built from a local teacher folder" in one_line_error(hub)
    assert not (tmp_path / "o").exists()


def test_static_student_specs_and_the_teacher_feature_cache(teacher_dir, toy_splits, tmp_path, monkeypatch):
    import mahacompress.train.static_pretrain as pre
    from mahacompress.train.distill import describe, teacher_logits

    assert describe("static") == {"kind": "static", "dim": 256} and describe("static:32")["dim"] == 32
    with pytest.raises(MahaError, match=r"static\[:DIM\]"):
        describe("static:wide")
    monkeypatch.setenv("MAHACOMPRESS_CACHE", str(tmp_path))
    texts = toy_splits.train.texts[:20]
    first = pre.teacher_features(str(teacher_dir), texts, max_length=32)
    monkeypatch.setattr(pre, "compute_features", lambda *a, **k: pytest.fail("teacher ran again"))
    assert np.array_equal(pre.teacher_features(str(teacher_dir), texts, max_length=32), first)
    teacher_logits(str(teacher_dir), texts, max_length=32)  # same teacher, texts and length: another file
    cached = sorted(p.name for p in tmp_path.rglob("*.npy"))
    assert len(cached) == 2 and sum(name.endswith("-features.npy") for name in cached) == 1
