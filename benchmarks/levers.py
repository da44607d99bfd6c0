"""The lever-by-lever table of issue #38: what each knowledge lever adds to a small student, from one grid run.

The grid (`mahacompress reproduce` with `benchmarks/levers/sentiment-levers.yaml`) builds today's small students
(`kd2+tr`, `kd3+tr`, `static+tr`) and the same students with each lever turned on by a row modifier (`+aug`:
teacher-labelled variants; `+mid`: hidden-state and attention-relation terms; `+pre`: the static table
pre-trained against the teacher's features). This script reads that run's results.json and writes, per row:
test accuracy (mean and SD over its seeds), macro-F1, the share of the teacher's lead over TF-IDF it keeps
(`lead kept` = (row - tfidf) / (teacher - tfidf), teacher and tfidf of the same run), the change against the
same student without its levers, training minutes (mean over seeds), and the served end-to-end speedup at batch
32 in arrival order (as the grid timed it). Nothing is timed here.

    .venv/bin/mahacompress reproduce --teacher models/e5-small --out runs/sentiment-levers \
        --preset benchmarks/levers/sentiment-levers.yaml
    .venv/bin/python benchmarks/levers.py runs/sentiment-levers --out reports/levers/sentiment
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from mahacompress.core.files import write_json, write_text

LEVERS = ("aug", "mid", "pre")  # the row modifiers that turn a lever on


def base_of(name: str) -> str:
    """The same student without its levers: `kd2+tr+aug+mid` -> `kd2+tr`; a teacher-assistant student (`kdl2+tr`,
    cut from the trained `kd+tr` student) -> the student of the same depth cut from the teacher (`kd2+tr`)."""
    head, *mods = name.split("+")
    head = "kd" + head[len("kdl"):] if head.startswith("kdl") else head
    return "+".join([head] + [m for m in mods if m not in LEVERS])


def lever_seconds(seed: dict) -> float:
    """What a seed's levers cost beyond its recorded training: augmentation (word vectors, variants, the teacher's
    labelling) and, from runs made before a row's training time included it, the table's pre-training."""
    extra = 0.0
    augment = seed.get("augment") or {}
    extra += sum(augment.get(k) or 0.0 for k in ("vector_seconds", "variant_seconds", "labelling_seconds"))
    record = Path(seed.get("model_dir", "")) / "training.json"
    if record.is_file():
        pre = json.loads(record.read_text(encoding="utf-8")).get("pretrain") or {}
        if pre and not pre.get("in_train_seconds"):
            extra += pre["seconds"]
    return extra


def summarise(row: dict, teacher: float, tfidf: float) -> dict:
    """One row's figures: accuracy over its seeds, lead kept, training minutes (levers included), served speedup."""
    seeds = row.get("seeds") or [row]
    accs = [s["accuracy"] for s in seeds]
    served = row.get("served") or {}
    mean = statistics.mean(accs)
    return {
        "row": row["name"], "seeds": len(accs), "accuracy": mean,
        "accuracy_sd": statistics.stdev(accs) if len(accs) > 1 else None, "accuracies": accs,
        "macro_f1": row.get("macro_f1"), "lead_kept": (mean - tfidf) / (teacher - tfidf),
        "train_minutes": statistics.mean(s.get("train_seconds") or 0.0 for s in seeds) / 60,
        "e2e_speedup_b32": row.get("e2e_speedup_b32"), "served_e2e_speedup_b32": served.get("e2e_speedup_b32"),
        "served_backend": served.get("backend"), "augment": row.get("augment"), "dev_history": row.get("dev_history")
    }


def table(results: dict) -> list[dict]:
    """Every student row of the run, with its change against the same student without levers."""
    rows = {r["name"]: r for r in results["rows"] if r.get("status") == "done"}
    teacher, tfidf = rows["baseline"]["accuracy"], rows["tfidf"]["accuracy"]
    out = [summarise(r, teacher, tfidf) for name, r in rows.items() if name not in ("baseline", "tfidf")]
    by_name = {r["row"]: r for r in out}
    for r in out:
        base = by_name.get(base_of(r["row"]))
        r["vs_base_points"] = None if base is None or base is r else 100 * (r["accuracy"] - base["accuracy"])
    return out


