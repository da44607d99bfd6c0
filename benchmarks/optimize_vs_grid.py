"""Is `optimize`'s answer at least as fast as the grid's `best` row? Both timed in one session, beside the teacher.

`optimize` times its winner beside the teacher, and the grid times its rows beside its own baseline, each in its
own session; a ratio from one session is not compared with one from another (a machine's speed drifts between
sessions). This loads these models into one interleaved session (measure.latency: end to end, tokenisation
included, at the batch size optimize searched for, same texts, median of the repeats):

- the grid's teacher (its `baseline` row) in fp32: the reference of every speedup below;
- the grid's row (`--row`, e.g. `best+openvino`) in the backend the grid served it with (or `--backend`, e.g. a
  grid without `best+X` rows: its chosen row in its `served` block's backend);
- optimize's winner, trimmed as it ships (`served_dir`), in the runtime optimize chose, and its untrimmed
  checkpoint in the same runtime (what trimming the vocabulary changes in speed: it should be nothing); when the
  teacher itself won, only the untrimmed one.

Accuracy is not re-scored: each model's test figure is the one its own run reported (the grid's row and
optimize's exported folder), and both are copied into the report.

    .venv/bin/python benchmarks/optimize_vs_grid.py --optimize runs/optimize-mahanews --grid runs/cpu-quick \
        --row best+openvino --out reports/optimize/mahanews/vs-grid

Writes OUT/results.json and OUT/report.md (with the CPU's instruction sets, hardware.describe()); the ONNX and
OpenVINO files it builds go to the optimize run's own cache/, never into OUT (a report folder is committed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mahacompress.core.config import DataConfig
from mahacompress.core.files import SEARCH_RECORD, write_json, write_text
from mahacompress.core.hardware import describe
from mahacompress.data.splits import load_splits
from mahacompress.infer import CALIBRATED_BACKENDS, load_backend
from mahacompress.infer.calibration import calibration_sample
from mahacompress.measure.latency import latency
from mahacompress.study.timing import timing_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--optimize", type=Path, required=True, help="an optimize --out folder (optimize.json)")
    parser.add_argument("--grid", type=Path, required=True, help="a reproduce --out folder (results.json)")
    parser.add_argument("--row", required=True, help="the grid row to compare with, e.g. best+openvino")
    parser.add_argument(
        "--backend", help="the runtime to time the grid row in (default: the row's own; a grid that "
        "has no best+X row: its chosen row's `served` backend)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    report = json.loads((args.optimize / "optimize.json").read_text(encoding="utf-8"))
    grid = json.loads((args.grid / "results.json").read_text(encoding="utf-8"))
    rows = {r["name"]: r for r in grid["rows"]}
    if args.row not in rows:
        parser.error(f"{args.grid / 'results.json'}: no row {args.row!r} (rows: {', '.join(rows)})")
    row, teacher = rows[args.row], rows["baseline"]
    grid_backend = args.backend or row["backend"]
    winner = report["winner"]
    trial_file = args.optimize / "trials" / f"{winner['name'].replace('+', '_')}.json"  # none when the teacher won
    trial = json.loads(trial_file.read_text("utf-8")) if trial_file.is_file() else None
    meta = report["meta"]
    splits = load_splits(DataConfig(**json.loads((args.optimize / SEARCH_RECORD).read_text("utf-8"))["data"]))
    texts = timing_texts(splits.test.texts, grid["meta"]["config"]["measure"]["texts"])  # the texts the grid timed
    calibration = calibration_sample(splits.train.texts)
    batch = meta["config"]["batch_size"]
    models = {
        "teacher (grid baseline) | fp32": (teacher["model_dir"], "fp32"),
        f"grid {args.row} | {grid_backend}": (row["model_dir"], grid_backend)
    }
    if trial:
        models[f"optimize {winner['name']} trimmed | {winner['runtime']}"] = (trial["served_dir"], winner["runtime"])
    models[f"optimize {winner['name']} untrimmed | {winner['runtime']}"] = (winner["model_dir"], winner["runtime"])
    cache = args.optimize / "cache"  # ONNX/OpenVINO files (hundreds of MiB) beside the run, never in the report folder
    backends = {
        name: load_backend(folder, runtime, max_length=meta["max_length"], threads=2, cache_dir=cache,
                           calibration_texts=calibration if runtime in CALIBRATED_BACKENDS else None)
        for name, (folder, runtime) in models.items()
    }
    started = time.monotonic()
    timing = latency(backends, texts, batch_sizes=(batch, ), repeats=args.repeats, threads=2, modes={batch: ("e2e", )})
    key = f"e2e_ms_b{batch}_p50"
    reference = timing["teacher (grid baseline) | fp32"][key]
    result = {
        "machine": describe(), "batch_size": batch, "texts": len(texts), "repeats": args.repeats,
        "session_seconds": time.monotonic() - started, "models": {
            name: {
                "folder": folder, "runtime": runtime, "ms": timing[name][key], "speedup": reference / timing[name][key]
            }
            for name, (folder, runtime) in models.items()
        }, "test": {
            f"grid {args.row}": {"accuracy": row["accuracy"], "macro_f1": row["macro_f1"]},
            f"optimize {winner['name']} (exported)": winner["export"]["test"],
            "teacher (grid baseline)": {"accuracy": teacher["accuracy"], "macro_f1": teacher["macro_f1"]}
        }
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "results.json", result)
    lines = [
        f"# optimize's winner against the grid's `{args.row}`, one timing session", "",
        f"- machine: {result['machine']}",
        f"- end to end (tokenisation included), batch {batch}, {len(texts)} test texts in arrival order, median of "
        f"{args.repeats} interleaved repeats; session {result['session_seconds']:.0f} s", "",
        "| model | runtime | ms per batch | speedup over the teacher in fp32 |", "|---|---|---|---|"
    ]
    lines += [
        f"| {name.split(' | ')[0]} | {m['runtime']} | {m['ms']:.1f} | {m['speedup']:.2f}x |"
        for name, m in result["models"].items()
    ]
    lines += ["", "Test scores, each from its own run (not re-scored here):", ""]
    lines += [
        f"- {name}: accuracy {t['accuracy']:.2%}, macro-F1 {t['macro_f1']:.2%}" for name, t in result["test"].items()
    ]
    write_text(args.out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
