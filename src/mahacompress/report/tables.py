"""The report's tables: every figure of every row (`markdown_table`, and `csv_text` for results.csv) and the
short table a user chooses a model from (`choice_table`). Cells are formatted here alone, so a figure reads
the same in every table and finding.
"""

from __future__ import annotations

import csv
import io

from ..study.results import Row

# (field, header, format) of the Markdown table, in the order a user reads them when choosing a model.
# A dotted field reads a nested block (`served.x`: the row's model as the grid serves it, `served.backend`).
COLUMNS = [
    ("name", "row", "{}"), ("accuracy", "acc.", "{:.2%}"), ("vs_baseline", "Δ acc. vs baseline [95% CI]", "{}"),
    ("macro_f1", "macro-F1", "{:.2%}"), ("accuracy_learnable", "acc. w/o untrained classes", "{:.2%}"),
    ("macro_f1_learnable", "F1 w/o untrained classes", "{:.2%}"), ("encoder_sparsity", "enc. sparsity", "{:.1%}"),
    ("params_total", "params", "{:,}"), ("disk_mb", "disk MiB", "{:.0f}"), ("latency_ms_b1_p50", "b1 p50 ms", "{:.2f}"),
    ("latency_ms_b32_p50", "b32 p50 ms", "{:.1f}"), ("latency_ms_b32_p95", "b32 p95 ms", "{:.1f}"),
    ("throughput_b32", "texts/s", "{:.0f}"), ("speedup_b32", "speedup b32", "{:.2f}x"),
    ("speedup_b1", "speedup b1", "{:.2f}x"), ("e2e_ms_b1_p50", "e2e b1 ms", "{:.2f}"),
    ("e2e_ms_b32_p50", "e2e b32 ms", "{:.1f}"), ("e2e_ms_b32_sorted_p50", "e2e b32 sorted ms", "{:.1f}"),
    ("e2e_throughput_b32", "e2e texts/s", "{:.0f}"), ("e2e_speedup_b32", "e2e speedup b32", "{:.2f}x"),
    ("e2e_speedup_b1", "e2e speedup b1", "{:.2f}x"), ("served.accuracy", "served acc.", "{:.2%}"),
    ("served.vs_baseline", "served Δ acc. [95% CI]", "{}"), ("served.speedup_b32", "served speedup b32", "{:.2f}x"),
    ("served.speedup_b1", "served speedup b1", "{:.2f}x"),
    ("served.e2e_speedup_b32", "served e2e speedup b32", "{:.2f}x"),
    ("served.e2e_speedup_b1", "served e2e speedup b1", "{:.2f}x"), ("served.disk_mb", "served disk MiB", "{:.0f}"),
    ("peak_rss_mb", "peak MiB", "{:.0f}"), ("peak_gpu_mb", "peak GPU MiB", "{:.0f}"),
    ("train_seconds", "train s", "{:.0f}"), ("energy_kwh", "kWh", "{:.4f}"), ("co2_kg", "CO2 kg", "{:.4f}"),
    ("energy_measured", "energy", "{}")
]


def _get(row: dict, key: str) -> object:
    """`row`'s value at a dotted `key` (`served.x` reads the served block), or None."""
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
        return difference(value)
    text = fmt.format(value)
    sd = _get(row, f"{key}_sd")
    return f"{text} ± {sd:.2%}" if sd is not None else text


def difference(d: dict) -> str:
    """A paired difference and its interval in accuracy points, as every table and finding writes it."""
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
CHOICE_COLUMNS = [("accuracy", "acc.", "{:.2%}"), ("vs_baseline", "Δ acc. [95% CI]", "{}"),
                  ("macro_f1", "macro-F1", "{:.2%}"), ("e2e_ms_b32_p50", "e2e b32 ms", "{:.1f}"),
                  ("e2e_speedup_b32", "e2e speedup b32", "{:.1f}x"), ("e2e_speedup_b1", "e2e speedup b1", "{:.1f}x"),
                  ("e2e_throughput_b32", "e2e texts/s", "{:.0f}"), ("disk_mb", "disk MiB", "{:.0f}"),
                  ("peak_rss_mb", "peak MiB", "{:.0f}"), ("peak_gpu_mb", "peak GPU MiB", "{:.0f}"),
                  ("energy_kwh", "build kWh", "{:.4f}"), ]


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


def csv_text(rows: list[Row]) -> str:
    """results.csv: one line per row, every scalar field, the `served` and `vs_baseline` blocks spread into
    prefixed fields; `name` first, the rest sorted."""
    flat = [_flat(r) for r in rows]
    fields = sorted({k for r in flat for k in r if not isinstance(r[k], (dict, list))})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["name"] + [f for f in fields if f != "name"], extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


def _flat(row: Row) -> dict:
    flat = dict(row)
    for block in ("served", "vs_baseline"):
        for key, value in (row.get(block) or {}).items():
            flat[f"{block}_{key}"] = value
    for key, value in ((row.get("served") or {}).get("vs_baseline") or {}).items():
        flat[f"served_vs_baseline_{key}"] = value
    return flat
