"""`optimize`'s trials and what a re-run reuses: the output folder's claim (`SEARCH_RECORD`), each trial's model
folder and its one atomic record in `trials/` (with its seconds), the shapes' latencies in `shapes/latency.json`
(reused while their settings hold), and each candidate's row of the report.

Why a module of its own: this is the search's bookkeeping, what makes a run resumable and lets trials run as
separate workers; `optimize` decides what to train and when, this module records it and finds it again.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from ..core.errors import MahaError
from ..core.files import SEARCH_RECORD, write_json
from ..core.registry import SPECS
from ..infer.numpy_engine import is_static
from ..study.context import RecipeContext
from ..study.recipes import build, settings_of
from ..study.rowspec import RowSpec
from .candidates import folder_of, served_copy
from .scoring import SHIPPABLE, dev_predictions, time_models

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


# A runtime slower by more than this factor, on both probes (the teacher and the smallest transformer shape, the
# two ends of the candidates' sizes), than a shippable runtime of the same or a higher precision is beaten
# everywhere between them: it is dropped for the run, so its files are built for no other shape and no trained
# model. 1.3: well beyond the few percent two timing sessions differ by, so a runtime within reach on either probe
# stays. Only a runtime at least as precise may beat it: a verdict can rest on a slower, more precise runtime when
# int8 costs a model its accuracy
BEATEN = 1.3
_RANK = {"int8": 0, "bf16": 1, "fp16": 1, "fp32": 2}  # precision, lowest first (`registry.BackendSpec.precision`)
# Repeats of the probe session: it only has to find runtimes beaten by BEATEN on both probes
PROBE_REPEATS = 2


@dataclass
class ShapeTiming:
    """The shapes' and the teacher's latencies per runtime (`ms`), the runtimes the run goes on with (`runtimes`),
    those dropped as beaten everywhere with the probes' figures that dropped them (`dropped`), and the seconds an
    earlier invocation spent measuring them (0 when measured now), for the report's run time."""

    ms: dict[str, dict[str, float]]
    runtimes: list[str]
    dropped: dict[str, dict[str, float]]
    seconds: float


def shape_timing(out: Path, specs: list[RowSpec], teacher_dir: str, runtimes: list[str], texts: list[str],
                 batch_size: int, ctx: RecipeContext, keep: tuple[str,
                                                                  ...] = (), repeats: int | None = None) -> ShapeTiming:
    """The shapes' and the teacher's latencies, measured once per batch size, runtimes, teacher and shapes (their
    settings: another preset's layers or block size is another shape), and reused on re-run while those hold.

    A short probe session first times the teacher and the smallest transformer shape in every runtime; a runtime
    beaten by `BEATEN` on both (`beaten_everywhere`; never one in `keep`) is dropped, and only the rest are built and
    timed for every shape, with `repeats` (None: the preset's)."""
    key = {
        "batch_size": batch_size, "texts": len(texts), "runtimes": runtimes, "candidates": sorted(s.name
                                                                                                  for s in specs),
        "measure": asdict(ctx.measure), "max_length": ctx.max_length, "teacher": str(teacher_dir), "shapes": {
            s.name: settings_of(ctx.settings, s)
            for s in specs
        }, "beaten": BEATEN, "repeats": repeats, "probe_repeats": PROBE_REPEATS, "keep": list(keep)
    }
    path = out / "shapes" / "latency.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return ShapeTiming(saved["ms"], saved["runtimes"], saved["dropped"], saved["seconds"])
    started = time.monotonic()
    folders = {s.name: out / "shapes" / folder_of(s) for s in specs}
    probe = _smallest_transformer(folders)
    kept, dropped = list(runtimes), {}
    if probe is not None and len([r for r in runtimes if r not in keep]) > 1:
        _console.print(f"probing {len(runtimes)} runtimes on the teacher and {probe} at batch {batch_size}")
        probe_ms = time_models({"teacher": (teacher_dir, runtimes), probe: (folders[probe], runtimes)}, texts,
                               batch_size, ctx, repeats=PROBE_REPEATS)
        dropped = {r: {n: ms[r] for n, ms in probe_ms.items()} for r in beaten_everywhere(probe_ms, keep)}
        kept = [r for r in runtimes if r not in dropped]
        if dropped:
            _console.print(f"dropped, over {BEATEN:g}x slower on the teacher and on {probe} than a runtime at least "
                           "as precise: " + ", ".join(dropped))
    _console.print(f"timing {len(specs)} untrained shapes and the teacher in {', '.join(kept)} at batch {batch_size}")
    models = {"teacher": (teacher_dir, kept)} | {name: (folder, kept) for name, folder in folders.items()}
    ms = time_models(models, texts, batch_size, ctx, repeats)
    timing = ShapeTiming(ms, kept, dropped, 0.0)
    write_json(path, {"key": key, **asdict(timing), "seconds": time.monotonic() - started})
    return timing


def beaten_everywhere(probe_ms: dict[str, dict[str, float]], keep: tuple[str, ...] = ()) -> list[str]:
    """The runtimes (but those in `keep`) slower by more than `BEATEN`, on every probe (name -> runtime -> ms), than
    the fastest shippable runtime of the same or a higher precision: a reference that ships in no folder (torch
    fp32) beats nothing."""
    runtimes = set.intersection(*(set(ms) for ms in probe_ms.values()))

    def rank(r: str) -> int:
        return _RANK[SPECS[r].precision]

    def beaten(r: str, ms: dict[str, float]) -> bool:
        rivals = [ms[o] for o in runtimes if o != r and o in SHIPPABLE and rank(o) >= rank(r)]
        return bool(rivals) and ms[r] > BEATEN * min(rivals)

    return sorted(r for r in runtimes if r not in keep and all(beaten(r, ms) for ms in probe_ms.values()))


def _smallest_transformer(folders: dict[str, Path]) -> str | None:
    """The shape with the fewest weight bytes that is not a static table (which runs only in numpy)."""
    sizes = {
        name: sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        for name, folder in folders.items() if not is_static(folder)
    }
    return min(sizes, key=sizes.get) if sizes else None


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
    built_at = time.monotonic()
    served = served_copy(out, ctx, spec, built["model_dir"])
    trial = {
        "name": spec.name, "settings": settings_of(ctx.settings, spec), "model_dir": built["model_dir"],
        "served_dir": served, "train_seconds": built["train_seconds"], "dev_history": built.get("dev_history"),
        "dev_predictions": dev_predictions(served, runtimes, ctx)
    }
    # this process's seconds, and those past training (a resumed trial's train_seconds count every session's)
    now = time.monotonic()
    trial["seconds"], trial["after_seconds"] = now - started, now - built_at
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
