"""The report's plots: accuracy against end-to-end speedup (the Pareto front, the teacher, the reference and
`best` named; the other rows numbered with a key beside the axes, so no two labels overlap), size and CO2.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt
from matplotlib.transforms import Bbox

from ..core.files import atomic_path
from ..study.results import Row, serves_best
from .findings import REFERENCE, TEACHER, reference_seed, served_backend
from .markdown import points as points_phrase

SPEED = "e2e_speedup_b32"  # the plot's speed: end to end at batch 32, tokenisation included


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of rows that no other row beats on both speedup and accuracy."""
    front = []
    for name, speed, acc in points:
        dominated = any(s >= speed and a >= acc and (s > speed or a > acc) for n, s, a in points if n != name)
        if not dominated:
            front.append(name)
    return front


def plots(rows: list[Row], out_dir: Path, within: float) -> list[Path]:
    """The PNG plots of the finished `rows` written into `out_dir` (those with something to show)."""
    paths = []
    key = SPEED
    teacher = next((r for r in rows if r["name"] == TEACHER), {})
    base = reference_seed(teacher)  # the intervals' reference
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
            ax.errorbar(block[key], 100 * block["accuracy"], yerr=yerr, fmt=marker, color=color,
                        ms=9 if marker == "*" else 6, elinewidth=0.8, capsize=2, zorder=3)
        if base.get("accuracy") is not None:
            first = " (its first seed, the intervals' reference)" if base is not teacher else ""
            ax.axhline(100 * base["accuracy"], color="gray", ls="--", lw=0.8, label=f"teacher's test accuracy{first}")
            ax.axhline(100 * base["accuracy"] - within, color="gray", ls=":", lw=0.8,
                       label=f"{points_phrase(within)} below it")
        line = sorted((b[key], 100 * b["accuracy"]) for n, b, _ in points if n in front)
        ax.plot([p[0] for p in line], [p[1] for p in line], color="tab:red", lw=1, label="Pareto front")
        for marker, label in (("o", "each row with its own backend"), ("s", f"served: {served_backend(rows)}"),
                              ("*", f"{REFERENCE} (the reference)"),
                              ):
            if any((m if n != REFERENCE else "*") == marker for n, _, m in points):
                ax.scatter([], [], color="gray", marker=marker, label=label)
        ax.set_xscale("log")
        ax.set_xlabel(
            "end-to-end speedup at batch 32 (x, tokenisation included, vs the fp32 teacher, same run; log scale)")
        ax.set_ylabel("test accuracy (%), bars: 95% paired interval vs the teacher")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower left")
        named = front | {TEACHER, REFERENCE} | {r["name"] for r in rows if serves_best(r)}
        place_labels(ax, [(n, b[key], 100 * b["accuracy"]) for n, b, _ in points], named)
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


def place_labels(ax, points: list[tuple[str, float, float]], named: set[str]) -> None:
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
    offsets = [(4, 4), (4, -10), (-4, 6),
               (-4, -12)] + [(round(r * math.cos(a * math.pi / 8)), round(r * math.sin(a * math.pi / 8)) - 3)
                             for r in (10, 16, 24, 34, 46, 60)
                             for a in (0, 8, 4, 12, 2, 6, 10, 14, 1, 3, 5, 7, 9, 11, 13, 15)]
    numbered = sorted((p for p in points if p[0] not in named), key=lambda p: (p[1], -p[2]))
    key = {name: str(i) for i, (name, _, _) in enumerate(numbered, 1)}
    ordered = sorted((p for p in points if p[0] in named), key=lambda p: (-p[2], p[1])) + numbered
    for name, x, y in ordered:
        for i, (dx, dy) in enumerate(offsets):
            ha = "left" if dx >= 0 else "right"
            text = ax.annotate(key.get(name, name), (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                               ha=ha, color="dimgray" if name in key else "black",
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
