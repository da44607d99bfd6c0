"""How every row of the results table is measured: latency, peak memory, size, parameters, energy.

Latency is measured INTERLEAVED: each repeat runs every backend in turn on the same pre-tokenised
batches, rotating the order, so a slow spell of the machine (another job, thermal throttling) hits all
rows alike instead of whichever row happened to run then. Peak memory comes from a fresh process per
row, so one row's allocations never inflate the next. Every size is measured here, in MiB (2**20
bytes), named "mb" in keys.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .backends import SPECS, Backend, load_backend
from .backends.torch_engine import quantize_int8
from .errors import MahaError
from .models import load_classifier

DEFAULT_THREADS = 2  # the development machine's core count; fixed so rows are comparable across runs
MIB = 2**20
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")  # not training_args.bin, tokenizer or ONNX files

# Fallback energy estimate when CodeCarbon is missing or fails. Both figures are CodeCarbon 3.3.2's own:
# DEFAULT_POWER_PER_CORE (4 W per logical CPU, used when it does not know the CPU's TDP), and India's
# grid carbon intensity from its data/private_infra/global_energy_mix.json (Ember, year 2023).
ASSUMED_WATTS_PER_CPU = 4.0
INDIA_KG_CO2_PER_KWH = 0.713441
# CodeCarbon CPU modes that read a power meter; its other modes ("cpu_load", "constant") model power
# from a TDP table and the CPU load. RAM power is always modelled (watts per GB), never read.
_METERED_CPU_MODES = {"intel_rapl", "intel_power_gadget", "windows_emi"}


# ---------------------------------------------------------------- latency

MODES = ("model", "e2e", "e2e_sorted")  # what a timing covers, and how its batches are formed (latency)
# Untimed pause before each backend's turn, so the previous backend's worker threads stop spinning first.
# ONNX Runtime's intra-op threads (and OpenMP's) spin-wait after a run and steal the cores the next backend
# needs: measured on a 2-core Xeon (AMX), the pruned bf16 p25+kd+mp took 108 ms per batch of 32 right after
# fused ONNX Runtime int8, 69 ms after nothing; after a 5 / 20 / 100 ms pause 99 / 84 / 73 ms. After the
# pause a backend's own threads are parked too (fused int8 after itself: 63 ms back to back, 69 ms after a
# 100 ms pause), so each mode's turn runs one untimed batch before its timed ones.
SETTLE_SECONDS = 0.2


def latency(backends: dict[str, Backend], texts: Sequence[str], batch_sizes: Sequence[int] = (1, 32),
            repeats: int = 5, warmup: int = 2, batches_per_repeat: int | Mapping[int, int] | None = None,
            threads: int = DEFAULT_THREADS, progress: bool = True,
            modes: Mapping[int, Sequence[str]] | None = None) -> dict[str, dict]:
    """Per backend and batch size B, for each timing mode: p50/p95 milliseconds and texts/s.

    Modes (default: all three at every B > 1, `model` and `e2e` at B = 1):
    - `model`: the model alone, on batches tokenised before timing, in the order `texts` come
      (`latency_ms_b{B}_p50/_p95`, `throughput_b{B}`);
    - `e2e`: raw strings in, labels out: tokenisation (or TF-IDF featurisation), the model and the
      argmax, the way `serve` and `predict` run; same batches (`e2e_ms_b{B}_p50/_p95`, `e2e_throughput_b{B}`);
    - `e2e_sorted`: end to end on batches of texts sorted by length first, so each batch pads to
      similar lengths, as offline scoring of a whole file does (`e2e_ms_b{B}_sorted_p50/_p95`). A
      service sees arrival order (`e2e`), so the gap between the two is what padding costs.

    Every repeat times `batches_per_repeat` full batches per batch size (one count for all, or a count
    per batch size; default: as many as `texts` fills, at least one; texts are reused cyclically to
    fill the last). p50 is the median over repeats of each repeat's mean batch time, which is robust
    to a disturbed repeat; p95 is over every single batch timing, the tail a user would see. torch runs
    with `threads` threads; onnxruntime backends keep the thread count they were loaded with, so load
    them with the same number. Give it no more threads than there are idle cores: threads spin-wait for
    each other, and with 2 threads on 2 cores shared with a training job e5-small's batch-1 fp32 latency
    went from 47 ms (1 thread) to 1450 ms. For the same reason each backend's turn starts after an untimed
    pause (`SETTLE_SECONDS`), so one backend's spinning threads never land in the next one's timings, and
    each mode's timed batches follow one untimed batch, so none of them starts cold after the pause.
    """
    if not texts:
        raise MahaError("latency needs at least one text")
    names = list(backends)
    counts = (batches_per_repeat if isinstance(batches_per_repeat, Mapping)
              else dict.fromkeys(batch_sizes, batches_per_repeat))
    modes = modes or {bs: MODES if bs > 1 else MODES[:2] for bs in batch_sizes}
    by_length = sorted(texts, key=len)
    plans = [(bs, mode) for bs in batch_sizes for mode in modes[bs]]
    raw = {(bs, mode): _chunks(by_length if mode == "e2e_sorted" else texts, bs, counts.get(bs))
           for bs, mode in plans}
    batches = {name: {plan: [backends[name].encode(c) for c in raw[plan]] if plan[1] == "model" else raw[plan]
                      for plan in plans} for name in names}
    timings: dict[str, dict[tuple, list[list[float]]]] = {name: {plan: [] for plan in plans} for name in names}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    columns = (TextColumn("latency {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, transient=True, disable=not progress) as bar:
            task = bar.add_task("warm-up", total=repeats * len(names))
            for name in names:
                for plan in plans:
                    for i in range(warmup):
                        _timed(backends[name], batches[name][plan][i % len(batches[name][plan])], plan[1])
            for r in range(repeats):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    bar.update(task, description=f"repeat {r + 1}/{repeats}: {name}")
                    time.sleep(SETTLE_SECONDS)  # no backend is timed while its predecessor's threads still spin
                    for plan in plans:
                        _timed(backends[name], batches[name][plan][0], plan[1])  # untimed: threads and caches warm
                        timings[name][plan].append([_timed(backends[name], b, plan[1]) for b in batches[name][plan]])
                    bar.advance(task)
    finally:
        torch.set_num_threads(previous_threads)
    return {name: _summarise(timings[name], repeats, threads) for name in names}


def _chunks(texts: Sequence[str], batch_size: int, count: int | None) -> list[list[str]]:
    count = count or max(1, len(texts) // batch_size)
    return [[texts[(i * batch_size + j) % len(texts)] for j in range(batch_size)] for i in range(count)]


def _timed(backend: Backend, batch, mode: str) -> float:
    start = time.perf_counter()
    if mode == "model":
        backend.forward(batch)  # returns host-side numpy logits, so GPU work has finished too
    else:
        backend.forward(backend.encode(batch)).argmax(-1)
    return time.perf_counter() - start


def _key(mode: str, bs: int) -> str:
    """The result keys' stem of one timing mode at batch size `bs` (see `latency`)."""
    return {"model": f"latency_ms_b{bs}", "e2e": f"e2e_ms_b{bs}", "e2e_sorted": f"e2e_ms_b{bs}_sorted"}[mode]


