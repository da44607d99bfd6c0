"""The study's grid: build every row, measure them all the same way, survive interruption.

A row name says how its model is made: `baseline` (the fine-tuned teacher), `mp` (the teacher
fine-tuned and run in bf16), `kd` (a layer-subset student distilled from the teacher), `pNN` (pruned to
NN% encoder sparsity and compacted), `+kd` (pruned while distilling), `+mp` (trained and run in bf16),
and `best+int8` / `best+onnx` (the best pruned+KD model served with dynamic int8 in PyTorch, or int8 in
ONNX Runtime). Data flows one way: rows are built and scored one at a time (each finished row is
written to `results.json` at once and never rebuilt), then every finished row is timed in one
interleaved session so speedups compare like with like, then `report` reads `results.json` alone.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, replace
from importlib import metadata, resources
from pathlib import Path

import torch
import yaml
from rich.console import Console
from transformers import AutoConfig

from .config import DataConfig, GridConfig, from_dict
from .data import load_splits
from .distill import distill
from .errors import MahaError
from .evaluate import evaluate_model
from .files import write_json
from .measure import Energy, count_params, latency, peak_memory_mb, size_on_disk_mb, speedups
from .models import check_model_dir, load_classifier
from .precision import load_backend, onnx_path, quantize_int8, training_precision
from .pruning.prune import prune
from .report import write_report
from .train import finetune
from .validate import check_max_length, check_model, check_output_dir, check_train_config

_console = Console(stderr=True)
ACCURACY_SLACK = 0.01  # "best" = the fastest pruned+KD row within 1 accuracy point of the baseline


@dataclass(frozen=True)
class RowSpec:
    """What a row name asks for."""

    name: str
    make: str  # "teacher" | "finetune" | "layers" | "prune" | "baseline" | "best" (the last two: served differently)
    sparsity: float | None = None
    kd: bool = False
    mp: bool = False
    backend: str = "fp32"


def parse_row(name: str) -> RowSpec:
    """`p25+kd+mp` -> RowSpec(make="prune", sparsity=0.25, kd=True, mp=True, backend="bf16")."""
    head, *mods = name.split("+")
    known = {"kd", "mp", "bf16", "int8", "onnx"}
    if set(mods) - known or len(set(mods)) != len(mods):
        raise MahaError(f"row '{name}': unknown or repeated modifier (known: {', '.join(sorted(known))})")
    kd, mp = "kd" in mods, "mp" in mods
    serving = {"bf16": "bf16", "int8": "int8", "onnx": "onnx-int8"}
    if head == "baseline" and not mods:
        return RowSpec(name, "teacher")
    if head in ("baseline", "best") and len(mods) == 1 and mods[0] in serving:
        # the same model served another way: inference-only precision, no training
        return RowSpec(name, head, kd=head == "best", backend=serving[mods[0]])
    if head == "mp" and not mods:
        return RowSpec(name, "finetune", mp=True, backend="bf16")
    if head == "kd" and not mods:
        return RowSpec(name, "layers", kd=True)
    match = re.fullmatch(r"p(\d{1,2})", head)
    if match and 0 < int(match.group(1)) < 100 and set(mods) <= {"kd", "mp"}:
        return RowSpec(name, "prune", sparsity=int(match.group(1)) / 100, kd=kd, mp=mp,
                       backend="bf16" if mp else "fp32")
    raise MahaError(f"row '{name}': expected baseline[+bf16|+int8|+onnx], mp, kd, pNN[+kd][+mp], best+int8, "
                    "best+onnx or best+bf16")


def load_preset(preset: str | Path) -> tuple[GridConfig, str]:
    """A preset by name (shipped in mahacompress/presets) or a YAML path; unknown keys stop here."""
    path = Path(preset)
    if not path.is_file():
        shipped = resources.files("mahacompress") / "presets" / f"{preset}.yaml"
        if not shipped.is_file():
            names = sorted(p.name.removesuffix(".yaml") for p in (resources.files("mahacompress") / "presets").iterdir()
                           if p.name.endswith(".yaml"))
            raise MahaError(f"preset '{preset}': not a file and not one of {', '.join(names)}")
        path = Path(str(shipped))
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise MahaError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    cfg = from_dict(GridConfig, values, str(path))
    for row in cfg.rows:
        parse_row(row)
    return cfg, path.stem


class Grid:
    """One reproduction: an out folder holding models/, results.json and the report."""

    def __init__(self, teacher: str, cfg: GridConfig, preset: str, dataset: str, out: Path):
        self.teacher, self.cfg, self.preset, self.dataset, self.out = teacher, cfg, preset, dataset, Path(out)
        self.models = self.out / "models"
        self.results_path = self.out / "results.json"
        self.rows: dict[str, dict] = {}
        self.stale: list[str] = []  # finished rows whose settings have changed since: built again
        if self.results_path.exists():
            saved = json.loads(self.results_path.read_text(encoding="utf-8"))
            for row in saved.get("rows", []):
                if row.get("status") != "done" or row["name"] not in cfg.rows:
                    continue
                if row.get("settings") == self._settings(parse_row(row["name"])):
                    self.rows[row["name"]] = row
                else:
                    self.stale.append(row["name"])

    # ------------------------------------------------------------------ building rows
    def run(self) -> Path:
        self.splits = load_splits(DataConfig(self.dataset, text_col=self.cfg.text_col, label_col=self.cfg.label_col,
                                             max_train_rows=self.cfg.max_train_rows))
        self.teacher_dir = self._resolve_teacher()
        if self.stale:
            _console.print(f"preset settings changed since these rows were built; building again: {', '.join(self.stale)}")
        for i, name in enumerate(self.cfg.rows, 1):
            if name in self.rows:
                continue  # finished in an earlier run with the same settings: never recomputed
            _console.print(f"[bold]row {i}/{len(self.cfg.rows)}: {name}[/bold] ({self.dataset})")
            try:
                self.rows[name] = self._build_and_score(parse_row(name))
            except MahaError as exc:
                self.rows[name] = {"name": name, "status": "failed", "reason": str(exc)}
            self._save()
        self._measure_all()
        self._save()
        return write_report(self.out)

    def _resolve_teacher(self) -> str:
        """The fine-tuned teacher: the given model if it already knows the labels, else fine-tuned here."""
        check_model_dir(self.teacher)
        config = AutoConfig.from_pretrained(self.teacher, trust_remote_code=True)
        labels = [config.id2label[i] for i in range(config.num_labels)]
        if labels == self.splits.labels:
            return self.teacher
        return str(self.models / "baseline")

    def _base_model(self) -> str:
        """What the teacher was fine-tuned from (for the `mp` row, which repeats that fine-tuning in bf16)."""
        teacher = self.teacher_dir
        if teacher != self.teacher:
            return self.teacher
        if self.cfg.base_model:
            return self.cfg.base_model
        record = Path(teacher) / "training.json"
        if record.is_file():
            return json.loads(record.read_text(encoding="utf-8"))["base_model"]
        raise MahaError(f"{teacher}: no training.json naming the model it was fine-tuned from and no base_model "
                        "in the preset, so `mp` cannot repeat its fine-tuning in mixed precision")

    def _build_and_score(self, spec: RowSpec) -> dict:
        start = time.time()
        precision = training_precision("auto", "cuda" if torch.cuda.is_available() else "cpu")
        backend = precision if spec.mp else spec.backend  # `mp` runs in the precision it trained in
        with Energy(country_iso_code=self.cfg.measure.country) as energy:
            model_dir, build = self._build(spec, precision)
            row = {"name": spec.name, "status": "done", "settings": self._settings(spec),
                   "model_dir": str(model_dir), "backend": backend,
                   "train_precision": precision if spec.mp else "fp32", **build, **self._score(model_dir, backend)}
        row["build_seconds"] = time.time() - start
        row.update(energy.as_dict())
        return row

    def _settings(self, spec: RowSpec) -> dict:
        """Everything in the preset that shapes a row's model: a re-run rebuilds the row when this changes.

        Serving rows (`baseline+X`, `best+X`) take the settings of every row they may be served from.
        """
        cfg = self.cfg
        made = {"teacher": {"teacher": self.teacher, "finetune": asdict(cfg.finetune)},
                "finetune": {"finetune": asdict(cfg.finetune), "base_model": cfg.base_model},
                "layers": {"distill": asdict(cfg.distill), "student_layers": cfg.student_layers},
                "prune": {"prune_train": asdict(cfg.prune_train), "prune": asdict(cfg.prune)}}
        source = {"baseline": "teacher", "best": "prune"}.get(spec.make, spec.make)
        return {"dataset": self.dataset, "max_train_rows": cfg.max_train_rows, **made[source]}

    def _build(self, spec: RowSpec, precision: str) -> tuple[Path, dict]:
        cfg, teacher = self.cfg, self.teacher_dir
        out = self.models / spec.name.replace("+", "_")  # remote-code module names must be identifiers

        def timed(fn, *args, **kwargs) -> dict:
            t0 = time.time()
            info = fn(*args, **kwargs)
            seconds = info.get("result", {}).get("seconds") if isinstance(info, dict) else None
            return {"train_seconds": seconds if seconds is not None else time.time() - t0}

        if spec.make == "teacher":
            if teacher == self.teacher:
                return Path(teacher), {"train_seconds": _recorded_seconds(Path(teacher))}
            return out, timed(finetune, self.teacher, self.splits, cfg.finetune, out, resume=True)
        if spec.make == "finetune":
            tcfg = replace(cfg.finetune, mixed_precision=precision)
            return out, timed(finetune, self._base_model(), self.splits, tcfg, out, resume=True)
        if spec.make == "layers":
            return out, timed(distill, teacher, f"layers:{cfg.student_layers}", self.splits, cfg.distill, out,
                              resume=True)
        if spec.make == "prune":
            tcfg = cfg.prune_train
            if spec.mp:
                tcfg = replace(tcfg, mixed_precision=precision)
            pcfg = replace(cfg.prune, sparsity=spec.sparsity)
            return out, timed(prune, teacher, self.splits, tcfg, pcfg, out, resume=True,
                              distill_from=teacher if spec.kd else None)
        source = self._best_pruned_kd() if spec.make == "best" else "baseline"
        if self.rows.get(source, {}).get("status") != "done":
            raise MahaError(f"row '{source}' has not finished, so '{spec.name}' has no model to serve")
        return Path(self.rows[source]["model_dir"]), {"source_row": source, "train_seconds": 0.0}

    def _best_pruned_kd(self) -> str:
        """The most compressed pruned+KD row within 1 point of the baseline, else the most accurate one."""
        candidates = [r for n, r in self.rows.items() if r.get("status") == "done" and parse_row(n).make == "prune"
                      and parse_row(n).kd and not parse_row(n).mp]
        if not candidates:
            raise MahaError("no pruned+KD row finished, so there is no 'best' model to serve")
        base = self.rows.get("baseline", {}).get("accuracy")
        close = [r for r in candidates if base is not None and r["accuracy"] >= base - ACCURACY_SLACK]
        pick = max(close, key=lambda r: r["encoder_sparsity"]) if close else max(candidates, key=lambda r: r["accuracy"])
        return pick["name"]

    def _score(self, model_dir: Path, backend: str) -> dict:
        m = evaluate_model(str(model_dir), self.splits, "test", backend=backend,
                           max_length=self.cfg.finetune.max_length)
        sub = m.get("without_manoranjan", {})
        model = load_classifier(str(model_dir))
        params = count_params(model)
        weights = encoder_linear_weights(model)
        return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "accuracy_wo_manoranjan": sub.get("accuracy"),
                "macro_f1_wo_manoranjan": sub.get("macro_f1"), "params_total": params["total"],
                "params_encoder": params["encoder"], "encoder_linear_weights": weights,
                "encoder_sparsity": 1 - weights / self._teacher_weights(),
                "test_rows": m["rows"], "per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()}}

    def _teacher_weights(self) -> int:
        """Encoder Linear weights of the dense teacher: the denominator of every row's sparsity."""
        if not hasattr(self, "_dense_weights"):
            self._dense_weights = encoder_linear_weights(load_classifier(self.teacher_dir))
        return self._dense_weights

    # ------------------------------------------------------------------ measuring
    def _measure_all(self) -> None:
        """Time every finished row in one interleaved session; sizes and peak memory per row."""
        done = [r for r in self.rows.values() if r.get("status") == "done"]
        if not done:
            return
        texts = self.splits.test.texts[: self.cfg.measure.texts]
        backends = {r["name"]: load_backend(r["model_dir"], r["backend"], max_length=self.cfg.finetune.max_length,
                                            threads=self.cfg.measure.threads) for r in done}
        timing = speedups(latency(backends, texts, repeats=self.cfg.measure.repeats, warmup=self.cfg.measure.warmup,
                                  threads=self.cfg.measure.threads))
        del backends
        for row in done:
            row.update(timing.get(row["name"], {}))
            row["disk_mb"] = _disk_mb(Path(row["model_dir"]), row["backend"])
            row["peak_rss_mb"] = peak_memory_mb(row["model_dir"], row["backend"], texts,
                                                threads=self.cfg.measure.threads)

    def _save(self) -> None:
        order = {n: i for i, n in enumerate(self.cfg.rows)}
        rows = sorted(self.rows.values(), key=lambda r: order.get(r["name"], len(order)))
        write_json(self.results_path, {"meta": self._meta(), "rows": rows, "caveats": self._caveats(rows)})

    def _meta(self) -> dict:
        summary = self.splits.summary()
        return {"preset": self.preset, "dataset": self.dataset, "teacher": self.teacher,
                "train_rows": summary["splits"]["train"]["rows"], "dev_rows": summary["splits"]["dev"]["rows"],
                "test_rows": summary["splits"]["test"]["rows"], "machine": _machine(),
                "versions": {p: _version(p) for p in ("torch", "transformers", "onnxruntime", "codecarbon")}
                | {"python": platform.python_version(), "mahacompress": _version("mahacompress")},
                "config": asdict(self.cfg)}

    def _caveats(self, rows: list[dict]) -> list[str]:
        notes = []
        if "Manoranjan" in self.splits.labels and not self.splits.summary()["splits"]["train"]["labels"].get("Manoranjan"):
            notes.append("No Manoranjan row survives in training (every one also occurs in the test file), so "
                         "no model can predict that class: compare the 'w/o Man.' columns with published figures.")
        if any(r.get("energy_measured") is False for r in rows):
            notes.append("Energy is CodeCarbon's estimate (no hardware power counters readable here), not a "
                         "measurement; CO2 uses the configured country's grid intensity.")
        failed = [r["name"] for r in rows if r.get("status") == "failed"]
        if failed:
            notes.append(f"Rows that could not run stay in the table with their reason: {', '.join(failed)}.")
        notes.append("Timings are ratios from one process on this machine; absolute milliseconds depend on it.")
        return notes


