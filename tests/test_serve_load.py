"""The serving benchmark's load phase on a tiny exported model: good requests all answered while a bad client
sends lone surrogates, memory sampled over the server's processes, the report naming what was measured."""

from __future__ import annotations

import importlib.util
import os
from argparse import Namespace
from pathlib import Path

import pytest
from test_deploy import int8_dir, model_dir  # noqa: F401  (fixtures: a tiny exported int8 folder)
from test_trim import MARATHI

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"


@pytest.fixture(scope="module")
def serve_load():
    spec = importlib.util.spec_from_file_location("serve_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(**kw) -> Namespace:
    base = dict(seconds=2.0, warmup_seconds=1.0, sample_seconds=0.5, clients=3, bad_clients=1, texts_per_request=1,
                max_requests=1_000_000, max_batch=8, max_wait_ms=5.0, memory_arena=True, memory_pattern=False,
                server_env=["MALLOC_ARENA_MAX=2"], mixed_lengths=True)
    return Namespace(**{**base, **kw})


def test_mixed_lengths_join_one_to_eight_texts(serve_load):
    texts = ["क", "ख", "ग"]
    mixed = serve_load.mixed_lengths(texts, 200)
    counts = {len(t.split()) for t in mixed}
    assert min(counts) == 1 and max(counts) == 8 and len(mixed) == 200


@pytest.mark.slow
def test_a_bad_client_does_not_cost_a_good_request_and_memory_is_sampled(serve_load, int8_dir):
    texts = serve_load.mixed_lengths(MARATHI, 50)
    load = serve_load.serve_and_load(int8_dir, texts, 1, _args())
    assert load["errors"] == 0 and load["requests"] > 0
    assert load["bad_statuses"] and set(load["bad_statuses"]) == {"422"}
    assert len(load["memory_timeline_mib"]) >= 3
    assert all(m["VmRSS"] > 10 for m in load["memory_timeline_mib"])
    assert load["health_after_load"] == 200
    assert load["exit_code_after_sigterm"] in (0, -15)


def test_the_report_has_a_column_per_worker_count(serve_load, tmp_path):
    load = {
        "workers": 1, "first_answer_s": 0.5, "health_after_load": 200, "exit_code_after_sigterm": 0, "clients": 3,
        "bad_clients": 1, "warmup_seconds": 1.0, "seconds": 2.0, "requests": 10, "texts_per_request": 1,
        "mixed_lengths": True, "statuses": {"200": 10}, "bad_statuses": {"422": 3}, "errors": 0, "texts_per_s": 5.0,
        "latency_ms_p50": 1.0, "latency_ms_p99": 2.0, "client_cpu_cores": 0.1, "memory_after_warmup_mib": {
            "VmRSS": 100.0, "VmHWM": 100.0
        }, "memory_at_end_mib": {"VmRSS": 105.0, "VmHWM": 106.0}, "rss_growth": 0.05, "memory_timeline_mib": [{
            "s": 0.0, "VmRSS": 90.0, "VmHWM": 90.0
        }, {"s": 3.0, "VmRSS": 105.0, "VmHWM": 106.0}]
    }
    result = {
        "command": "python serve_load.py", "model": "m", "dataset": "d", "cpus": os.cpu_count(),
        "backend": "onnx-int8-fused", "server": {
            "max_batch": 8, "max_wait_ms": 5.0, "memory_arena": True, "memory_pattern": False,
            "env": ["MALLOC_ARENA_MAX=2"]
        }, "loads": [load, {**load, "workers": 2,
                            "rss_growth": 0.2}], "in_process_batch32_texts_per_s": 10.0, "trimmed": {
                                "disk_mib": 1.0, "pieces": {"corpus": ["c"], "pieces_kept": 5, "pieces_before": 9},
                                "test": {"accuracy": 0.5, "macro_f1": 0.4, "texts_with_removed_pieces": 1, "rows": 4}
                            }, "untrimmed": {"disk_mib": 2.0, "test": {"accuracy": 0.5, "macro_f1": 0.4}}
    }
    text = serve_load.report(result)
    assert "| measure | 1 worker | 2 workers |" in text
    assert "| RSS growth after warm-up | +5% | +20% |" in text
    assert "MALLOC_ARENA_MAX=2" in text and "{'422': 3}" in text
    serve_load.plot(result, tmp_path / "memory.png")
    assert (tmp_path / "memory.png").stat().st_size > 1000
