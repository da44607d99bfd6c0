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
   to learn how fast it will be. A short probe session first times the teacher and the smallest transformer
   shape in every runtime; a runtime slower than the fastest by `trials.BEATEN` on both ends of the size range is
   dropped for the run (neither built for the other shapes nor judged), but torch fp32 and fp32 ONNX.
3. Search: candidates sorted by their fastest shippable runtime. Within a family of recipes (layer students, pruned
   models, depth+width, teacher-assistant students, static) accuracy rises with size, so the search bisects: train the
   middle untried candidate that can still win (a model other open candidates are built from, the kd row of a kdpNN or a
   kdlN, first: `bisect.next_candidate`), then look only at faster ones if it passed, or only at slower ones of its
   family if it failed. A candidate "can still win" while it is `CLEARLY_FASTER` than the best passing model so far (at
   first the teacher in its fastest shippable runtime within budget) and no slower candidate of its family has failed
   (across families the assumption failed on MahaNews: reports/optimize/mahanews). One whose source model (the kd row of
   a kdpNN or a kdlN) failed comes last: tried once no other candidate is open (a trial stops when the kd row it starts
   from fails). Each trained model is scored on DEV in each runtime (int8 can cost accuracy), trimmed as it will ship,
   against the teacher's fp32 dev predictions, with the paired bootstrap (`stats`); the pass rule is the point estimate,
   the chance of a false pass, or the interval's lower bound (`OptimizeConfig.decide`). A trial starts only when the
   time budget left covers its estimate (`budget.trial_estimate`, from the trials finished so far); one that cannot is
   reported as skipped for budget. Only a shippable runtime decides: torch's fp32 is the reference (its dev predictions)
   and the anchor of every speedup, never a verdict, so what passes is what the exported folder runs.
4. The winner: re-timed, trained, in every runtime beside the teacher in one session; the fastest runtime
   whose dev score stays within the budget serves it. If it is then no faster than the teacher in the teacher's
   fastest shippable runtime within budget, the teacher ships instead (a user never gets less than the quantised
   teacher). It is exported in that runtime (vocabulary trimmed to its training corpus) and only then is the TEST
   split scored, once, through the exported folder.
5. Report: `optimize.json`, `report.md` and `optimize.png` (latency against dev difference).

The time budget bounds the whole run, the teacher's fine-tune and the shapes included: at its deadline, as at
SIGINT or SIGTERM, the run stops in whatever phase it is in (`budget`), writes the report of what it measured so
far (with the Pareto front of accuracy against speed) and says in one line how to resume.

Resumable: each trained candidate's dev predictions are written atomically to `trials/` and reused on
re-run (the pass rule is re-applied, so a new budget or metric costs no training); the shapes' timing is
reused while the batch size and runtimes are the same. Trials are independent (a folder and a record
each), which is what lets them run on several workers (`workers`, `--workers N`: docs/guide/optimize.md).

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

from ..core.config import DataConfig, GridConfig, OptimizeConfig, TrainConfig, TransferConfig
from ..core.errors import MahaError
from ..core.files import SEARCH_RECORD, TRAINING_RECORD, output_lock, write_json
from ..core.hardware import describe, unsupported_reason
from ..core.validate import check_optimize_config, check_output_dir
from ..data.splits import Splits, load_splits
from ..models.load import config_labels, load_config
from ..study.context import RowSettings, open_context
from ..study.preset import load_preset
from ..study.recipes import build, parse_row
from ..study.rowspec import RowSpec, built_from, train_config, train_section, transfer_set
from ..study.timing import timing_texts
from ..train.checkpoints import work_dir
from ..train.loop import finetune_seconds
from .bisect import search, train_chain, verdicts
from .budget import Schedule, Stopped, TrialTime, Watch, trial_estimate
from .candidates import (
    build_shape,
    folder_of,
    native_runtimes,
    resolve_candidates,
    served_copy,
)
from .certainty import search_rates, verdict_certainty
from .report import NOT_TRIED, write_report
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
from .workers import Search, TrialJob, check_workers, search_on_workers

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
# Repeats of the shapes' session (at most; the preset's measure.repeats if fewer): a candidate must be
# `bisect.CLEARLY_FASTER` (1.2x) than the best passing model to be tried, a margin the median of three repeats
# resolves; the winner's final figure, beside the teacher, uses the preset's repeats
SHAPE_REPEATS = 3

