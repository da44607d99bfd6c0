"""The report's findings worded in Markdown: `findings.Findings` in, lines out.

The wording lives here alone; what the report concludes (rows, numbers, verdicts) is computed in
`findings.py`, and tests assert that.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from .findings import (
    REFERENCE,
    Difference,
    FastestServing,
    Findings,
    FrontierLine,
    Ratio,
    Reference,
    Spread,
    Transfer,
    Verdict,
    Winner,
    label,
)
from .tables import difference

SPREAD_MARK = "*(within run-to-run spread)*"


def points(n: float) -> str:
    """'1 point', '2 points', '1.5 points'."""
    return f"{n:g} point{'s' if n != 1 else ''}"


def findings_lines(found: Findings) -> list[str]:
    """The findings section: run-to-run spread, verdicts against the budget, how `best` chose and which runtime
    serves it fastest, the frontier per budget, and the transfer set; ends with a blank line if not empty."""
    lines = []
    if found.seed_ranges:
        lines += [
            "Run to run in this grid, the test accuracy of a row's seeds ranged: " +
            "; ".join(f"`{s.row}` {s.low:.2f}-{s.high:.2f}% over {s.seeds} seeds ({s.high - s.low:.2f} points)"
                      for s in found.seed_ranges) + ".", ""
        ]
    if found.spread:
        lines += [_spread(found.spread), ""]
    if found.verdicts:
        lines += [f"## Within {points(found.within)} of the baseline?", ""]
        lines += [_verdict(v, found.within) for v in found.verdicts] + [""]
    lines += [f"- **{c.row}** serves `{c.source_row}`, chosen by {c.chosen_by}." for c in found.chosen]
    lines += [_fastest(f, found.within) for f in found.fastest]
    if found.not_considered:
        lines.append(f"- Not considered for speed (dev accuracy more than {points(found.within)} below the model they "
                     f"serve): {', '.join(found.not_considered)}.")
    if found.frontier:
        lines += ["", "## The frontier: the fastest model end to end within an accuracy budget", ""]
        lines += [_reference(found.reference)] if found.reference else []
        lines += [_frontier(line) for line in found.frontier]
    if found.transfer:
        lines.append(_transfer(found.transfer))
    return lines + ([""] if lines and lines[-1] else [])


def _interval(d: Difference) -> str:
    return difference(asdict(d))


def _spread(spread: Spread) -> str:
    sources = [
        (text, value)
        for text, value in (("the preset's `run_to_run_points`, how far one row moved between re-runs of the preset",
                             spread.preset), ("the widest range over seeds above", spread.seeds),
                            ) if value
    ]
    source = (sources[0][0] if len(sources) == 1 else "the larger of " + " and ".join(f"{text} ({value:.2f})"
                                                                                      for text, value in sources))
    return (f"A difference to the baseline smaller than {spread.points:.2f} points ({source}) is marked "
            f"{SPREAD_MARK} and says nothing about the row.")


def _verdict(v: Verdict, within: float) -> str:
    if v.estimate_within:
        says = ("yes, and the interval says so too" if v.interval_agrees else
                f"yes by its point estimate, but the interval reaches below -{points(within)}")
    else:
        says = ("no, and the interval agrees"
                if v.interval_agrees else f"no by its point estimate, but the interval reaches above -{points(within)}")
    noise = f" {SPREAD_MARK}" if v.within_spread else ""
    return f"- **{label(v.row, v.served)}**: {_interval(v.difference)} points: {says}{noise}."


def _fastest(f: FastestServing, within: float) -> str:
    others = ", ".join(f"{name} {speedup:.2f}x" for name, speedup in f.others)
    return (f"- Fastest serving of `{f.source_row}` at batch {f.batch}: **{f.row}** (`{f.backend}`), "
            f"{f.speedup:.2f}x the baseline" +
            (f" (others within {points(within)} on dev of the model: {others})" if others else "") + ".")


def _reference(r: Reference) -> str:
    mean = (f" (the teacher's first seed, which every Δ is against; mean of {r.teacher_mean[0]}: "
            f"{r.teacher_mean[1]:.2%} / {r.teacher_mean[2]:.2%})" if r.teacher_mean else "")
    return (f"- The reference `{REFERENCE}`: {r.accuracy:.2%} accuracy, {r.macro_f1:.2%} macro-F1 against the "
            f"teacher's {r.teacher_accuracy:.2%} / {r.teacher_macro_f1:.2%}, {_interval(r.difference)} points{mean}; "
            f"{_ratio(r.versus_teacher)} the teacher end to end at batch 32.")


def _frontier(line: FrontierLine) -> str:
    budgets = line.budgets
    named = " and ".join([", ".join(
        f"{b:g}" for b in budgets[:-1]), f"{budgets[-1]:g}"] if len(budgets) > 1 else [f"{budgets[0]:g}"])
    plural = "s" if len(budgets) > 1 or budgets[0] != 1 else ""
    text = _winner(line.winner) if line.winner else "no model whose interval excludes a larger loss."
    return f"- **Within {named} point{plural}, batch {line.batch}**: " + text


def _winner(w: Winner) -> str:
    text = (f"`{label(w.row, w.served)}`, {w.e2e_speedup:.1f}x the teacher end to end" +
            (f" ({w.speedup:.1f}x model-only)" if w.speedup else "") +
            f", {w.accuracy:.2%} ({_interval(w.difference)} points)" +
            (f", {w.disk_mb:.0f} MiB on disk" if w.disk_mb is not None else "") +
            (f", peak {w.peak_rss_mb:.0f} MiB" if w.peak_rss_mb else ""))
    if w.teacher:
        text += f"; {_ratio(w.teacher[1])} the teacher in its fastest runtime within the budget (`{w.teacher[0]}`)"
    if w.versus_reference:
        accuracy, macro_f1, ratio = w.versus_reference
        text += (
            f"; against `{REFERENCE}`: {accuracy:+.2f} accuracy and {macro_f1:+.2f} macro-F1 points, {_ratio(ratio)} it"
        )
    return text + "."


def _ratio(r: Ratio) -> str:
    """'N.Nx faster than' / 'N.Nx slower than' from the two end-to-end latencies."""
    a, b = r.ms, r.other_ms
    if not a or not b:
        return "not timed against"
    return f"{b / a:.1f}x faster than" if a <= b else f"{a / b:.1f}x slower than"


def _transfer(t: Transfer) -> str:
    used = []
    for use in t.uses:
        names = ", ".join(f"`{row}`" for row in use.rows)
        used.append((f"{names}: " if len(t.uses) > 1 else "") + f"{use.kept} used" +
                    (f" (the teacher's label agrees with the file's own label on {use.agreement:.1%} of them)" if use.
                     agreement is not None else ""))
    return (f"- Rows marked `+tr` also distil on a transfer set: `{Path(t.file).name}`, {t.texts_read} texts cut "
            f"into {t.pieces} word windows; {t.dropped_overlap} shared a word run with a dev or test text and "
            f"{t.dropped_duplicate} were duplicates (both dropped); " + "; ".join(used) + ".")