def _machine() -> str:
    """CPU model, core count and torch threads (plus the GPU when one is used)."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads{gpu}"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def encoder_linear_weights(model: torch.nn.Module) -> int:
    """Weights of the encoder's Linear layers that physically exist (masked zeros in kept blocks count)."""
    return sum(m.weight.numel() for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and ".encoder." in f".{n}.")


def _recorded_seconds(model_dir: Path) -> float | None:
    record = model_dir / "training.json"
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8")).get("result", {}).get("seconds")
    return None


def _disk_mb(model_dir: Path, backend: str) -> float:
    if backend.startswith("onnx"):
        return onnx_path(model_dir, quantized=backend == "onnx-int8").stat().st_size / 1e6
    if backend == "int8":
        buf = io.BytesIO()
        torch.save(quantize_int8(load_classifier(str(model_dir))).state_dict(), buf)
        return buf.tell() / 1e6
    return size_on_disk_mb(model_dir)


def reproduce(teacher: str, preset: str | Path, out: Path, dataset: str | None = None, *,
              text_col: str | None = None, label_col: str | None = None) -> list[Path]:
    """Run (or resume) the whole grid on each dataset of the preset (or on `dataset`); returns the reports.

    One dataset writes into `out`; several write into `out/<dataset>/`, one report each. `text_col` and
    `label_col` override the preset's column names. The preset's settings, the teacher and the output
    folder are all checked before the first row is built.
    """
    cfg, name = load_preset(preset)
    cfg = replace(cfg, text_col=text_col or cfg.text_col, label_col=label_col or cfg.label_col)
    datasets = [dataset] if dataset else cfg.datasets
    if not datasets:
        raise MahaError(f"preset '{name}': no datasets to run")
    check_model(teacher)
    for key in ("finetune", "distill", "prune_train"):
        check_train_config(getattr(cfg, key), where=f"preset {name}: {key}")
        check_max_length(teacher, getattr(cfg, key).max_length)
    out = check_output_dir(out)
    return [Grid(teacher, cfg, name, d, out if len(datasets) == 1 else out / Path(d).name).run() for d in datasets]