# ---------------------------------------------------------------- the command


def optimize(teacher: str, data: DataConfig, cfg: OptimizeConfig, out: Path, *, transfer: TransferConfig | None = None,
             clock=time.monotonic, trust_remote_code: bool = False, workers: int | None = None,
             ray_address: str | None = None) -> dict:
    """Find, export and report the fastest model within `cfg.budget` dev points of `teacher` (see the module
    docstring); returns the report written to `out/optimize.json`. `trust_remote_code` lets the teacher (and so
    every model built from it) run the Python code its folder or hub repository ships.

    Stopped by SIGINT, SIGTERM or its time budget in any phase (`budget.Watch`), it writes the report of what it
    measured so far (atomically, as every report) and raises `budget.Stopped` with that report, the phase and the
    exit status: the same call again resumes, reusing every finished step."""
    check_optimize_config(cfg)
    check_workers(workers, ray_address)  # trials on `workers` Ray tasks (search/workers.py); None: in process
    out = Path(out)
    check_output_dir(out, SEARCH_RECORD, grows=True,
                     inputs=(teacher, data.dataset, data.data_dir, transfer.path if transfer else None))
    # the search resumes in its folder: a second run into it at the same time is refused
    with output_lock(out), Watch(cfg.time_budget_s, clock) as watch:
        state: dict = {"teacher": teacher, "cfg": cfg, "tried": {}, "trials": {}, "skipped": {}}
        try:
            return _search(teacher, data, cfg, out, transfer, trust_remote_code, watch, state, workers, ray_address)
        except Stopped as stop:
            watch.disarm()  # a second Ctrl-C while the report is written is ignored: the report comes first
            watch.lap()
            stop.phase = watch.phase
            stop.report = _report(out, state, watch, stop)
            write_report(out, stop.report)
            raise


