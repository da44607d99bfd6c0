"""The exported folder runs without torch and matches the PyTorch model; the HTTP service holds its limits."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from test_trim import MARATHI

from mahacompress.core.hardware import ort_int8_options
from mahacompress.deploy.export import export
from mahacompress.infer.evaluate import predict_logits
from mahacompress.models.load import load_classifier, load_tokenizer, tiny_bert, tiny_tokenizer

LABELS = ["Auto", "Sports", "Tech"]
SRC = str(Path(__file__).resolve().parents[1] / "src")

# Runs the folder's own runtime.py with torch, transformers and mahacompress (and any of argv[3]) made unimportable.
_TORCH_FREE = """
import json, sys
for name in ("torch", "transformers", "mahacompress", *json.loads(sys.argv[3])):
    sys.modules[name] = None
folder = sys.argv[1]
sys.path.insert(0, folder)
from runtime import Classifier
clf = Classifier(folder)
texts = json.loads(sys.argv[2])
print(json.dumps({"logits": clf.logits(texts).tolist(), "labels": [p["label"] for p in clf.predict(texts)]}))
"""

# Runs the folder's own server.py (`python server.py ARGS` in the folder), with the same modules unimportable.
_TORCH_FREE_SERVER = """
import runpy, sys
for name in ("torch", "transformers", "mahacompress"):
    sys.modules[name] = None
sys.path.insert(0, ".")
sys.argv = ["server.py", *sys.argv[1:]]
runpy.run_path("server.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "model"
    tok = tiny_tokenizer(MARATHI * 3, vocab_size=300)
    torch.manual_seed(0)
    model = tiny_bert(3, vocab_size=len(tok), id2label=dict(enumerate(LABELS)),
                      label2id={lab: i
                                for i, lab in enumerate(LABELS)})
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def int8_dir(model_dir) -> Path:
    export(model_dir, model_dir.parent / "int8", corpus=MARATHI[:4])
    return model_dir.parent / "int8"


def _torch_free(folder: Path, texts: list[str], also_unimportable: tuple[str, ...] = ()) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", _TORCH_FREE,
         str(folder), json.dumps(texts),
         json.dumps(also_unimportable)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_trimmed_fp32_export_runs_without_torch_and_matches_pytorch(model_dir, tmp_path):
    manifest = export(model_dir, tmp_path / "fp32", backend="onnx", corpus=MARATHI[:4])
    assert {
        "model.onnx", "tokenizer.json", "runtime.py", "server.py", "export.json", "README.md", "requirements.txt",
        "trim.json"
    } <= {p.name
          for p in (tmp_path / "fp32").iterdir()}
    assert manifest["labels"] == LABELS and manifest["trim"]["pieces_kept"] < manifest["trim"]["pieces_before"]
    assert (tmp_path / "fp32" / "requirements.txt").read_text().split() == manifest["needs"]
    assert "int8_weight_bits" not in manifest
    texts = MARATHI[:4]
    expected = predict_logits(load_classifier(str(model_dir)), load_tokenizer(str(model_dir)), texts)
    got = _torch_free(tmp_path / "fp32", texts)
    np.testing.assert_allclose(np.array(got["logits"]), expected, atol=1e-4)


@pytest.mark.slow
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


def test_memory_arena_off_and_memory_patterns_on_give_the_same_logits(int8_dir):
    from mahacompress.infer.runtime import Classifier

    on, off = Classifier(int8_dir), Classifier(int8_dir, memory_arena=False)
    assert off.session.get_session_options().enable_cpu_mem_arena is False
    np.testing.assert_array_equal(on.logits(MARATHI), off.logits(MARATHI))
    # a service keeps no per-shape allocation plans unless asked (they grow with the shapes it serves)
    patterns = Classifier(int8_dir, memory_pattern=True)
    assert on.session.get_session_options().enable_mem_pattern is False
    assert patterns.session.get_session_options().enable_mem_pattern is True
    for size in (1, 3, len(MARATHI)):  # several (batch, length) shapes
        np.testing.assert_array_equal(on.logits(MARATHI[:size]), patterns.logits(MARATHI[:size]))


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
    cmd = [
        sys.executable, "-m", "mahacompress", "serve",
        str(int8_dir), "--port",
        str(port), "--max-texts", "8", "--max-text-chars", "1000", "--max-queued-texts", "16", "--max-batch", "64",
        "--max-wait-ms", "1000"
    ]
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


@pytest.mark.slow
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


@pytest.mark.parametrize("body, status, reason",
                         [(json.dumps({"texts": ["नमस्कार"] * 10_000}).encode(), 413, "texts in one request"),
                          (json.dumps({"texts": ["a" * 1_000_000]}).encode(), 413, "characters"),
                          (json.dumps({"texts": ["क" * 1_000_000]}).encode(), 413, "body of"),
                          (b'{"texts": [', 400, "not JSON"), (b'{"texts": ["\xff\xfe"]}', 400, "not UTF-8"),
                          (json.dumps({"texts": "not a list"}).encode(), 422, "must be a list"),
                          (json.dumps({"texts": [1, 2]}).encode(), 422, "not a string"),
                          (json.dumps(["a"]).encode(), 422, "expected a JSON object"), ])
@pytest.mark.slow
def test_bad_requests_get_a_one_line_4xx(server, body, status, reason):
    url, _ = server
    r = httpx.post(f"{url}/predict", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == status and reason in r.json()["error"] and "\n" not in r.json()["error"]
    assert httpx.get(f"{url}/health").status_code == 200


@pytest.mark.slow
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


@pytest.mark.slow
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

    from mahacompress.cli.app import app

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(MARATHI[:4]), encoding="utf-8")
    result = CliRunner().invoke(app, [
        "export",
        str(model_dir), "--out",
        str(tmp_path / "e"), "--backend", "onnx", "--trim-vocab", "--corpus",
        str(corpus)
    ])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "e" / "export.json").read_text())
    assert manifest["backend"] == "onnx" and manifest["trim"]["corpus"] == [str(corpus)]


needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason="the openvino extra (openvino, nncf) is not installed")


@pytest.mark.slow
@needs_openvino
def test_openvino_int8_export_runs_without_torch_or_onnxruntime_as_the_benchmarked_backend_does(model_dir, tmp_path):
    """The folder ships the very IR the `openvino-int8` backend times: same logits, torch and onnxruntime
    unimportable; a trimmed one stays close to PyTorch."""
    from mahacompress.infer import load_backend

    folder = tmp_path / "ov"
    manifest = export(model_dir, folder, backend="openvino-int8", calibration_texts=MARATHI)
    assert {"model.xml", "model.bin"} <= {p.name for p in folder.iterdir()} and manifest["engine"] == "openvino"
    needs = (folder / "requirements.txt").read_text().split()
    assert any(n.startswith("openvino") for n in needs) and not any(n.startswith("onnxruntime") for n in needs)
    benchmarked = load_backend(str(model_dir), "openvino-int8", calibration_texts=MARATHI).logits(MARATHI)
    got = np.array(_torch_free(folder, MARATHI, also_unimportable=("onnxruntime", ))["logits"])
    np.testing.assert_allclose(got, benchmarked, atol=1e-4)
    assert "OpenVINO IR" in (folder / "README.md").read_text()
    trimmed = tmp_path / "ov-trimmed"
    export(model_dir, trimmed, backend="openvino-int8", corpus=MARATHI, calibration_texts=MARATHI)
    expected = predict_logits(load_classifier(str(model_dir)), load_tokenizer(str(model_dir)), MARATHI)
    assert np.abs(np.array(_torch_free(trimmed, MARATHI)["logits"]) - expected).max() < 0.05


@needs_openvino
def test_openvino_int8_export_needs_training_texts_to_calibrate_on(model_dir, tmp_path):
    from typer.testing import CliRunner

    from mahacompress.cli.app import app
    from mahacompress.core.errors import MahaError

    with pytest.raises(MahaError, match="calibrates activation ranges on training texts"):
        export(model_dir, tmp_path / "a", backend="openvino-int8")
    # the CLI calibrates on the model's training corpus; this model has no training record: one line naming --corpus
    result = CliRunner().invoke(
        app, ["export", str(model_dir), "--out",
              str(tmp_path / "b"), "--backend", "openvino-int8"])
    assert result.exit_code == 2 and "--corpus" in result.output and "Traceback" not in result.output
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(MARATHI), encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["export",
         str(model_dir), "--out",
         str(tmp_path / "c"), "--backend", "openvino-int8", "--corpus",
         str(corpus)])
    assert result.exit_code == 0, result.output
    assert "trim" not in json.loads((tmp_path / "c" / "export.json").read_text())  # calibrated on it, not trimmed


# ---------------------------------------------------------------- the service in process (httpx over ASGI)


