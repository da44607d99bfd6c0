"""Which runtime serves a compressed classifier fastest at equal accuracy, on this CPU.

On the same model folders (teacher, pruned or distilled students, pruned checkpoints with per-layer
head counts included), compares PyTorch fp32 with ONNX Runtime (fp32, dynamic int8, dynamic int8 after
its transformer graph fusion, static int8 calibrated on training texts) and OpenVINO (fp32, NNCF int8
calibrated on the same texts). Every mode is timed in one interleaved session (measure.latency: same
pre-tokenised batches, rotating order, median of the repeats; tokenisation excluded), at batch 32 and
batch 1, and scored on the test split (static int8 can lose accuracy) with its agreement with the
model's own fp32 predictions. A mode that cannot be built or run stays in the report with its reason.

    .venv/bin/python benchmarks/runtimes.py --model runs/cpu-quick/models/baseline \\
        --model runs/cpu-quick/models/p50+kd --out reports/runtimes

Writes OUT/results.json and OUT/report.md (with the CPU's instruction sets, hardware.describe()).
"""

from __future__ import annotations

import argparse
import os
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from mahacompress.core.config import DataConfig
from mahacompress.core.files import write_json, write_text
from mahacompress.core.hardware import describe, unsupported_reason
from mahacompress.data.splits import load_splits
from mahacompress.infer import load_backend
from mahacompress.infer.build import fusion_record, served_files
from mahacompress.infer.calibration import CALIBRATION_TEXTS, calibration_sample
from mahacompress.infer.evaluate import classification_metrics, model_labels, unlearnable_classes
from mahacompress.measure.footprint import size_on_disk_mb
from mahacompress.measure.latency import latency, speedups

MODES = ("fp32", "onnx", "onnx-int8", "onnx-int8-fused", "onnx-int8-static", "openvino", "openvino-int8")
PACKAGES = ("torch", "transformers", "onnxruntime", "openvino", "nncf")


