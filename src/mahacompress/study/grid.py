"""The study's grid: build every row, measure them all the same way, survive interruption.

What each row is and how it is made is data in `recipes.py` (`KINDS`, `parse_row`); this module runs a
preset's rows. Trained rows are built once per seed (`seeds`), and the compressed ones also get a
`served` block (the same model as `recipes.served_backend` runs it).

Data flows one way: rows are built and scored one at a time (each finished row, even each finished
seed, is written to `results.json` at once and never rebuilt), then every finished row is timed in
one interleaved session so speedups compare like with like, then `report` reads `results.json` alone.
Every row is scored and timed with the baseline's `max_length` on the same test texts. A row's figures are
`scoring.py`'s, the timing session `timing.py`'s, and the machine, versions and caveats beside the rows `meta.py`'s.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console

from ..core.config import DataConfig, GridConfig
from ..core.errors import MahaError
from ..core.files import RESULTS_RECORD, output_lock
from ..core.validate import check_output_dir
from ..data.splits import load_splits
from ..infer.evaluate import unlearnable_classes
from ..measure.footprint import Energy
from ..models.load import load_skeleton
from ..train.pruning.compact import encoder_linear_count
from .context import RecipeContext, RowSettings, open_context
from .meta import caveats, machine, version
from .preset import check_for_teacher, load_preset
from .recipes import KINDS, build, is_candidate, left_out, parse_row, seeds_of, served_backend, settings_of, unsupported
from .results import read_results, write_results
from .rowspec import RowSpec, train_config, transfer_set
from .scoring import compare_to_baseline, score, served_block, structure, summary
from .timing import time_rows

_console = Console(stderr=True)


class Grid:
    """One reproduction: an out folder holding models/, results.json and the report.

    `trust_remote_code` (the user's --trust-remote-code) is honoured by every load of the run: the models
    built from a teacher that ships its own code are saved with that code too.
    """

    def __init__(self, teacher: str, cfg: GridConfig, preset: str, dataset: str, out: Path, *,
                 trust_remote_code: bool = False):
        self.teacher, self.cfg, self.preset, self.dataset, self.out = teacher, cfg, preset, dataset, Path(out)
        self.trust_remote_code = trust_remote_code
        self.models = self.out / "models"
        self.results_path = self.out / "results.json"
        self.data: DataConfig | None = None  # set with the splits (run)
        self.max_length = cfg.finetune.max_length  # the baseline's: every row is scored and timed with it
        self.served = served_backend(cfg)  # what every served block runs
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
        self.data = DataConfig(self.dataset, text_col=self.cfg.text_col, label_col=self.cfg.label_col,
                               max_train_rows=self.cfg.max_train_rows)
        self.splits = load_splits(self.data)
        self.unlearnable = unlearnable_classes(self.splits)
        self._save()  # results.json marks the folder as this grid's before any model is in it: an early kill resumes
        self.ctx = open_context(self.settings, self.splits, self.data, self.models,
                                trust_remote_code=self.trust_remote_code)
        unfit = {n: why for n in self.cfg.rows if (why := self._left_out(parse_row(n)))}
        if unfit:
            _console.print(
                "left out, the teacher cannot give them their shape: " + "; ".join(f"{n} ({why})"
                                                                                   for n, why in unfit.items()),
                markup=False, highlight=False)
        for name in self.cfg.rows:  # a bad transfer file stops here, before any row is trained
            if parse_row(name).tr and self.rows.get(name, {}).get("status") != "done" and name not in unfit:
                transfer_set(self.ctx, parse_row(name))
        if self.stale:
            _console.print(
                f"preset settings changed since these rows were built; building again: {', '.join(self.stale)}")
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
        compare_to_baseline(self.rows, self.splits.test.labels)
        start = time.time()
        time_rows(self.ctx, self.rows)
        self.timing_seconds = time.time() - start
        self._save()
        return self.out

    def _left_out(self, spec: RowSpec) -> str | None:
        return left_out(spec, self.cfg, self.ctx.teacher_layers, self.ctx.teacher_hidden)

    def _finished(self, row: dict) -> None:
        """A done row's models, by seed, for the rows built from it (`rowspec.built_from`)."""
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
            "name": spec.name, "status": "done", "settings": self.settings_of(spec), "backend": backend,
            "train_precision": precision if spec.mp else "fp32"
        }
        with Energy(country_iso_code=self.cfg.measure.country) as energy:
            if spec.served_from_another:
                source, how = kind.source(self, spec)
                if self.rows.get(source, {}).get("status") != "done":
                    raise MahaError(f"row '{source}' has not finished, so '{spec.name}' has no model to serve")
                model_dir = self.rows[source]["model_dir"]
                scores = score(self.ctx, model_dir, backend, self.unlearnable)
                runs = [{"seed": None, "model_dir": model_dir, "train_seconds": 0.0, **scores}]
                row.update(source_row=source, chosen_by=how)
            else:
                runs = self._runs(spec, row["settings"])
            row.update(summary(runs, self._structure(runs[0]["model_dir"])))
            if self._wants_served(spec):
                row["served"] = served_block(self.ctx, row["model_dir"], self.served, self.unlearnable)
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
            runs.append({"seed": seed, **built, **score(self.ctx, built["model_dir"], backend, self.unlearnable)})
            if seeds_of(self.cfg, spec) > 1:
                self.rows[spec.name] = {"name": spec.name, "status": "partial", "settings": settings, "seeds": runs}
                self._save()
        return runs

    def _structure(self, model_dir: str) -> dict:
        return structure(model_dir, self._teacher_weights, trust_remote_code=self.trust_remote_code)

    def _wants_served(self, spec: RowSpec) -> bool:
        return self.cfg.served_blocks and KINDS[spec.kind].compressed and not spec.served_from_another

    def _complete(self, row: dict) -> None:
        """Add the served block a finished row lacks (`served_blocks` turned on, or another served backend
        since it was built), without rebuilding its model."""
        if self._wants_served(parse_row(row["name"])) and row.get("served", {}).get("backend") != self.served:
            row["served"] = served_block(self.ctx, row["model_dir"], self.served, self.unlearnable)

    def pick_best(self) -> tuple[str, str]:
        """The fastest compressed row within `best_within_points` of the teacher's DEV accuracy (never
        test), and how it was chosen. Rows are chosen before the timing session, so "fastest" is its proxy: fewest
        encoder Linear weights (FLOPs per token); ties go to higher dev accuracy."""
        teacher = self.rows.get("baseline", {})
        candidates = [r for n, r in self.rows.items() if r.get("status") == "done" and is_candidate(parse_row(n))]
        if teacher.get("status") != "done" or not candidates:
            raise MahaError(
                "'best' needs the baseline and a finished compressed row (kd, kdN, pNN, pNN+kd, kdpNN, kdlN)")
        points = self.cfg.best_within_points
        floor = teacher["dev_accuracy"] - points / 100
        within = f"{points:g} point{'s' if points != 1 else ''}"
        close = [r for r in candidates if r["dev_accuracy"] >= floor]
        listed = ", ".join(f"{r['name']} {r['dev_accuracy']:.2%}"
                           for r in sorted(candidates, key=lambda r: r["encoder_linear_weights"]))
        if close:
            pick = min(close, key=lambda r: (r["encoder_linear_weights"], -r["dev_accuracy"]))
            how = (f"fewest encoder Linear weights (speed proxy, chosen before timing) among rows within {within} "
                   f"of the teacher's dev accuracy {teacher['dev_accuracy']:.2%} (dev accuracy: {listed})")
        else:
            pick = max(candidates, key=lambda r: r["dev_accuracy"])
            how = (f"no row within {within} of the teacher's dev accuracy {teacher['dev_accuracy']:.2%}: the most "
                   f"accurate on dev (dev accuracy: {listed})")
        return pick["name"], how

    def _teacher_weights(self) -> int:
        """Encoder Linear weights of the dense teacher: the denominator of every row's sparsity."""
        if not hasattr(self, "_dense_weights"):
            teacher = load_skeleton(self.ctx.teacher_dir, trust_remote_code=self.trust_remote_code)
            self._dense_weights = sum(encoder_linear_count(teacher))
        return self._dense_weights

    def _save(self) -> None:
        order = {n: i for i, n in enumerate(self.cfg.rows)}
        rows = sorted(self.rows.values(), key=lambda r: order.get(r["name"], len(order)))
        write_results(self.results_path, self._meta(), rows, caveats(rows, self.unlearnable))

    def _meta(self) -> dict:
        split_summary = self.splits.summary()
        return {
            "preset": self.preset, "dataset": self.dataset, "teacher": self.teacher,
            "train_rows": split_summary["splits"]["train"]["rows"], "dev_rows": split_summary["splits"]["dev"]["rows"],
            "test_rows": split_summary["splits"]["test"]["rows"], "max_length": self.max_length,
            "seeds": self.cfg.seeds, "size_unit": "MiB", "machine": machine(),
            "timing_session_seconds": self.timing_seconds, "timing_texts": "a seeded random sample of "
            f"{min(self.cfg.measure.texts, split_summary['splits']['test']['rows'])} "
            "test texts, in random order (arrival order)", "unlearnable_classes": self.unlearnable, "versions": {
                p: version(p)
                for p in ("torch", "transformers", "onnxruntime", "openvino", "nncf", "codecarbon")
            }
            | {"python": platform.python_version(), "mahacompress": version("mahacompress")}, "config": asdict(
                self.cfg), "test_labels": list(self.splits.test.labels)
        }


def reproduce(teacher: str, preset: str | Path, out: Path, dataset: str | None = None, *, seeds: int | None = None,
              text_col: str | None = None, label_col: str | None = None, trust_remote_code: bool = False,
              finish: Callable[[Path], Path] | None = None) -> list[Path]:
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
