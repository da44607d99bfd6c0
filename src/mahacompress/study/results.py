"""`results.json`, the grid's one record: what `grid` writes and `report` reads, through one reader and writer.

The layout is `Results`: `layout` (`LAYOUT`, the number of today's layout), `meta` (what was run, on which
machine, with which versions), `rows` (one `Row` per grid row, in preset order) and `caveats` (sentences the
report prints). The types are `TypedDict`s, so rows stay plain JSON objects on disk and in memory; a key the
grid writes that `Row` does not declare fails tests/test_grid.py, so the schema cannot drift from what is
written. A file of another layout is refused in one line rather than converted: the reader knows today's
layout alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict

from ..core.errors import MahaError
from ..core.files import write_json

LAYOUT = 2  # results.json's layout; files from before layouts were numbered read as 1
BEST = "best"  # the kind of row (recipes.KINDS) that serves the row the grid chose: named best+RUNTIME


def serves_best(row: Row) -> bool:
    """Whether `row` is a best+RUNTIME row: the chosen row's model in another runtime (`source_row` names it)."""
    return row["name"].partition("+")[0] == BEST and bool(row.get("source_row"))


class Meta(TypedDict, total=False):
    preset: str
    dataset: str
    teacher: str
    train_rows: int
    dev_rows: int
    test_rows: int
    max_length: int
    seeds: int
    size_unit: str  # "MiB"
    machine: str  # the CPU and its instruction sets, in words
    timing_session_seconds: float | None
    timing_texts: str
    unlearnable_classes: list[str]
    versions: dict[str, str | None]
    config: dict  # the GridConfig, asdict
    test_labels: list[int]


class Row(TypedDict, total=False):
    # what the row is and how it ended
    name: str
    status: str  # done | partial | failed | skipped
    error: str
    reason: str
    settings: dict  # everything in the preset that shapes the row's model (a change rebuilds it)
    source_row: str  # best+...: the row it serves
    chosen_by: str
    # its model and how it was built
    model_dir: str
    backend: str
    train_precision: str
    train_seconds: float | None
    build_seconds: float
    seconds: float
    transfer: dict | None
    augment: dict | None  # teacher-labelled variants (rows marked +aug): asked, made, dropped, labelling time
    dev_history: list[dict]
    seeds: list[dict]  # one entry per seed: its model_dir, scores and train_seconds
    # accuracy (test, unless named dev_)
    dev_accuracy: float
    test_rows: int
    accuracy: float
    macro_f1: float
    accuracy_learnable: float
    macro_f1_learnable: float
    accuracy_sd: float  # over seeds, when there are several (the four means above are over seeds too)
    macro_f1_sd: float
    accuracy_learnable_sd: float
    macro_f1_learnable_sd: float
    per_class_f1: dict[str, float]
    vs_baseline: dict  # paired bootstrap against the baseline: difference, ci_low, ci_high
    served: dict  # the row's model in the served backend (recipes.served_backend): its backend and scores
    # size
    params_total: int
    params_encoder: int
    encoder_linear_weights: int
    encoder_sparsity: float
    disk_mb: float  # MiB
    peak_rss_mb: float
    peak_gpu_mb: float  # only for rows that ran on a CUDA GPU
    # cost of building it
    energy_kwh: float
    co2_kg: float
    energy_measured: bool
    energy_method: str
    # the timing session: model-only (latency_*) and end to end (e2e_*, tokenisation included)
    repeats: int
    threads: int
    latency_ms_b1_p50: float
    latency_ms_b1_p95: float
    throughput_b1: float
    e2e_ms_b1_p50: float
    e2e_ms_b1_p95: float
    e2e_throughput_b1: float
    latency_ms_b32_p50: float
    latency_ms_b32_p95: float
    throughput_b32: float
    e2e_ms_b32_p50: float
    e2e_ms_b32_p95: float
    e2e_throughput_b32: float
    e2e_ms_b32_sorted_p50: float
    e2e_ms_b32_sorted_p95: float
    e2e_throughput_b32_sorted: float
    speedup_b1: float
    e2e_speedup_b1: float
    speedup_b32: float
    e2e_speedup_b32: float
    e2e_speedup_b32_sorted: float


class Results(TypedDict):
    layout: int
    meta: Meta
    rows: list[Row]
    caveats: list[str]


def read_results(path: Path) -> Results:
    """`path` read, or one line naming the file: unreadable, not the grid's, or of another layout (how to get
    today's is in the line)."""
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MahaError(f"{path}: cannot be read as results ({str(exc).splitlines()[0]})") from None
    rows = results.get("rows") if isinstance(results, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "name" in r for r in rows):
        raise MahaError(f"{path}: not a results.json written by `mahacompress reproduce` (no list of named rows)")
    layout = results.get("layout", 1)
    if layout != LAYOUT:
        age = "an older" if isinstance(layout, int) and layout < LAYOUT else "another"
        raise MahaError(f"{path}: written by {age} mahacompress (layout {layout}; this one reads layout {LAYOUT}); "
                        f"render it with the mahacompress that wrote it, or re-run `mahacompress reproduce` into a "
                        f"new folder for today's layout")
    if not isinstance(results.get("meta"), dict) or not isinstance(results.get("caveats"), list):
        raise MahaError(f"{path}: not a results.json written by `mahacompress reproduce` (no meta or caveats)")
    return results


def write_results(path: Path, meta: Meta, rows: list[Row], caveats: list[str]) -> None:
    """Write `path` atomically in today's layout."""
    write_json(path, Results(layout=LAYOUT, meta=meta, rows=rows, caveats=caveats))
