"""Elastic depth against today's cuts (issue #39, item 1): can one training give every depth a search tries?

The grid run (`mahacompress reproduce` with `benchmarks/elastic/sentiment-elastic.yaml`) trains the 6-layer
`kd+tr` student twice, as today and with elastic depth (`kd+tr+el`: its 2-, 3- and 4-layer cuts learn the teacher's
logits beside it on every step), and cuts each to 3 and 2 layers followed by `cut_epochs` of distillation
(`kdl3+tr`, `kdl2+tr`, and their `+el` twins cut from the elastic student). This script adds what a search would get
for free: every 6-layer student of the run cut to each elastic depth and scored with no training of its own (the
layers a `kdlN` cut keeps, `distill.layer_student`, on the data and at the length its training.json records; dev
and test, in torch fp32). It writes, per student: test accuracy (mean ± SD over seeds), dev accuracy, the share of
the teacher's lead over TF-IDF it keeps (teacher and tfidf of the same run), its own training minutes and those
of the whole path (the 6-layer source included), and the served end-to-end speedup at batch 32 of the grid row of
that depth (a cut with no training has the architecture of the trained cut of its depth). Nothing is timed here.

    .venv/bin/mahacompress reproduce --teacher models/e5-small --preset benchmarks/elastic/sentiment-elastic.yaml \
        --out runs/sentiment-elastic
    .venv/bin/python benchmarks/elastic_depth.py runs/sentiment-elastic --out reports/elastic/sentiment
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from levers import summarise

from mahacompress.core.files import write_json, write_text

SOURCES = ("kd+tr", "kd+tr+el")  # the 6-layer students: today's, and the one trained with elastic depth


def cut_scores(folder: Path, depth: int) -> dict:
    """`folder`'s student cut to `depth` layers (as `kdlN` cuts it), scored on dev and test with no training."""
    from mahacompress.core.config import DataConfig
    from mahacompress.core.metrics import accuracy, macro_f1
    from mahacompress.data.splits import load_splits
    from mahacompress.infer.evaluate import predict_logits
    from mahacompress.models.load import load_classifier, load_tokenizer
    from mahacompress.train.distill import layer_student

    record = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    splits = load_splits(DataConfig(**record["data_config"]))
    model = layer_student(load_classifier(str(folder)), depth)
    tokenizer = load_tokenizer(str(folder))
    classes = list(range(len(splits.labels)))
    scores = {}
    for name in ("dev", "test"):
        split = getattr(splits, name)
        predicted = predict_logits(model, tokenizer, list(split.texts),
                                   max_length=record["train_config"]["max_length"]).argmax(-1)
        scores[name] = {
            "accuracy": accuracy(split.labels, predicted), "macro_f1": macro_f1(split.labels, predicted, classes)
        }
    return scores


def free_cuts(results: dict, depths: list[int]) -> list[dict]:
    """Each 6-layer student's cuts to `depths`, one entry per (source row, depth) with every seed's scores."""
    rows = {r["name"]: r for r in results["rows"] if r.get("status") == "done"}
    out = []
    for source in SOURCES:
        seeds = rows[source].get("seeds") or [rows[source]]
        for depth in depths:
            scored = [cut_scores(Path(s["model_dir"]), depth) for s in seeds]
            out.append({
                "source": source, "layers": depth, "seeds": len(scored), "accuracies": [
                    s["test"]["accuracy"] for s in scored
                ], "macro_f1s": [s["test"]["macro_f1"]
                                 for s in scored], "dev_accuracies": [s["dev"]["accuracy"] for s in scored],
                "source_train_minutes": statistics.mean(s.get("train_seconds") or 0.0 for s in seeds) / 60
            })
            print(f"{source} cut to {depth} layers: test {[round(100 * a, 2) for a in out[-1]['accuracies']]}",
                  flush=True)
    return out