def scored_folder(folder: Path, results: dict) -> dict:
    """A model folder trained outside the grid, scored on test (fp32, the length it trained at, the data its record
    names), beside its schedule and training time, and its lead kept against the grid run's teacher and tfidf."""
    from mahacompress.core.config import DataConfig
    from mahacompress.data.splits import load_splits
    from mahacompress.infer.evaluate import evaluate_model

    record = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    splits = load_splits(DataConfig(**record["data_config"]))
    scores = evaluate_model(str(folder), splits, "test", max_length=record["train_config"]["max_length"])
    rows = {r["name"]: r for r in results["rows"]}
    teacher, tfidf = rows["baseline"]["accuracy"], rows["tfidf"]["accuracy"]
    recipe = {
        "student": record["student"], "cut_from": record.get("cut_from"), "teacher": record["teacher"],
        "data": record["data_config"], "transfer": (record.get("transfer") or {}).get("config"),
        "train": {k: v
                  for k, v in record["train_config"].items() if k != "seed"}
    }
    return {
        "folder": str(folder), "student": record["student"], "cut_from": record.get("cut_from"),
        "epochs": record["train_config"]["epochs"], "seed": record["train_config"]["seed"], "recipe": recipe,
        "train_minutes": record["result"]["seconds"] / 60, "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"], "lead_kept": (scores["accuracy"] - tfidf) / (teacher - tfidf),
        "dev_history": record["result"]["dev_history"]
    }


def seed_groups(extra: list[dict]) -> list[list[dict]]:
    """The extra folders that are seeds of one recipe (the same student, source, data, transfer set and training
    settings but the seed), where two or more have different seeds: their mean is what a row with `row_seeds` would
    report. A folder scored twice, or one with another setting, is not another seed."""
    groups: list[list[dict]] = []  # compared as values: one record's 4 epochs and another's 4.0 are one schedule
    for e in extra:
        group = next((g for g in groups if g[0]["recipe"] == e["recipe"]), None)
        if group is None:
            groups.append([e])
        else:
            group.append(e)
    seeded = [list({e["seed"]: e for e in group}.values()) for group in groups]
    return [group for group in seeded if len(group) > 1]


