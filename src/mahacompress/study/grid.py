"""The study's grid: build every row, measure them all the same way, survive interruption.

What each row is and how it is made is data in `recipes.py` (`KINDS`, `parse_row`); this module runs a
preset's rows. Trained rows are built once per seed (`seeds`), and the compressed ones also get a
`served` block (the same model as `recipes.SERVED_BACKEND` runs it).

Data flows one way: rows are built and scored one at a time (each finished row, even each finished
seed, is written to `results.json` at once and never rebuilt), then every finished row is timed in
one interleaved session so speedups compare like with like, then `report` reads `results.json` alone.
Every row is scored and timed with the baseline's `max_length` on the same test texts.
"""

from __future__ import annotations

import os
import platform
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from ..core.config import DataConfig, GridConfig
from ..core.errors import MahaError
from ..core.files import RESULTS_RECORD, output_lock
from ..core.metrics import correctness, paired_difference
from ..core.validate import check_output_dir
from ..data.splits import load_splits
from ..infer import CALIBRATED_BACKENDS, load_backend
from ..infer.build import served_file
from ..infer.evaluate import classification_metrics, predict_splits, unlearnable_classes
from ..infer.numpy_engine import is_static, is_tfidf, load_tfidf
from ..measure.footprint import Energy, count_params, peak_memory, served_size_mb
from ..measure.latency import latency, speedups
from ..models.load import load_skeleton
from ..train.pruning.compact import encoder_linear_count
from .context import RecipeContext, RowSettings, open_context
from .preset import check_for_teacher, load_preset
from .recipes import (
    KINDS,
    SERVED_BACKEND,
    RowSpec,
    build,
    is_candidate,
    left_out,
    parse_row,
    seeds_of,
    settings_of,
    train_config,
    transfer_set,
    unsupported,
)
from .results import read_results, write_results

_console = Console(stderr=True)


