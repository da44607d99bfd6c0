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
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from ..infer import CALIBRATED_BACKENDS, load_backend
from ..models.folder import checkpoint_digest
from ..infer.calibration import calibration_sample
from ..infer.numpy_engine import is_static
from ..core.config import OPTIMIZE_RUNTIMES, DataConfig, GridConfig, MeasureConfig, OptimizeConfig, TransferConfig
from ..data.datasets import Splits, load_splits
from ..train.distill import layer_student
from ..core.errors import MahaError
from ..infer.evaluate import classification_metrics, model_labels
from ..core.files import SEARCH_RECORD, TRAINING_RECORD, TRIM_RECORD, atomic_path, output_lock, staged_dir, write_json, write_text
from ..study.grid import Grid, load_preset, timing_texts
from ..core.hardware import describe, unsupported_reason
from ..measure.latency import latency
from ..models.load import config_labels, load_classifier, load_config, load_tokenizer, save_classifier
from ..train.pruning.compact import compact, plan, save_pruned
from ..train.pruning.masks import MaskedModel, make_binarizer
from ..train.pruning.structure import structure_of
from ..study.recipes import KINDS, RowSpec, kdprune_source, parse_row
from ..train.static import build_table
from ..models.trim import corpus_texts, trim
from ..core.metrics import correctness, paired_difference, paired_macro_f1_difference
from ..core.validate import check_optimize_config, check_output_dir

_console = Console(stderr=True, markup=False, highlight=False)
# The runtimes a verdict may rest on: each is an export backend, so the winner ships in the very runtime it was
# timed and judged in. torch fp32 is measured too, never shipped: the teacher's fp32 dev predictions are the
# reference every model is judged against, and its latency the anchor every speedup is against
SHIPPABLE = frozenset(OPTIMIZE_RUNTIMES) | {"static"}
REFERENCE = "fp32"
# How much faster than the best passing model (at first the teacher in its fastest shippable runtime) a candidate's
# untrained shape must be to be worth a trial: a pruned shape's latency is an estimate (random_compaction), timing
# sessions differ by a few percent, and a trial costs minutes to tens of minutes of training
CLEARLY_FASTER = 1.2
_TOLERANCE = 1e-9  # float noise: 0.90 - 0.91 must pass a 1-point budget
# Calibration texts of an untrained shape's int8 files: an int8 graph's latency does not depend on the ranges it
# was calibrated to (same graph, same kernels), and NNCF running 9 shapes of e5 over 512 texts each is a large
# part of the shapes' timing (not measured apart); trained models calibrate on the full sample
# (calibration.CALIBRATION_TEXTS)
SHAPE_CALIBRATION_TEXTS = 32
# Dev texts an untrained shape is timed on (at least two batches): the shapes only rank candidates, and timing
# nine shapes and the teacher over the preset's timing texts (cpu-quick: 128) in six runtimes was minutes of a run;
# the winner's final figure, beside the teacher, uses the preset's measure.texts
SHAPE_TIMING_TEXTS = 64


# ---------------------------------------------------------------- the candidates

def native_runtimes() -> list[str]:
    """The shippable transformer runtimes this machine runs at full speed."""
    return [r for r in OPTIMIZE_RUNTIMES if unsupported_reason(r) is None]


def resolve_candidates(names: list[str], *, transfer: bool, teacher_layers: int | None,
                       teacher_hidden: int | None, grid_cfg: GridConfig) -> tuple[list[RowSpec], dict[str, str]]:
    """The candidates' row specs (with `+tr` on every row that distils when a transfer set is given: it adds
    training text, not latency), each kdpNN's `kd` row added, and the rows left out with why (a layer
    student deeper than the teacher)."""
    specs: dict[str, RowSpec] = {}
    left_out: dict[str, str] = {}
    for name in names:
        spec = parse_row(name)
        if spec.served_from_another or spec.mp or not (KINDS[spec.kind].compressed or spec.kind == "static"):
            raise MahaError(f"candidate '{name}': expected a compressed row of the grid (kd[N], pNN[+kd], kdpNN, "
                            "static), trained and run in fp32; the runtime is chosen by measurement")
        if spec.tr and not transfer:
            raise MahaError(f"candidate '{name}' uses the transfer set: give --transfer-set")
        if transfer and not spec.tr and (spec.kd or KINDS[spec.kind].distils):
            spec = parse_row(f"{spec.name}+tr")
        layers = spec.number if spec.kind == "kd" and spec.number else grid_cfg.student_layers \
            if spec.kind in ("kd", "kdprune") else None
        if layers is not None and teacher_layers is not None and layers > teacher_layers:
            left_out[spec.name] = f"a {layers}-layer student of a {teacher_layers}-layer teacher"
            continue
        if spec.kind == "static" and teacher_hidden is not None and grid_cfg.static_dim > teacher_hidden:
            left_out[spec.name] = f"static_dim {grid_cfg.static_dim} exceeds the teacher's hidden size {teacher_hidden}"
            continue
        source = _source(spec)
        if source and source not in specs:
            specs[source] = parse_row(source)
        specs.setdefault(spec.name, spec)
    return list(specs.values()), left_out


