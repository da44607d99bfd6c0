"""The grid's timing session: every finished row, and every served block, timed in one interleaved session
(`time_rows`: speedups compare like with like), on a seeded random sample of test texts in arrival order
(`timing_texts`, which `optimize` times on too), with each row's size on disk and peak memory.

It runs once every row is built and scored; it only measures what `results.json` already holds.
"""

from __future__ import annotations

import random

from ..infer import load_backend
from ..measure.footprint import peak_memory, served_size_mb
from ..measure.latency import latency, speedups
from .context import RecipeContext


def time_rows(ctx: RecipeContext, rows: dict[str, dict]) -> None:
    """Time every finished row and served block in one interleaved session; sizes and peak memory per row."""
    done = [r for r in rows.values() if r.get("status") == "done"]
    if not done:
        return
    texts = timing_texts(ctx.splits.test.texts, ctx.measure.texts)
    threads, trust = ctx.measure.threads, {"trust_remote_code": ctx.trust_remote_code}
    max_length = ctx.max_length
    served = {_served_key(r["name"]): r for r in done if "served" in r}
    backends = {
        r["name"]: load_backend(r["model_dir"], r["backend"], max_length=max_length, threads=threads, **trust)
        for r in done
    }
    backends |= {
        key: load_backend(r["model_dir"], r["served"]["backend"], max_length=max_length, threads=threads, **trust)
        for key, r in served.items()
    }
    m = ctx.measure
    timing = speedups(
        latency(backends, texts, repeats=m.repeats, warmup=m.warmup, threads=threads,
                batches_per_repeat={1: min(m.batch1_texts, len(texts))}))
    del backends
    for row in done:
        row.update(timing.get(row["name"], {}))
        row["disk_mb"] = served_size_mb(row["model_dir"], row["backend"], **trust)
        row.update(peak_memory(row["model_dir"], row["backend"], texts, max_length=max_length, threads=threads,
                               **trust))
    for key, row in served.items():
        row["served"].update(timing.get(key, {}))
        row["served"]["disk_mb"] = served_size_mb(row["model_dir"], row["served"]["backend"], **trust)


def timing_texts(texts: list[str], n: int, seed: int = 0) -> list[str]:
    """A seeded random sample of `n` texts in random order: batches in arrival order, as a service gets
    them (a file's own order can group texts by label or length, which flatters padding)."""
    return random.Random(seed).sample(list(texts), min(n, len(texts)))


def _served_key(name: str) -> str:
    return f"{name} (served)"