class Grid:
    """One reproduction: an out folder holding models/, results.json and the report.

    `trust_remote_code` (the user's --trust-remote-code) is honoured by every load of the run: the models
    built from a teacher that ships its own code are saved with that code too.
    """

    def __init__(
        self, teacher: str, cfg: GridConfig, preset: str, dataset: str, out: Path, *, trust_remote_code: bool = False
    ):
        self.teacher, self.cfg, self.preset, self.dataset, self.out = teacher, cfg, preset, dataset, Path(out)
        self.trust_remote_code = trust_remote_code
        self.models = self.out / "models"
        self.results_path = self.out / "results.json"
        self.data: DataConfig | None = None  # set with the splits (run)
        self.max_length = cfg.finetune.max_length  # the baseline's: every row is scored and timed with it
        self.settings = RowSettings(cfg, teacher, dataset)  # each row's, computed once (`recipes.settings_of`)
        self.ctx: RecipeContext | None = None  # what the recipes build with, once the splits are read (run)
        self.rows: dict[str, dict] = {}
        self.stale: list[str] = []  # finished rows whose settings have changed since: built again
        self.partial: dict[str, list[dict]] = {}  # finished seeds of rows that were interrupted
        self.timing_seconds: float | None = None  # how long the timing session took (recorded in meta)
        if self.results_path.exists():
            saved = read_results(self.results_path)  # a file of another layout is refused in one line
            for row in saved["rows"]:
                name, status = row["name"], row.get("status")
                if status not in ("done", "partial") or name not in cfg.rows:
                    continue
                if row.get("settings") != self.settings_of(parse_row(name)):
                    self.stale += [name] if status == "done" else []
                    continue
                self.rows[name] = row  # a partial row stays in results.json until its next seed is built
                if status == "partial":
                    self.partial[name] = row["seeds"]

    def settings_of(self, spec: RowSpec) -> dict:
        """Everything in the preset that shapes a row's model: a re-run rebuilds the row when this changes."""
        return settings_of(self.settings, spec)

    # ------------------------------------------------------------------ building rows
    def run(self) -> Path:
        # kept whole: every row's folder records it (`data_config`), so trim/export rebuild its corpus from it
        self.data = DataConfig(
            self.dataset,
            text_col=self.cfg.text_col,
            label_col=self.cfg.label_col,
            max_train_rows=self.cfg.max_train_rows,
        )
        self.splits = load_splits(self.data)
        self.unlearnable = unlearnable_classes(self.splits)
        self._save()  # results.json marks the folder as this grid's before any model is in it: an early kill resumes
        self.ctx = open_context(
            self.settings, self.splits, self.data, self.models, trust_remote_code=self.trust_remote_code
        )
        unfit = {n: why for n in self.cfg.rows if (why := self._left_out(parse_row(n)))}
        if unfit:
            _console.print(
                "left out, the teacher cannot give them their shape: "
                + "; ".join(f"{n} ({why})" for n, why in unfit.items()),
                markup=False,
                highlight=False,
            )
        for name in self.cfg.rows:  # a bad transfer file stops here, before any row is trained
            if parse_row(name).tr and self.rows.get(name, {}).get("status") != "done" and name not in unfit:
                transfer_set(self.ctx, parse_row(name))
        if self.stale:
            _console.print(
                f"preset settings changed since these rows were built; building again: {', '.join(self.stale)}"
            )
        for i, name in enumerate(self.cfg.rows, 1):
            if self.rows.get(name, {}).get("status") == "done":  # finished earlier, same settings: kept
                self._complete(self.rows[name])
                self._finished(self.rows[name])
                continue
            _console.print(f"[bold]row {i}/{len(self.cfg.rows)}: {name}[/bold] ({self.dataset})")
            try:
                self.rows[name] = self.build_row(parse_row(name))
            except MahaError as exc:
                self.rows[name] = {"name": name, "status": "failed", "reason": str(exc)}
            self._finished(self.rows[name])
            self._save()
        self._compare_all()
        start = time.time()
        self._measure_all()
        self.timing_seconds = time.time() - start
        self._save()
        return self.out

    def _left_out(self, spec: RowSpec) -> str | None:
        return left_out(spec, self.cfg, self.ctx.teacher_layers, self.ctx.teacher_hidden)

    def _finished(self, row: dict) -> None:
        """A done row's models, by seed, for the rows built from it (`recipes.kdprune_source`)."""
        if row.get("status") == "done":
            self.ctx.finished[row["name"]] = [s["model_dir"] for s in row["seeds"]]

    def build_row(self, spec: RowSpec) -> dict:
        """Build (per seed), score and record one row; a row this machine or this teacher cannot run is
        recorded as skipped with the reason."""
        kind, start = KINDS[spec.kind], time.time()
        reason = unsupported(spec) or self._left_out(spec)
        if reason:
            return {"name": spec.name, "status": "skipped", "reason": reason}
        precision = self.ctx.precision
        backend = precision if spec.mp else spec.backend  # `mp` runs in the precision it trained in
        row = {
            "name": spec.name,
            "status": "done",
            "settings": self.settings_of(spec),
            "backend": backend,
            "train_precision": precision if spec.mp else "fp32",
        }
        with Energy(country_iso_code=self.cfg.measure.country) as energy:
            if spec.served_from_another:
                source, how = kind.source(self, spec)
                if self.rows.get(source, {}).get("status") != "done":
                    raise MahaError(f"row '{source}' has not finished, so '{spec.name}' has no model to serve")
                model_dir = self.rows[source]["model_dir"]
                runs = [{"seed": None, "model_dir": model_dir, "train_seconds": 0.0, **self._score(model_dir, backend)}]
                row.update(source_row=source, chosen_by=how)
            else:
                runs = self._runs(spec, row["settings"])
            row.update(self._summary(runs))
            if self._wants_served(spec):
                row["served"] = self._serve(row["model_dir"])
        row["build_seconds"] = time.time() - start
        row.update(energy.as_dict())
        return row

    def _runs(self, spec: RowSpec, settings: dict) -> list[dict]:
        """Build and score the row once per seed (seeds base, base+1, ...; once for unseeded kinds); each
        finished seed is saved, so an interrupted row resumes at its next seed."""
        runs = list(self.partial.pop(spec.name, []))
        backend = self.ctx.precision if spec.mp else spec.backend
        for i in range(len(runs), seeds_of(self.cfg, spec)):
            seed = train_config(self.cfg, spec).seed + i if KINDS[spec.kind].trained else None
            folder = spec.name.replace("+", "_") + (f"_seed{seed}" if i else "")  # module names: identifiers
            built = build(self.ctx, spec, self.models / folder, seed_index=i)
            runs.append({"seed": seed, **built, **self._score(built["model_dir"], backend)})
            if seeds_of(self.cfg, spec) > 1:
                self.rows[spec.name] = {"name": spec.name, "status": "partial", "settings": settings, "seeds": runs}
                self._save()
        return runs

    def _score(self, model_dir: str, backend: str) -> dict:
        """Test figures (all classes and learnable ones), the test predictions, and dev accuracy (for `best`)."""
        self._calibrate(model_dir, backend)
        pred = predict_splits(
            model_dir,
            self.splits,
            ("test", "dev"),
            backend=backend,
            max_length=self.max_length,
            trust_remote_code=self.trust_remote_code,
        )  # the model loaded once for both
        test, dev = pred["test"], pred["dev"]
        m = classification_metrics(self.splits.test.labels, test, self.splits.labels, self.unlearnable)
        sub = m.get("learnable", {})
        return {
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "accuracy_learnable": sub.get("accuracy"),
            "macro_f1_learnable": sub.get("macro_f1"),
            "dev_accuracy": float(np.mean(dev == np.asarray(self.splits.dev.labels))),
            "per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()},
            "test_predictions": test.tolist(),
        }

    def _summary(self, runs: list[dict]) -> dict:
        """Row figures from its seeds: scores as the mean (and sample SD) over seeds; the model, its
        structure, dev accuracy and per-class F1 of the first seed, which is the one timed and served."""
        first = runs[0]
        row = {
            "model_dir": first["model_dir"],
            "train_seconds": first["train_seconds"],
            "dev_accuracy": first["dev_accuracy"],
            "test_rows": len(first["test_predictions"]),
            "per_class_f1": first["per_class_f1"],
            **self._structure(first["model_dir"]),
        }
        if first.get("transfer"):
            row["transfer"] = first["transfer"]  # its counts and the teacher's agreement with the file's labels
        if first.get("dev_history"):
            row["dev_history"] = first["dev_history"]  # to choose epochs from: still rising at the end?
        for key in ("accuracy", "macro_f1", "accuracy_learnable", "macro_f1_learnable"):
            values = [r[key] for r in runs if r[key] is not None]
            row[key] = float(np.mean(values)) if values else None
            if len(values) > 1:
                row[f"{key}_sd"] = float(np.std(values, ddof=1))
        row["seeds"] = [{k: v for k, v in r.items() if k != "per_class_f1"} for r in runs]
        return row

    def _structure(self, model_dir: str) -> dict:
        """Parameters and encoder Linear weights; a model with no encoder (static, tfidf) has no sparsity."""
        if is_tfidf(model_dir):
            linear = load_tfidf(model_dir).classifier
            return {
                "params_total": int(linear.coef_.size + linear.intercept_.size),
                "params_encoder": 0,
                "encoder_linear_weights": 0,
            }
        model = load_skeleton(str(model_dir), trust_remote_code=self.trust_remote_code)  # shapes: no weights read
        if is_static(model_dir):
            return {
                "params_total": sum(p.numel() for p in model.parameters()),
                "params_encoder": 0,
                "encoder_linear_weights": 0,
            }
        params, weights = count_params(model), sum(encoder_linear_count(model))
        return {
            "params_total": params["total"],
            "params_encoder": params["encoder"],
            "encoder_linear_weights": weights,
            "encoder_sparsity": 1 - weights / self._teacher_weights(),
        }

    def _calibrate(self, model_dir: str, backend: str) -> None:
        """Calibrated int8 backends learn activation ranges from training texts (never dev or test): their
        file is built here once, so every later load (scoring, timing, peak memory) serves the same file."""
        if backend in CALIBRATED_BACKENDS:
            served_file(
                model_dir,
                backend,
                max_length=self.max_length,
                calibration_texts=self.ctx.calibration,
                trust_remote_code=self.trust_remote_code,
            )

    def _wants_served(self, spec: RowSpec) -> bool:
        return self.cfg.served_blocks and KINDS[spec.kind].compressed and not spec.served_from_another

    def _serve(self, model_dir: str) -> dict:
        """The row's (first-seed) model as a user would deploy it (SERVED_BACKEND)."""
        scores = self._score(model_dir, SERVED_BACKEND)
        scores.pop("per_class_f1")
        return {"backend": SERVED_BACKEND, **scores}

    def _complete(self, row: dict) -> None:
        """Add the served block a finished row lacks (`served_blocks` turned on, or another `SERVED_BACKEND`,
        since it was built), without rebuilding its model."""
        if self._wants_served(parse_row(row["name"])) and row.get("served", {}).get("backend") != SERVED_BACKEND:
            row["served"] = self._serve(row["model_dir"])

    def pick_best(self) -> tuple[str, str]:
        """The fastest compressed row within `best_within_points` of the teacher's DEV accuracy (never
        test), and how it was chosen. Rows are chosen before the timing session, so "fastest" is its proxy: fewest
        encoder Linear weights (FLOPs per token); ties go to higher dev accuracy."""
        teacher = self.rows.get("baseline", {})
        candidates = [r for n, r in self.rows.items() if r.get("status") == "done" and is_candidate(parse_row(n))]
        if teacher.get("status") != "done" or not candidates:
            raise MahaError("'best' needs the baseline and a finished compressed row (kd, kdN, pNN, pNN+kd, kdpNN)")
        points = self.cfg.best_within_points
        floor = teacher["dev_accuracy"] - points / 100
        within = f"{points:g} point{'s' if points != 1 else ''}"
        close = [r for r in candidates if r["dev_accuracy"] >= floor]
        listed = ", ".join(
            f"{r['name']} {r['dev_accuracy']:.2%}"
            for r in sorted(candidates, key=lambda r: r["encoder_linear_weights"])
        )
        if close:
            pick = min(close, key=lambda r: (r["encoder_linear_weights"], -r["dev_accuracy"]))
            how = (
                f"fewest encoder Linear weights (speed proxy, chosen before timing) among rows within {within} "
                f"of the teacher's dev accuracy {teacher['dev_accuracy']:.2%} (dev accuracy: {listed})"
            )
        else:
            pick = max(candidates, key=lambda r: r["dev_accuracy"])
            how = (
                f"no row within {within} of the teacher's dev accuracy {teacher['dev_accuracy']:.2%}: the most "
                f"accurate on dev (dev accuracy: {listed})"
            )
        return pick["name"], how

    def _teacher_weights(self) -> int:
        """Encoder Linear weights of the dense teacher: the denominator of every row's sparsity."""
        if not hasattr(self, "_dense_weights"):
            teacher = load_skeleton(self.ctx.teacher_dir, trust_remote_code=self.trust_remote_code)
            self._dense_weights = sum(encoder_linear_count(teacher))
        return self._dense_weights

    # ------------------------------------------------------------------ comparing and measuring
    def _compare_all(self) -> None:
        """Every row's (and served block's) paired accuracy difference to the baseline, with a bootstrap CI."""
        base = self.rows.get("baseline", {})
        if base.get("status") != "done":
            return
        y = self.splits.test.labels
        reference = correctness(y, [base["seeds"][0]["test_predictions"]])
        for row in self.rows.values():
            if row.get("status") != "done":
                continue
            row["vs_baseline"] = paired_difference(
                correctness(y, [s["test_predictions"] for s in row["seeds"]]), reference
            )
            if "served" in row:
                row["served"]["vs_baseline"] = paired_difference(
                    correctness(y, [row["served"]["test_predictions"]]), reference
                )

    def _measure_all(self) -> None:
        """Time every finished row and served block in one interleaved session; sizes and peak memory per row."""
        done = [r for r in self.rows.values() if r.get("status") == "done"]
        if not done:
            return
        texts = timing_texts(self.splits.test.texts, self.cfg.measure.texts)
        threads, trust = self.cfg.measure.threads, {"trust_remote_code": self.trust_remote_code}
        served = {_served_key(r["name"]): r for r in done if "served" in r}
        backends = {
            r["name"]: load_backend(r["model_dir"], r["backend"], max_length=self.max_length, threads=threads, **trust)
            for r in done
        }
        backends |= {
            key: load_backend(
                r["model_dir"], r["served"]["backend"], max_length=self.max_length, threads=threads, **trust
            )
            for key, r in served.items()
        }
        m = self.cfg.measure
        timing = speedups(
            latency(
                backends,
                texts,
                repeats=m.repeats,
                warmup=m.warmup,
                threads=threads,
                batches_per_repeat={1: min(m.batch1_texts, len(texts))},
            )
        )
        del backends
        for row in done:
            row.update(timing.get(row["name"], {}))
            row["disk_mb"] = served_size_mb(row["model_dir"], row["backend"], **trust)
            row.update(
                peak_memory(
                    row["model_dir"], row["backend"], texts, max_length=self.max_length, threads=threads, **trust
                )
            )
        for key, row in served.items():
            row["served"].update(timing.get(key, {}))
            row["served"]["disk_mb"] = served_size_mb(row["model_dir"], row["served"]["backend"], **trust)

    def _save(self) -> None:
        order = {n: i for i, n in enumerate(self.cfg.rows)}
        rows = sorted(self.rows.values(), key=lambda r: order.get(r["name"], len(order)))
        write_results(self.results_path, self._meta(), rows, self._caveats(rows))

    def _meta(self) -> dict:
        summary = self.splits.summary()
        return {
            "preset": self.preset,
            "dataset": self.dataset,
            "teacher": self.teacher,
            "train_rows": summary["splits"]["train"]["rows"],
            "dev_rows": summary["splits"]["dev"]["rows"],
            "test_rows": summary["splits"]["test"]["rows"],
            "max_length": self.max_length,
            "seeds": self.cfg.seeds,
            "size_unit": "MiB",
            "machine": _machine(),
            "timing_session_seconds": self.timing_seconds,
            "timing_texts": "a seeded random sample of "
            f"{min(self.cfg.measure.texts, summary['splits']['test']['rows'])} "
            "test texts, in random order (arrival order)",
            "unlearnable_classes": self.unlearnable,
            "versions": {p: _version(p) for p in ("torch", "transformers", "onnxruntime", "codecarbon")}
            | {"python": platform.python_version(), "mahacompress": _version("mahacompress")},
            "config": asdict(self.cfg),
            "test_labels": list(self.splits.test.labels),
        }

    def _caveats(self, rows: list[dict]) -> list[str]:
        notes = []
        if self.unlearnable:
            notes.append(
                f"No training row of {', '.join(self.unlearnable)} is left after cleaning, so no model can "
                "predict it: the 'w/o untrained classes' columns leave its test rows out."
            )
        if any(r.get("energy_measured") is False for r in rows):
            notes.append(
                "Energy is CodeCarbon's estimate (no hardware power counters readable here), not a "
                "measurement; CO2 uses the configured country's grid intensity."
            )
        for status, what in (
            ("failed", "could not run"),
            ("skipped", "were not run (this machine cannot run them, or the teacher cannot give them their shape)"),
        ):
            names = [r["name"] for r in rows if r.get("status") == status]
            if names:
                notes.append(f"Rows that {what} stay in the table with their reason: {', '.join(names)}.")
        notes.append("Timings are ratios from one process on this machine; absolute milliseconds depend on it.")
        return notes