def training_texts(grid: Grid, spec: RowSpec | None) -> list[str]:
    """What `spec` trains on (the training split, and its transfer set for a `+tr` row): the corpus its
    vocabulary is trimmed to, as `export` trims it (`trim.corpus_texts`, which export rebuilds from the model's
    record; the teacher, `spec` None: the training split)."""
    return corpus_texts(grid.splits, grid.transfer_set(spec) if spec and spec.tr else None)


def corpus_names(spec: RowSpec | None) -> list[str]:
    return ["the training split" + (" and transfer set" if spec and spec.tr else "")]


def build_shape(grid: Grid, spec: RowSpec, folder: Path) -> None:
    """Save `spec`'s model untrained, with the shape training gives it and the vocabulary its export keeps
    (reused while its settings hold)."""
    settings = grid.settings_of(spec)
    record = folder / TRAINING_RECORD
    if record.is_file() and json.loads(record.read_text(encoding="utf-8")).get("settings") == settings:
        return
    info = {"untrained_shape_of": spec.name, "settings": settings}
    corpus = training_texts(grid, spec)
    if spec.kind == "static":  # the table before its training: the teacher's trimmed vocabulary, PCA, SIF
        model, tokenizer, _ = build_table(grid.teacher_dir, corpus, grid.cfg.static_dim,
                                          trust_remote_code=grid.trust_remote_code)
        save_classifier(model, tokenizer, folder, info)
        return
    model = load_classifier(grid.teacher_dir, trust_remote_code=grid.trust_remote_code)
    tokenizer = load_tokenizer(grid.teacher_dir, trust_remote_code=grid.trust_remote_code)
    if spec.kind in ("kd", "kdprune"):
        layers = spec.number if spec.kind == "kd" and spec.number else grid.cfg.student_layers
        model = layer_student(model, layers, "ends" if spec.ends else "even")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{folder.name}.", dir=folder.parent) as work:
        untrimmed = Path(work) / "untrimmed"
        if spec.kind == "kd":
            save_classifier(model, tokenizer, untrimmed, info)
        else:
            pruned = random_compaction(model, spec.sparsity, grid.cfg.prune.block_size)
            with staged_dir(untrimmed, TRAINING_RECORD) as tmp:
                save_pruned(pruned, tmp, tokenizer)
                write_json(tmp / TRAINING_RECORD, info)
        trim(untrimmed, corpus, folder, corpus_names=corpus_names(spec),  # copies training.json, the record above
             trust_remote_code=grid.trust_remote_code)


def served_copy(out: Path, grid: Grid, spec: RowSpec, model_dir: str) -> str:
    """The trained model as its exported folder will hold it: its vocabulary trimmed to its training corpus
    (a static student's table is trimmed already). Its dev scores and the winner's final timing are this
    copy's, so what is judged is what ships; built once per trained model (keyed by its checkpoint)."""
    if is_static(model_dir):
        return model_dir
    folder = out / "served" / _folder(spec)
    record = folder / TRIM_RECORD
    if not (record.is_file() and json.loads(record.read_text(encoding="utf-8")).get("source_checkpoint")
            == checkpoint_digest(model_dir)):
        trim(Path(model_dir), training_texts(grid, spec), folder, corpus_names=corpus_names(spec),
             trust_remote_code=grid.trust_remote_code)
    return str(folder)


def random_compaction(model: torch.nn.Module, sparsity: float, block_size: int, seed: int = 0) -> torch.nn.Module:
    """`model` compacted to `sparsity` by the pruner's own plan (`compact.plan`) over random scores. The plan fixes
    how many encoder weights go, not how a trained run splits them between heads and neurons or across layers
    (random scores spread them evenly; training may empty whole heads or layers), so a pruned shape's latency is
    an estimate of the trained model's, unlike a layer student's, which is exact."""
    structure = structure_of(model)
    masked = MaskedModel(model, structure, block_size, make_binarizer("topk", sparsity, 0.0))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for scores in masked.scores():
            scores.copy_(torch.rand(scores.shape, generator=generator))
    chosen = plan(masked, sparsity)
    masked.freeze(chosen.removed_heads, chosen.removed_neurons)
    return compact(masked.unwrap(), structure)


# ---------------------------------------------------------------- scoring and timing

def runtimes_of(model_dir: str | Path, runtimes: list[str]) -> list[str]:
    """The runtimes a model runs with: its numpy table for a static student, else the transformer runtimes."""
    return ["static"] if is_static(model_dir) else list(runtimes)


def load(model_dir: str | Path, runtime: str, ctx: dict):
    """A backend for `model_dir`, its ONNX/OpenVINO files cached under the run's folder (never beside the
    user's teacher), calibrated ones on a seeded sample of training texts."""
    return load_backend(str(model_dir), runtime, max_length=ctx["max_length"], threads=ctx["measure"].threads,
                        cache_dir=ctx["cache"], calibration_texts=ctx["calibration"] if runtime in CALIBRATED_BACKENDS
                        else None, trust_remote_code=ctx["trust_remote_code"])


