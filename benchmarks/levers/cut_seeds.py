"""More training seeds of a teacher-assistant student outside the grid, for benchmarks/levers.py --extra.

`mahacompress distill --seed S` seeds the training set's stratified slice as well as the training, so its seeds
differ in data too; a grid row's `row_seeds` vary the training alone. This trains the cut student the way a
`row_seeds` seed of `kdlN+tr` in benchmarks/levers/sentiment-levers.yaml would (the data slice at the preset's
seed, the preset's `distill` and `transfer` settings, the training seed S), at the epochs given:

    .venv/bin/python benchmarks/levers/cut_seeds.py runs/sentiment-levers --layers 3 --epochs 4 --seed 43 \
        --out runs/kdl-epochs/kdl3_tr_e4_seed43
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from mahacompress.core.config import DataConfig
from mahacompress.data.splits import load_splits
from mahacompress.data.transfer import for_splits
from mahacompress.study.preset import load_preset
from mahacompress.train.distill import distill

PRESET = Path(__file__).with_name("sentiment-levers.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the levers run (its models/baseline and models/kd_tr)")
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--epochs", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True, help="the training seed (the data slice stays the preset's)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cfg, _ = load_preset(str(PRESET))
    data = DataConfig(cfg.datasets[0], text_col=cfg.text_col, label_col=cfg.label_col,
                      max_train_rows=cfg.max_train_rows)
    splits = load_splits(data)
    transfer = for_splits(cfg.transfer, splits)
    distill(str(args.run / "models" / "baseline"), f"layers:{args.layers}", splits,
            replace(cfg.distill, epochs=args.epochs, seed=args.seed), str(args.out), resume=True, transfer=transfer,
            data=data, cut_from=str(args.run / "models" / "kd_tr"))


if __name__ == "__main__":
    main()