def _summarise(per_plan: dict[tuple, list[list[float]]], repeats: int, threads: int) -> dict:
    row: dict = {}
    for (bs, mode), per_repeat in per_plan.items():
        p50 = float(np.median([np.mean(times) for times in per_repeat])) * 1000
        row[f"{_key(mode, bs)}_p50"] = p50
        row[f"{_key(mode, bs)}_p95"] = float(np.percentile(np.concatenate(per_repeat), 95)) * 1000
        row[{"model": f"throughput_b{bs}", "e2e": f"e2e_throughput_b{bs}",
             "e2e_sorted": f"e2e_throughput_b{bs}_sorted"}[mode]] = bs * 1000 / p50
    row.update(repeats=repeats, threads=threads)
    return row


def speedups(results: dict[str, dict], baseline: str = "baseline") -> dict[str, dict]:
    """Add a speedup per timing (baseline p50 / row p50, in place; returned): `speedup_b{B}` (model only),
    `e2e_speedup_b{B}` (end to end) and `e2e_speedup_b{B}_sorted` (end to end, length-sorted batches)."""
    if baseline not in results:
        raise MahaError(f"no row named {baseline!r} to compute speedups against (rows: {', '.join(results)})")
    base = results[baseline]
    for row in results.values():
        for key in [k for k in row if re.fullmatch(r"(latency|e2e)_ms_b\d+(_sorted)?_p50", k) and k in base]:
            stem = key.removesuffix("_p50")
            name = stem.replace("latency_ms_b", "speedup_b").replace("e2e_ms_b", "e2e_speedup_b")
            row[name] = base[key] / row[key]
    return results


# ---------------------------------------------------------------- memory, size, parameters