def dev_predictions(model_dir: str | Path, runtimes: list[str], splits: Splits, ctx: dict) -> dict[str, list[int]]:
    """Predicted dataset label ids on the DEV split in each runtime (the test split is never read here)."""
    labels = model_labels(str(model_dir), trust_remote_code=ctx["trust_remote_code"])
    to_dataset = np.array([splits.labels.index(lab) if lab in splits.labels else -1 for lab in labels])
    out = {}
    for runtime in runtimes_of(model_dir, runtimes):
        logits = load(model_dir, runtime, ctx).logits(splits.dev.texts, batch_size=64)
        out[runtime] = to_dataset[logits.argmax(-1)].tolist()
    return out


def judge(y: list[int], predicted: list[int], reference: list[int], cfg: OptimizeConfig, num_labels: int) -> dict:
    """Dev score, its paired difference to the teacher (points, bootstrap interval) and the pass rule's verdict."""
    key = "accuracy" if cfg.metric == "accuracy" else "macro_f1"
    labels = [str(i) for i in range(num_labels)]
    score = classification_metrics(y, predicted, labels)[key]
    if cfg.metric == "accuracy":
        d = paired_difference(correctness(y, [predicted]), correctness(y, [reference]))
    else:
        d = paired_macro_f1_difference(y, predicted, reference, num_labels)
    decisive = d["difference"] if cfg.decide == "point" else d["ci_low"]
    return {"dev": score, "difference_points": 100 * d["difference"], "ci_low_points": 100 * d["ci_low"],
            "ci_high_points": 100 * d["ci_high"], "passed": decisive >= -cfg.budget / 100 - _TOLERANCE}


def time_models(models: dict[str, tuple[str, list[str]]], texts: list[str], batch_size: int, ctx: dict) -> dict:
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
    m: MeasureConfig = ctx["measure"]
    out: dict[str, dict[str, float]] = {}
    reference: float | None = None
    for runtime, members in groups.items():
        backends = {anchor: load(first_folder, REFERENCE, ctx)}
        backends |= {f"{name} | {runtime}": load(folder, runtime, ctx) for name, folder in members}
        timing = latency(backends, texts, batch_sizes=(batch_size,), repeats=m.repeats, warmup=m.warmup,
                         threads=m.threads, modes={batch_size: ("e2e",)})
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
    return {"passed": best is not None, "ms": ms[best] if best else None, "runtime": best,
            "runtimes": per_runtime, "dev": fp32}


# ---------------------------------------------------------------- the search

