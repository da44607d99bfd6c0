"""`optimize`: the fastest model within an accuracy budget of the user's teacher, on this machine, at their batch.

The grid trains every recipe and reads `best` at the end; a user with one teacher and one question ("the fastest
model within 1 point of it, at batch 32, here") should pay only for the training that can change the answer.
So the run goes, top to bottom:

1. Checks (before anything loads): options, the teacher (a classifier for other labels is refused; a model
   that is no classifier for these labels yet is fine-tuned first, as the grid's `baseline` row does), the
   candidates (rows of the grid's registry, `recipes.KINDS`, built by its own builders) and the output folder (one
   holding another teacher's or dataset's search is refused; the same search resumes).
2. Shapes: each candidate is built UNTRAINED with the shape its trained model will have (a layer student
   copied from the teacher, a pruned model compacted from random scores by the pruner's own plan, the static
   table built from the teacher), its vocabulary trimmed to its training corpus as its exported folder will be
   (`trim.py`: the ONNX and OpenVINO files of a 250k-row embedding took 30 s each to build, a trimmed one 4-13 s,
   at the same speed), and timed end to end at the batch size in every shippable runtime (an export backend:
   ONNX Runtime fp32/int8, OpenVINO fp32/int8/bf16, numpy for a static table) this machine runs natively, one
   interleaved session per runtime with the teacher in fp32 as the anchor between sessions (calibrated int8 files
   of shapes on a few texts, timed on a few batches: ranking candidates needs less than the winner's final
   figure). A trained model has the same shape, so it has the same latency in each runtime: nothing is trained
   to learn how fast it will be.
3. Search: candidates sorted by their fastest shippable runtime. Within a family of recipes (layer students, pruned
   models, depth+width, static) accuracy rises with size, so the search bisects: train the middle untried
   candidate that can still win, then look only at faster ones if it passed, or only at slower ones of its
   family if it failed. A candidate "can still win" while it is `CLEARLY_FASTER` than the best passing model so
   far (at first the teacher in its fastest shippable runtime within budget), no slower candidate of its family
   has failed (across families the
   assumption failed on MahaNews: reports/optimize/mahanews) and the model it is built from (a kdpNN's kd row)
   has not failed (a kdpNN's trial stops when the kd row it starts from fails). Each trained model is scored on DEV
   in each runtime (int8 can cost accuracy), trimmed as it
   will ship, against the teacher's fp32 dev predictions, with the paired bootstrap (`stats`); the pass rule is
   the point estimate or the interval's lower bound
   (`OptimizeConfig.decide`). The time budget is checked before each trial: a trial that started finishes.
   Only a shippable runtime decides: torch's fp32 is the reference (its dev predictions) and the anchor of every
   speedup, never a verdict, so what passes is what the exported folder runs.
4. The winner: re-timed, trained, in every runtime beside the teacher in one session; the fastest runtime
   whose dev score stays within the budget serves it. If it is then no faster than the teacher in the teacher's
   fastest shippable runtime within budget, the teacher ships instead (a user never gets less than the quantised
   teacher). It is exported in that runtime (vocabulary trimmed to its training corpus) and only then is the TEST
   split scored, once, through the exported folder.
5. Report: `optimize.json`, `report.md` and `optimize.png` (latency against dev difference).

Resumable: each trained candidate's dev predictions are written atomically to `trials/` and reused on
re-run (the pass rule is re-applied, so a new budget or metric costs no training); the shapes' timing is
reused while the batch size and runtimes are the same. Trials are independent (a folder and a record
each), which is what lets them run on several workers later (docs/guide/optimize.md).

This module is the command; its parts live beside it: the candidates and their shapes (`candidates`), the
measurements and the pass rule (`scoring`), the search's pure decisions (`bisect`) and the report (`report`).
Recipes are built with the study's one builder (`recipes.build`) over the run's `context.RecipeContext`, the
grid's own, never through the grid.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console

from ..core.config import DataConfig, OptimizeConfig, TransferConfig
from ..core.errors import MahaError
from ..core.files import SEARCH_RECORD, TRAINING_RECORD, output_lock, write_json
from ..core.hardware import describe, unsupported_reason
from ..core.validate import check_optimize_config, check_output_dir
from ..data.splits import load_splits
from ..models.load import config_labels, load_config
from ..study.context import RowSettings, open_context
from ..study.preset import load_preset
from ..study.recipes import build, parse_row
from ..study.rowspec import transfer_set
from ..study.timing import timing_texts
from .bisect import search, train_chain, verdicts
from .candidates import (
    build_shape,
    folder_of,
    native_runtimes,
    resolve_candidates,
    served_copy,
    source_of,
)
from .report import write_report
from .scoring import (
    REFERENCE,
    SHIPPABLE,
    dev_predictions,
    outcome,
    runtimes_of,
    time_models,
)
from .trials import candidate_row, check_claim, saved_trial, shape_timing, train_trial, trial_path
from .winner import export_winner

_console = Console(stderr=True, markup=False, highlight=False)

# Calibration texts of an untrained shape's int8 files: an int8 graph's latency does not depend on the ranges it
# was calibrated to (same graph, same kernels), and NNCF running 9 shapes of e5 over 512 texts each is a large
# part of the shapes' timing (not measured apart); trained models calibrate on the full sample
# (calibration.CALIBRATION_TEXTS)
SHAPE_CALIBRATION_TEXTS = 32
# Dev texts an untrained shape is timed on (at least two batches): the shapes only rank candidates, and timing
# nine shapes and the teacher over the preset's timing texts (cpu-quick: 128) in six runtimes was minutes of a run;
# the winner's final figure, beside the teacher, uses the preset's measure.texts
SHAPE_TIMING_TEXTS = 64

# ---------------------------------------------------------------- the command


def optimize(teacher: str, data: DataConfig, cfg: OptimizeConfig, out: Path, *, transfer: TransferConfig | None = None,
             clock=time.monotonic, trust_remote_code: bool = False) -> dict:
    """Find, export and report the fastest model within `cfg.budget` dev points of `teacher` (see the module
    docstring); returns the report written to `out/optimize.json`. `trust_remote_code` lets the teacher (and so
    every model built from it) run the Python code its folder or hub repository ships."""
    start = clock()
    check_optimize_config(cfg)
    out = Path(out)
    check_output_dir(out, SEARCH_RECORD, grows=True,
                     inputs=(teacher, data.dataset, data.data_dir, transfer.path if transfer else None))
    with output_lock(out):  # the search resumes in its folder: a second run into it at the same time is refused
        return _search(teacher, data, cfg, out, transfer, clock, trust_remote_code, start)


def _search(teacher: str, data: DataConfig, cfg: OptimizeConfig, out: Path, transfer: TransferConfig | None, clock,
            trust_remote_code: bool, start: float) -> dict:
    """`optimize`'s steps 1-5, once its options and output folder are checked and the folder is locked."""
    grid_cfg, preset = load_preset(cfg.preset)
    transfer_cfg = (replace(grid_cfg.transfer, path=transfer.path, text_col=transfer.text_col, label_col=None)
                    if transfer and transfer.path else TransferConfig())
    # the user's file replaces the preset's, also in a row's transfer_overrides (which keep their caps and windows)
    overrides = {
        row: {k: v
              for k, v in values.items() if k not in ("path", "text_col", "label_col")}
        for row, values in grid_cfg.transfer_overrides.items()
    }
    grid_cfg = replace(grid_cfg, transfer=transfer_cfg, transfer_overrides=overrides,
                       max_train_rows=data.max_train_rows)
    identity = {
        "teacher": str(Path(teacher).resolve()) if Path(teacher).exists() else teacher, "data": asdict(data),
        "transfer": asdict(transfer_cfg), "finetune": asdict(grid_cfg.finetune)
    }
    check_claim(out, identity)
    splits = load_splits(data)
    teacher_config = _check_teacher(teacher, splits.labels, trust_remote_code)
    specs, unfit = resolve_candidates(cfg.candidates, transfer=transfer_cfg.path is not None,
                                      teacher_layers=getattr(teacher_config, "num_hidden_layers", None),
                                      teacher_hidden=getattr(teacher_config, "hidden_size", None), grid_cfg=grid_cfg)
    if unfit:
        _console.print("left out, the teacher cannot give them their shape: " + "; ".join(f"{n} ({why})"
                                                                                          for n, why in unfit.items()))
    write_json(out / SEARCH_RECORD, identity)  # every check passed: the folder is this search's from now on
    ctx = open_context(RowSettings(grid_cfg, teacher, data.dataset), splits, data, out / "models",
                       trust_remote_code=trust_remote_code, cache=out / "cache")
    teacher_dir = ctx.teacher_dir
    if teacher_dir != teacher and not (Path(teacher_dir) / TRAINING_RECORD).is_file():
        _console.print(f"fine-tuning the teacher {teacher} on {splits.name} first (its labels are not the dataset's)")
        build(ctx, parse_row("baseline"), Path(teacher_dir))
    for spec in specs:  # a bad transfer file stops here, before any shape is built
        if spec.tr:
            transfer_set(ctx, spec)
    # torch fp32, the reference, and fp32 ONNX, what ships when nothing faster passes, are always measured
    runtimes = list(
        dict.fromkeys([
            REFERENCE, "onnx", *(r for r in cfg.runtimes or native_runtimes() if unsupported_reason(r) is None)
        ]))
    texts = timing_texts(splits.dev.texts, grid_cfg.measure.texts)  # dev texts: test stays unread until the end

    phases: dict[str, float] = {}  # this invocation's seconds per step, for the report

    def lap(step: str) -> None:
        phases[step] = clock() - start - sum(phases.values())

    lap("teacher and transfer set")

    # 2. shapes, timed untrained beside the teacher
    for spec in specs:
        _console.print(f"shape of {spec.name}: building it untrained")
        build_shape(ctx, spec, out / "shapes" / folder_of(spec))
    shape_ms, reused_seconds = shape_timing(out, specs, teacher_dir, runtimes,
                                            texts[:max(SHAPE_TIMING_TEXTS, 2 * cfg.batch_size)], cfg.batch_size,
                                            replace(ctx, calibration=ctx.calibration[:SHAPE_CALIBRATION_TEXTS]))
    teacher_pred = dev_predictions(teacher_dir, runtimes, ctx)
    teacher_outcome = outcome({"dev_predictions": teacher_pred}, shape_ms["teacher"], teacher_pred[REFERENCE], splits,
                              cfg)
    fastest = {s.name: min(ms for r, ms in shape_ms[s.name].items() if r in SHIPPABLE) for s in specs}
    order = sorted(fastest, key=fastest.get)
    lap("shapes (build, time) and the teacher's dev scores")
    _console.print("candidates by their fastest runtime: " + ", ".join(f"{n} {fastest[n]:.1f} ms" for n in order) +
                   f"; the teacher {teacher_outcome['ms']:.1f} ms ({teacher_outcome['runtime']})")

    # 3. the search: reuse finished trials, then bisect
    by_name = {s.name: s for s in specs}
    tried = {}
    for spec in specs:
        trial = saved_trial(out, ctx, spec)
        if trial is not None:
            served = served_copy(out, ctx, spec, trial["model_dir"])
            if trial.get("served_dir") != served:  # judged before trimming (an older version): judge what ships
                trial |= {"served_dir": served, "dev_predictions": {}}
            missing = [r for r in runtimes_of(served, runtimes) if r not in trial["dev_predictions"]]
            if missing:  # a runtime this run adds (a package installed since): judge the trained model in it too
                trial["dev_predictions"] |= dev_predictions(served, missing, ctx)
                write_json(trial_path(out, spec), trial)
            tried[spec.name] = outcome(trial, shape_ms[spec.name], teacher_pred[REFERENCE], splits, cfg)
            reused_seconds += trial.get("seconds", 0.0)
            ctx.finished[spec.name] = [trial["model_dir"]]  # a kdpNN trial may prune its model
    if tried:
        _console.print(f"reusing finished trials: {', '.join(tried)}")
    trials: dict[str, dict] = {}

    def train_one(name: str) -> dict:
        spec = by_name[name]
        _console.print(f"training {name} ({clock() - start:.0f} s into the run)")
        try:
            trials[name] = train_trial(out, ctx, spec, runtimes)
        except MahaError as exc:
            return {"passed": None, "ms": None, "error": str(exc)}
        o = outcome(trials[name], shape_ms[name], teacher_pred[REFERENCE], splits, cfg)
        _console.print(f"{name}: dev {cfg.metric} {o['dev']['dev']:.2%}, {o['dev']['difference_points']:+.2f} "
                       f"points [{o['dev']['ci_low_points']:+.2f}, {o['dev']['ci_high_points']:+.2f}]: " +
                       (f"passes in {o['runtime']} ({o['ms']:.1f} ms)" if o["passed"] else "fails"))
        return o

    def run_trial(name: str) -> dict[str, dict]:
        source = source_of(by_name[name])
        return train_chain(([source] if source and source not in tried else []) + [name], train_one, out_of_time)

    def out_of_time() -> bool:
        return cfg.time_budget_s is not None and clock() - start >= cfg.time_budget_s

    family = {s.name: s.kind for s in specs}  # recipes.KINDS: kd, prune, kdprune, static
    sources = {s.name: source_of(s) for s in specs}
    timed_out = search(order, fastest, teacher_outcome["ms"], tried, run_trial, out_of_time, family, sources)
    status = verdicts(order, fastest, teacher_outcome["ms"], tried, timed_out, family, sources)

    lap("trials")

    # 4. the winner: re-timed trained, its runtime chosen, exported, scored on test once
    passing = {n: o for n, o in tried.items() if o.get("passed")}
    winner = min(passing, key=lambda n: passing[n]["ms"]) if passing else "teacher"
    winner_trial = saved_trial(out, ctx, by_name[winner]) if winner != "teacher" else None
    winner_dir = winner_trial["model_dir"] if winner_trial else teacher_dir
    timed = {"teacher": (teacher_dir, runtimes)}
    if winner_trial:
        timed[winner] = (winner_trial["served_dir"], runtimes)
    final_ms = time_models(timed, texts, cfg.batch_size, ctx)
    teacher_final = outcome({"dev_predictions": teacher_pred}, final_ms["teacher"], teacher_pred[REFERENCE], splits,
                            cfg)
    chosen = (teacher_final
              if winner == "teacher" else outcome(winner_trial, final_ms[winner], teacher_pred[REFERENCE], splits, cfg))
    overtaken = None
    if winner != "teacher" and (not chosen["passed"]
                                 or (teacher_final["passed"] and chosen["ms"] >= teacher_final["ms"])):
        # timed again beside the teacher, the student is no faster than the teacher in its fastest shippable
        # runtime within budget (or none of its runtimes passes among those timed now): the teacher ships
        overtaken = {"name": winner, "ms": chosen["ms"], "runtime": chosen["runtime"]}
        winner, winner_dir, chosen = "teacher", teacher_dir, teacher_final
    note = None
    if chosen["runtime"] is None:  # the teacher itself passes in no shippable runtime (each moves its dev predictions
        # further from its torch fp32 reference than the budget): it ships as fp32 ONNX, the reference's arithmetic
        chosen = chosen | {"runtime": "onnx", "ms": final_ms["teacher"]["onnx"]}
        note = "no shippable runtime passed on dev; exported as fp32 ONNX"
    exported = export_winner(out, winner_dir, chosen["runtime"], ctx, by_name.get(winner)) | {"note": note}
    lap("the winner (time, export, test)")
    report = {
        "meta": {
            "teacher": teacher, "teacher_dir": teacher_dir, "dataset": splits.summary(), "machine": describe(),
            "config": asdict(cfg), "preset": preset, "runtimes": runtimes, "max_length": ctx.max_length,
            "timing": f"end to end (tokenisation included), batch {cfg.batch_size}, median of "
            f"{grid_cfg.measure.repeats} interleaved repeats, {len(texts)} dev texts", "seconds": clock() - start,
            "reused_seconds": reused_seconds, "timed_out": timed_out, "phases": phases
        }, "teacher": {
            "ms": shape_ms["teacher"], "final_ms": final_ms["teacher"], "dev": teacher_outcome["dev"]["dev"],
            "runtimes": teacher_outcome["runtimes"]
        }, "candidates": [
            candidate_row(name, shape_ms[name], status[name], tried.get(name),
                          trials.get(name) or saved_trial(out, ctx, by_name[name])) for name in order
        ] + [{"name": n, "status": "left out", "why": why} for n, why in unfit.items()], "winner": {
            "name": winner, "model_dir": winner_dir, "runtime": chosen["runtime"], "ms": chosen["ms"],
            "dev": chosen["runtimes"][chosen["runtime"]], "final_ms": final_ms[winner],
            "speedup_vs_teacher_fp32": final_ms["teacher"]["fp32"] / chosen["ms"],
            "speedup_vs_teacher_fastest": teacher_final["ms"] / chosen["ms"],
            "teacher_fastest_runtime": teacher_final["runtime"], "export": exported, "overtaken": overtaken
        }, "not_tried": [n for n in order if status[n]["status"] in ("out of time", "not tried")]
    }
    write_report(out, report)
    return report


def _check_teacher(teacher: str, labels: list[str], trust_remote_code: bool):
    """The teacher's config; a classifier trained for other labels is refused (fine-tuning it again would not be
    the user's teacher), a model with no head for these labels (a bare encoder, default LABEL_N names) passes."""
    config = load_config(teacher, trust_remote_code=trust_remote_code)
    archs = getattr(config, "architectures", None) or []
    have = config_labels(config)
    named = have and have != [f"LABEL_{i}" for i in range(len(have))]
    if named and any(a.endswith("ForSequenceClassification") for a in archs) and have != list(labels):
        raise MahaError(f"{teacher}: the teacher's labels {have} differ from the dataset's {list(labels)}")
    return config