def timing_texts(texts: list[str], n: int, seed: int = 0) -> list[str]:
    """A seeded random sample of `n` texts in random order: batches in arrival order, as a service gets
    them (a file's own order can group texts by label or length, which flatters padding)."""
    return random.Random(seed).sample(list(texts), min(n, len(texts)))


def _machine() -> str:
    """CPU model with its instruction sets (what bf16/int8 rows can use), core count and torch threads
    (plus the GPU when one is used)."""
    from ..core.hardware import describe

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{describe()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads{gpu}"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _served_key(name: str) -> str:
    return f"{name} (served)"


def reproduce(
    teacher: str,
    preset: str | Path,
    out: Path,
    dataset: str | None = None,
    *,
    seeds: int | None = None,
    text_col: str | None = None,
    label_col: str | None = None,
    trust_remote_code: bool = False,
    finish: Callable[[Path], Path] | None = None,
) -> list[Path]:
    """Run (or resume) the whole grid on each dataset of the preset (or on `dataset`); returns what `finish` made
    of each finished folder (the CLI passes `report.render.write_report`: the report is written while the folder
    is still locked), or the folders.

    One dataset writes into `out`; several write into `out/<dataset>/`, one report each. `seeds`
    overrides the preset's number of seeds per trained row, `text_col` and `label_col` its column
    names. The preset's settings, the teacher and the output folder are all checked before the first
    row is built, and each output folder is locked until the run ends (`files.output_lock`). `trust_remote_code`
    lets the teacher (and so every model built from it) run the Python
    code its folder or hub repository ships.
    """
    cfg, name = load_preset(preset)
    if seeds is not None:
        if seeds < 1:
            raise MahaError(f"--seeds {seeds}: expected 1 or more")
        cfg = replace(cfg, seeds=seeds)
    cfg = replace(cfg, text_col=text_col or cfg.text_col, label_col=label_col or cfg.label_col)
    datasets = [dataset] if dataset else cfg.datasets
    if not datasets:
        raise MahaError(f"preset '{name}': no datasets to run")
    check_for_teacher(cfg, name, teacher, trust_remote_code=trust_remote_code)
    outs = [Path(out)] if len(datasets) == 1 else [Path(out) / Path(d).name for d in datasets]
    with ExitStack() as held:
        for folder in outs:  # each grows in place and resumes: refused when it holds files but no results.json, or
            check_output_dir(folder, RESULTS_RECORD, grows=True)  # while another run writes it (a re-run resumes)
            held.enter_context(output_lock(folder))
        done = [
            Grid(teacher, cfg, name, d, folder, trust_remote_code=trust_remote_code).run()
            for d, folder in zip(datasets, outs)
        ]
        return [finish(folder) for folder in done] if finish else done