def search(order: list[str], fastest_ms: dict[str, float], teacher_ms: float, tried: dict[str, dict],
           run_trial, out_of_time, family: dict[str, str] | None = None,
           sources: dict[str, str | None] | None = None) -> bool:
    """Bisect `order` (candidates by their fastest time): train the middle of those that can still win
    (`open_candidates`), add what `run_trial(name)` returns ({name: outcome}: a kdpNN trial adds its kd row
    too) to `tried`, until none can win. Returns whether it stopped because `out_of_time()`."""
    while True:
        candidates = open_candidates(order, fastest_ms, teacher_ms, tried, family, sources)
        if not candidates:
            return False
        if out_of_time():
            return True
        tried.update(run_trial(candidates[len(candidates) // 2]))


def train_chain(names: list[str], train_one, out_of_time) -> dict[str, dict]:
    """Train `names` in order (a kdpNN's kd row, then the kdpNN built from its trained model), each outcome
    `train_one(name)`; stop after one that errors or fails (what follows is built from it: a pruned copy of a
    failing student starts below the budget, `ruled_out`) and, between two, when `out_of_time()`."""
    results: dict[str, dict] = {}
    for name in names:
        if results and out_of_time():
            break
        results[name] = train_one(name)
        if not results[name].get("passed"):
            break
    return results


def open_candidates(order: list[str], fastest_ms: dict[str, float], teacher_ms: float,
                    tried: dict[str, dict], family: dict[str, str] | None = None,
                    sources: dict[str, str | None] | None = None) -> list[str]:
    """Untried candidates that could beat the best passing model: faster than it, and not ruled out by a failure
    (`ruled_out`). A trial that errored proves nothing."""
    best = min([teacher_ms] + [o["ms"] for o in tried.values() if o.get("passed")])
    return [n for i, n in enumerate(order)
            if n not in tried and ruled_out(order, i, tried, family, sources) is None
            and fastest_ms[n] * CLEARLY_FASTER < best]


def ruled_out(order: list[str], i: int, tried: dict[str, dict], family: dict[str, str] | None,
              sources: dict[str, str | None] | None = None) -> str | None:
    """Why `order[i]` is assumed to fail, if a failure says so: the model it is built from failed (a kdpNN
    prunes its kd row's student further: it starts from that model's accuracy and removes weights), or a slower
    candidate of its family failed (accuracy is assumed to rise with size within a family: layer students, pruned
    models, depth+width, static; MahaNews showed it does not hold across them, where a 6-layer student kept the
    accuracy a slower 50%-pruned model lost). `family` None: one family."""
    source = (sources or {}).get(order[i])
    if source and tried.get(source, {}).get("passed") is False:
        return f"{source} failed, and it is built from {source}'s trained model"
    same = (lambda n: True) if family is None else (lambda n: family[n] == family[order[i]])
    failed = [n for n in order[i + 1:] if same(n) and tried.get(n, {}).get("passed") is False]
    return f"{failed[-1]} is slower and failed (accuracy is assumed to rise with size within a family)" \
        if failed else None


def verdicts(order: list[str], fastest_ms: dict[str, float], teacher_ms: float, tried: dict[str, dict],
             timed_out: bool, family: dict[str, str] | None = None,
             sources: dict[str, str | None] | None = None) -> dict[str, dict]:
    """Why each candidate was or was not trained: passed / failed / error, or not trained because it cannot
    win, was pruned by the search, or the time ran out."""
    best_name, best = min([("the teacher", teacher_ms)] + [(n, o["ms"]) for n, o in tried.items() if o.get("passed")],
                          key=lambda item: item[1])
    out = {}
    for i, name in enumerate(order):
        why_not = ruled_out(order, i, tried, family, sources)
        if name in tried:
            o = tried[name]
            out[name] = {"status": "error" if o.get("error") else "passed" if o["passed"] else "failed"}
        elif fastest_ms[name] * CLEARLY_FASTER >= best:
            out[name] = {"status": "cannot win", "why": f"its fastest shippable runtime ({fastest_ms[name]:.1f} ms) "
                                                         f"is not {CLEARLY_FASTER:g}x faster than {best_name} "
                                                         f"({best:.1f} ms), which passed"}
        elif why_not is not None:
            out[name] = {"status": "pruned by the search", "why": why_not}
        else:
            out[name] = {"status": "out of time" if timed_out else "not tried"}
    return out


# ---------------------------------------------------------------- the command

def optimize(teacher: str, data: DataConfig, cfg: OptimizeConfig, out: Path, *, transfer: TransferConfig | None = None,
             clock=time.monotonic, trust_remote_code: bool = False) -> dict:
    """Find, export and report the fastest model within `cfg.budget` dev points of `teacher` (see the module
    docstring); returns the report written to `out/optimize.json`. `trust_remote_code` lets the teacher (and so
    every model built from it) run the Python code its folder or hub repository ships."""
    start = clock()
    check_optimize_config(cfg)
    out = Path(out)
    check_output_dir(out, SEARCH_RECORD, grows=True, inputs=(teacher, data.dataset, data.data_dir,
                                                             transfer.path if transfer else None))
    with output_lock(out):  # the search resumes in its folder: a second run into it at the same time is refused
        return _search(teacher, data, cfg, out, transfer, clock, trust_remote_code, start)


def _search(teacher: str, data: DataConfig, cfg: OptimizeConfig, out: Path, transfer: TransferConfig | None,
            clock, trust_remote_code: bool, start: float) -> dict:
    """`optimize`'s steps 1-5, once its options and output folder are checked and the folder is locked."""
    grid_cfg, preset = load_preset(cfg.preset)
    transfer_cfg = replace(grid_cfg.transfer, path=transfer.path, text_col=transfer.text_col, label_col=None) \
        if transfer and transfer.path else TransferConfig()
    # the user's file replaces the preset's, also in a row's transfer_overrides (which keep their caps and windows)
    overrides = {row: {k: v for k, v in values.items() if k not in ("path", "text_col", "label_col")}
                 for row, values in grid_cfg.transfer_overrides.items()}
    grid_cfg = replace(grid_cfg, transfer=transfer_cfg, transfer_overrides=overrides, max_train_rows=data.max_train_rows,
                       served_blocks=False)
    identity = {"teacher": str(Path(teacher).resolve()) if Path(teacher).exists() else teacher, "data": asdict(data),
                "transfer": asdict(transfer_cfg), "finetune": asdict(grid_cfg.finetune)}
    _check_claim(out, identity)
    splits = load_splits(data)
    teacher_config = _check_teacher(teacher, splits.labels, trust_remote_code)
    specs, left_out = resolve_candidates(cfg.candidates, transfer=transfer_cfg.path is not None,
                                         teacher_layers=getattr(teacher_config, "num_hidden_layers", None),
                                         teacher_hidden=getattr(teacher_config, "hidden_size", None), grid_cfg=grid_cfg)
    write_json(out / SEARCH_RECORD, identity)  # every check passed: the folder is this search's from now on
    grid = Grid(teacher, grid_cfg, preset, data.dataset, out, trust_remote_code=trust_remote_code)
    teacher_dir = grid.use_splits(splits, data)
    if teacher_dir != teacher and not (Path(teacher_dir) / TRAINING_RECORD).is_file():
        _console.print(f"fine-tuning the teacher {teacher} on {splits.name} first (its labels are not the dataset's)")
        grid.build(parse_row("baseline"), Path(teacher_dir))
    for spec in specs:  # a bad transfer file stops here, before any shape is built
        if spec.tr:
            grid.transfer_set(spec)
    # torch fp32, the reference, and fp32 ONNX, what ships when nothing faster passes, are always measured
    runtimes = list(dict.fromkeys([REFERENCE, "onnx", *(r for r in cfg.runtimes or native_runtimes()
                                                        if unsupported_reason(r) is None)]))
    ctx = {"max_length": grid_cfg.finetune.max_length, "measure": grid_cfg.measure, "cache": out / "cache",
           "calibration": calibration_sample(splits.train.texts), "trust_remote_code": trust_remote_code}
    texts = timing_texts(splits.dev.texts, grid_cfg.measure.texts)  # dev texts: test stays unread until the end

    phases: dict[str, float] = {}  # this invocation's seconds per step, for the report

    def lap(step: str) -> None:
        phases[step] = clock() - start - sum(phases.values())

    lap("teacher and transfer set")

    # 2. shapes, timed untrained beside the teacher
    for spec in specs:
        _console.print(f"shape of {spec.name}: building it untrained")
        build_shape(grid, spec, out / "shapes" / _folder(spec))
    shape_ms, reused_seconds = _shape_timing(out, grid, specs, teacher_dir, runtimes,
                                             texts[:max(SHAPE_TIMING_TEXTS, 2 * cfg.batch_size)], cfg.batch_size,
                                             ctx | {"calibration": ctx["calibration"][:SHAPE_CALIBRATION_TEXTS]})
    teacher_pred = dev_predictions(teacher_dir, runtimes, splits, ctx)
    teacher_outcome = outcome({"dev_predictions": teacher_pred}, shape_ms["teacher"], teacher_pred[REFERENCE], splits, cfg)
    fastest = {s.name: min(ms for r, ms in shape_ms[s.name].items() if r in SHIPPABLE) for s in specs}
    order = sorted(fastest, key=fastest.get)
    lap("shapes (build, time) and the teacher's dev scores")
    _console.print("candidates by their fastest runtime: " + ", ".join(f"{n} {fastest[n]:.1f} ms" for n in order)
                   + f"; the teacher {teacher_outcome['ms']:.1f} ms ({teacher_outcome['runtime']})")

    # 3. the search: reuse finished trials, then bisect
    by_name = {s.name: s for s in specs}
    tried = {}
    for spec in specs:
        trial = _saved_trial(out, grid, spec)
        if trial is not None:
            served = served_copy(out, grid, spec, trial["model_dir"])
            if trial.get("served_dir") != served:  # judged before trimming (an older version): judge what ships
                trial |= {"served_dir": served, "dev_predictions": {}}
            missing = [r for r in runtimes_of(served, runtimes) if r not in trial["dev_predictions"]]
            if missing:  # a runtime this run adds (a package installed since): judge the trained model in it too
                trial["dev_predictions"] |= dev_predictions(served, missing, splits, ctx)
                write_json(_trial_path(out, spec), trial)
            tried[spec.name] = outcome(trial, shape_ms[spec.name], teacher_pred[REFERENCE], splits, cfg)
            reused_seconds += trial.get("seconds", 0.0)
            grid.finished(spec.name, trial["model_dir"])  # a kdpNN trial may prune its model
    if tried:
        _console.print(f"reusing finished trials: {', '.join(tried)}")
    trials: dict[str, dict] = {}

    def train_one(name: str) -> dict:
        spec = by_name[name]
        _console.print(f"training {name} ({clock() - start:.0f} s into the run)")
        try:
            trials[name] = _trial(out, grid, spec, runtimes, splits, ctx)
        except MahaError as exc:
            return {"passed": None, "ms": None, "error": str(exc)}
        o = outcome(trials[name], shape_ms[name], teacher_pred[REFERENCE], splits, cfg)
        _console.print(f"{name}: dev {cfg.metric} {o['dev']['dev']:.2%}, {o['dev']['difference_points']:+.2f} "
                       f"points [{o['dev']['ci_low_points']:+.2f}, {o['dev']['ci_high_points']:+.2f}]: "
                       + (f"passes in {o['runtime']} ({o['ms']:.1f} ms)" if o["passed"] else "fails"))
        return o

    def run_trial(name: str) -> dict[str, dict]:
        source = _source(by_name[name])
        return train_chain(([source] if source and source not in tried else []) + [name], train_one, out_of_time)

    def out_of_time() -> bool:
        return cfg.time_budget_s is not None and clock() - start >= cfg.time_budget_s

    family = {s.name: s.kind for s in specs}  # recipes.KINDS: kd, prune, kdprune, static
    sources = {s.name: _source(s) for s in specs}
    timed_out = search(order, fastest, teacher_outcome["ms"], tried, run_trial, out_of_time, family, sources)
    status = verdicts(order, fastest, teacher_outcome["ms"], tried, timed_out, family, sources)

    lap("trials")

    # 4. the winner: re-timed trained, its runtime chosen, exported, scored on test once
    passing = {n: o for n, o in tried.items() if o.get("passed")}
    winner = min(passing, key=lambda n: passing[n]["ms"]) if passing else "teacher"
    winner_trial = _saved_trial(out, grid, by_name[winner]) if winner != "teacher" else None
    winner_dir = winner_trial["model_dir"] if winner_trial else teacher_dir
    timed = {"teacher": (teacher_dir, runtimes)}
    if winner_trial:
        timed[winner] = (winner_trial["served_dir"], runtimes)
    final_ms = time_models(timed, texts, cfg.batch_size, ctx)
    teacher_final = outcome({"dev_predictions": teacher_pred}, final_ms["teacher"], teacher_pred[REFERENCE], splits, cfg)
    chosen = teacher_final if winner == "teacher" else \
        outcome(winner_trial, final_ms[winner], teacher_pred[REFERENCE], splits, cfg)
    overtaken = None
    if winner != "teacher" and (not chosen["passed"] or chosen["ms"] >= teacher_final["ms"]):
        # timed again beside the teacher, the student is no faster than the teacher in its fastest shippable
        # runtime within budget (or none of its runtimes passes among those timed now): the teacher ships
        overtaken = {"name": winner, "ms": chosen["ms"], "runtime": chosen["runtime"]}
        winner, winner_dir, chosen = "teacher", teacher_dir, teacher_final
    note = None
    if chosen["runtime"] is None:  # the teacher itself passes in no shippable runtime (each moves its dev predictions
        # further from its torch fp32 reference than the budget): it ships as fp32 ONNX, the reference's arithmetic
        chosen = chosen | {"runtime": "onnx", "ms": final_ms["teacher"]["onnx"]}
        note = "no shippable runtime passed on dev; exported as fp32 ONNX"
    exported = _export(out, winner_dir, chosen["runtime"], grid, by_name.get(winner), splits, ctx) | {"note": note}
    lap("the winner (time, export, test)")
    report = {
        "meta": {"teacher": teacher, "teacher_dir": teacher_dir, "dataset": splits.summary(), "machine": describe(),
                 "config": asdict(cfg), "preset": preset, "runtimes": runtimes, "max_length": ctx["max_length"],
                 "timing": f"end to end (tokenisation included), batch {cfg.batch_size}, median of "
                           f"{grid_cfg.measure.repeats} interleaved repeats, {len(texts)} dev texts",
                 "seconds": clock() - start, "reused_seconds": reused_seconds, "timed_out": timed_out,
                 "phases": phases},
        "teacher": {"ms": shape_ms["teacher"], "final_ms": final_ms["teacher"], "dev": teacher_outcome["dev"]["dev"],
                    "runtimes": teacher_outcome["runtimes"]},
        "candidates": [_candidate_row(name, shape_ms[name], status[name], tried.get(name),
                                      trials.get(name) or _saved_trial(out, grid, by_name[name]))
                       for name in order] + [{"name": n, "status": "left out", "why": why} for n, why in left_out.items()],
        "winner": {"name": winner, "model_dir": winner_dir, "runtime": chosen["runtime"], "ms": chosen["ms"],
                   "dev": chosen["runtimes"][chosen["runtime"]], "final_ms": final_ms[winner],
                   "speedup_vs_teacher_fp32": final_ms["teacher"]["fp32"] / chosen["ms"],
                   "speedup_vs_teacher_fastest": teacher_final["ms"] / chosen["ms"],
                   "teacher_fastest_runtime": teacher_final["runtime"], "export": exported,
                   "overtaken": overtaken},
        "not_tried": [n for n in order if status[n]["status"] in ("out of time", "not tried")],
    }
    _write_report(out, report)
    return report


def _check_claim(out: Path, identity: dict) -> None:
    """Refuse an `out` that holds another search (other teacher, data, transfer set or teacher fine-tuning)."""
    record = out / SEARCH_RECORD
    saved = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else identity
    what = next((k for k in identity if saved.get(k) != identity[k]), None)
    if what is not None:
        raise MahaError(f"{out}: holds a search for another {what} ({SEARCH_RECORD}); choose another --out, or "
                        "run it with the same teacher, data and transfer set to resume it")


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


def _source(spec: RowSpec) -> str | None:
    """The candidate whose trained model `spec`'s trial starts from (a kdpNN prunes its kd row's student)."""
    return kdprune_source(spec) if spec.kind == "kdprune" else None


def _folder(spec: RowSpec) -> str:
    return spec.name.replace("+", "_")  # module names: identifiers, as the grid names row folders


def _trial_path(out: Path, spec: RowSpec) -> Path:
    return out / "trials" / f"{_folder(spec)}.json"


def _shape_timing(out: Path, grid: Grid, specs: list[RowSpec], teacher_dir: str, runtimes: list[str],
                  texts: list[str], batch_size: int, ctx: dict) -> tuple[dict, float]:
    """The shapes' and the teacher's latencies, measured once per batch size, runtimes, teacher and shapes (their
    settings: another preset's layers or block size is another shape), and reused on re-run while those hold;
    with the seconds an earlier invocation spent measuring them (0 when measured now), for the report's run time."""
    key = {"batch_size": batch_size, "texts": len(texts), "runtimes": runtimes,
           "candidates": sorted(s.name for s in specs), "measure": asdict(ctx["measure"]),
           "max_length": ctx["max_length"], "teacher": str(teacher_dir),
           "shapes": {s.name: grid.settings_of(s) for s in specs}}
    path = out / "shapes" / "latency.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return saved["ms"], saved.get("seconds", 0.0)  # files before 2026-12-03 did not record it
    _console.print(f"timing {len(specs)} untrained shapes and the teacher in {', '.join(runtimes)} at batch {batch_size}")
    models = {"teacher": (teacher_dir, runtimes)} | {s.name: (out / "shapes" / _folder(s), runtimes) for s in specs}
    started = time.monotonic()
    ms = time_models(models, texts, batch_size, ctx)
    write_json(path, {"key": key, "ms": ms, "seconds": time.monotonic() - started})
    return ms, 0.0


def _saved_trial(out: Path, grid: Grid, spec: RowSpec) -> dict | None:
    """The finished trial of `spec` if its settings still hold (a trained model folder and its dev predictions)."""
    path = _trial_path(out, spec)
    if not path.is_file():
        return None
    trial = json.loads(path.read_text(encoding="utf-8"))
    return trial if trial.get("settings") == grid.settings_of(spec) and Path(trial["model_dir"]).is_dir() else None


def _trial(out: Path, grid: Grid, spec: RowSpec, runtimes: list[str], splits: Splits, ctx: dict) -> dict:
    """Train `spec` with the grid's builder, score it on dev in each runtime as it ships (`served_copy`), and
    record it (atomically)."""
    started = time.monotonic()
    built = grid.build(spec, out / "models" / _folder(spec))
    served = served_copy(out, grid, spec, built["model_dir"])
    trial = {"name": spec.name, "settings": grid.settings_of(spec), "model_dir": built["model_dir"],
             "served_dir": served, "train_seconds": built["train_seconds"], "dev_history": built.get("dev_history"),
             "dev_predictions": dev_predictions(served, runtimes, splits, ctx)}
    trial["seconds"] = time.monotonic() - started
    write_json(_trial_path(out, spec), trial)
    return trial


def _export(out: Path, model_dir: str, runtime: str, grid: Grid, spec: RowSpec | None, splits: Splits,
            ctx: dict) -> dict:
    """Export the winner in the runtime it was chosen in (its fastest passing one: every runtime a verdict rests
    on ships, `SHIPPABLE`), vocabulary trimmed to its training corpus; the exported folder is scored on TEST
    here, the only time test is read."""
    from ..deploy.export import export
    corpus = None if is_static(model_dir) else training_texts(grid, spec)
    manifest = export(Path(model_dir), out / "export", backend=runtime, corpus=corpus,
                      corpus_names=corpus_names(spec),
                      splits=splits, max_length=ctx["max_length"], calibration_texts=ctx["calibration"],
                      trust_remote_code=ctx["trust_remote_code"])
    return {"folder": str(out / "export"), "backend": runtime, "test": manifest.get("test"),
            "disk_mb": manifest["disk_bytes"] / 2**20}


def _candidate_row(name: str, ms: dict[str, float], status: dict, tried: dict | None,
                   trial: dict | None) -> dict:
    row = {"name": name, **status, "ms": ms, "fastest_ms": min(ms.values()),
           "fastest_runtime": min(ms, key=ms.get), "trained": tried is not None and not tried.get("error")}
    if tried and tried.get("error"):
        row["why"] = tried["error"]
    if tried and not tried.get("error"):
        row |= {"dev": tried["dev"], "runtimes": tried["runtimes"], "passing_runtime": tried["runtime"],
                "passing_ms": tried["ms"]}
    if trial:
        row |= {"model_dir": trial["model_dir"], "train_seconds": trial["train_seconds"]}
    return row


# ---------------------------------------------------------------- the report

def _write_report(out: Path, report: dict) -> None:
    """optimize.json, report.md and optimize.png, from the report dict alone."""
    write_json(out / "optimize.json", report)
    _plot(out / "optimize.png", report)
    write_text(out / "report.md", markdown(report))


def _run_time(meta: dict) -> str:
    """This invocation's minutes and, after a resume, what the trials and shape timings it reused had cost: the
    search's whole cost is their sum (an interrupted invocation's unfinished trial is in neither)."""
    now, reused = meta["seconds"] / 60, meta.get("reused_seconds", 0.0) / 60
    steps = " (" + ", ".join(f"{name} {s / 60:.1f}" for name, s in meta["phases"].items()) + ")" \
        if meta.get("phases") else ""
    if not reused:
        return f"{now:.1f} min{steps}"
    return (f"{now + reused:.1f} min in all: {now:.1f} min this invocation{steps}, {reused:.1f} min in earlier ones "
            "(the trials and shape timings reused)")


def dev_resolution(report: dict) -> str:
    """How finely the dev split can decide the budget: for accuracy, how many texts one budget point is; and the
    median half-width of the trained candidates' paired-bootstrap intervals, which measures only which texts the
    split happens to hold. Training adds its own noise on top (MahaNews, 232 dev texts: kd+tr's difference moved
    from -0.43 to -3.45 points between two trainings of the same recipe), so a half-width wider than the budget
    means a verdict near the line is chance; the user sees that beside the verdicts."""
    rows = report["meta"]["dataset"]["splits"]["dev"]["rows"]
    cfg = report["meta"]["config"]
    budget = cfg["budget"]
    text = f"{rows} texts" + (f", so {budget:g} point{'' if budget == 1 else 's'} = {budget * rows / 100:.1f} texts"
                              if cfg["metric"] == "accuracy" else "")
    widths = [(c["dev"]["ci_high_points"] - c["dev"]["ci_low_points"]) / 2 for c in report["candidates"]
              if c.get("dev")]
    if not widths:
        return text
    half = float(np.median(widths))
    text += f"; the trained candidates' 95% intervals are +/-{half:.2f} points (median half-width)"
    if half > budget:
        text += (": **wider than the budget, so a candidate near the line can land on either side of it by "
                 "chance**; a larger dev split or a larger budget is needed before a verdict near the line means much")
    return text


def markdown(report: dict) -> str:
    meta, w, cfg = report["meta"], report["winner"], report["meta"]["config"]
    metric = cfg["metric"]
    rule = ("the dev point estimate" if cfg["decide"] == "point" else "the lower bound of the paired-bootstrap 95% "
            "interval") + f" at most {cfg['budget']:g} point{'' if cfg['budget'] == 1 else 's'} below the teacher's " \
        f"dev {metric}"
    test = w["export"]["test"] or {}
    lines = [f"# optimize: {meta['dataset']['dataset']}, teacher `{meta['teacher']}`", "",
             f"- machine: {meta['machine']}", f"- timing: {meta['timing']}; runtimes: {', '.join(meta['runtimes'])}",
             f"- pass rule: {rule}", f"- dev split: {dev_resolution(report)}", f"- run time: {_run_time(meta)}"
             + (" (the time budget ran out)" if meta["timed_out"] else ""), "",
             "## Winner", "",
             f"**{w['name']}** served with **{w['runtime']}**: {w['ms']:.1f} ms per batch of {cfg['batch_size']}, "
             f"{w['speedup_vs_teacher_fp32']:.1f}x the teacher in fp32 and {w['speedup_vs_teacher_fastest']:.1f}x the "
             f"teacher in its own fastest runtime within budget ({w['teacher_fastest_runtime']}), same session; dev "
             f"{metric} {w['dev']['dev']:.2%} ({w['dev']['difference_points']:+.2f} points "
             f"[{w['dev']['ci_low_points']:+.2f}, {w['dev']['ci_high_points']:+.2f}]).", "",
             f"- exported to `{w['export']['folder']}` ({w['export']['backend']}, {w['export']['disk_mb']:.1f} MiB)"
             + (f"; {w['export']['note']}" if w["export"]["note"] else ""),
             *([f"- {w['overtaken']['name']} passed the search ({w['overtaken']['runtime']}), but timed again beside the "
                "teacher it was no faster than the teacher in its fastest shippable runtime within budget, so the teacher "
                "ships"] if w.get("overtaken") else []),
             f"- test (scored once, at the end, through the exported folder): accuracy {test.get('accuracy', 0):.2%}, "
             f"macro-F1 {test.get('macro_f1', 0):.2%} on {test.get('rows', 0)} texts", f"- checkpoint: `{w['model_dir']}`",
             "", "## Candidates", "",
             f"| candidate | fastest untrained (runtime) | status | dev {metric} | vs teacher, points [95% CI] | "
             "passing runtime, ms | why |", "|---|---|---|---|---|---|---|"]
    for c in report["candidates"]:
        if c["status"] == "left out":
            lines.append(f"| {c['name']} | - | left out | - | - | - | {c['why']} |")
            continue
        dev = c.get("dev")
        lines.append(f"| {c['name']} | {c['fastest_ms']:.1f} ({c['fastest_runtime']}) | {c['status']} | "
                     + (f"{dev['dev']:.2%} | {dev['difference_points']:+.2f} [{dev['ci_low_points']:+.2f}, "
                        f"{dev['ci_high_points']:+.2f}] | " if dev else "- | - | ")
                     + (f"{c['passing_runtime']}, {c['passing_ms']:.1f}" if c.get("passing_runtime") else "-")
                     + f" | {c.get('why', '')} |")
    teacher = report["teacher"]
    lines += ["", f"The teacher: dev {metric} {teacher['dev']:.2%}; untrained-session latency "
              + ", ".join(f"{r} {v:.1f} ms" for r, v in teacher["ms"].items()) + ".", ""]
    if report["not_tried"]:
        lines += [f"Not tried: {', '.join(report['not_tried'])} (run again with a larger --time-budget: finished "
                  "trials are reused).", ""]
    lines += ["Dev scores of trained candidates are their fp32 (or static) model's; a candidate passes when any "
              "runtime passes, and is placed by its fastest passing runtime. Untrained candidates were timed as "
              "untrained models of the same shape.", ""]
    return "\n".join(lines)


def _plot(path: Path, report: dict) -> None:
    """Latency against dev difference: trained candidates with their interval, untried ones as ticks, the budget line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report["meta"]["config"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {"passed": "tab:green", "failed": "tab:red"}
    for c in report["candidates"]:
        if c.get("dev"):
            d = c["dev"]
            ax.errorbar(c["fastest_ms"], d["difference_points"], fmt="o", color=colours.get(c["status"], "grey"),
                        yerr=[[d["difference_points"] - d["ci_low_points"]], [d["ci_high_points"] - d["difference_points"]]])
            ax.annotate(c["name"], (c["fastest_ms"], d["difference_points"]), textcoords="offset points", xytext=(4, 4))
        elif "fastest_ms" in c:
            ax.plot(c["fastest_ms"], 0.02, "|", color="grey", markersize=12, transform=ax.get_xaxis_transform())
    teacher_ms = min(report["teacher"]["ms"].values())
    ax.plot(teacher_ms, 0, "s", color="black", label="teacher")
    ax.axhline(-cfg["budget"], color="tab:orange", linestyle="--", label=f"budget (-{cfg['budget']:g} points)")
    ax.set_xscale("log")
    ax.set_xlabel(f"ms per batch of {cfg['batch_size']} (end to end, fastest runtime of the untrained shape)")
    ax.set_ylabel(f"dev {cfg['metric']} minus teacher's (points)")
    ax.set_title(f"optimize: winner {report['winner']['name']} ({report['winner']['runtime']}); ticks: not trained")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