def _search(teacher: str, data: DataConfig, cfg: OptimizeConfig, out: Path, transfer: TransferConfig | None,
            trust_remote_code: bool, watch: Watch, st: dict, workers: int | None = None,
            ray_address: str | None = None) -> dict:
    """`optimize`'s steps 1-5, once its options and output folder are checked and the folder is locked; what it
    has measured goes into `st` as it goes, for the report of a run stopped before its end."""
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
    st["preset"] = preset
    check_claim(out, identity)
    splits = st["splits"] = load_splits(data)
    teacher_config = _check_teacher(teacher, splits.labels, trust_remote_code)
    specs, unfit = resolve_candidates(cfg.candidates, transfer=transfer_cfg.path is not None,
                                      teacher_layers=getattr(teacher_config, "num_hidden_layers", None),
                                      teacher_hidden=getattr(teacher_config, "hidden_size", None), grid_cfg=grid_cfg)
    st.update(unfit=unfit, names=[s.name for s in specs])
    if unfit:
        _console.print("left out, the teacher cannot give them their shape: " + "; ".join(f"{n} ({why})"
                                                                                          for n, why in unfit.items()))
    if config_labels(teacher_config) != splits.labels:
        check_finetune_fits(teacher, splits, train_config(grid_cfg, parse_row("baseline")), out / "models" / "baseline",
                            watch, trust_remote_code)
    write_json(out / SEARCH_RECORD, identity)  # every check passed: the folder is this search's from now on
    ctx = open_context(RowSettings(grid_cfg, teacher, data.dataset), splits, data, out / "models",
                       trust_remote_code=trust_remote_code, cache=out / "cache")
    teacher_dir = ctx.teacher_dir
    st.update(ctx=ctx, teacher_dir=teacher_dir, max_length=ctx.max_length)
    if teacher_dir != teacher and not (Path(teacher_dir) / TRAINING_RECORD).is_file():
        _console.print(f"fine-tuning the teacher {teacher} on {splits.name} first (its labels are not the dataset's)")
        build(ctx, parse_row("baseline"), Path(teacher_dir))
    for spec in specs:  # a bad transfer file stops here, before any shape is built
        if spec.tr:
            transfer_set(ctx, spec)
    # torch fp32, the reference, and fp32 ONNX, what ships when nothing faster passes, are always measured
    runtimes = st["runtimes"] = list(
        dict.fromkeys([
            REFERENCE, "onnx", *(r for r in cfg.runtimes or native_runtimes() if unsupported_reason(r) is None)
        ]))
    texts = timing_texts(splits.dev.texts, grid_cfg.measure.texts)  # dev texts: test stays unread until the end
    st["timing"] = (f"end to end (tokenisation included), batch {cfg.batch_size}, median of "
                    f"{grid_cfg.measure.repeats} interleaved repeats, {len(texts)} dev texts")

    # 2. shapes, timed untrained beside the teacher
    watch.enter("shapes")
    for spec in specs:
        _console.print(f"shape of {spec.name}: building it untrained")
        build_shape(ctx, spec, out / "shapes" / folder_of(spec))
    shapes = shape_timing(out, specs, teacher_dir, runtimes,
                          texts[:max(SHAPE_TIMING_TEXTS, 2 * cfg.batch_size)], cfg.batch_size,
                          replace(ctx, calibration=ctx.calibration[:SHAPE_CALIBRATION_TEXTS]), keep=(REFERENCE, "onnx"),
                          repeats=min(ctx.measure.repeats, SHAPE_REPEATS))
    shape_ms, st["reused_seconds"], st["dropped_runtimes"] = shapes.ms, shapes.seconds, shapes.dropped
    runtimes = st["runtimes"] = shapes.runtimes  # those beaten everywhere are neither built nor judged again
    teacher_pred = dev_predictions(teacher_dir, runtimes, ctx)
    teacher_outcome = outcome({"dev_predictions": teacher_pred}, shape_ms["teacher"], teacher_pred[REFERENCE], splits,
                              cfg)
    fastest = {s.name: min(ms for r, ms in shape_ms[s.name].items() if r in SHIPPABLE) for s in specs}
    order = sorted(fastest, key=fastest.get)
    family = {s.name: s.kind for s in specs}  # recipes.KINDS: kd, kdcut, prune, kdprune, static
    sources = {s.name: built_from(s) for s in specs}  # the kd row a kdpNN prunes or a kdlN cuts
    by_name = {s.name: s for s in specs}
    # how each candidate trains and the latency of the model its steps run, for the budget's estimates
    schedules = {s.name: _schedule(grid_cfg, s) for s in specs}
    train_ms = {s.name: _train_ms(s, shape_ms) for s in specs}
    st.update(shape_ms=shape_ms, teacher_outcome=teacher_outcome, order=order, fastest=fastest, family=family,
              sources=sources, by_name=by_name, teacher_pred=teacher_pred)
    _console.print("candidates by their fastest runtime: " + ", ".join(f"{n} {fastest[n]:.1f} ms" for n in order) +
                   f"; the teacher {teacher_outcome['ms']:.1f} ms ({teacher_outcome['runtime']})")

    # 3. the search: reuse finished trials, then bisect
    watch.enter("trials")
    tried, trials, skipped = st["tried"], st["trials"], st["skipped"]
    finished: dict[str, TrialTime] = {}  # finished trials' seconds: what the budget's estimates are made from
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
            st["reused_seconds"] += trial.get("seconds", 0.0)
            if trial.get("seconds"):
                finished[spec.name] = _trial_time(trial)
            ctx.finished[spec.name] = [trial["model_dir"]]  # a kdpNN trial may prune its model
    if tried:
        _console.print(f"reusing finished trials: {', '.join(tried)}")

    def train_one(name: str) -> dict:
        if watch.spent():
            watch.stop("budget")
        estimate = trial_estimate(name, family, train_ms, finished, schedules)
        if not watch.fits(estimate):  # it could not finish in the budget: the time left may still fit a smaller one
            skipped[name] = {"estimate_s": estimate, "left_s": max(watch.remaining(), 0.0)}
            _console.print(f"{name}: not started, its trial is estimated at {estimate / 60:.1f} min and "
                           f"{skipped[name]['left_s'] / 60:.1f} min of the time budget are left")
            return {"passed": None, "ms": None, "skipped": True}
        skipped.pop(name, None)
        watch.guard()  # the last trial's dev scoring may have left a native alternate signal stack registered
        st["current"] = name
        _console.print(f"training {name} ({watch.elapsed():.0f} s into the run)")
        try:
            trials[name] = train_trial(out, ctx, by_name[name], runtimes)
        except MahaError as exc:
            st["current"] = None
            return {"passed": None, "ms": None, "error": str(exc)}
        st["current"] = None
        finished[name] = _trial_time(trials[name])
        o = tried[name] = outcome(trials[name], shape_ms[name], teacher_pred[REFERENCE], splits, cfg)
        _console.print(f"{name}: dev {cfg.metric} {o['dev']['dev']:.2%}, {o['dev']['difference_points']:+.2f} "
                       f"points [{o['dev']['ci_low_points']:+.2f}, {o['dev']['ci_high_points']:+.2f}]: " +
                       (f"passes in {o['runtime']} ({o['ms']:.1f} ms)" if o["passed"] else "fails"))
        return o

    def run_trial(name: str) -> dict[str, dict]:
        source = sources[name]
        untrained = source and (source not in tried or tried[source].get("skipped"))
        return train_chain(([source] if untrained else []) + [name], train_one, watch.spent)

    if workers:  # the same search, its trials run ahead on Ray tasks: the same verdicts (search/workers.py)
        st["timed_out"] = search_on_workers(
            workers, ray_address, Search(order, fastest, teacher_outcome["ms"], family, sources), tried, watch.spent,
            TrialJob(out, ctx, by_name, runtimes, shape_ms, teacher_pred[REFERENCE], cfg, ""))
    else:
        st["timed_out"] = search(order, fastest, teacher_outcome["ms"], tried, run_trial, watch.spent, family, sources)

    # 4. the winner: re-timed trained, its runtime chosen, exported, scored on test once
    watch.enter("winner")
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
    if winner != "teacher" and (not chosen["passed"] or
                                (teacher_final["passed"] and chosen["ms"] >= teacher_final["ms"])):
        # timed again beside the teacher, the student is no faster than the teacher in its fastest shippable
        # runtime within budget (or none of its runtimes passes among those timed now): the teacher ships
        overtaken = {"name": winner, "ms": chosen["ms"], "runtime": chosen["runtime"]}
        winner, winner_dir, chosen = "teacher", teacher_dir, teacher_final
    note = None
    if chosen["runtime"] is None:  # the teacher itself passes in no shippable runtime (each moves its dev predictions
        # further from its torch fp32 reference than the budget): it ships as fp32 ONNX, the reference's arithmetic
        chosen = chosen | {"runtime": "onnx", "ms": final_ms["teacher"]["onnx"]}
        note = "no shippable runtime passed on dev; exported as fp32 ONNX"
    exported = export_winner(out, winner_dir, chosen["runtime"], ctx, by_name.get(winner), cfg.metric) | {"note": note}
    watch.lap()
    report = _report(out, st, watch, None)
    report["teacher"]["final_ms"] = final_ms["teacher"]
    report["winner"] = {
        "name": winner, "model_dir": winner_dir, "runtime": chosen["runtime"], "ms": chosen["ms"],
        "dev": chosen["runtimes"][chosen["runtime"]], "final_ms": final_ms[winner],
        "speedup_vs_teacher_fp32": final_ms["teacher"]["fp32"] / chosen["ms"],
        "speedup_vs_teacher_fastest": teacher_final["ms"] / chosen["ms"],
        "teacher_fastest_runtime": teacher_final["runtime"], "export": exported, "overtaken": overtaken
    }
    # how sure the verdicts are: the winner's false pass and the faster models' false fails, from the dev resamples
    models = {"teacher": _dev_model(teacher_pred, teacher_outcome, shape_ms["teacher"])} | {
        n: _dev_model(trial["dev_predictions"], o, shape_ms[n])
        for n, o in tried.items() if "runtimes" in o and (trial := _trial(out, st, n))
    }
    report["certainty"] = search_rates(winner, chosen["runtime"], models, splits.dev.labels, teacher_pred[REFERENCE],
                                       cfg.budget, cfg.metric, len(splits.labels))
    write_report(out, report)
    return report


