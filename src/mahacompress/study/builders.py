"""How each kind of row's model is made (the `build` of `recipes.KINDS`' entries): the step's library function
(`finetune`, `distill`, `prune`, `distill_static`, `save_tfidf`) called with the run's `context.RecipeContext`,
the row's `RowSpec` and its training settings, into the row's folder, resuming a checkpoint there; `timed`
records the model folder and its training seconds.

`recipes.build` is the one caller, for the grid and `optimize` alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..core.config import TrainConfig
from ..core.errors import MahaError
from ..train.distill import distill
from ..train.loop import finetune
from ..train.pruning.prune import prune
from ..train.static import distill_static
from .context import RecipeContext
from .rowspec import BUILT_FROM_KD, RowSpec, built_from, train_config, transfer_set
from .tfidf import save_tfidf


def build_teacher(ctx: RecipeContext, spec: RowSpec, out: Path, tcfg: TrainConfig) -> dict:
    if ctx.teacher_dir == ctx.teacher:
        return {"model_dir": ctx.teacher, "train_seconds": _recorded_seconds(Path(ctx.teacher))}
    return timed(out, finetune, ctx.teacher, ctx.splits, tcfg, out, resume=True, data=ctx.data,
                 trust_remote_code=ctx.trust_remote_code)


def build_mp(ctx: RecipeContext, spec: RowSpec, out: Path, tcfg: TrainConfig) -> dict:
    return timed(out, finetune, _base_model(ctx), ctx.splits, replace(tcfg, mixed_precision=ctx.precision), out,
                 resume=True, data=ctx.data, trust_remote_code=ctx.trust_remote_code)


def build_layers(ctx: RecipeContext, spec: RowSpec, out: Path, tcfg: TrainConfig) -> dict:
    """A layer student distilled from the teacher: N of the teacher's layers (`kdN`), or N of the `kd` row's own
    layers (`kdlN`, its seed of the same index when it has one), distilled for the preset's `cut_epochs`: depth
    twice, the `kd` student a teacher assistant whose layers already serve the task."""
    layers = spec.layers(ctx.cfg.student_layers)
    cut_from = _kd_student(ctx, spec, tcfg) if spec.kind in BUILT_FROM_KD else None
    return timed(out, distill, ctx.teacher_dir, f"layers:{layers}" + (":ends" if spec.ends else ""), ctx.splits, tcfg,
                 out, resume=True, transfer=transfer_set(ctx, spec) if spec.tr else None, data=ctx.data,
                 trust_remote_code=ctx.trust_remote_code, cut_from=cut_from)


def build_prune(ctx: RecipeContext, spec: RowSpec, out: Path, tcfg: TrainConfig) -> dict:
    tcfg = replace(tcfg, mixed_precision=ctx.precision) if spec.mp else tcfg
    return timed(out, prune, ctx.teacher_dir, ctx.splits, tcfg, replace(ctx.cfg.prune, sparsity=spec.sparsity), out,
                 resume=True, distill_from=ctx.teacher_dir if spec.kd else None,
                 transfer=transfer_set(ctx, spec) if spec.tr else None, data=ctx.data,
                 trust_remote_code=ctx.trust_remote_code)


def build_kdprune(ctx: RecipeContext, spec: RowSpec, out: Path, tcfg: TrainConfig) -> dict:
    """Depth, then width: the layer student of the `kd` row (its seed of the same index when it has one)
    pruned to NN% of its own encoder weights while distilling from the teacher."""
    student = _kd_student(ctx, spec, tcfg)
    return timed(out, prune, student, ctx.splits, tcfg, replace(ctx.cfg.prune, sparsity=spec.sparsity), out,
                 resume=True, distill_from=ctx.teacher_dir, transfer=transfer_set(ctx, spec) if spec.tr else None,
                 data=ctx.data, trust_remote_code=ctx.trust_remote_code)


def _kd_student(ctx: RecipeContext, spec: RowSpec, tcfg: TrainConfig) -> str:
    """The trained model of the row `spec` is built from (`rowspec.built_from`), of the seed being built."""
    source = built_from(spec)
    students = ctx.finished.get(source)
    if not students:
        raise MahaError(f"row '{spec.name}' is built from row '{source}', which has not finished")
    index = tcfg.seed - train_config(ctx.cfg, spec).seed  # which of this row's seeds is being built
    return students[index] if index < len(students) else students[0]


def build_static(ctx: RecipeContext, spec: RowSpec, out: Path, tcfg: TrainConfig) -> dict:
    return timed(out, distill_static, ctx.teacher_dir, ctx.splits, tcfg, out, dim=ctx.cfg.static_dim, resume=True,
                 transfer=transfer_set(ctx, spec) if spec.tr else None, data=ctx.data,
                 trust_remote_code=ctx.trust_remote_code)


def build_tfidf(ctx: RecipeContext, spec: RowSpec, out: Path, tcfg: TrainConfig | None) -> dict:
    return timed(out, save_tfidf, ctx.splits, out)


def _base_model(ctx: RecipeContext) -> str:
    """What the teacher was fine-tuned from (for the `mp` row, which repeats that fine-tuning in bf16)."""
    if ctx.teacher_dir != ctx.teacher:
        return ctx.teacher
    if ctx.cfg.base_model:
        return ctx.cfg.base_model
    record = Path(ctx.teacher_dir) / "training.json"
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))["base_model"]
    raise MahaError(f"{ctx.teacher_dir}: no training.json naming the model it was fine-tuned from and no base_model "
                    "in the preset, so `mp` cannot repeat its fine-tuning in mixed precision")


def timed(out: Path, fn: Callable, *args, **kwargs) -> dict:
    """Run a builder; the model folder and its training seconds (as the trainer recorded them, else wall time)."""
    t0 = time.time()
    info = fn(*args, **kwargs)
    info = info if isinstance(info, dict) else {}
    seconds = info.get("result", {}).get("seconds")
    transfer = {"transfer": info["transfer"]} if info.get("transfer") else {}
    augment = {"augment": info["augment"]} if info.get("augment") else {}  # variants asked, kept, dropped; seconds
    history = info.get("result", {}).get("dev_history")  # (step, dev macro-F1): did training converge?
    return {
        "model_dir": str(out), "train_seconds": seconds if seconds is not None else time.time() - t0, **transfer,
        **augment, **({"dev_history": history} if history else {})
    }


def _recorded_seconds(model_dir: Path) -> float | None:
    record = model_dir / "training.json"
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8")).get("result", {}).get("seconds")
    return None
