"""The exported folder runs without torch and matches the PyTorch model; the HTTP service holds its limits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from mahacompress.evaluate import predict_logits
from mahacompress.export import export
from mahacompress.hardware import ort_int8_options
from mahacompress.models import load_classifier, load_tokenizer, tiny_bert, tiny_tokenizer

from test_trim import MARATHI

LABELS = ["Auto", "Sports", "Tech"]
SRC = str(Path(__file__).resolve().parents[1] / "src")

# Runs the folder's own runtime.py with torch, transformers and mahacompress made unimportable.
_TORCH_FREE = """
import json, sys
for name in ("torch", "transformers", "mahacompress"):
    sys.modules[name] = None
folder = sys.argv[1]
sys.path.insert(0, folder)
from runtime import Classifier
clf = Classifier(folder)
texts = json.loads(sys.argv[2])
print(json.dumps({"logits": clf.logits(texts).tolist(), "labels": [p["label"] for p in clf.predict(texts)]}))
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "model"
    tok = tiny_tokenizer(MARATHI * 3, vocab_size=300)
    torch.manual_seed(0)
    model = tiny_bert(3, vocab_size=len(tok), id2label=dict(enumerate(LABELS)),
                      label2id={lab: i for i, lab in enumerate(LABELS)})
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def int8_dir(model_dir) -> Path:
    export(model_dir, model_dir.parent / "int8", corpus=MARATHI[:4])
    return model_dir.parent / "int8"


