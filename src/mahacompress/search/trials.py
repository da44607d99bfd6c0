"""`optimize`'s trials and what a re-run reuses: the output folder's claim (`SEARCH_RECORD`), each trial's model
folder and its one atomic record in `trials/` (with its seconds), the shapes' latencies in `shapes/latency.json`
(reused while their settings hold), and each candidate's row of the report.

Why a module of its own: this is the search's bookkeeping, what makes a run resumable and lets trials run as
separate workers; `optimize` decides what to train and when, this module records it and finds it again.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from ..core.errors import MahaError
from ..core.files import SEARCH_RECORD, write_json
from ..study.context import RecipeContext
from ..study.recipes import build, settings_of
from ..study.rowspec import RowSpec
from .candidates import folder_of, served_copy
from .scoring import dev_predictions, time_models

_console = Console(stderr=True, markup=False, highlight=False)


def check_claim(out: Path, identity: dict) -> None:
    """Refuse an `out` that holds another search (other teacher, data, transfer set or teacher fine-tuning)."""
    record = out / SEARCH_RECORD
    saved = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else identity
    what = next((k for k in identity if saved.get(k) != identity[k]), None)
    if what is not None:
        raise MahaError(f"{out}: holds a search for another {what} ({SEARCH_RECORD}); choose another --out, or "
                        "run it with the same teacher, data and transfer set to resume it")


def trial_path(out: Path, spec: RowSpec) -> Path:
    return out / "trials" / f"{folder_of(spec)}.json"


def shape_timing(out: Path, specs: list[RowSpec], teacher_dir: str, runtimes: list[str], texts: list[str],
                 batch_size: int, ctx: RecipeContext) -> tuple[dict, float]:
    """The shapes' and the teacher's latencies, measured once per batch size, runtimes, teacher and shapes (their
    settings: another preset's layers or block size is another shape), and reused on re-run while those hold;
    with the seconds an earlier invocation spent measuring them (0 when measured now), for the report's run time."""
    key = {
        "batch_size": batch_size, "texts": len(texts), "runtimes": runtimes,
        "candidates": sorted(s.name for s in specs), "measure": asdict(ctx.measure), "max_length": ctx.max_length,
        "teacher": str(teacher_dir), "shapes": {s.name: settings_of(ctx.settings, s)
                                                for s in specs}
    }
    path = out / "shapes" / "latency.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return saved["ms"], saved.get("seconds", 0.0)  # files before 2026-12-03 did not record it
    _console.print(
        f"timing {len(specs)} untrained shapes and the teacher in {', '.join(runtimes)} at batch {batch_size}")
    models = {"teacher": (teacher_dir, runtimes)} | {s.name: (out / "shapes" / folder_of(s), runtimes) for s in specs}
    started = time.monotonic()
    ms = time_models(models, texts, batch_size, ctx)
    write_json(path, {"key": key, "ms": ms, "seconds": time.monotonic() - started})
    return ms, 0.0


def saved_trial(out: Path, ctx: RecipeContext, spec: RowSpec) -> dict | None:
    """The finished trial of `spec` if its settings still hold (a trained model folder and its dev predictions)."""
    path = trial_path(out, spec)
    if not path.is_file():
        return None
    trial = json.loads(path.read_text(encoding="utf-8"))
    return (trial
            if trial.get("settings") == settings_of(ctx.settings, spec) and Path(trial["model_dir"]).is_dir() else None)


def train_trial(out: Path, ctx: RecipeContext, spec: RowSpec, runtimes: list[str]) -> dict:
    """Train `spec` with the study's builder (`recipes.build`), score it on dev in each runtime as it ships
    (`served_copy`), and record it (atomically)."""
    started = time.monotonic()
    built = build(ctx, spec, out / "models" / folder_of(spec))
    ctx.finished[spec.name] = [built["model_dir"]]  # a kdpNN trial prunes its kd row's model
    served = served_copy(out, ctx, spec, built["model_dir"])
    trial = {
        "name": spec.name, "settings": settings_of(ctx.settings, spec), "model_dir": built["model_dir"],
        "served_dir": served, "train_seconds": built["train_seconds"], "dev_history": built.get("dev_history"),
        "dev_predictions": dev_predictions(served, runtimes, ctx)
    }
    trial["seconds"] = time.monotonic() - started
    write_json(trial_path(out, spec), trial)
    return trial


def candidate_row(name: str, ms: dict[str, float], status: dict, tried: dict | None, trial: dict | None) -> dict:
    row = {
        "name": name, **status, "ms": ms, "fastest_ms": min(ms.values()), "fastest_runtime": min(ms, key=ms.get),
        "trained": tried is not None and not tried.get("error")
    }
    if tried and tried.get("error"):
        row["why"] = tried["error"]
    if tried and not tried.get("error"):
        row |= {
            "dev": tried["dev"], "runtimes": tried["runtimes"], "passing_runtime": tried["runtime"],
            "passing_ms": tried["ms"]
        }
    if trial:
        row |= {"model_dir": trial["model_dir"], "train_seconds": trial["train_seconds"]}
    return row