def build(models: list[str], modes: list[str], splits, args) -> tuple[dict, dict]:
    """Load every (model, mode), score it on the test texts; returns rows and the loaded backends."""
    calibration = calibration_sample(splits.train.texts, args.calibration)
    test = (splits.test if args.test_rows is None else type(splits.test)(splits.test.texts[:args.test_rows],
                                                                         splits.test.labels[:args.test_rows]))
    rows, backends = {}, {}
    for model in models:
        labels = model_labels(model)
        to_dataset = np.array([splits.labels.index(lab) if lab in splits.labels else -1 for lab in labels])
        reference = None
        for mode in modes:
            name = f"{Path(model).name}/{mode}"
            row = {"model": model, "mode": mode}
            rows[name] = row
            reason = unsupported_reason(mode)
            if reason:
                row.update(status="skipped", reason=reason)
                continue
            start = time.time()
            try:
                backend = load_backend(model, mode, max_length=args.max_length, threads=args.threads,
                                       cache_dir=args.cache_dir, calibration_texts=calibration)
                row["build_seconds"] = time.time() - start
                predicted = backend.logits(test.texts, batch_size=32).argmax(1)
            except Exception as exc:  # a runtime that cannot handle this model is a result, not a crash
                row.update(status="failed", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                continue
            metrics = classification_metrics(test.labels, to_dataset[predicted], splits.labels,
                                             unlearnable_classes(splits))
            reference = predicted if mode == "fp32" else reference
            row.update(status="done", accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"],
                       accuracy_learnable=metrics.get("learnable", {}).get("accuracy"),
                       agreement_with_fp32=None if reference is None else float(
                           (predicted == reference).mean()), disk_mb=_disk_mb(model, mode,
                                                                              args.cache_dir), test_rows=len(test))
            if mode == "onnx-int8-fused":
                row["fusion"] = fusion_record(model, args.cache_dir)
            backends[name] = backend
    return rows, backends


def _disk_mb(model: str, mode: str, cache_dir) -> float:
    if mode == "fp32":
        return size_on_disk_mb(model)
    return sum(f.stat().st_size for f in served_files(model, mode, cache_dir=cache_dir)) / 2**20


def report(result: dict) -> str:
    """One markdown table per model; speedups against the first model's PyTorch fp32 and its own fp32."""
    s = result["settings"]
    lines = [
        "# Serving runtimes on this CPU", "", f"CPU: {result['machine']}.", "",
        f"{s['threads']} threads, median of {s['repeats']} interleaved repeats ({s['timed_texts']} test texts "
        f"timed per repeat; batch 1 uses the first 32), max_length {s['max_length']}, tokenisation excluded. "
        f"Accuracy on {s['test_rows']} test rows; static int8 calibrated on {s['calibration_texts']} training "
        "texts. Speedup = the first model's PyTorch fp32 latency / this row's (`own` = against this model's "
        "fp32). Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".", ""
    ]
    for model in result["models"]:
        lines += [
            f"## {model}", "",
            "| mode | test acc. | macro-F1 | agrees with fp32 | b32 ms | speedup b32 | own b32 | b1 ms | "
            "speedup b1 | disk MB | note |", "|---|---|---|---|---|---|---|---|---|---|---|"
        ]
        rows = {k: r for k, r in result["rows"].items() if r["model"] == model}
        own = rows.get(f"{Path(model).name}/fp32", {})
        for r in rows.values():
            if r["status"] != "done":
                lines.append(f"| {r['mode']} | | | | | | | | | | {r['status']}: {r['reason']} |")
                continue
            note = ""
            if "fusion" in r:
                fused = ", ".join(f"{k} {v}" for k, v in r["fusion"]["fused_operators"].items())
                note = f"fused: {fused}" + ("" if r["fusion"]["attention_fused"] else " (attention not fused)")
            own_b32 = own.get("latency_ms_b32_p50", float("nan")) / r["latency_ms_b32_p50"]
            agree = "" if r["agreement_with_fp32"] is None else f"{r['agreement_with_fp32']:.1%}"
            lines.append(f"| {r['mode']} | {r['accuracy']:.2%} | {r['macro_f1']:.2%} | {agree} | "
                         f"{r['latency_ms_b32_p50']:.1f} | {r['speedup_b32']:.2f}x | {own_b32:.2f}x | "
                         f"{r['latency_ms_b1_p50']:.2f} | {r['speedup_b1']:.2f}x | {r['disk_mb']:.1f} | {note} |")
        lines.append("")
    return "\n".join(lines)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="a classifier folder (repeat for several)")
    ap.add_argument("--dataset", default="mahanews-shc")
    ap.add_argument("--data-dir")
    ap.add_argument("--out", type=Path, default=Path("reports/runtimes"))
    ap.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    ap.add_argument("--max-length", type=int, default=64, help="the grid's max_length (cpu-quick: 64)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--texts", type=int, default=256, help="test texts timed per repeat")
    ap.add_argument("--test-rows", type=int, help="score only the first N test rows (default: all)")
    ap.add_argument("--calibration", type=int, default=CALIBRATION_TEXTS,
                    help="training texts for static int8 calibration")
    ap.add_argument("--cache-dir", type=Path,
                    help="where served files go (default: the derived-file cache, $MAHACOMPRESS_CACHE/derived)")
    args = ap.parse_args()
    if "fp32" not in args.modes:
        ap.error("--modes must include fp32: speedups and agreement are measured against it")
    if len({Path(m).name for m in args.model}) < len(args.model):
        ap.error("--model folders must have different names (rows are named by folder)")
    modes = ["fp32"] + [m for m in args.modes if m != "fp32"]
    splits = load_splits(DataConfig(args.dataset, data_dir=args.data_dir))
    rows, backends = build(args.model, modes, splits, args)
    timed = splits.test.texts[:args.texts]
    timing = latency(backends, timed, repeats=args.repeats, warmup=args.warmup, threads=args.threads)
    speedups(timing, baseline=f"{Path(args.model[0]).name}/fp32")
    for name, t in timing.items():
        rows[name].update(t)
    result = {
        "machine": f"{describe()}, {os.cpu_count()} logical CPUs", "models": args.model, "rows": rows,
        "versions": {p: _version(p)
                     for p in PACKAGES}, "settings": {
                         "threads": args.threads, "repeats": args.repeats, "timed_texts": len(timed),
                         "max_length": args.max_length, "calibration_texts": args.calibration,
                         "test_rows": args.test_rows or len(splits.test), "dataset": args.dataset
                     }
    }
    write_json(args.out / "results.json", result)
    write_text(args.out / "report.md", report(result))
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
