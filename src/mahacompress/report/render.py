"""The grid's report from `results.json` alone, so a report can be re-made without re-measuring anything:
results.csv, report.md (tables from `tables.py`, findings computed in `findings.py` and worded in
`markdown.py`) and the plots (`plots.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.files import write_text
from ..study.results import Meta, Row, read_results
from .findings import findings, served_backend
from .markdown import findings_lines
from .plots import plots as draw_plots
from .tables import choice_table, csv_text, markdown_table

CHOICE_NOTE = ("Each model as it can be deployed (a row, or a row's model in the runtime the grid serves it with), "
               "fastest end to end at batch 32 first; `e2e` = raw strings in, labels out. All figures are below and "
               "in results.csv.")


def write_report(out_dir: Path) -> Path:
    """results.json -> results.csv, report.md and three PNG plots in the same folder."""
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    results = read_results(path)
    rows = results["rows"]
    done = [r for r in rows if r.get("status") == "done"]
    meta = results["meta"]
    write_text(out_dir / "results.csv", csv_text(rows))
    found = findings(results)
    plots = draw_plots(done, out_dir, found.within)
    max_length = meta.get("max_length")
    choice = choice_table(rows)
    md = [f"# mahacompress grid: preset `{meta.get('preset', '?')}` on `{meta.get('dataset', '?')}`", ""]
    if choice:
        md += ["## Choosing a model", "", CHOICE_NOTE, "", choice, "", "## All figures", ""]
    md += [
        markdown_table(rows, meta.get("unlearnable_classes")), "",
        "Accuracy and macro-F1 are fractions of the test split" + _seeds_note(rows) +
        "; `Δ acc.` is the paired difference to the baseline in accuracy points over the same test texts, "
        "with a 95% bootstrap interval. Two kinds of latency, in milliseconds per batch: **model-only** (`b1`, "
        "`b32`, `speedup`: texts tokenised before timing, the model alone) and **end-to-end** (`e2e`: raw strings "
        "in, labels out, tokenisation or TF-IDF featurisation included, as `serve` and `predict` run). Batches "
        "are in arrival order (as a service gets them); `e2e b32 sorted` sorts the timed texts by length first "
        "(less padding, as offline scoring of a file does). A speedup is the baseline's latency / the row's in "
        "the same mode, both measured in the same process, interleaved, median of the repeats below. "
        "`served` = the same model run by "
        f"`{served_backend(done)}`, timed in the same session. " + _timed_texts(meta) +
        (f"Every row is scored and timed with max_length {max_length} (the baseline's) on the same test texts. "
         if max_length else "") +
        "`enc. sparsity` = share of the teacher's encoder Linear weights that the row's model no longer has. "
        "Sizes are MiB (2^20 bytes). Energy and CO2 cover building the row (training) and scoring it.", ""
    ]
    md += findings_lines(found)
    for plot in plots:
        md.append(f"![{plot.stem}]({plot.name})")
    md += ["", "## Setup", ""]
    md += [f"- **{k}**: {v}" for k, v in meta.items() if not isinstance(v, (dict, list))]
    for k, v in meta.items():
        if isinstance(v, (dict, list)) and k != "test_labels":
            md.append(f"- **{k}**: `{json.dumps(v, ensure_ascii=False)}`")
    if results["caveats"]:
        md += ["", "## Caveats", ""] + [f"- {c}" for c in results["caveats"]]
    report = out_dir / "report.md"
    write_text(report, "\n".join(md) + "\n")
    return report


def _seeds_note(rows: list[Row]) -> str:
    """Which rows show a mean ± SD, and over how many seeds (a preset's `seeds`, or `row_seeds` for some)."""
    seeded = [f"{r['name']} {len(r['seeds'])}" for r in rows if len(r.get("seeds") or []) > 1]
    if not seeded:
        return ""
    teacher = any(r["name"] == "baseline" and len(r.get("seeds") or []) > 1 for r in rows)
    return (" (mean ± SD over seeds for the rows trained with several; seeds per row: " + ", ".join(seeded) +
            "; intervals pool each text's correctness over a row's seeds" +
            ("; every `Δ acc.` is against the baseline's first seed, the teacher every student learned from"
             if teacher else "") + ")")


def _timed_texts(meta: Meta) -> str:
    """Which test texts each batch size was timed on (nothing when the file records no timing settings)."""
    measure = meta.get("config", {}).get("measure")
    if not measure:
        return ""
    b1 = min(measure["batch1_texts"], measure["texts"])
    return f"Each repeat times batch 32 on {meta['timing_texts']} and batch 1 on the first {b1} of them. "