def peak_memory(model_dir: str | Path, backend: str, texts: Sequence[str], batch_size: int = 32, *,
                max_length: int = 128, threads: int | None = None, cache_dir: str | Path | None = None,
                trust_remote_code: bool = False) -> dict:
    """Peak memory (MiB) of a fresh Python process that loads `model_dir` with `backend` and runs `texts`
    through it: `peak_rss_mb`, its resident memory (the model plus the interpreter, torch and
    transformers: ~the same few hundred MiB in every row), and `peak_gpu_mb` when the model ran on a CUDA
    GPU (what PyTorch allocated there at most: weights and activations, where a GPU's limit bites).
    ONNX and OpenVINO files are built here first, so export memory is not counted. `trust_remote_code`
    (the child is told too) lets the checkpoint run the Python code its folder ships."""
    if backend in SPECS and SPECS[backend].file:  # calibrated int8 files must exist already (built when timed)
        from .backends.build import served_file

        served_file(model_dir, backend, max_length=max_length, cache_dir=cache_dir,
                    trust_remote_code=trust_remote_code)
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(list(texts), ensure_ascii=False), encoding="utf-8")
        cmd = [sys.executable, "-m", "mahacompress.measure", str(model_dir), backend, str(texts_file),
               "--batch-size", str(batch_size), "--max-length", str(max_length)]
        cmd += ["--threads", str(threads)] if threads else []
        cmd += ["--cache-dir", str(cache_dir)] if cache_dir else []
        cmd += ["--trust-remote-code"] if trust_remote_code else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                         os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
        raise MahaError(f"{model_dir}: measuring peak memory of {backend} failed ({last})")
    return {key: float(value) for key, value in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def _own_peak_rss_mb() -> float:
    """This process's peak RSS. On Linux VmHWM, not ru_maxrss: the kernel carries ru_maxrss over from
    the parent across fork+exec, so a child of a 3 GB process would report at least 3 GB."""
    status = Path("/proc/self/status")
    if status.is_file():
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read_text()).group(1)) / 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024  # macOS counts bytes, others KiB


def size_on_disk_mb(path: str | Path) -> float:
    """MiB of a model folder's weight files, or of one file (e.g. model-int8.onnx)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / MIB
    files = {f for pattern in WEIGHT_PATTERNS for f in path.glob(pattern)}
    if not files:
        raise MahaError(f"{path}: no weight files ({', '.join(WEIGHT_PATTERNS)})")
    return sum(f.stat().st_size for f in files) / MIB


def served_size_mb(model_dir: str | Path, backend: str, *, cache_dir: str | Path | None = None,
                   trust_remote_code: bool = False) -> float:
    """MiB of what serving `model_dir` with `backend` loads: the runtime's own file(s) in the derived-file
    cache ((int8, fused or calibrated) ONNX, OpenVINO IR), the int8-quantised state dict (as torch.save
    writes it), or the checkpoint's weight files for fp32/bf16/fp16."""
    if SPECS[backend].file:
        from .backends.build import served_files

        # a calibrated file was built already (the grid builds it before it scores)
        return sum(size_on_disk_mb(p) for p in served_files(model_dir, backend, cache_dir=cache_dir,
                                                            trust_remote_code=trust_remote_code))
    if backend == "tfidf":
        from .backends.numpy_engine import PIPELINE

        return size_on_disk_mb(Path(model_dir) / PIPELINE)
    if backend == "int8":
        buf = io.BytesIO()
        torch.save(quantize_int8(load_classifier(str(model_dir), trust_remote_code=trust_remote_code)).state_dict(),
                   buf)
        return buf.tell() / MIB
    return size_on_disk_mb(model_dir)


def count_params(model: torch.nn.Module) -> dict[str, int]:
    """Parameters in total, in the encoder layers and in the embeddings (tied weights counted once).

    The split matters for multilingual models: e5-small's 250k-token vocabulary puts most of its
    weights in the embeddings, which pruning encoder layers never touches.
    """
    base = getattr(model, "base_model", model)
    parts = {"encoder": getattr(base, "encoder", None), "embeddings": getattr(base, "embeddings", None)}
    missing = [name for name, module in parts.items() if module is None]
    if missing:
        raise MahaError(f"{type(model).__name__}: no {' or '.join(missing)} module to count parameters of")
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in parts.items()}
    return {"total": sum(p.numel() for p in model.parameters()), **counts}


# ---------------------------------------------------------------- energy

