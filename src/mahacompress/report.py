"""Table and plots from `results.json` only, so a report can be re-made without re-measuring anything."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402

from .files import atomic_path, write_text  # noqa: E402

# (field, header, format) of the Markdown table, in the order a user reads them when choosing a model
COLUMNS = [
    ("name", "row", "{}"),
    ("accuracy", "acc.", "{:.2%}"),
    ("macro_f1", "macro-F1", "{:.2%}"),
    ("accuracy_wo_manoranjan", "acc. w/o Man.", "{:.2%}"),
    ("macro_f1_wo_manoranjan", "F1 w/o Man.", "{:.2%}"),
    ("encoder_sparsity", "enc. sparsity", "{:.1%}"),
    ("params_total", "params", "{:,}"),
    ("disk_mb", "disk MB", "{:.0f}"),
    ("latency_ms_b1_p50", "b1 p50 ms", "{:.1f}"),
    ("latency_ms_b32_p50", "b32 p50 ms", "{:.0f}"),
    ("latency_ms_b32_p95", "b32 p95 ms", "{:.0f}"),
    ("throughput_b32", "texts/s", "{:.0f}"),
    ("speedup_b32", "speedup b32", "{:.2f}x"),
    ("peak_rss_mb", "peak MB", "{:.0f}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("energy_kwh", "kWh", "{:.4f}"),
    ("co2_kg", "CO2 kg", "{:.4f}"),
    ("energy_measured", "energy", "{}"),
]


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if isinstance(value, bool):  # energy_measured
        return "measured" if value else "estimated"
    return "–" if value is None else fmt.format(value)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        if row.get("status") == "failed":
            lines.append(f"| {row['name']} | not run: {row.get('reason', 'unknown')} |" + " |" * (len(COLUMNS) - 2))
        else:
            lines.append("| " + " | ".join(_cell(row, k, f) for k, _, f in COLUMNS) + " |")
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
    results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    rows = results["rows"]
    done = [r for r in rows if r.get("status") == "done"]

    buf = io.StringIO()
    fields = sorted({k for r in rows for k in r if not isinstance(r[k], (dict, list))})
    fields = ["name"] + [f for f in fields if f != "name"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "results.csv", buf.getvalue())

    plots = _plots(done, out_dir)
    meta = results.get("meta", {})
    md = [f"# mahacompress grid: preset `{meta.get('preset', '?')}` on `{meta.get('dataset', '?')}`", "",
          markdown_table(rows), "",
          "Accuracy and macro-F1 are fractions of the test split; latencies are milliseconds per batch; "
          "`speedup b32` = the baseline's batch-32 latency / the row's, both measured in the same process, "
          "interleaved, median of the repeats below. `enc. sparsity` = share of the teacher's encoder Linear "
          "weights that the row's model no longer has. Energy and CO2 cover building the row (training) and "
          "scoring the test split once.", ""]
    for plot in plots:
        md.append(f"![{plot.stem}]({plot.name})")
    md += ["", "## Setup", ""]
    md += [f"- **{k}**: {v}" for k, v in meta.items() if not isinstance(v, (dict, list))]
    for k, v in meta.items():
        if isinstance(v, (dict, list)):
            md.append(f"- **{k}**: `{json.dumps(v, ensure_ascii=False)}`")
    caveats = results.get("caveats", [])
    if caveats:
        md += ["", "## Caveats", ""] + [f"- {c}" for c in caveats]
    path = out_dir / "report.md"
    write_text(path, "\n".join(md) + "\n")
    return path


def _plots(rows: list[dict], out_dir: Path) -> list[Path]:
    paths = []
    measured = [r for r in rows if r.get("speedup_b32") is not None and r.get("accuracy") is not None]
    if measured:
        points = [(r["name"], r["speedup_b32"], r["accuracy"]) for r in measured]
        front = set(pareto_front(points))
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, s, a in points:
            ax.scatter(s, 100 * a, color="tab:red" if name in front else "tab:blue", zorder=3)
            ax.annotate(name, (s, 100 * a), textcoords="offset points", xytext=(4, 4), fontsize=8)
        line = sorted((s, 100 * a) for n, s, a in points if n in front)
        ax.plot([p[0] for p in line], [p[1] for p in line], color="tab:red", lw=1, label="Pareto front")
        ax.set_xlabel("speedup at batch 32 (x, vs baseline, same run)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        paths.append(_save(fig, out_dir / "accuracy_vs_speedup.png"))
    for key, label, name in (("disk_mb", "size on disk (MB)", "size.png"), ("co2_kg", "CO2 (kg)", "co2.png")):
        have = [r for r in rows if r.get(key) is not None]
        if have:
            fig, ax = plt.subplots(figsize=(7, 3.5))
            ax.bar([r["name"] for r in have], [r[key] for r in have], color="tab:green")
            ax.set_ylabel(label)
            ax.tick_params(axis="x", rotation=45)
            ax.grid(axis="y", alpha=0.3)
            paths.append(_save(fig, out_dir / name))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return path
