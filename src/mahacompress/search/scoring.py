"""`optimize`'s measurements: dev predictions of a model in each runtime, the verdict of the pass rule on them
(`judge`, `outcome`), and end-to-end latency of several models in interleaved sessions (`time_models`). Only a
runtime an exported folder runs (`SHIPPABLE`) decides a verdict; torch fp32 is the reference."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np

from ..core.config import OptimizeConfig
from ..core.metrics import (
    correctness,
    paired_difference,
    paired_macro_f1_difference,
    resampled_difference,
    resampled_macro_f1_difference,
)
from ..core.registry import EXPORT_BACKENDS
from ..data.splits import Splits
from ..infer import CALIBRATED_BACKENDS, load_backend
from ..infer.evaluate import classification_metrics, model_labels
from ..infer.numpy_engine import is_static
from ..measure.latency import latency
from ..study.context import RecipeContext

# The runtimes a verdict may rest on: each is an export backend, so the winner ships in the very runtime it was
# timed and judged in. torch fp32 is measured too, never shipped: the teacher's fp32 dev predictions are the
# reference every model is judged against, and its latency the anchor every speedup is against
SHIPPABLE = frozenset(EXPORT_BACKENDS)
REFERENCE = "fp32"
# float noise: 0.90 - 0.91 must pass a 1-point budget (certainty's resamples are held to the same line)
TOLERANCE = 1e-9
# The false-pass rate the search aims at (issue #39: "verdicts that say how sure they are"): the `risk` rule passes
# only a model whose chance of being in truth beyond the budget is at most this, and above it the report says the
# dev split is too small to decide this budget at that risk, and what would
FALSE_PASS_TARGET = 0.10


def runtimes_of(model_dir: str | Path, runtimes: list[str]) -> list[str]:
    """The runtimes a model runs with: its numpy table for a static student, else the transformer runtimes."""
    return ["static"] if is_static(model_dir) else list(runtimes)


def load(model_dir: str | Path, runtime: str, ctx: RecipeContext):
    """A backend for `model_dir`, its ONNX/OpenVINO files cached under the run's folder (`ctx.cache`: never beside
    the user's teacher), calibrated ones on a seeded sample of training texts (`ctx.calibration`)."""
    return load_backend(str(model_dir), runtime, max_length=ctx.max_length, threads=ctx.measure.threads,
                        cache_dir=ctx.cache,
                        calibration_texts=ctx.calibration if runtime in CALIBRATED_BACKENDS else None,
                        trust_remote_code=ctx.trust_remote_code)


def dev_predictions(model_dir: str | Path, runtimes: list[str], ctx: RecipeContext) -> dict[str, list[int]]:
    """Predicted dataset label ids on the DEV split in each runtime (the test split is never read here)."""
    splits = ctx.splits
    labels = model_labels(str(model_dir), trust_remote_code=ctx.trust_remote_code)
    to_dataset = np.array([splits.labels.index(lab) if lab in splits.labels else -1 for lab in labels])
    out = {}
    for runtime in runtimes_of(model_dir, runtimes):
        logits = load(model_dir, runtime, ctx).logits(splits.dev.texts, batch_size=64)
        out[runtime] = to_dataset[logits.argmax(-1)].tolist()
    return out


def paired(y: list[int], predicted: list[int], reference: list[int], metric: str, num_labels: int) -> dict:
    """`predicted`'s `metric` (an `OptimizeConfig.metric`) minus `reference`'s on the same texts, with its paired
    bootstrap interval (`core.metrics`): one choice of function per metric for the dev verdicts and the winner's
    test difference alike."""
    if metric == "accuracy":
        return paired_difference(correctness(y, [predicted]), correctness(y, [reference]))
    return paired_macro_f1_difference(y, predicted, reference, num_labels)


def resampled(y: list[int], predicted: list[int], reference: list[int], metric: str, num_labels: int) -> np.ndarray:
    """`predicted`'s `metric` (an `OptimizeConfig.metric`) minus `reference`'s in each bootstrap resample of the
    texts (fractions, not points): the distribution the verdict's interval is read from."""
    if metric == "accuracy":
        return resampled_difference(correctness(y, [predicted]), correctness(y, [reference]))
    return resampled_macro_f1_difference(y, predicted, reference, num_labels)


