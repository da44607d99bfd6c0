"""Which settings the static-embedding student should use: the measurement behind the `static` presets.

Builds static students of one fine-tuned teacher with the preset's `static` training settings and varies
what the static recipe leaves open: whether the table trains too or only the head (`freeze_embeddings`),
the table's width (`static_dim`), the transfer set, and the KD weight (alpha 0 is the no-KD control: the
student learns from the labels alone). Every student is scored on dev (used to choose) and test
(reported); each finished setting is written at once, so an interrupted sweep resumes. Accuracy only:
nothing here is timed (the grid times the rows it keeps).

    .venv/bin/python benchmarks/static_sweep.py --teacher runs/sentiment-quick/models/baseline \
        --preset sentiment-quick --out reports/static-sweep/sentiment
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from mahacompress.core.config import DataConfig
from mahacompress.core.files import write_json, write_text
from mahacompress.data.splits import load_splits
from mahacompress.data.transfer import build_transfer
from mahacompress.infer.evaluate import evaluate_model
from mahacompress.study.preset import load_preset
from mahacompress.train.static import distill_static

# (name, settings): "transfer" adds the preset's transfer set, "dim" the table width, the rest is TrainConfig.
# Each setting names its lr and kd_alpha, so a name means the same whatever the preset's `static` section says
# (the first sentiment sweep ran on lr 5e-3, alpha 0.5; the presets now use what it chose).
SETTINGS = [
    ("table+head a0.5", {"lr": 5e-3, "kd_alpha": 0.5}),
    ("head only a0.5", {"freeze_embeddings": True, "lr": 2e-2, "kd_alpha": 0.5}),
    ("table+head CE only", {"lr": 5e-3, "kd_alpha": 0.0}),
    ("table+head a0.5 dim128", {"lr": 5e-3, "kd_alpha": 0.5, "dim": 128}),
    ("table+head a0.5 +tr", {"lr": 5e-3, "kd_alpha": 0.5, "transfer": True}),
    ("head only a0.5 +tr", {"freeze_embeddings": True, "lr": 2e-2, "kd_alpha": 0.5, "transfer": True}),
    # the table overfits within 1-2 epochs at lr 5e-3: slower learning, and more weight on the teacher
    ("table+head a0.5 +tr lr1e-3", {"transfer": True, "lr": 1e-3, "kd_alpha": 0.5}),
    ("table+head a0.9 +tr lr1e-3", {"transfer": True, "lr": 1e-3, "kd_alpha": 0.9}),
    ("table+head a0.5 +tr lr3e-4", {"transfer": True, "lr": 3e-4, "kd_alpha": 0.5}),
    ("table+head a0.9 +tr lr3e-4", {"transfer": True, "lr": 3e-4, "kd_alpha": 0.9}),
    ("table+head a0.5 lr1e-3", {"lr": 1e-3, "kd_alpha": 0.5}),
    # the presets' choice without the transfer set, and the head alone at alpha 0.9 (MahaNews: 2,087 rows)
    ("table+head a0.9 lr3e-4", {"lr": 3e-4, "kd_alpha": 0.9}),
    ("head only a0.9 +tr", {"freeze_embeddings": True, "lr": 2e-2, "kd_alpha": 0.9, "transfer": True}),
    ("table+head a0.9 +tr lr3e-3", {"transfer": True, "lr": 3e-3, "kd_alpha": 0.9}),
    # the preset caps the transfer set (cpu-quick: 2,000 of the 15,231 pieces left of Marathi_LPC_Valid) to keep the
    # transformer
    # rows' training short; a static student's steps cost milliseconds, so all of them cost only the teacher's
    # labelling ("pieces": the cap, None for every piece)
    ("table+head a0.5 +tr lr1e-3 all pieces", {"transfer": True, "lr": 1e-3, "kd_alpha": 0.5, "pieces": None}),
    ("table+head a0.5 +tr lr1e-3 8k pieces", {"transfer": True, "lr": 1e-3, "kd_alpha": 0.5, "pieces": 8000}),
    ("table+head a0.5 +tr lr3e-4 all pieces", {"transfer": True, "lr": 3e-4, "kd_alpha": 0.5, "pieces": None}),
    ("table+head a0.9 +tr lr1e-3 all pieces", {"transfer": True, "lr": 1e-3, "kd_alpha": 0.9, "pieces": None}),
    ("table+head a0.5 +tr lr1e-3 all pieces dim384",
     {"transfer": True, "lr": 1e-3, "kd_alpha": 0.5, "pieces": None, "dim": 384},
     )
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--preset", default="sentiment-quick")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="*", help="names of the settings to run (default: all)")
    args = parser.parse_args()
    cfg, preset = load_preset(args.preset)
    dataset = cfg.datasets[0]
    splits = load_splits(
        DataConfig(dataset, text_col=cfg.text_col, label_col=cfg.label_col, max_train_rows=cfg.max_train_rows))
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {"runs": {}}
    results["meta"] = {
        "teacher": args.teacher, "preset": preset, "dataset": dataset, "train_rows": len(splits.train),
        "dev_rows": len(splits.dev), "test_rows": len(splits.test), "static": cfg.static.__dict__,
        "static_dim": cfg.static_dim
    }
    transfers: dict = {}  # one transfer set per cap, built on first use
    for name, settings in SETTINGS:
        if (args.only and name not in args.only) or name in results["runs"]:
            continue
        settings = dict(settings)
        use_transfer, dim = settings.pop("transfer", False), settings.pop("dim", cfg.static_dim)
        pieces = settings.pop("pieces", cfg.transfer.max_pieces)
        if use_transfer and pieces not in transfers:
            transfers[pieces] = build_transfer(replace(cfg.transfer, max_pieces=pieces),
                                               splits.dev.texts + splits.test.texts, labelled=splits.train.texts)
        transfer = transfers.get(pieces) if use_transfer else None
        tcfg = replace(cfg.static, **settings)
        with tempfile.TemporaryDirectory() as tmp:
            info = distill_static(args.teacher, splits, tcfg, Path(tmp) / "student", dim=dim, transfer=transfer)
            scores = {
                split: evaluate_model(str(Path(tmp) / "student"), splits, split, backend="static",
                                      max_length=tcfg.max_length)
                for split in ("dev", "test")
            }
        results["runs"][name] = {
            "settings": {
                **settings, "transfer": use_transfer, "dim": dim, **({"max_pieces": pieces} if use_transfer else {})
            }, "dev_accuracy": scores["dev"]["accuracy"], "dev_macro_f1": scores["dev"]["macro_f1"],
            "test_accuracy": scores["test"]["accuracy"], "test_macro_f1": scores["test"]["macro_f1"],
            "pieces": info["static"]["pieces_kept"], "dev_history": info["result"]["dev_history"],
            "seconds": info["result"]["seconds"]
        }
        write_json(results_path, results)
        print(f"{name}: dev {scores['dev']['accuracy']:.2%} test {scores['test']['accuracy']:.2%}", flush=True)
    lines = [
        f"# Static-embedding student settings on `{dataset}` (teacher `{args.teacher}`)", "",
        "| setting | dev acc. | dev macro-F1 | test acc. | test macro-F1 | pieces | train s | dev macro-F1 per epoch |",
        "|---|---|---|---|---|---|---|---|"
    ]
    for name, r in results["runs"].items():
        curve = " ".join(f"{f:.3f}" for _, f in r["dev_history"])
        lines.append(f"| {name} | {r['dev_accuracy']:.2%} | {r['dev_macro_f1']:.2%} | {r['test_accuracy']:.2%} | "
                     f"{r['test_macro_f1']:.2%} | {r['pieces']} | {r['seconds']:.0f} | {curve} |")
    write_text(args.out / "report.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
