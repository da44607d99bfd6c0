"""Measurement plumbing on the tiny model and fake backends; no speed assertions (those belong in benchmarks)."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch

from mahacompress.core.errors import MahaError
from mahacompress.infer import load_backend
from mahacompress.infer.build import served_file
from mahacompress.measure.footprint import MIB, Energy, count_params, peak_memory, served_size_mb, size_on_disk_mb
from mahacompress.measure.latency import latency, speedups
from mahacompress.models.load import load_classifier


class FakeBackend:
    """Records every forward call in a shared log, so the tests can check the order of backends."""

    device = "cpu"

    def __init__(self, name: str, calls: list[str]):
        self.name, self.calls = name, calls

    def encode(self, texts: list[str]) -> list[str]:
        return texts

    def forward(self, batch: list[str]) -> np.ndarray:
        self.calls.append(self.name)
        time.sleep(0.0005)
        return np.zeros((len(batch), 2), dtype=np.float32)

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self.forward(texts)


FIELDS = ["latency_ms_b1_p50", "latency_ms_b1_p95", "latency_ms_b32_p50", "latency_ms_b32_p95", "throughput_b32"]


def test_latency_fields_on_tiny_model(tiny_model_dir, shc_splits):
    backends = {name: load_backend(str(tiny_model_dir), name, device="cpu") for name in ("fp32", "int8")}
    results = latency(backends, shc_splits.test.texts[:64], repeats=3, warmup=1, batches_per_repeat=2, threads=1,
                      progress=False)
    assert set(results) == {"fp32", "int8"}
    for row in results.values():
        assert all(row[f] > 0 for f in FIELDS), row
        assert row["latency_ms_b1_p95"] >= row["latency_ms_b1_p50"]
        assert row["latency_ms_b32_p95"] >= row["latency_ms_b32_p50"]
        assert row["throughput_b32"] == pytest.approx(32 * 1000 / row["latency_ms_b32_p50"])
        assert row["repeats"] == 3 and row["threads"] == 1


def test_latency_interleaves_and_rotates_order():
    calls: list[str] = []
    backends = {name: FakeBackend(name, calls) for name in "abc"}
    latency(backends, ["x"] * 4, batch_sizes=(1, 2), repeats=3, warmup=0, batches_per_repeat=2, progress=False,
            modes={1: ("model", ), 2: ("model", )})
    per_backend = 2 * (1 + 2)  # two batch sizes: one untimed warm batch, then two timed ones each
    blocks = [calls[i] for i in range(0, len(calls), per_backend)]  # who ran each block of calls
    assert blocks == list("abcbcacab")
    assert all(calls[i:i + per_backend] == [calls[i]] * per_backend for i in range(0, len(calls), per_backend))


def test_each_backends_turn_starts_after_an_untimed_pause_and_a_warm_batch(monkeypatch):
    """A backend's spinning threads must have parked before the next one is timed (measure.SETTLE_SECONDS),
    and the timed batches must not start cold after that pause."""
    import mahacompress.measure.latency as measure

    calls: list[str] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if seconds == measure.SETTLE_SECONDS:
            calls.append("pause")
        else:
            real_sleep(seconds)

    monkeypatch.setattr(measure.time, "sleep", sleep)
    backends = {name: FakeBackend(name, calls) for name in "ab"}
    latency(backends, ["x"] * 2, batch_sizes=(1, ), repeats=2, warmup=0, batches_per_repeat=2, progress=False,
            modes={1: ("model", )})
    # each turn: the pause, one untimed warm batch, then the two timed ones
    assert calls == ["pause", "a", "a", "a", "pause", "b", "b", "b", "pause", "b", "b", "b", "pause", "a", "a", "a"]


def test_end_to_end_timings_tokenise_inside_the_clock_and_sorted_batches_sort_by_length():

    class Recorder(FakeBackend):

        def encode(self, texts):
            self.calls.append(("encode", tuple(texts)))
            return list(texts)

    calls: list = []
    texts = ["ccc", "a", "bb", "dddd"]
    results = latency({"a": Recorder("a", calls)}, texts, batch_sizes=(2, ), repeats=1, warmup=0, progress=False)
    row = results["a"]
    assert {"latency_ms_b2_p50", "e2e_ms_b2_p50", "e2e_ms_b2_sorted_p50", "e2e_throughput_b2"} <= set(row)
    encodes = [c[1] for c in calls if isinstance(c, tuple)]
    # model-only batches are encoded once before timing; e2e batches are encoded again inside every timed call
    assert encodes[:2] == [("ccc", "a"), ("bb", "dddd")]
    # each e2e mode's turn starts with one untimed warm batch (its first), then its timed batches
    assert encodes[2:5] == [("ccc", "a"), ("ccc", "a"), ("bb", "dddd")]
    assert encodes[5:] == [("a", "bb"), ("a", "bb"), ("ccc", "dddd")]
    assert speedups({"baseline": dict(row), "x": dict(row)})["x"]["e2e_speedup_b2_sorted"] == pytest.approx(1.0)


def test_latency_reuses_texts_to_fill_batches():
    calls: list[str] = []
    results = latency({"a": FakeBackend("a", calls)}, ["x"] * 3, batch_sizes=(32, ), repeats=2, warmup=1,
                      progress=False, modes={32: ("model", )})
    assert len(calls) == 1 + 2 * 2  # one warm-up, then per repeat a warm batch and one full batch of 32 from 3 texts
    assert set(results["a"]) >= {"latency_ms_b32_p50", "latency_ms_b32_p95", "throughput_b32"}


def test_latency_takes_a_batch_count_per_batch_size():
    """The grid times batch 1 on fewer texts than batch 32 (`measure.batch1_texts`)."""
    calls: list[str] = []
    latency({"a": FakeBackend("a", calls)}, ["x"] * 64, batch_sizes=(1, 32), repeats=2, warmup=0,
            batches_per_repeat={1: 5}, progress=False, modes={1: ("model", ), 32: ("model", )})
    assert len(calls) == 2 * (1 + 5 + 1 + 2)  # per repeat and batch size, one warm batch, then 5 single texts
    # and the 2 batches of 32 that 64 texts fill


def test_speedups_are_ratios_of_stored_medians():
    results = {
        "baseline": {"latency_ms_b1_p50": 10.0, "latency_ms_b32_p50": 300.0, "latency_ms_b1_p95": 99.0},
        "int8": {"latency_ms_b1_p50": 4.0, "latency_ms_b32_p50": 120.0, "latency_ms_b1_p95": 5.0}
    }
    speedups(results)
    assert results["int8"]["speedup_b1"] == 10.0 / 4.0
    assert results["int8"]["speedup_b32"] == 300.0 / 120.0
    assert results["baseline"]["speedup_b1"] == 1.0
    with pytest.raises(MahaError, match="no row named 'teacher'"):
        speedups(results, baseline="teacher")


@pytest.mark.slow
def test_peak_memory_in_a_fresh_process(tiny_model_dir, shc_splits):
    big = b"\x01" * 2**31  # 2 GiB, resident: the parent's size must not leak into the child's (ru_maxrss would)
    peaks = peak_memory(tiny_model_dir, "fp32", shc_splits.test.texts[:40], batch_size=8, threads=1)
    del big
    mb = peaks["peak_rss_mb"]
    assert ("peak_gpu_mb" in peaks) == torch.cuda.is_available()  # fp32 runs on the GPU where there is one
    assert 50 < mb < 1536, f"peak RSS of the child is {mb:.0f} MiB"  # ~400 MiB here: interpreter, torch, model


@pytest.mark.slow
def test_peak_memory_reports_child_failure(tiny_model_dir, shc_splits):
    """The child's one-line error comes back in the parent's MahaError."""
    with pytest.raises(MahaError, match="measuring peak memory of int4 failed \\(unknown backend 'int4'"):
        peak_memory(tiny_model_dir, "int4", shc_splits.test.texts[:4])


def test_size_and_params(tiny_model_dir):
    assert 0 < size_on_disk_mb(tiny_model_dir) < 5
    weights = (tiny_model_dir / "model.safetensors").stat().st_size / MIB
    assert served_size_mb(tiny_model_dir, "fp32") == size_on_disk_mb(tiny_model_dir) == weights  # MiB, one unit
    assert 0 < served_size_mb(tiny_model_dir, "int8") < weights


def test_runtime_sizes_are_their_own_files(tiny_model_dir, tmp_path):
    """A fused or OpenVINO int8 row's size is the file that runtime loads (in the cache), not the checkpoint."""
    fused = served_file(tiny_model_dir, "onnx-int8-fused", cache_dir=tmp_path)
    assert tiny_model_dir not in fused.parents
    assert served_size_mb(tiny_model_dir, "onnx-int8-fused", cache_dir=tmp_path) == fused.stat().st_size / MIB
    assert served_size_mb(tiny_model_dir, "openvino", cache_dir=tmp_path) == served_size_mb(
        tiny_model_dir, "onnx", cache_dir=tmp_path)  # OpenVINO fp32 compiles the plain ONNX export
    model = load_classifier(str(tiny_model_dir))
    counts = count_params(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["encoder"] > 0 and counts["embeddings"] > 0
    assert counts["encoder"] + counts["embeddings"] < counts["total"]  # pooler and head are outside both


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(i * i for i in range(1000))


def test_energy_with_codecarbon():
    pytest.importorskip("codecarbon")
    with Energy() as energy:
        _busy(1.0)
    assert energy.energy_kwh > 0 and energy.co2_kg > 0 and energy.seconds >= 1.0
    assert energy.energy_method.startswith("codecarbon") and isinstance(energy.energy_measured, bool)
    assert ("measured" if energy.energy_measured else "estimated") in energy.energy_method


def test_energy_estimate_without_codecarbon(monkeypatch):
    monkeypatch.setitem(sys.modules, "codecarbon", None)  # makes `import codecarbon` raise ImportError
    with Energy() as energy:
        _busy(0.2)
    assert energy.energy_kwh > 0 and energy.co2_kg == pytest.approx(energy.energy_kwh * 0.713441)
    assert not energy.energy_measured and energy.energy_method.startswith("estimated")
    assert "codecarbon unusable (ModuleNotFoundError" in energy.energy_method