def _schedule(grid_cfg: GridConfig, spec: RowSpec) -> Schedule:
    """A candidate's training schedule for the budget's estimates: its section, epochs, and whether its steps cost
    what its shape's latency says (not while pruning, at the dense width, nor with the teacher live for an
    intermediate term, nor with elastic depth's sub-networks run beside the student)."""
    section, tcfg = train_section(spec), train_config(grid_cfg, spec)
    return Schedule(section, tcfg.epochs, section != "prune_train" and not tcfg.intermediate
                    and tcfg.elastic_depths is None)


def _train_ms(spec: RowSpec, shape_ms: dict[str, dict[str, float]]) -> float:
    """The latency of the model `spec`'s training steps run: the teacher's for a pruned teacher and the kd shape's
    for a kdpNN (masks train at the dense width), else its own shape's; in torch fp32, the runtime training runs in,
    where it was timed (a static table's only runtime is numpy)."""
    model = "teacher" if spec.kind == "prune" else built_from(spec) if spec.kind == "kdprune" else spec.name
    ms = shape_ms.get(model) or shape_ms[spec.name]
    return ms.get(REFERENCE) or min(v for r, v in ms.items() if r in SHIPPABLE)


def _trial_time(trial: dict) -> TrialTime:
    """A trial record's seconds for the budget's estimates (records written before `after_seconds` have none)."""
    return TrialTime(trial["seconds"], trial.get("train_seconds") or 0.0, trial.get("after_seconds"))