def markdown(results: dict, rows: list[dict], command: str, extra: list[dict] | None = None) -> str:
    meta = results["meta"]
    by_name = {r["name"]: r for r in results["rows"]}
    teacher, tfidf = by_name["baseline"], by_name["tfidf"]

    def pct(x: float | None) -> str:
        return "" if x is None else f"{100 * x:.2f}"

    lines = [
        "# Knowledge levers for small students (issue #38)", "",
        f"Dataset {meta['dataset']}, preset `{meta['preset']}`, machine: {meta['machine']}.", "",
        f"Teacher (fine-tuned e5-small, {len(teacher.get('seeds') or [1])} seed(s)): {pct(teacher['accuracy'])}% test; "
        f"tfidf {pct(tfidf['accuracy'])}%. Lead kept = (row - tfidf) / (teacher - tfidf), all of this run.", "",
        "| row | seeds | test acc. % (mean ± SD) | vs same student without levers (points) | lead kept | "
        "train min (mean) | e2e speedup b32 (fp32) | served e2e speedup b32 |", "|---|---|---|---|---|---|---|---|"
    ]
    for r in rows:
        sd = f" ± {100 * r['accuracy_sd']:.2f}" if r["accuracy_sd"] is not None else ""
        vs = "" if r["vs_base_points"] is None else f"{r['vs_base_points']:+.2f}"
        speed = "" if r["e2e_speedup_b32"] is None else f"{r['e2e_speedup_b32']:.1f}x"
        served = "" if r["served_e2e_speedup_b32"] is None else f"{r['served_e2e_speedup_b32']:.1f}x"
        lines.append(f"| {r['row']} | {r['seeds']} | {pct(r['accuracy'])}{sd} | {vs} | {100 * r['lead_kept']:.0f}% | "
                     f"{r['train_minutes']:.1f} | {speed} | {served} |")
    augmented = [r for r in rows if r["augment"]]
    if augmented:
        lines += [
            "", "Augmentation (per row): variants asked and made, dropped as duplicates or for overlapping dev/test, "
            "and the teacher's labelling time.", "", "| row | asked | made | duplicates | overlapping | labelling s |",
            "|---|---|---|---|---|---|"
        ]
        for r in augmented:
            a = r["augment"]
            lines.append(f"| {r['row']} | {a.get('asked')} | {a.get('made')} | {a.get('dropped_duplicate')} | "
                         f"{a.get('dropped_overlap')} | {a.get('labelling_seconds') or 0:.0f} |")
    cut = [r for r in rows if r["row"].startswith("kdl")]
    if cut:
        assistant = {r["row"]: r for r in rows}.get("kd+tr" if "+tr" in cut[0]["row"] else "kd")
        lines += [
            "", f"`kdlN` rows (a teacher assistant): the trained {meta['config']['student_layers']}-layer student cut "
            "to N of its layers, then distilled "
            f"from the teacher for `cut_epochs` ({meta['config'].get('cut_epochs', 'see the preset')}"
            "); their `vs` column compares them with the student of the same depth cut from the teacher, and their "
            "training minutes are their own: the assistant's" +
            (f" ({assistant['train_minutes']:.1f} min, row {assistant['row']})" if assistant else "") +
            " come first, once for every depth."
        ]
    if extra:
        lines += [
            "", "Model folders that are not rows of this run (trained by `mahacompress distill` with the same data, "
            "teacher and section settings but the epochs or seed, or by an earlier run of this preset), scored on "
            "test here; their speed is the grid row's of the same depth:", "",
            "| folder | student | cut from | epochs | seed | test acc. % | macro-F1 % | lead kept | train min |",
            "|---|---|---|---|---|---|---|---|---|"
        ]
        lines += [
            f"| {e['folder']} | {e['student']} | {e['cut_from'] or 'the teacher'} | {e['epochs']:g} | {e['seed']} | "
            f"{pct(e['accuracy'])} | {pct(e['macro_f1'])} | {100 * e['lead_kept']:.0f}% | {e['train_minutes']:.1f} |"
            for e in extra
        ]
        for group in seed_groups(extra):
            student, cut_from, epochs = group[0]["student"], group[0]["cut_from"], group[0]["epochs"]
            accs = [e["accuracy"] for e in group]
            mean = statistics.mean(accs)
            lines.append(f"\n{student} cut from {cut_from or 'the teacher'}, {epochs:g} epochs, {len(group)} seeds: "
                         f"{pct(mean)} ± {100 * statistics.stdev(accs):.2f}% test, lead kept "
                         f"{100 * (mean - tfidf['accuracy']) / (teacher['accuracy'] - tfidf['accuracy']):.0f}%, "
                         f"{statistics.mean(e['train_minutes'] for e in group):.1f} train min (mean).")
    lines += ["", "Made by:", "", "```", command, "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a reproduce output folder (its results.json)")
    parser.add_argument("--out", type=Path, required=True, help="folder for levers.md and levers.json")
    parser.add_argument(
        "--extra", type=Path, nargs="*", default=[],
        help="model folders trained outside the grid (e.g. `distill --cut-from` at another schedule): "
        "scored on test here, at the length and on the data their training.json records")
    args = parser.parse_args()
    results = json.loads((args.run / "results.json").read_text(encoding="utf-8"))
    rows = table(results)
    extra = [scored_folder(folder, results) for folder in args.extra]
    command = ("mahacompress reproduce --teacher models/e5-small --preset benchmarks/levers/sentiment-levers.yaml "
               f"--out {args.run}\npython benchmarks/levers.py {args.run} --out {args.out}" +
               (" --extra " + " ".join(map(str, args.extra)) if args.extra else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "levers.json", {"meta": results["meta"], "rows": rows, "extra": extra})
    write_text(args.out / "levers.md", markdown(results, rows, command, extra))
    print(f"wrote {args.out / 'levers.md'}")


if __name__ == "__main__":
    main()
