"""Latency, measured INTERLEAVED: each repeat runs every backend in turn on the same pre-tokenised batches,
rotating the order, so a slow spell of the machine (another job, thermal throttling) hits all rows alike instead
of whichever row happened to run then; and speedups against a baseline row.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..core.errors import MahaError
from ..infer import Backend

DEFAULT_THREADS = 2  # the development machine's core count; fixed so rows are comparable across runs

# ---------------------------------------------------------------- latency

MODES = ("model", "e2e", "e2e_sorted")  # what a timing covers, and how its batches are formed (latency)
# Untimed pause before each backend's turn, so the previous backend's worker threads stop spinning first.
# ONNX Runtime's intra-op threads (and OpenMP's) spin-wait after a run and steal the cores the next backend
# needs: measured on a 2-core Xeon (AMX), the pruned bf16 p25+kd+mp took 108 ms per batch of 32 right after
# fused ONNX Runtime int8, 69 ms after nothing; after a 5 / 20 / 100 ms pause 99 / 84 / 73 ms. After the
# pause a backend's own threads are parked too (fused int8 after itself: 63 ms back to back, 69 ms after a
# 100 ms pause), so each mode's turn runs one untimed batch before its timed ones.
SETTLE_SECONDS = 0.2


def latency(backends: dict[str, Backend], texts: Sequence[str], batch_sizes: Sequence[int] = (1, 32), repeats: int = 5,
            warmup: int = 2, batches_per_repeat: int | Mapping[int, int] | None = None, threads: int = DEFAULT_THREADS,
            progress: bool = True, modes: Mapping[int, Sequence[str]] | None = None) -> dict[str, dict]:
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
    counts = (batches_per_repeat if isinstance(batches_per_repeat, Mapping) else dict.fromkeys(
        batch_sizes, batches_per_repeat))
    modes = modes or {bs: MODES if bs > 1 else MODES[:2] for bs in batch_sizes}
    by_length = sorted(texts, key=len)
    plans = [(bs, mode) for bs in batch_sizes for mode in modes[bs]]
    raw = {(bs, mode): _chunks(by_length if mode == "e2e_sorted" else texts, bs, counts.get(bs)) for bs, mode in plans}
    batches = {
        name: {
            plan: [backends[name].encode(c) for c in raw[plan]] if plan[1] == "model" else raw[plan]
            for plan in plans
        }
        for name in names
    }
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
        row[{
            "model": f"throughput_b{bs}", "e2e": f"e2e_throughput_b{bs}", "e2e_sorted": f"e2e_throughput_b{bs}_sorted"
        }[mode]] = bs * 1000 / p50
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