def _torch_free(folder: Path, texts: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", _TORCH_FREE, str(folder), json.dumps(texts)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_trimmed_fp32_export_runs_without_torch_and_matches_pytorch(model_dir, tmp_path):
    manifest = export(model_dir, tmp_path / "fp32", backend="onnx", corpus=MARATHI[:4])
    assert {"model.onnx", "tokenizer.json", "runtime.py", "export.json", "README.md", "requirements.txt",
            "trim.json"} <= {p.name for p in (tmp_path / "fp32").iterdir()}
    assert manifest["labels"] == LABELS and manifest["trim"]["pieces_kept"] < manifest["trim"]["pieces_before"]
    assert (tmp_path / "fp32" / "requirements.txt").read_text().split() == manifest["needs"]
    assert "int8_weight_bits" not in manifest
    texts = MARATHI[:4]
    expected = predict_logits(load_classifier(str(model_dir)), load_tokenizer(str(model_dir)), texts)
    got = _torch_free(tmp_path / "fp32", texts)
    np.testing.assert_allclose(np.array(got["logits"]), expected, atol=1e-4)


def test_int8_export_runs_without_torch_close_to_pytorch(model_dir, int8_dir, tmp_path):
    """The default export (fused graph, int8) and plain dynamic int8 both run torch-free, close to PyTorch."""
    texts = MARATHI
    expected = predict_logits(load_classifier(str(model_dir)), load_tokenizer(str(model_dir)), texts)
    assert json.loads((int8_dir / "export.json").read_text())["backend"] == "onnx-int8-fused"
    plain = tmp_path / "plain"
    export(model_dir, plain, backend="onnx-int8", corpus=MARATHI[:4])
    for folder in (int8_dir, plain):
        got = np.array(_torch_free(folder, texts)["logits"])
        assert np.abs(got - expected).max() < 0.05  # int8 weights and embedding rows: close, not equal
    card = (int8_dir / "README.md").read_text()
    assert "## How to run it" in card
    bits = 7 if ort_int8_options()["reduce_range"] else 8  # this CPU's choice, named in the manifest and card
    assert json.loads((int8_dir / "export.json").read_text())["int8_weight_bits"] == bits
    assert f"int8 weights use {bits} bits" in card


def test_memory_arena_off_gives_the_same_logits(int8_dir):
    from mahacompress.runtime import Classifier

    on, off = Classifier(int8_dir), Classifier(int8_dir, memory_arena=False)
    assert off.session.get_session_options().enable_cpu_mem_arena is False
    np.testing.assert_array_equal(on.logits(MARATHI), off.logits(MARATHI))


def test_export_scores_the_test_split_for_the_model_card(model_dir, tmp_path, toy_splits):
    manifest = export(model_dir, tmp_path / "scored", corpus=toy_splits.train.texts, splits=toy_splits)
    test = manifest["test"]
    assert test["rows"] == len(toy_splits.test) and 0 <= test["accuracy"] <= 1
    assert 0 <= test["texts_with_removed_pieces"] <= len(toy_splits.test)
    assert f"accuracy {test['accuracy']:.4f}" in (tmp_path / "scored" / "README.md").read_text()


# ---------------------------------------------------------------- the HTTP service

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(int8_dir):
    """A real `mahacompress serve` process on a free loopback port, small limits so tests can hit them.
    A long batch wait (1 s) makes the flood test deterministic: requests pile up while the first waits."""
    port = _free_port()
    cmd = [sys.executable, "-m", "mahacompress", "serve", str(int8_dir), "--port", str(port), "--max-texts", "8",
           "--max-text-chars", "1000", "--max-queued-texts", "16", "--max-batch", "64", "--max-wait-ms", "1000"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read()
    yield url, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_predict_health_info(server):
    url, _ = server
    r = httpx.post(f"{url}/predict", json={"texts": MARATHI[:2]})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert len(preds) == 2 and all(p["label"] in LABELS for p in preds)
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in preds)
    assert httpx.post(f"{url}/predict", json={"texts": []}).json() == {"predictions": []}
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    info = httpx.get(f"{url}/info").json()
    assert info["labels"] == LABELS and info["limits"]["max_texts"] == 8 and "trim" in info


@pytest.mark.parametrize("body, status, reason", [
    (json.dumps({"texts": ["नमस्कार"] * 10_000}).encode(), 413, "texts in one request"),
    (json.dumps({"texts": ["a" * 1_000_000]}).encode(), 413, "characters"),
    (json.dumps({"texts": ["क" * 1_000_000]}).encode(), 413, "body of"),
    (b'{"texts": [', 400, "not JSON"),
    (b'{"texts": ["\xff\xfe"]}', 400, "not UTF-8"),
    (json.dumps({"texts": "not a list"}).encode(), 422, "must be a list"),
    (json.dumps({"texts": [1, 2]}).encode(), 422, "not a string"),
    (json.dumps(["a"]).encode(), 422, "expected a JSON object"),
])
def test_bad_requests_get_a_one_line_4xx(server, body, status, reason):
    url, _ = server
    r = httpx.post(f"{url}/predict", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == status and reason in r.json()["error"] and "\n" not in r.json()["error"]
    assert httpx.get(f"{url}/health").status_code == 200


def test_a_flood_gets_429_with_retry_after_and_health_still_answers(server):
    url, _ = server

    async def flood():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            requests = [client.post("/predict", json={"texts": MARATHI}) for _ in range(12)]
            return await asyncio.gather(*requests, client.get("/health"))

    *answers, health = asyncio.run(flood())
    assert health.status_code == 200
    codes = [r.status_code for r in answers]
    assert set(codes) == {200, 429} and codes.count(200) >= 2
    busy = next(r for r in answers if r.status_code == 429)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]
    assert all(len(r.json()["predictions"]) == len(MARATHI) for r in answers if r.status_code == 200)


def test_sigterm_shuts_down_cleanly(server):
    url, proc = server
    assert httpx.get(f"{url}/health").status_code == 200
    proc.send_signal(signal.SIGTERM)
    # uvicorn finishes in-flight work, runs the shutdown, then re-raises the signal (exit -15) so a
    # supervisor sees why it stopped; older versions exit 0
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    log = proc.stdout.read()
    assert "Application shutdown complete" in log and "Traceback" not in log


def test_cli_export_with_trimming(model_dir, tmp_path):
    from typer.testing import CliRunner

    from mahacompress.cli import app

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(MARATHI[:4]), encoding="utf-8")
    result = CliRunner().invoke(app, ["export", str(model_dir), "--out", str(tmp_path / "e"), "--backend", "onnx",
                                      "--trim-vocab", "--corpus", str(corpus)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "e" / "export.json").read_text())
    assert manifest["backend"] == "onnx" and manifest["trim"]["corpus"] == [str(corpus)]


def test_predict_and_evaluate_run_an_exported_folder_with_its_own_runtime(int8_dir, tmp_path):
    from typer.testing import CliRunner

    from mahacompress.cli import app
    from mahacompress.runtime import Classifier

    runner = CliRunner()
    texts = MARATHI[:3]
    result = runner.invoke(app, ["predict", "--model", str(int8_dir), "--json", *texts])
    assert result.exit_code == 0, result.output
    assert [r["label"] for r in json.loads(result.stdout)] == [p["label"] for p in Classifier(int8_dir).predict(texts)]
    data = tmp_path / "data"
    data.mkdir()
    for name, extra in (("my_train.csv", " बातमी"), ("my_test.csv", "")):  # train texts unlike the test's
        rows = [f"{text}{extra},{LABELS[i % 3]}" for i, text in enumerate(t.replace(",", "") for t in MARATHI)]
        (data / name).write_text("\n".join(["text,label", *rows]) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["evaluate", "--model", str(int8_dir), "--dataset", str(data), "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["rows"] == len(MARATHI) and scored["backend"] == "exported onnx-int8-fused"
    for argv, expect in ((["predict", "--model", str(int8_dir), "--backend", "int8", "x"], "--backend int8"),
                         (["finetune", "--model", str(int8_dir), "--out", str(tmp_path / "ft"), "--dataset",
                           str(data)], "written by `mahacompress export`")):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2 and expect in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
