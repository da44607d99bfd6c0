"""One process vs several on the same data and global batch: wall time and test scores.

Runs `mahacompress finetune` as one process, then through torchrun as `--processes` processes (CPU
processes join with gloo; on GPUs each process takes one), with identical settings: the global
batch is `--batch-size` in both runs, so they follow the same steps and should score alike. Wall
time is that of the whole command (interpreter start, data, training, evaluation, saving); the
training loop's own time comes from each run's training.json. On a CPU the processes share the
machine's cores (each gets OMP_NUM_THREADS = cores / processes), so a speedup is not expected
there: the figure says what the coordination costs.

    .venv/bin/python benchmarks/multiprocess.py --model runs/cpu-quick/models/baseline --out reports/multiprocess
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mahacompress.core.config import DataConfig
from mahacompress.core.files import write_json
from mahacompress.data.splits import load_splits
from mahacompress.infer.evaluate import evaluate_model


def run(processes: int, args: argparse.Namespace, out_dir: Path) -> dict:
    """Fine-tune with `processes` processes; wall time, the loop's own time and test scores."""
    command = [
        "finetune", "--model", args.model, "--out",
        str(out_dir), "--dataset", args.dataset, "--epochs",
        str(args.epochs), "--batch-size",
        str(args.batch_size), "--max-length",
        str(args.max_length), "--patience", "0", "--seed",
        str(args.seed)
    ]
    if args.max_train_rows:
        command += ["--max-train-rows", str(args.max_train_rows)]
    launcher = ([sys.executable, "-m", "mahacompress"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
        str(processes), "-m", "mahacompress"
    ])
    threads = max(1, (os.cpu_count() or 1) // processes)
    start = time.perf_counter()
    subprocess.run([*launcher, *command], check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - start
    training = json.loads((out_dir / "training.json").read_text())["result"]
    splits = load_splits(DataConfig(args.dataset, max_train_rows=args.max_train_rows, seed=args.seed))
    test = evaluate_model(str(out_dir), splits, "test", max_length=args.max_length)
    return {
        "processes": processes, "threads_per_process": threads, "wall_seconds": wall,
        "train_loop_seconds": training["seconds"], "steps": training["steps"],
        "best_dev_macro_f1": training["best_dev_macro_f1"], "test_accuracy": test["accuracy"],
        "test_macro_f1": test["macro_f1"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder or hub id to fine-tune")
    parser.add_argument("--dataset", default="mahanews-shc")
    parser.add_argument("--max-train-rows", type=int, default=None)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch, in both runs")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("reports/multiprocess"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="multiprocess-") as work:
        runs = [run(n, args, Path(work) / f"p{n}") for n in (1, args.processes)]
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    write_json(args.out / "results.json", {"settings": settings, "cpu_count": os.cpu_count(), "runs": runs})
    for r in runs:
        print(f"{r['processes']} process(es): {r['wall_seconds']:.1f} s wall, {r['train_loop_seconds']:.1f} s "
              f"training, test accuracy {r['test_accuracy']:.4f}, macro-F1 {r['test_macro_f1']:.4f}")


if __name__ == "__main__":
    main()
