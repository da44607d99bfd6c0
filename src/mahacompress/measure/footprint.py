"""What a model costs besides time: peak memory, size on disk and served, parameters, energy.

Peak memory comes from a fresh process per row, so one row's allocations never inflate the next. Every size is
measured here, in MiB (2**20 bytes), named "mb" in keys.
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
from collections.abc import Sequence
from pathlib import Path

import torch

from ..core.errors import MahaError
from ..infer import SPECS, load_backend
from ..infer.torch_engine import quantize_int8
from ..models.load import load_classifier

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
        from ..infer.build import served_file

        served_file(model_dir, backend, max_length=max_length, cache_dir=cache_dir, trust_remote_code=trust_remote_code)
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(list(texts), ensure_ascii=False), encoding="utf-8")
        cmd = [
            sys.executable, "-m", "mahacompress.measure.footprint",
            str(model_dir), backend,
            str(texts_file), "--batch-size",
            str(batch_size), "--max-length",
            str(max_length)
        ]
        cmd += ["--threads", str(threads)] if threads else []
        cmd += ["--cache-dir", str(cache_dir)] if cache_dir else []
        cmd += ["--trust-remote-code"] if trust_remote_code else []
        env = {
            **os.environ, "PYTHONPATH": os.pathsep.join(
                filter(None,
                       [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH")]))
        }
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
        from ..infer.build import served_files

        # a calibrated file was built already (the grid builds it before it scores)
        return sum(
            size_on_disk_mb(p)
            for p in served_files(model_dir, backend, cache_dir=cache_dir, trust_remote_code=trust_remote_code))
    if backend == "tfidf":
        from ..infer.numpy_engine import PIPELINE

        return size_on_disk_mb(Path(model_dir) / PIPELINE)
    if backend == "int8":
        buf = io.BytesIO()
        torch.save(
            quantize_int8(load_classifier(str(model_dir), trust_remote_code=trust_remote_code)).state_dict(), buf)
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
        return {
            "seconds": self.seconds, "energy_kwh": self.energy_kwh, "co2_kg": self.co2_kg,
            "energy_measured": self.energy_measured, "energy_method": self.energy_method
        }

    def _start_tracker(self):
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)  # it logs INFO/WARNING before reading log_level
        tracker = OfflineEmissionsTracker(country_iso_code=self.country_iso_code, log_level="error", output_methods=[],
                                          output_dir=self._output_dir.name, measure_power_secs=self.measure_power_secs,
                                          tracking_mode="process",
                                          allow_multiple_runs=True)  # another job may track the same machine
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
    parser = argparse.ArgumentParser(prog="python -m mahacompress.measure.footprint")
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