def table(results: dict, cuts: list[dict]) -> list[dict]:
    """One line per student: the grid's rows (6 layers; cut + `cut_epochs`) and the free cuts, by depth."""
    rows = {r["name"]: r for r in results["rows"] if r.get("status") == "done"}
    teacher, tfidf = rows["baseline"]["accuracy"], rows["tfidf"]["accuracy"]
    config = results["meta"]["config"]
    lines = []
    for name, row in rows.items():
        if name in ("baseline", "tfidf"):
            continue
        s = summarise(row, teacher, tfidf)
        elastic = name.endswith("+el")
        layers = config["student_layers"] if name.startswith("kd+") else int(name[len("kdl"):].split("+")[0])
        source = rows["kd+tr+el" if elastic else "kd+tr"]
        own = s["train_minutes"]
        path = own if name.startswith("kd+") else own + summarise(source, teacher, tfidf)["train_minutes"]
        lines.append({
            **s, "layers": layers, "elastic": elastic,
            "made": "trained" if layers == 6 else f"cut, then {config['cut_epochs']:g} epoch(s)",
            "dev_accuracy": statistics.mean(s.get("dev_accuracy") or 0.0 for s in row.get("seeds") or [row]),
            "own_minutes": own, "path_minutes": path
        })
    for c in cuts:
        mean = statistics.mean(c["accuracies"])
        same_depth = rows.get(f"kdl{c['layers']}+tr" + ("+el" if c["source"].endswith("+el") else ""), {})
        lines.append({
            "row": f"{c['source']} cut to {c['layers']}", "layers": c["layers"], "elastic": c["source"].endswith("+el"),
            "made": "cut, no training", "seeds": c["seeds"], "accuracy": mean, "accuracies": c["accuracies"],
            "accuracy_sd": statistics.stdev(c["accuracies"]) if c["seeds"] > 1 else None, "macro_f1": statistics.mean(
                c["macro_f1s"]), "dev_accuracy": statistics.mean(c["dev_accuracies"]),
            "lead_kept": (mean - tfidf) / (teacher - tfidf), "own_minutes": 0.0,
            "path_minutes": c["source_train_minutes"], "served_e2e_speedup_b32": (same_depth.get("served")
                                                                                  or {}).get("e2e_speedup_b32")
        })
    return sorted(lines, key=lambda r: (-r["layers"], r["elastic"], r["made"] != "cut, no training"))


def markdown(results: dict, lines: list[dict], command: str) -> str:
    """The table, with what its columns mean; a depth without a `kdlN` row of its own has no served speedup."""
    meta = results["meta"]
    rows = {r["name"]: r for r in results["rows"]}
    teacher, tfidf = rows["baseline"], rows["tfidf"]
    out = [
        "# Elastic depth against today's cuts (issue #39)", "",
        f"Dataset {meta['dataset']}, preset `{meta['preset']}`, machine: {meta['machine']}.", "",
        f"Teacher {100 * teacher['accuracy']:.2f}% test, tfidf {100 * tfidf['accuracy']:.2f}%; lead kept = (row - "
        f"tfidf) / (teacher - tfidf), all of this run. `+el`: the {meta['config']['student_layers']}-layer student "
        "trained with elastic depth (its "
        f"{', '.join(map(str, meta['config']['elastic_depths']))}-layer cuts learn beside it). Own minutes: this "
        "student's training; path minutes: with the student it is cut from. A cut with no training has the "
        "served speed of the trained cut of its depth (blank where the run has no `kdlN` row of that depth). Dev "
        "and test accuracy are means over the seeds.", "",
        "| layers | student | made | seeds | test acc. % (mean ± SD) | dev acc. % | lead kept | own min | path min | "
        "served e2e speedup b32 |", "|---|---|---|---|---|---|---|---|---|---|"
    ]
    for r in lines:
        sd = f" ± {100 * r['accuracy_sd']:.2f}" if r.get("accuracy_sd") is not None else ""
        served = r.get("served_e2e_speedup_b32")
        dev = "" if r.get("dev_accuracy") is None else f"{100 * r['dev_accuracy']:.2f}"
        out.append(f"| {r['layers']} | {r['row']} | {r['made']} | {r['seeds']} | {100 * r['accuracy']:.2f}{sd} | {dev} "
                   f"| {100 * r['lead_kept']:.0f}% | {r['own_minutes']:.1f} | {r['path_minutes']:.1f} | "
                   f"{'' if served is None else f'{served:.1f}x'} |")
    out += ["", "Made by:", "", "```", command, "```", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the reproduce output folder of the elastic preset (its results.json)")
    parser.add_argument("--out", type=Path, required=True, help="folder for elastic.md and elastic.json")
    args = parser.parse_args()
    results = json.loads((args.run / "results.json").read_text(encoding="utf-8"))
    cuts = free_cuts(results, results["meta"]["config"]["elastic_depths"])
    lines = table(results, cuts)
    command = ("mahacompress reproduce --teacher models/e5-small --preset benchmarks/elastic/sentiment-elastic.yaml "
               f"--out {args.run}\npython benchmarks/elastic_depth.py {args.run} --out {args.out}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "elastic.json", {"meta": results["meta"], "cuts": cuts, "rows": lines})
    write_text(args.out / "elastic.md", markdown(results, lines, command))
    print(f"wrote {args.out / 'elastic.md'}")


if __name__ == "__main__":
    main()
