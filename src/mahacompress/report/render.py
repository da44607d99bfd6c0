"""Table and plots from `results.json` only, so a report can be re-made without re-measuring anything.

Reads results written by older versions too: `results.read_results` maps their keys to today's names.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from ..core.files import atomic_path, write_text  # noqa: E402
from ..study.results import read_results, serves_best  # noqa: E402

DEFAULT_WITHIN_POINTS = 1.0  # the accuracy budget of results that do not record theirs (best_within_points)
BUDGETS = (1.0, 2.0, 3.0)  # accuracy points below the teacher the frontier findings look at
REFERENCE = "tfidf"  # the row a user would pick instead of any transformer

# (field, header, format) of the Markdown table, in the order a user reads them when choosing a model.
# A dotted field reads a nested block (`served.x`: the row's model as the grid serves it, `served.backend`).
COLUMNS = [
    ("name", "row", "{}"),
    ("accuracy", "acc.", "{:.2%}"),
    ("vs_baseline", "Δ acc. vs baseline [95% CI]", "{}"),
    ("macro_f1", "macro-F1", "{:.2%}"),
    ("accuracy_learnable", "acc. w/o untrained classes", "{:.2%}"),
    ("macro_f1_learnable", "F1 w/o untrained classes", "{:.2%}"),
    ("encoder_sparsity", "enc. sparsity", "{:.1%}"),
    ("params_total", "params", "{:,}"),
    ("disk_mb", "disk MiB", "{:.0f}"),
    ("latency_ms_b1_p50", "b1 p50 ms", "{:.2f}"),
    ("latency_ms_b32_p50", "b32 p50 ms", "{:.1f}"),
    ("latency_ms_b32_p95", "b32 p95 ms", "{:.1f}"),
    ("throughput_b32", "texts/s", "{:.0f}"),
    ("speedup_b32", "speedup b32", "{:.2f}x"),
    ("speedup_b1", "speedup b1", "{:.2f}x"),
    ("e2e_ms_b1_p50", "e2e b1 ms", "{:.2f}"),
    ("e2e_ms_b32_p50", "e2e b32 ms", "{:.1f}"),
    ("e2e_ms_b32_sorted_p50", "e2e b32 sorted ms", "{:.1f}"),
    ("e2e_throughput_b32", "e2e texts/s", "{:.0f}"),
    ("e2e_speedup_b32", "e2e speedup b32", "{:.2f}x"),
    ("e2e_speedup_b1", "e2e speedup b1", "{:.2f}x"),
    ("served.accuracy", "served acc.", "{:.2%}"),
    ("served.vs_baseline", "served Δ acc. [95% CI]", "{}"),
    ("served.speedup_b32", "served speedup b32", "{:.2f}x"),
    ("served.speedup_b1", "served speedup b1", "{:.2f}x"),
    ("served.e2e_speedup_b32", "served e2e speedup b32", "{:.2f}x"),
    ("served.e2e_speedup_b1", "served e2e speedup b1", "{:.2f}x"),
    ("served.disk_mb", "served disk MiB", "{:.0f}"),
    ("peak_rss_mb", "peak MiB", "{:.0f}"),
    ("peak_gpu_mb", "peak GPU MiB", "{:.0f}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("energy_kwh", "kWh", "{:.4f}"),
    ("co2_kg", "CO2 kg", "{:.4f}"),
    ("energy_measured", "energy", "{}"),
]


def _get(row: dict, key: str):
    for part in key.split("."):
        row = row.get(part) if isinstance(row, dict) else None
    return row


def _cell(row: dict, key: str, fmt: str) -> str:
    value = _get(row, key)
    if isinstance(value, bool):  # energy_measured
        return "measured" if value else "estimated"
    if value is None:
        return "–"
    if key.endswith("vs_baseline"):
        return _difference(value)
    text = fmt.format(value)
    sd = _get(row, f"{key}_sd")
    return f"{text} ± {sd:.2%}" if sd is not None else text


def _difference(d: dict) -> str:
    return f"{100 * d['difference']:+.2f} [{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}]"


def _columns_with_values(columns: list[tuple[str, str, str]], blocks: list[dict]) -> list[tuple[str, str, str]]:
    """The columns some block has a value for (a GPU's memory only where a row ran on one, and so on)."""
    return [c for c in columns if c[0] == "name" or any(_get(b, c[0]) is not None for b in blocks)]


def markdown_table(rows: list[dict], unlearnable: list[str] | None = None) -> str:
    """The results table; columns no row has a value for are left out, and the 'w/o untrained classes'
    headers name the classes."""
    columns = _columns_with_values(COLUMNS, rows)
    named = f": {', '.join(unlearnable)}" if unlearnable else ""
    headers = [h + named if "untrained" in h else h for _, h, _ in columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        if row.get("status") in ("failed", "skipped"):
            lines.append(f"| {row['name']} | not run: {row.get('reason', 'unknown')} |" + " |" * (len(columns) - 2))
        elif row.get("status") == "done":
            lines.append("| " + " | ".join(_cell(row, k, f) for k, _, f in columns) + " |")
    return "\n".join(lines)


# The short table a user chooses from: one line per deployable model (each row, and each row's model as the grid
# serves it), fastest end to end first; every figure of the long table is in results.csv and under "All figures".
CHOICE_COLUMNS = [
    ("accuracy", "acc.", "{:.2%}"),
    ("vs_baseline", "Δ acc. [95% CI]", "{}"),
    ("macro_f1", "macro-F1", "{:.2%}"),
    ("e2e_ms_b32_p50", "e2e b32 ms", "{:.1f}"),
    ("e2e_speedup_b32", "e2e speedup b32", "{:.1f}x"),
    ("e2e_speedup_b1", "e2e speedup b1", "{:.1f}x"),
    ("e2e_throughput_b32", "e2e texts/s", "{:.0f}"),
    ("disk_mb", "disk MiB", "{:.0f}"),
    ("peak_rss_mb", "peak MiB", "{:.0f}"),
    ("peak_gpu_mb", "peak GPU MiB", "{:.0f}"),
    ("energy_kwh", "build kWh", "{:.4f}"),
]


def choice_table(rows: list[dict]) -> str:
    """Every model a user could deploy, with the figures that decide between them, fastest end to end at
    batch 32 first. A served block is the row's model in another runtime: its line has no peak memory or
    energy of its own (the row's are for the row's own runtime and for training)."""
    models = []
    for row in rows:
        if row.get("status") != "done":
            continue
        models.append((row["name"], row.get("backend", "–"), row))
        if isinstance(row.get("served"), dict):
            models.append((f"{row['name']} (served)", row["served"].get("backend", "–"), row["served"]))
    if not any(block.get("e2e_speedup_b32") is not None for _, _, block in models):
        return ""
    models.sort(key=lambda m: -(m[2].get("e2e_speedup_b32") or 0.0))
    columns = _columns_with_values(CHOICE_COLUMNS, [block for _, _, block in models])
    lines = ["| model | runtime | " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for name, backend, block in models:
        lines.append(f"| {name} | {backend} | " + " | ".join(_cell(block, k, f) for k, _, f in columns) + " |")
    return "\n".join(lines)


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of rows that no other row beats on both speedup and accuracy."""
    front = []
    for name, speed, acc in points:
        dominated = any(s >= speed and a >= acc and (s > speed or a > acc) for n, s, a in points if n != name)
        if not dominated:
            front.append(name)
    return front


def write_report(out_dir: Path) -> Path:
    """results.json -> results.csv, report.md and three PNG plots in the same folder."""
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    results = read_results(path)
    rows = results["rows"]
    done = [r for r in rows if r.get("status") == "done"]
    meta = _filled(results["meta"])

    buf = io.StringIO()
    flat = [_flat(r) for r in rows]
    fields = sorted({k for r in flat for k in r if not isinstance(r[k], (dict, list))})
    fields = ["name"] + [f for f in fields if f != "name"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    write_text(out_dir / "results.csv", buf.getvalue())

    within = meta.get("config", {}).get("best_within_points", DEFAULT_WITHIN_POINTS)
    plots = _plots(done, out_dir, within)
    max_length = meta.get("max_length")
    choice = choice_table(rows)
    md = [f"# mahacompress grid: preset `{meta.get('preset', '?')}` on `{meta.get('dataset', '?')}`", ""]
    if choice:
        md += ["## Choosing a model", "", "Each model as it can be deployed (a row, or a row's model in the "
               "runtime the grid serves it with), fastest end to end at batch 32 first; `e2e` = raw strings in, "
               "labels out. All figures are below and in results.csv.", "", choice, "", "## All figures", ""]
    md += [markdown_table(rows, meta.get("unlearnable_classes")), "",
          "Accuracy and macro-F1 are fractions of the test split"
          + _seeds_note(rows)
          + "; `Δ acc.` is the paired difference to the baseline in accuracy points over the same test texts, "
          "with a 95% bootstrap interval. Two kinds of latency, in milliseconds per batch: **model-only** (`b1`, "
          "`b32`, `speedup`: texts tokenised before timing, the model alone) and **end-to-end** (`e2e`: raw strings "
          "in, labels out, tokenisation or TF-IDF featurisation included, as `serve` and `predict` run). Batches "
          "are in arrival order (as a service gets them); `e2e b32 sorted` sorts the timed texts by length first "
          "(less padding, as offline scoring of a file does). A speedup is the baseline's latency / the row's in "
          "the same mode, both measured in the same process, interleaved, median of the repeats below. "
          "`served` = the same model run by "
          f"`{_served_backend(done)}`, timed in the same session. "
          + _timed_texts(meta)
          + (f"Every row is scored and timed with max_length {max_length} (the baseline's) on the same test texts. "
             if max_length else "")
          + "`enc. sparsity` = share of the teacher's encoder Linear weights that the row's model no longer has. "
          "Sizes are MiB (2^20 bytes). Energy and CO2 cover building the row (training) and scoring it.", ""]
    md += _findings(done, within, meta.get("config", {}).get("run_to_run_points"))
    for plot in plots:
        md.append(f"![{plot.stem}]({plot.name})")
    md += ["", "## Setup", ""]
    md += [f"- **{k}**: {v}" for k, v in meta.items() if not isinstance(v, (dict, list))]
    for k, v in meta.items():
        if isinstance(v, (dict, list)) and k != "test_labels":
            md.append(f"- **{k}**: `{json.dumps(v, ensure_ascii=False)}`")
    caveats = results.get("caveats", [])
    if caveats:
        md += ["", "## Caveats", ""] + [f"- {c}" for c in caveats]
    report = out_dir / "report.md"
    write_text(report, "\n".join(md) + "\n")
    return report


def _seeds_note(rows: list[dict]) -> str:
    """Which rows show a mean ± SD, and over how many seeds (a preset's `seeds`, or `row_seeds` for some)."""
    seeded = [f"{r['name']} {len(r['seeds'])}" for r in rows if len(r.get("seeds") or []) > 1]
    if not seeded:
        return ""
    teacher = any(r["name"] == "baseline" and len(r.get("seeds") or []) > 1 for r in rows)
    return (" (mean ± SD over seeds for the rows trained with several; seeds per row: " + ", ".join(seeded)
            + "; intervals pool each text's correctness over a row's seeds"
            + ("; every `Δ acc.` is against the baseline's first seed, the teacher every student learned from"
               if teacher else "") + ")")


def _flat(row: dict) -> dict:
    """A row with its `served` and `vs_baseline` blocks spread into prefixed scalar fields (for the CSV)."""
    flat = dict(row)
    for block in ("served", "vs_baseline"):
        for key, value in (row.get(block) or {}).items():
            flat[f"{block}_{key}"] = value
    for key, value in ((row.get("served") or {}).get("vs_baseline") or {}).items():
        flat[f"served_vs_baseline_{key}"] = value
    return flat


def _points(n: float) -> str:
    return f"{n:g} point{'s' if n != 1 else ''}"


def _findings(rows: list[dict], within: float, spread: float | None = None) -> list[str]:
    """Which rows are within `within` points of the baseline (and whether the interval agrees); how `best` chose.
    With `spread` (the run-to-run spread of one row measured for this preset, in points), differences
    smaller than it are marked as such."""
    lines = []
    seeded = _seed_ranges(rows)
    measured = max((hi - lo for _, lo, hi, _ in seeded), default=0.0)
    if seeded:
        lines += ["Run to run in this grid, the test accuracy of a row's seeds ranged: "
                  + "; ".join(f"`{name}` {lo:.2f}-{hi:.2f}% over {n} seeds ({hi - lo:.2f} points)"
                              for name, lo, hi, n in seeded) + ".", ""]
    # where the spread comes from: the preset (re-runs measured by hand) and this grid's own seeds
    candidates = (("the preset's `run_to_run_points`, how far one row moved between re-runs of the preset",
                   spread or 0.0), ("the widest range over seeds above", measured))
    sources = [(text, value) for text, value in candidates if value]
    if sources:
        spread = max(value for _, value in sources)
        source = (sources[0][0] if len(sources) == 1 else
                  "the larger of " + " and ".join(f"{text} ({value:.2f})" for text, value in sources))
        lines += [f"A difference to the baseline smaller than {spread:.2f} points ({source}) is marked "
                  "*(within run-to-run spread)* and says nothing about the row.", ""]
    # (name, difference, trained here: a re-run trains it again, so run-to-run spread applies; rows that serve
    # another row's model are deterministic given it)
    compared = [(r["name"], r["vs_baseline"], not r.get("source_row")) for r in rows
                if r.get("vs_baseline") and r["name"] != "baseline"]
    compared += [(f"{r['name']} (served)", r["served"]["vs_baseline"], True) for r in rows
                 if isinstance(r.get("served"), dict) and r["served"].get("vs_baseline")]
    if compared:
        lines += [f"## Within {_points(within)} of the baseline?", ""]
        for name, d, trained in compared:
            close = d["difference"] * 100 >= -within - 1e-9  # 1e-9: float noise of differences
            sure = d["ci_low"] * 100 >= -within - 1e-9
            verdict = ("yes, and the interval says so too" if close and sure else
                       f"yes by its point estimate, but the interval reaches below -{_points(within)}" if close else
                       "no, and the interval agrees" if d["ci_high"] * 100 < -within else
                       f"no by its point estimate, but the interval reaches above -{_points(within)}")
            noise = (" *(within run-to-run spread)*" if trained and spread and abs(100 * d["difference"]) < spread
                     else "")
            lines.append(f"- **{name}**: {_difference(d)} points: {verdict}{noise}.")
        lines.append("")
    for r in rows:
        if r.get("chosen_by"):
            lines.append(f"- **{r['name']}** serves `{r.get('source_row')}`, chosen by {r['chosen_by']}.")
    lines += _fastest_serving(rows, within)
    lines += _frontier(rows)
    lines += _transfer_lines(rows)
    return lines + ([""] if lines and lines[-1] else [])


def _transfer_lines(rows: list[dict]) -> list[str]:
    """What the `+tr` rows distilled on: the file and its cleaning once, then how many pieces each row used
    (a row's `transfer_overrides` can give it another cap than the rest)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("transfer"):
            groups.setdefault(json.dumps(r["transfer"], sort_keys=True), []).append(r)
    if not groups:
        return []
    first = next(iter(groups.values()))[0]["transfer"]
    used = []
    for members in groups.values():
        t, names = members[0]["transfer"], ", ".join(f"`{r['name']}`" for r in members)
        agree = t.get("teacher_agreement_with_file_labels")
        used.append((f"{names}: " if len(groups) > 1 else "") + f"{t['kept']} used" +
                    (f" (the teacher's label agrees with the file's own label on {agree:.1%} of them)"
                     if agree is not None else ""))
    return [f"- Rows marked `+tr` also distil on a transfer set: `{Path(first['file']).name}`, "
            f"{first['texts_read']} texts cut into {first['pieces']} word windows; "
            f"{first['dropped_overlap']} shared a word run with a dev or test text and "
            f"{first['dropped_duplicate']} were duplicates (both dropped); " + "; ".join(used) + "."]


def _seed_ranges(rows: list[dict]) -> list[tuple[str, float, float, int]]:
    """(row, lowest and highest test accuracy in %, seeds) for each row trained with several seeds: the
    run-to-run spread this grid measured itself."""
    return [(r["name"], 100 * min(accs), 100 * max(accs), len(accs)) for r in rows
            if len(accs := [s["accuracy"] for s in r.get("seeds") or [] if s.get("accuracy") is not None]) > 1]


def _fastest_serving(rows: list[dict], within: float) -> list[str]:
    """Which runtime serves the `best` model fastest at each batch size, among the `best+X` rows whose dev
    accuracy stays within `within` points of the model they serve (dev, as `best` itself is chosen; never test)."""
    dev = {r["name"]: r.get("dev_accuracy") for r in rows}
    served = [r for r in rows if serves_best(r) and r.get("dev_accuracy") is not None
              and dev.get(r.get("source_row")) is not None]
    equal = [r for r in served if r["dev_accuracy"] >= dev[r["source_row"]] - within / 100]
    lines = []
    for batch in (32, 1):
        timed = [r for r in equal if r.get(f"speedup_b{batch}") is not None]
        if timed:
            win = max(timed, key=lambda r: r[f"speedup_b{batch}"])
            others = ", ".join(f"{r['name']} {r[f'speedup_b{batch}']:.2f}x" for r in timed if r is not win)
            lines.append(f"- Fastest serving of `{win['source_row']}` at batch {batch}: **{win['name']}** "
                         f"(`{win['backend']}`), {win[f'speedup_b{batch}']:.2f}x the baseline"
                         + (f" (others within {_points(within)} on dev of the model: {others})" if others else "")
                         + ".")
    dropped = [r["name"] for r in served if r not in equal]
    if dropped:
        lines.append(f"- Not considered for speed (dev accuracy more than {_points(within)} below the model they serve): "
                     f"{', '.join(dropped)}.")
    return lines


def _frontier(rows: list[dict]) -> list[str]:
    """Per accuracy budget and batch size, the fastest model end to end whose 95% interval excludes a loss
    larger than the budget (rows and served blocks alike), and where it stands against the reference."""
    entries = [(label, block, row) for row in rows if row["name"] not in ("baseline", REFERENCE)
               for label, block in ((row["name"], row), (f"{row['name']} (served)", row.get("served")))
               if isinstance(block, dict) and block.get("vs_baseline")]
    base = next((r for r in rows if r["name"] == "baseline"), None)
    ref = next((r for r in rows if r["name"] == REFERENCE), None)
    if not entries or base is None or not any(e[1].get("e2e_speedup_b32") for e in entries):
        return []
    lines = ["", "## The frontier: the fastest model end to end within an accuracy budget", ""]
    if ref and ref.get("vs_baseline"):
        d = ref["vs_baseline"]
        first = _reference_seed(base)
        several = first is not base
        mean = (f" (the teacher's first seed, which every Δ is against; mean of {len(base['seeds'])}: "
                f"{base['accuracy']:.2%} / {base['macro_f1']:.2%})" if several else "")
        lines.append(f"- The reference `{REFERENCE}`: {ref['accuracy']:.2%} accuracy, {ref['macro_f1']:.2%} macro-F1 "
                     f"against the teacher's {first['accuracy']:.2%} / {first['macro_f1']:.2%}, {_difference(d)} "
                     f"points{mean}; {_ratio(ref, base, 32)} the teacher end to end at batch 32.")
    for batch in (32, 1):
        key = f"e2e_speedup_b{batch}"
        found: list[tuple[list[float], str]] = []  # (budgets, what was found): budgets with the same winner merge
        for budget in BUDGETS:
            ok = [e for e in entries if 100 * e[1]["vs_baseline"]["ci_low"] >= -budget - 1e-9]  # 1e-9: float noise
            timed = [e for e in ok if e[1].get(key) is not None]
            if not timed:
                text = "no model whose interval excludes a larger loss."
            else:
                label, block, row = max(timed, key=lambda e: e[1][key])
                size = f", {block['disk_mb']:.0f} MiB on disk" if block.get("disk_mb") is not None else ""
                peak = f", peak {row['peak_rss_mb']:.0f} MiB" if block is row and row.get("peak_rss_mb") else ""
                # the teacher itself in its fastest runtime within the same budget: what compressing the model
                # adds to changing the runtime (the teacher's own rows are `baseline+X`)
                teacher = max((e for e in timed if e[2].get("source_row") == "baseline"), key=lambda e: e[1][key],
                              default=None)
                text = (f"`{label}`, {block[key]:.1f}x the teacher end to end"
                        + (f" ({block[f'speedup_b{batch}']:.1f}x model-only)" if block.get(f"speedup_b{batch}") else "")
                        + f", {block['accuracy']:.2%} ({_difference(block['vs_baseline'])} points){size}{peak}"
                        + (f"; {_ratio(block, teacher[1], batch)} the teacher in its fastest runtime within the "
                           f"budget (`{teacher[0]}`)" if teacher and teacher[1] is not block else "")
                        + (_versus_reference(block, ref, batch) if ref else "") + ".")
            if found and found[-1][1] == text:
                found[-1][0].append(budget)
            else:
                found.append(([budget], text))
        for budgets, text in found:
            named = " and ".join([", ".join(f"{b:g}" for b in budgets[:-1]), f"{budgets[-1]:g}"]
                                 if len(budgets) > 1 else [f"{budgets[0]:g}"])
            plural = "s" if len(budgets) > 1 or budgets[0] != 1 else ""
            lines.append(f"- **Within {named} point{plural}, batch {batch}**: " + text)
    return lines


def _ratio(row: dict, other: dict, batch: int) -> str:
    """'N.Nx faster than' / 'N.Nx slower than' from end-to-end latencies at `batch`."""
    a, b = row.get(f"e2e_ms_b{batch}_p50"), other.get(f"e2e_ms_b{batch}_p50")
    if not a or not b:
        return "not timed against"
    return f"{b / a:.1f}x faster than" if a <= b else f"{a / b:.1f}x slower than"


def _versus_reference(block: dict, ref: dict, batch: int) -> str:
    return (f"; against `{REFERENCE}`: {100 * (block['accuracy'] - ref['accuracy']):+.2f} accuracy and "
            f"{100 * (block['macro_f1'] - ref['macro_f1']):+.2f} macro-F1 points, {_ratio(block, ref, batch)} it")


def _filled(meta: dict) -> dict:
    """`meta` with its `timing_texts` naming the number of texts (older results left it as a `{n}` template)."""
    measure = meta.get("config", {}).get("measure", {})
    if "texts" not in measure:
        return meta
    return {**meta, "timing_texts": meta.get("timing_texts", "the first {n} test texts").format(n=measure["texts"])}


def _timed_texts(meta: dict) -> str:
    """Which test texts each batch size was timed on (older results name no batch-1 count, and timed the
    test file's first texts in its own order)."""
    measure = meta.get("config", {}).get("measure", {})
    if "texts" not in measure:
        return ""
    b1 = min(measure.get("batch1_texts", measure["texts"]), measure["texts"])
    return f"Each repeat times batch 32 on {meta['timing_texts']} and batch 1 on the first {b1} of them. "


def _served_backend(rows: list[dict]) -> str:
    """The backend of the rows' `served` blocks (one per grid run)."""
    names = sorted({r["served"]["backend"] for r in rows if isinstance(r.get("served"), dict) and "backend" in r["served"]})
    return ", ".join(names) or "ONNX Runtime int8"


def _reference_seed(base: dict) -> dict:
    """The teacher's block every Δ is against: its first seed, the one every student learned from (with several
    seeds the row's own figures are their mean)."""
    return base["seeds"][0] if len(base.get("seeds") or []) > 1 else base


def _speed_key(rows: list[dict]) -> str:
    """The plot's speed: end to end at batch 32 where measured (results from older versions: model-only)."""
    return "e2e_speedup_b32" if any(r.get("e2e_speedup_b32") for r in rows) else "speedup_b32"


def _plots(rows: list[dict], out_dir: Path, within: float) -> list[Path]:
    paths = []
    key = _speed_key(rows)
    teacher = next((r for r in rows if r["name"] == "baseline"), {})
    base = _reference_seed(teacher)  # the intervals' reference
    points = [(r["name"], r, "o") for r in rows if r.get(key) is not None and r.get("accuracy") is not None]
    points += [(f"{r['name']} (served)", r["served"], "s") for r in rows
               if isinstance(r.get("served"), dict) and r["served"].get(key) is not None]
    if points:
        front = set(pareto_front([(n, b[key], b["accuracy"]) for n, b, _ in points]))
        fig, ax = plt.subplots(figsize=(12, 6.5))
        for name, block, marker in points:
            marker = "*" if name == REFERENCE else marker
            color = "tab:green" if name == REFERENCE else "tab:red" if name in front else "tab:blue"
            d = block.get("vs_baseline")
            yerr = None
            if d and base.get("accuracy") is not None:  # the paired interval, placed on the teacher's accuracy
                low, high = 100 * (base["accuracy"] + d["ci_low"]), 100 * (base["accuracy"] + d["ci_high"])
                y = 100 * block["accuracy"]
                yerr = [[max(0.0, y - low)], [max(0.0, high - y)]]
            ax.errorbar(block[key], 100 * block["accuracy"], yerr=yerr, fmt=marker, color=color, ms=9 if marker == "*" else 6,
                        elinewidth=0.8, capsize=2, zorder=3)
        if base.get("accuracy") is not None:
            first = " (its first seed, the intervals' reference)" if base is not teacher else ""
            ax.axhline(100 * base["accuracy"], color="gray", ls="--", lw=0.8, label=f"teacher's test accuracy{first}")
            ax.axhline(100 * base["accuracy"] - within, color="gray", ls=":", lw=0.8,
                       label=f"{_points(within)} below it")
        line = sorted((b[key], 100 * b["accuracy"]) for n, b, _ in points if n in front)
        ax.plot([p[0] for p in line], [p[1] for p in line], color="tab:red", lw=1, label="Pareto front")
        for marker, label in (("o", "each row with its own backend"), ("s", f"served: {_served_backend(rows)}"),
                              ("*", f"{REFERENCE} (the reference)")):
            if any((m if n != REFERENCE else "*") == marker for n, _, m in points):
                ax.scatter([], [], color="gray", marker=marker, label=label)
        ax.set_xscale("log")
        ax.set_xlabel(("end-to-end speedup at batch 32 (x, tokenisation included" if key.startswith("e2e")
                       else "model-only speedup at batch 32 (x") + ", vs the fp32 teacher, same run; log scale)")
        ax.set_ylabel("test accuracy (%), bars: 95% paired interval vs the teacher")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower left")
        named = front | {"baseline", REFERENCE} | {r["name"] for r in rows if serves_best(r)}
        _place_labels(ax, [(n, b[key], 100 * b["accuracy"]) for n, b, _ in points], named)
        paths.append(_save(fig, out_dir / "accuracy_vs_speedup.png"))
    for key, label, name in (("disk_mb", "size on disk (MiB)", "size.png"), ("co2_kg", "CO2 (kg)", "co2.png")):
        have = [r for r in rows if r.get(key) is not None]
        if have:
            fig, ax = plt.subplots(figsize=(7, 3.5))
            ax.bar([r["name"] for r in have], [r[key] for r in have], color="tab:green")
            ax.set_ylabel(label)
            ax.tick_params(axis="x", rotation=45)
            ax.grid(axis="y", alpha=0.3)
            paths.append(_save(fig, out_dir / name))
    return paths


def _place_labels(ax, points: list[tuple[str, float, float]], named: set[str]) -> None:
    """Name the points a reader chooses between (`named`: the Pareto front, the teacher, the reference, `best`)
    beside them, and number the rest with a key to the right of the axes: a dozen rows within a factor of 2 in
    speed and 3 points in accuracy leave no room for their names. Each label takes the first of a ring of
    offsets whose box is free of other labels and markers (display coordinates), with a thin leader line when
    it had to move away; a label with no free offset keeps the farthest one."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    taken = []
    for _, x, y in points:  # the markers themselves
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - 4, py - 4, px + 4, py + 4))
    offsets = [(4, 4), (4, -10), (-4, 6), (-4, -12)] + [
        (round(r * math.cos(a * math.pi / 8)), round(r * math.sin(a * math.pi / 8)) - 3)
        for r in (10, 16, 24, 34, 46, 60) for a in (0, 8, 4, 12, 2, 6, 10, 14, 1, 3, 5, 7, 9, 11, 13, 15)]
    numbered = sorted((p for p in points if p[0] not in named), key=lambda p: (p[1], -p[2]))
    key = {name: str(i) for i, (name, _, _) in enumerate(numbered, 1)}
    ordered = sorted((p for p in points if p[0] in named), key=lambda p: (-p[2], p[1])) + numbered
    for name, x, y in ordered:
        for i, (dx, dy) in enumerate(offsets):
            ha = "left" if dx >= 0 else "right"
            text = ax.annotate(key.get(name, name), (x, y), textcoords="offset points", xytext=(dx, dy),
                               fontsize=7, ha=ha, color="dimgray" if name in key else "black",
                               arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "gray"} if i >= 4 else None)
            box = text.get_window_extent(renderer).expanded(1.05, 1.15)
            if not any(box.overlaps(other) for other in taken) or i == len(offsets) - 1:
                taken.append(box)
                break
            text.remove()
    if key:
        ax.text(1.01, 1.0, "\n".join(f"{number}  {name}" for name, number in key.items()), transform=ax.transAxes,
                va="top", ha="left", fontsize=7, color="dimgray", family="monospace")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return path