def _statuses(st: dict) -> tuple[dict[str, dict], dict[str, dict]]:
    """The trained candidates' outcomes and every candidate's status (`bisect.verdicts`), with the ones the time
    budget skipped and the one a stop cut short in training named as such."""
    tried = {n: o for n, o in st["tried"].items() if not o.get("skipped")}
    status = verdicts(st["order"], st["fastest"], st["teacher_outcome"]["ms"], tried,
                      bool(st.get("timed_out") or st["skipped"]), st["family"], st["sources"])
    for name, skip in st["skipped"].items():
        if status[name]["status"] in ("out of time", "not tried"):
            status[name] = {
                "status": "skipped for budget", "why": f"its trial was estimated at {skip['estimate_s'] / 60:.1f} "
                f"min with {skip['left_s'] / 60:.1f} min of the time budget left"
            }
    current = st.get("current")
    if current and current not in tried:
        status[current] = {"status": "stopped in training", "why": "a re-run resumes it from its checkpoints"}
    return tried, status


def _report(out: Path, st: dict, watch: Watch, stop: Stopped | None) -> dict:
    """The report of what the run measured: the whole run's (the caller adds the winner), or, for a run `stop`ped
    before its end, what it measured so far (`winner` None)."""
    cfg, unfit = st["cfg"], st.get("unfit", {})
    if "order" in st:
        tried, status = _statuses(st)
        trials = {name: _trial(out, st, name) for name in st["order"]}
        rows = [
            candidate_row(name, st["shape_ms"][name], status[name], tried.get(name), trials[name])
            for name in st["order"]
        ]
        y, reference = st["splits"].dev.labels, st["teacher_pred"][REFERENCE]
        for row in rows:  # the chance each trained candidate's verdict is wrong, in the runtime it rests on
            trial = trials[row["name"]]
            if row.get("runtimes") and trial:
                row["certainty"] = verdict_certainty(trial["dev_predictions"], row["runtimes"], row["passing_runtime"],
                                                     row["ms"], y, reference, cfg.budget, cfg.metric,
                                                     len(st["splits"].labels))
    else:  # stopped before the shapes were timed
        rows = [{"name": n, "status": "not reached"} for n in st.get("names", [])]
    teacher = st.get("teacher_outcome")
    timed_out = bool(st.get("timed_out") or st["skipped"]) or (stop is not None and stop.reason == "budget")
    return {
        "meta": {
            "teacher": st["teacher"], "teacher_dir": st.get("teacher_dir"),
            "dataset": st["splits"].summary() if "splits" in st else None, "machine": describe(), "config": asdict(cfg),
            "preset": st.get("preset"), "runtimes": st.get("runtimes", []), "dropped_runtimes": st.get(
                "dropped_runtimes", {}), "max_length": st.get("max_length"), "timing": st.get("timing", ""),
            "seconds": watch.elapsed(), "reused_seconds": st.get("reused_seconds", 0.0), "timed_out": timed_out,
            "phases": dict(watch.phases), "stop": stop.reason if stop else "budget" if timed_out else "finished",
            "stopped_in": stop.phase if stop else None, "stopped_by": stop.cause if stop else None
        }, "teacher": {"ms": st["shape_ms"]["teacher"], "dev": teacher["dev"]["dev"], "runtimes": teacher["runtimes"]}
        if teacher else None, "candidates": rows + [{"name": n, "status": "left out", "why": why}
                                                    for n, why in unfit.items()], "winner": None,
        "not_tried": [r["name"] for r in rows if r["status"] in NOT_TRIED], "certainty": None
    }