class Energy:
    """Energy and CO2 of the code in a `with` block; the results are attributes after the block ends.

    CodeCarbon's OfflineEmissionsTracker does the work (grid intensity of `country_iso_code`, tracking
    this process only, writing no files). `energy_measured` is True only when it read a power meter
    (RAPL & co.) for the CPU and any GPU; in VMs without /sys/class/powercap, like our development
    machine, it models CPU power from a TDP table and the CPU load, which `energy_method` says. Without
    CodeCarbon (or if it fails) the estimate is seconds x ASSUMED_WATTS_PER_CPU x logical CPUs x
    India's grid intensity.
    """

    def __init__(self, country_iso_code: str = "IND", measure_power_secs: float = 1.0):
        self.country_iso_code = country_iso_code
        self.measure_power_secs = measure_power_secs
        self.seconds = self.energy_kwh = self.co2_kg = 0.0
        self.energy_measured = False
        self.energy_method = ""

    def __enter__(self) -> Energy:
        self._tracker, self._failure = None, ""
        self._output_dir = tempfile.TemporaryDirectory(prefix="mahacompress-codecarbon-")  # nothing in the repo
        try:
            self._tracker = self._start_tracker()
        except Exception as exc:  # ImportError, or any CodeCarbon failure: fall back to the estimate
            self._failure = f"{type(exc).__name__}: {exc}".splitlines()[0]
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds = time.perf_counter() - self._start
        try:
            if self._tracker is not None:
                self._tracker.stop()
                self._read_tracker(self._tracker)
                return
        except Exception as exc:
            self._failure = f"{type(exc).__name__}: {exc}".splitlines()[0]
        finally:
            self._output_dir.cleanup()
        self._estimate()

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "energy_kwh": self.energy_kwh, "co2_kg": self.co2_kg,
                "energy_measured": self.energy_measured, "energy_method": self.energy_method}

    def _start_tracker(self):
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)  # it logs INFO/WARNING before reading log_level
        tracker = OfflineEmissionsTracker(
            country_iso_code=self.country_iso_code, log_level="error", output_methods=[],
            output_dir=self._output_dir.name, measure_power_secs=self.measure_power_secs,
            tracking_mode="process", allow_multiple_runs=True)  # another job may track the same machine
        tracker.start()
        return tracker

    def _read_tracker(self, tracker) -> None:
        import codecarbon

        data = tracker.final_emissions_data
        self.energy_kwh, self.co2_kg = float(data.energy_consumed), float(data.emissions)
        hardware = [h for h in tracker._hardware if type(h).__name__ != "RAM"]
        metered = [getattr(h, "_mode", "nvml") in _METERED_CPU_MODES | {"nvml"} for h in hardware]
        self.energy_measured = bool(hardware) and all(metered)
        parts = ", ".join(f"{h} {'metered' if m else 'modelled from TDP and load'}" for h, m in zip(hardware, metered))
        grid = self.co2_kg / self.energy_kwh * 1000 if self.energy_kwh else 0.0
        how = "measured" if self.energy_measured else "estimated"
        self.energy_method = (f"codecarbon {codecarbon.__version__}: {how} ({parts}; RAM modelled; this process's "
                              f"share), grid of {self.country_iso_code} at {grid:.0f} g/kWh")

    def _estimate(self) -> None:
        cpus = os.cpu_count() or 1
        self.energy_kwh = self.seconds * ASSUMED_WATTS_PER_CPU * cpus / 3.6e6
        self.co2_kg = self.energy_kwh * INDIA_KG_CO2_PER_KWH
        self.energy_measured = False
        grid = "India" + ("" if self.country_iso_code == "IND" else f" (no figure for {self.country_iso_code})")
        self.energy_method = (f"estimated: {self.seconds:.1f} s x {ASSUMED_WATTS_PER_CPU:g} W x {cpus} CPUs, "
                              f"grid of {grid} at {INDIA_KG_CO2_PER_KWH * 1000:g} g/kWh; codecarbon unusable "
                              f"({self._failure})")


# ---------------------------------------------------------------- peak-memory child process

def _peak_memory_child(argv: list[str]) -> None:
    """Entry point of the process `peak_memory` starts: load, run, print the peak RSS (and GPU memory) as JSON."""
    parser = argparse.ArgumentParser(prog="python -m mahacompress.measure")
    parser.add_argument("model_dir")
    parser.add_argument("backend")
    parser.add_argument("texts_json")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--cache-dir")
    parser.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args(argv)
    texts = json.loads(Path(args.texts_json).read_text(encoding="utf-8"))
    try:
        backend = load_backend(args.model_dir, args.backend, max_length=args.max_length, threads=args.threads,
                               cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code)
    except MahaError as exc:
        sys.exit(str(exc))  # one line on stderr, which the parent repeats in its own MahaError
    backend.logits(texts, batch_size=args.batch_size)
    peaks = {"peak_rss_mb": _own_peak_rss_mb()}
    torch = sys.modules.get("torch")  # imported by torch backends only; CUDA initialised only if a model used it
    if torch is not None and torch.cuda.is_initialized():
        peaks["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / MIB
    print(json.dumps(peaks))


if __name__ == "__main__":
    _peak_memory_child(sys.argv[1:])