@pytest.fixture(scope="module")
def fp32_dir(model_dir) -> Path:
    """An fp32 export: its probabilities do not depend on batch-mates (dynamic int8 scales per batch)."""
    export(model_dir, model_dir.parent / "fp32-serve", backend="onnx")
    return model_dir.parent / "fp32-serve"


@asynccontextmanager
async def _asgi(app):
    """A client of `app` in this process, with the app's lifespan (its batching task) running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=30) as client:
            yield client


def _assert_answers(response: httpx.Response, texts: list[str], expected: dict) -> None:
    assert response.status_code == 200, response.text
    for text, got in zip(texts, response.json()["predictions"], strict=True):
        assert got["probabilities"] == pytest.approx(expected[text]["probabilities"], abs=1e-4)
        assert got["label"] == max(got["probabilities"], key=got["probabilities"].get)


def _post_together(app, bodies: list) -> list[httpx.Response]:

    async def go():
        async with _asgi(app) as client:
            return await asyncio.gather(
                *(client.post("/predict", content=b, headers={"content-type": "application/json"}
                              ) if isinstance(b, bytes) else client.post("/predict", json=b) for b in bodies))

    return asyncio.run(go())


def test_bad_requests_among_good_ones_fail_alone(fp32_dir):
    """8 good requests and 3 bad ones sent together (a long batch wait puts them in one batch): every good
    one gets its predictions; a lone surrogate is a 422 naming the text, deep nesting a one-line 400."""
    from mahacompress.deploy.serve import Limits, create_app
    from mahacompress.infer.runtime import Classifier

    expected = dict(zip(MARATHI, Classifier(fp32_dir).predict(MARATHI)))
    good = [{"texts": [MARATHI[i % len(MARATHI)], MARATHI[(i + 3) % len(MARATHI)]]} for i in range(8)]
    bad = [b'{"texts": ["\\udfff\\ud800"]}', b'{"texts": ["ok", "\\ud800x"]}', b"[" * 100_000 + b"]" * 100_000]
    app = create_app(fp32_dir, Limits(max_wait_ms=300, max_body_bytes=2**20))
    *answers, surrogate, second, deep = _post_together(app, good[:4] + good[4:] + bad)
    for body, r in zip(good, answers):
        _assert_answers(r, body["texts"], expected)
    assert surrogate.status_code == 422 and surrogate.json()["error"].startswith("text 0 is not valid Unicode")
    assert second.status_code == 422 and second.json()["error"].startswith("text 1 ")
    assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"]
    assert all("\n" not in r.json()["error"] for r in (surrogate, second, deep))


def test_the_service_reserves_the_largest_shape_before_the_first_request(fp32_dir, monkeypatch):
    """Memory at start-up is memory under load: the app runs one max_batch x max_length batch when it is
    made (runtime.Classifier.reserve), so onnxruntime's arena does not keep growing as larger shapes arrive."""
    import onnxruntime

    from mahacompress.deploy import serve

    shapes: list[tuple[int, int]] = []
    real_run = onnxruntime.InferenceSession.run

    def recording(self, output_names, input_feed, *args, **kwargs):  # what the model is given, batch x length
        shapes.append(tuple(input_feed["input_ids"].shape))
        return real_run(self, output_names, input_feed, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", recording)
    max_length = json.loads((fp32_dir / "export.json").read_text(encoding="utf-8"))["max_length"]
    serve.create_app(fp32_dir, serve.Limits(max_batch=7))
    assert shapes == [(7, max_length)]


def test_a_failing_model_call_is_split_so_only_its_request_fails(fp32_dir, monkeypatch):
    """The model fails on one request's text: the batch is re-run in halves, that request alone gets a 500."""
    from mahacompress.deploy import serve
    from mahacompress.infer.runtime import Classifier

    calls: list[int] = []

    class Poisoned(Classifier):

        def predict(self, texts, batch_size=32):
            calls.append(len(texts))
            if "POISON" in texts:
                raise ValueError("cannot encode POISON\nsecond line")
            return super().predict(texts, batch_size)

    monkeypatch.setattr(serve, "Classifier", Poisoned)
    expected = dict(zip(MARATHI, Classifier(fp32_dir).predict(MARATHI)))
    bodies = [{"texts": [t]} for t in MARATHI[:8]]
    bodies.insert(5, {"texts": ["POISON"]})
    answers = _post_together(serve.create_app(fp32_dir, serve.Limits(max_wait_ms=300)), bodies)
    assert calls[0] == 9  # all nine were batched together, and that call failed
    for body, r in zip(bodies, answers):
        if body["texts"] == ["POISON"]:
            assert r.status_code == 500 and r.json() == {"error": "model failed: cannot encode POISON"}
        else:
            _assert_answers(r, body["texts"], expected)


@pytest.mark.slow
@pytest.mark.parametrize("host", ["999.1.1.1", "127.0.0.1"])
def test_a_bind_failure_is_one_line_naming_host_and_port(int8_dir, host):
    """An address that does not resolve, or a port already in use: `error: ...` naming both, exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "mahacompress", "serve",
             str(int8_dir), "--host", host, "--port",
             str(port)], env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot listen on {host}:{port}: ") and done.stderr.count("\n") == 1


def test_an_api_key_guards_predict_and_info_but_not_health(fp32_dir):
    from mahacompress.deploy.serve import create_app

    async def go():
        async with _asgi(create_app(fp32_dir, api_key="s3cret")) as client:
            body = {"texts": MARATHI[:1]}
            return {
                "health": await client.get("/health"), "none": await client.post("/predict", json=body), "wrong": await
                client.post("/predict", json=body, headers={"Authorization": "Bearer s3cre"}), "basic": await
                client.post("/predict", json=body,
                            headers={"Authorization": "Basic s3cret"}), "bearer": await client.post(
                                "/predict", json=body, headers={"Authorization": "Bearer s3cret"}), "header": await
                client.post("/predict", json=body, headers={"X-API-Key": "s3cret"}), "info": await client.get("/info"),
                "info_key": await client.get("/info", headers={"X-API-Key": "s3cret"})
            }

    r = asyncio.run(go())
    assert {k: v.status_code
            for k, v in r.items()} == {
                "health": 200, "none": 401, "wrong": 401, "basic": 401, "bearer": 200, "header": 200, "info": 401,
                "info_key": 200
            }
    assert r["none"].headers["www-authenticate"] == "Bearer" and "API key" in r["none"].json()["error"]


def test_a_non_loopback_address_without_a_key_is_warned_about():
    from mahacompress.deploy.serve import exposure_warning

    assert exposure_warning("127.0.0.1", 8000, None) is None and exposure_warning("::1", 8000, None) is None
    assert exposure_warning("0.0.0.0", 8000, "k") is None
    warning = exposure_warning("0.0.0.0", 8000, None)
    assert warning.startswith("warning: serving on 0.0.0.0:8000 without an API key") and "\n" not in warning


def test_the_cli_reads_the_api_key_from_the_environment(int8_dir, monkeypatch):
    """MAHACOMPRESS_API_KEY reaches the service (the server itself is not started: serve is replaced)."""
    from typer.testing import CliRunner

    from mahacompress.cli.app import app
    from mahacompress.deploy import serve

    seen = {}
    monkeypatch.setattr(serve, "serve", lambda *args, **kwargs: seen.setdefault("api_key", kwargs["api_key"]))
    result = CliRunner().invoke(app, ["serve", str(int8_dir)], env={"MAHACOMPRESS_API_KEY": "from-env"})
    assert result.exit_code == 0, result.output
    assert seen == {"api_key": "from-env"}


def test_metrics_count_requests_batches_and_queue_in_prometheus_text(fp32_dir):
    from prometheus_client.parser import text_string_to_metric_families

    from mahacompress.deploy.serve import Limits, create_app

    async def go(app, headers):
        async with _asgi(app) as client:
            await asyncio.gather(*(client.post("/predict", json={"texts": MARATHI[:2]}, headers=headers)
                                   for _ in range(3)))
            await client.post("/predict", content=b"{", headers=headers)
            return await client.get("/metrics"), await client.get("/metrics", headers=headers)

    apps = [create_app(fp32_dir, Limits(max_wait_ms=200)), create_app(fp32_dir, api_key="k")]  # no clash
    plain, _ = asyncio.run(go(apps[0], {}))
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(plain.text)
               for s in family.samples}
    assert samples[("mahacompress_requests_total", (("path", "/predict"), ("status", "200")))] == 3
    assert samples[("mahacompress_requests_total", (("path", "/predict"), ("status", "400")))] == 1
    assert samples[("mahacompress_request_seconds_count", (("path", "/predict"), ))] == 4
    assert samples[("mahacompress_batch_texts_count", ())] == 1  # the three requests ran as one call
    assert samples[("mahacompress_batch_texts_sum", ())] == 6
    assert samples[("mahacompress_queued_texts", ())] == 0
    refused, allowed = asyncio.run(go(apps[1], {"X-API-Key": "k"}))
    assert refused.status_code == 401 and allowed.status_code == 200


@pytest.mark.slow
def test_the_exported_folder_serves_itself_without_torch_or_mahacompress(int8_dir):
    """`python server.py` in the folder, with torch, transformers and mahacompress unimportable and the
    source tree off the path: it answers /predict and stops cleanly on SIGTERM."""
    from mahacompress.infer.runtime import Classifier

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MAHACOMPRESS_API_KEY")}
    proc = subprocess.Popen([sys.executable, "-c", _TORCH_FREE_SERVER, "--port",
                             str(port)], cwd=int8_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        answer = _wait_and_post(f"http://127.0.0.1:{port}", proc, {"texts": MARATHI[:2]})
        _assert_answers(answer, MARATHI[:2], dict(zip(MARATHI[:2], Classifier(int8_dir).predict(MARATHI[:2]))))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    log = proc.stdout.read()
    assert "Application shutdown complete" in log and "Traceback" not in log


def _wait_and_post(url: str, proc: subprocess.Popen, body: dict) -> httpx.Response:
    """POST `body` to url/predict once the server answers /health (failing if the process exits first)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return httpx.post(f"{url}/predict", json=body, timeout=30)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("server did not answer within 60 s")


@pytest.mark.slow
def test_workers_share_one_port_and_the_cores(int8_dir):
    """--workers 2: two server processes under one parent, each with cores // 2 onnxruntime threads, both
    answering; SIGTERM to the parent stops them all."""
    port = _free_port()
    cmd = [sys.executable, "-m", "mahacompress", "serve", str(int8_dir), "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert _wait_and_post(url, proc, {"texts": MARATHI[:2]}).status_code == 200
        deadline = time.monotonic() + 60
        while len(children := _children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(children) == 2
        info = httpx.get(f"{url}/info", timeout=30).json()
        assert info["intra_op_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
        assert all(
            httpx.post(f"{url}/predict", json={"texts": MARATHI[:1]}, timeout=30).status_code == 200 for _ in range(4))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    assert "Traceback" not in proc.stdout.read()


def _children(pid: int) -> list[int]:
    """Live child processes of `pid` that are uvicorn workers (not multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"resource_tracker" not in cmdline:
                found.append(int(child))
    return found


def test_predict_and_evaluate_run_an_exported_folder_with_its_own_runtime(int8_dir, tmp_path):
    from typer.testing import CliRunner

    from mahacompress.cli.app import app
    from mahacompress.infer.runtime import Classifier

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
                         (["finetune", "--model",
                           str(int8_dir), "--out",
                           str(tmp_path / "ft"), "--dataset",
                           str(data)], "written by `mahacompress export`",
                          ),
                         ):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2 and expect in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@needs_openvino
@pytest.mark.parametrize("backend, precision", [("openvino", "f32"), ("openvino-bf16", "bf16")])
def test_openvino_fp32_and_bf16_exports_ship_the_onnx_graph_at_their_precision(model_dir, tmp_path, monkeypatch,
                                                                               backend, precision):
    """What optimize may judge in OpenVINO's fp32 or bf16 ships: the ONNX graph, compiled at the manifest's precision
    (a CPU without native bf16 runs the bf16 folder in f32, so it is exported here as if on one that has it)."""
    import dataclasses

    from mahacompress.core import hardware
    from mahacompress.infer.runtime import openvino_config

    native = dataclasses.replace(hardware.cpu_features(), flags=hardware.cpu_features().flags | {"avx512_bf16"})
    monkeypatch.setattr(hardware, "cpu_features", lambda: native)
    folder = tmp_path / backend
    manifest = export(model_dir, folder, backend=backend)
    assert (manifest["engine"], manifest["model_file"],
            manifest["inference_precision"]) == ("openvino", "model.onnx", precision,
                                                 ) and "weights_file" not in manifest
    assert "int8_weight_bits" not in manifest and openvino_config(2, precision)["INFERENCE_PRECISION_HINT"] == precision
    assert f"{precision} inference precision" in (folder / "README.md").read_text()
    expected = predict_logits(load_classifier(str(model_dir)), load_tokenizer(str(model_dir)), MARATHI)
    got = np.array(_torch_free(folder, MARATHI, also_unimportable=("onnxruntime", ))["logits"])
    assert np.abs(got - expected).max() < (1e-4 if precision == "f32" else 0.05)