def _trial(out: Path, st: dict, name: str) -> dict | None:
    """A candidate's trial record: this invocation's, else the one a re-run reused from `trials/` (None untrained)."""
    return st["trials"].get(name) or saved_trial(out, st["ctx"], st["by_name"][name])


def _dev_model(predictions: dict[str, list[int]], judged: dict, ms: dict[str, float]) -> dict:
    """What `certainty.search_rates` reads of one model: its dev predictions, verdicts and shape latency per runtime."""
    return {"predictions": predictions, "verdicts": judged["runtimes"], "ms": ms}


def check_finetune_fits(teacher: str, splits: Splits, cfg: TrainConfig, folder: Path, watch: Watch,
                        trust_remote_code: bool) -> None:
    """A time budget too small for the teacher's fine-tune alone is refused before anything trains, with how long
    that fine-tune needs here (`loop.finetune_seconds`: one step measured on texts of median length, times the
    fewest steps its schedule can stop after), against the time left once it is measured. Nothing is measured
    without a budget, and a fine-tune already begun (its work folder) or finished is not checked: a resume
    continues it."""
    if watch.remaining() is None or (folder / TRAINING_RECORD).is_file() or work_dir(folder).exists():
        return
    need, steps, per_step = finetune_seconds(teacher, splits, cfg, trust_remote_code=trust_remote_code)
    if need > watch.remaining():
        raise MahaError(f"--time-budget {watch.budget_s / 60:.1f} min: too small for the teacher's fine-tune alone, "
                        f"which needs about {need / 60:.1f} min here or more ({steps} steps of {per_step:.2f} s, one "
                        f"measured on a batch of {min(cfg.batch_size, len(splits.train))} texts of median length; "
                        "evaluation comes on top); "
                        "give a larger --time-budget, or a teacher already fine-tuned on these labels")


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