def within(differences: np.ndarray, budget: float) -> np.ndarray:
    """Which resampled differences are within `budget` points of the teacher: the pass rule's line, with its
    tolerance for float noise (`TOLERANCE`), so a resample exactly on the line is within, as a point
    estimate there passes."""
    return np.asarray(differences) >= -budget / 100 - TOLERANCE


def judge(y: list[int], predicted: list[int], reference: list[int], cfg: OptimizeConfig, num_labels: int) -> dict:
    """Dev score, its paired difference to the teacher (points, bootstrap interval) and the pass rule's verdict:
    `point` the difference itself, `interval` its 95% interval's lower bound, `risk` the share of its bootstrap
    resamples within the budget (at least 1 - FALSE_PASS_TARGET: the chance of a false pass `certainty` reports
    for a winner is then at most the target)."""
    key = "accuracy" if cfg.metric == "accuracy" else "macro_f1"
    labels = [str(i) for i in range(num_labels)]
    score = classification_metrics(y, predicted, labels)[key]
    d = paired(y, predicted, reference, cfg.metric, num_labels)
    if cfg.decide == "risk":
        inside = float(within(resampled(y, predicted, reference, cfg.metric, num_labels), cfg.budget).mean())
        passed = inside >= 1 - FALSE_PASS_TARGET - TOLERANCE
    else:
        passed = bool(within(d["difference"] if cfg.decide == "point" else d["ci_low"], cfg.budget))
    return {
        "dev": score, "difference_points": 100 * d["difference"], "ci_low_points": 100 * d["ci_low"],
        "ci_high_points": 100 * d["ci_high"], "passed": passed
    }


def time_models(models: dict[str, tuple[str, list[str]]], texts: list[str], batch_size: int, ctx: RecipeContext,
                repeats: int | None = None) -> dict:
    """End-to-end p50 milliseconds at `batch_size` of each (name -> (model folder, runtimes)).

    One session per runtime, each holding every model in that runtime and the first model (the teacher) in
    fp32 as an anchor: loading every (model, runtime) pair at once costs memory in proportion to their
    product (the default 9 candidates x 6 runtimes of the e5 teacher ran a 24 GiB machine out of memory).
    Each session's times are scaled by the anchor's time in the first session, so a slow spell of the
    machine between sessions does not reorder the candidates."""
    first, (first_folder, _) = next(iter(models.items()))
    anchor = f"{first} | fp32"
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, (folder, runtimes) in models.items():
        for r in runtimes_of(folder, runtimes):
            groups.setdefault(r, []).append((name, folder))
    m = ctx.measure
    out: dict[str, dict[str, float]] = {}
    reference: float | None = None
    for runtime, members in groups.items():
        backends = {anchor: load(first_folder, REFERENCE, ctx)}
        backends |= {f"{name} | {runtime}": load(folder, runtime, ctx) for name, folder in members}
        timing = latency(backends, texts, batch_sizes=(batch_size, ), repeats=repeats or m.repeats, warmup=m.warmup,
                         threads=m.threads, modes={batch_size: ("e2e", )})
        del backends
        gc.collect()
        key = f"e2e_ms_b{batch_size}_p50"
        reference = reference or timing[anchor][key]
        scale = reference / timing[anchor][key]
        for name, _ in members:
            out.setdefault(name, {})[runtime] = timing[f"{name} | {runtime}"][key] * scale
    return out


def outcome(trial: dict, ms: dict[str, float], teacher: list[int], splits: Splits, cfg: OptimizeConfig) -> dict:
    """A trained candidate's verdict per runtime, whether any shippable runtime passes, and its fastest passing time
    (a runtime no exported folder runs, torch's fp32 reference among them, is scored but decides nothing)."""
    y = splits.dev.labels
    per_runtime = {r: judge(y, pred, teacher, cfg, len(splits.labels)) for r, pred in trial["dev_predictions"].items()}
    passing = [r for r, v in per_runtime.items() if v["passed"] and r in ms and r in SHIPPABLE]
    best = min(passing, key=lambda r: ms[r]) if passing else None
    fp32 = per_runtime.get("fp32") or per_runtime.get("static") or next(iter(per_runtime.values()))
    return {
        "passed": best is not None, "ms": ms[best] if best else None, "runtime": best, "runtimes": per_runtime,
        "dev": fp32
    }
