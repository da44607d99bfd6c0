"""`optimize`'s report: optimize.json, report.md and optimize.png, made from the report dict alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.files import atomic_path, write_json, write_text
from .scoring import FALSE_PASS_TARGET, SHIPPABLE, TOLERANCE

# A candidate's statuses that say the search did not get to it (the report lists them to run again)
NOT_TRIED = ("out of time", "not tried", "skipped for budget", "stopped in training", "not reached")


def write_report(out: Path, report: dict) -> None:
    """optimize.json (with the Pareto front), report.md and optimize.png, from the report dict alone; a run stopped
    before its end writes the same three files from what it measured so far (`winner` None)."""
    report["pareto"] = pareto_front(report)
    write_json(out / "optimize.json", report)
    if report.get("teacher"):  # nothing to plot before the teacher's dev score
        _plot(out / "optimize.png", report)
    write_text(out / "report.md", markdown(report))


def pareto_front(report: dict) -> list[dict]:
    """The models measured so far that no other beats on both speed and dev accuracy: every trained candidate and
    the teacher in each shippable runtime (the latency of its shape in that runtime, its dev difference there),
    fastest first. What a user stopping early can choose from; it needs no winner."""
    teacher = report.get("teacher")
    models = ([("teacher", teacher["ms"], teacher["runtimes"])] if teacher else []) + [
        (c["name"], c["ms"], c["runtimes"]) for c in report["candidates"] if c.get("runtimes")
    ]
    points = sorted(({"name": name, "runtime": r, "ms": ms[r], "difference_points": dev["difference_points"]}
                     for name, ms, runtimes in models for r, dev in runtimes.items() if r in SHIPPABLE and r in ms),
                    key=lambda p: (p["ms"], -p["difference_points"]))
    front: list[dict] = []
    for point in points:
        if not front or point["difference_points"] > front[-1]["difference_points"]:
            front.append(point)
    return front


def stop_line(report: dict, out: Path) -> str:
    """The one line a run stopped before its end prints: what stopped it, in which phase, where its report is and
    how to resume (the same command again: every finished step is reused)."""
    meta = report["meta"]
    what = ("the time budget ran out" if meta["stop"] == "budget" else f"interrupted by {meta['stopped_by']}")
    more = " (with a larger --time-budget to go further)" if meta["stop"] == "budget" else ""
    return (f"stopped: {what} in the {meta['stopped_in']} phase; the report so far is {Path(out) / 'report.md'}; "
            f"run the same command again{more} to resume: finished work is reused")


def _dropped(dropped: dict[str, dict[str, float]]) -> str:
    """The runtimes the probe session dropped as beaten everywhere, with the probes' times that dropped them."""
    if not dropped:
        return ""
    return "; dropped, beaten on both probes by a runtime at least as precise: " + \
        ", ".join(f"{r} (" + ", ".join(f"{n} {ms:.1f} ms" for n, ms in probes.items()) + ")"
                  for r, probes in dropped.items())


def _run_time(meta: dict) -> str:
    """This invocation's minutes and, after a resume, what the trials and shape timings it reused had cost: the
    search's whole cost is their sum (an interrupted invocation's unfinished trial is in neither)."""
    now, reused = meta["seconds"] / 60, meta.get("reused_seconds", 0.0) / 60
    steps = (" (" + ", ".join(f"{name} {s / 60:.1f}"
                              for name, s in meta["phases"].items()) + ")" if meta.get("phases") else "")
    if not reused:
        return f"{now:.1f} min{steps}"
    return (f"{now + reused:.1f} min in all: {now:.1f} min this invocation{steps}, {reused:.1f} min in earlier ones "
            "(the trials and shape timings reused)")


def dev_resolution(report: dict) -> str:
    """How finely the dev split can decide the budget: for accuracy, how many texts one budget point is; and the
    median half-width of the trained candidates' paired-bootstrap intervals, which measures only which texts the
    split happens to hold. Training adds its own noise on top (MahaNews, 232 dev texts: kd+tr's difference moved
    from -0.43 to -3.45 points between two trainings of the same recipe), so a half-width wider than the budget
    means a verdict near the line is chance; the user sees that beside the verdicts."""
    rows = report["meta"]["dataset"]["splits"]["dev"]["rows"]
    cfg = report["meta"]["config"]
    budget = cfg["budget"]
    text = f"{rows} texts" + (f", so {budget:g} point{'' if budget == 1 else 's'} = {budget * rows / 100:.1f} texts"
                              if cfg["metric"] == "accuracy" else "")
    widths = [(c["dev"]["ci_high_points"] - c["dev"]["ci_low_points"]) / 2 for c in report["candidates"]
              if c.get("dev")]
    if not widths:
        return text
    half = float(np.median(widths))
    text += f"; the trained candidates' 95% intervals are +/-{half:.2f} points (median half-width)"
    if half > budget:
        text += (": **wider than the budget, so a candidate near the line can land on either side of it by "
                 "chance**; a larger dev split or a larger budget is needed before a verdict near the line means much")
    return text


def _ending(meta: dict) -> str:
    """Why the run ended (meta's `stop`, `stopped_in`, `stopped_by`; a report older than them finished)."""
    stop, phase = meta.get("stop", "finished"), meta.get("stopped_in")
    if stop == "interrupted":
        return f"interrupted by {meta['stopped_by']} in the {phase} phase"
    if stop == "budget":
        return (f"the time budget ran out in the {phase} phase"
                if phase else "finished within the time budget, which left candidates untried")
    return "finished"


def chance(p: float) -> str:
    """A probability as the report writes it: a percent with one decimal, "<0.1%" for a tiny non-zero one (so a
    chance that is not zero never reads as 0)."""
    return "0%" if p == 0 else "<0.1%" if p < 0.001 else f"{p:.1%}"


def _verdict_chance(c: dict) -> str:
    """A candidates-table cell: the chance its verdict is wrong, in the runtime it rests on (`certainty`)."""
    cert = c.get("certainty")
    if not cert:
        return "-"
    kind = "false pass" if cert["verdict"] == "passed" else "false fail"
    where = "" if cert["verdict"] == "passed" else f" ({cert['runtime']})"  # a pass's runtime is its own column
    return f"{kind} {chance(cert['p_wrong'])}{where}"


def certainty_section(report: dict) -> list[str]:
    """How sure the search's verdicts are (`certainty.search_rates`), in plain words: the estimated false-pass and
    false-fail rates at the budget, whether the false-pass rate meets its target, and, when it does not, that the
    dev split cannot decide this budget at that risk and what would. Empty before a winner."""
    cert = report.get("certainty")
    if not cert:
        return []
    cfg, meta = report["meta"]["config"], report["meta"]
    budget, target = cfg["budget"], cert["target"]
    points = f"{budget:g} point{'' if budget == 1 else 's'}"
    rows = meta["dataset"]["splits"]["dev"]["rows"] if meta.get("dataset") else None
    lines = [
        "## How sure the verdicts are", "", f"Read from the paired bootstrap of the dev texts ({cert['resamples']} "
        "resamples, taken as the uncertainty of each true difference), at the budget of " + points + ":", "",
        f"- false pass: an estimated **{chance(cert['false_pass'])}** chance that {cert['winner']} in "
        f"{cert['runtime']}, what ships, is in truth more than {points} of dev {cfg['metric']} below the teacher "
        "(torch fp32); " +
        (f"within the {target:.0%} target" +
         (" (the `risk` rule passes nothing above it; the search passed the fastest of several passing models, "
          "so its own rate across them can be higher)" if cfg["decide"] == "risk" else "") +
         "." if cert["within_target"] else f"**above the {target:.0%} target**.")
    ]
    misses = cert["false_fail_models"]
    if misses:
        top = misses[0]
        lines.append(f"- false fail: an estimated **{chance(cert['false_fail'])}** chance that a model faster than "
                     f"it, failed on dev, was in truth within budget (most likely {top['name']} in "
                     f"{', '.join(top['runtimes'])}: {chance(top['p'])}; {len(misses)} model"
                     f"{'' if len(misses) == 1 else 's'} counted).")
    else:
        lines.append("- false fail: 0%: no trained model failed in a runtime faster than the winner's.")
    if not cert["within_target"]:
        lines.append(f"- at a {target:.0%} risk of a false pass the dev split" + (f" ({rows} texts)" if rows else "") +
                     f" is too small to decide a {budget:g}-point budget: a larger "
                     "dev split" + (f" (about {cert['dev_texts_needed']:,} texts, were this winner's dev difference "
                                    "and spread the truth)" if cert.get("dev_texts_needed") else "") +
                     ", a larger --budget" + (", or --decide risk (passing only a model whose chance of a false "
                                              f"pass is at most {target:.0%})" if cfg["decide"] == "point" else "") +
                     " would bring the rate down.")
    lines += [
        "", "These count only which texts the dev split holds: training noise comes on top, and candidates the "
        "search ruled out without training them are not counted.", ""
    ]
    return lines


def _front(report: dict) -> list[str]:
    front = report.get("pareto") or pareto_front(report)
    if not front:
        return []
    return [
        "## Accuracy against speed (Pareto front)", "", "Models measured so far that no other beats on both dev "
        "accuracy and latency, fastest first.", "", "| model | runtime | ms | dev vs teacher, points |",
        "|---|---|---|---|", *(f"| {p['name']} | {p['runtime']} | {p['ms']:.1f} | {p['difference_points']:+.2f} |"
                               for p in front), ""
    ]


def _stopped(report: dict) -> list[str]:
    """A stopped run's header: no winner yet, what it measured, and how to resume."""
    meta = report["meta"]
    return [
        "## Stopped before its end", "", f"No model was exported: {_ending(meta)}. "
        "Run the same command again to resume: the teacher's fine-tune, the shapes' timing and every finished trial "
        "are reused, and a trial cut short resumes from its training checkpoints" +
        (" (a larger --time-budget lets it go further)." if meta["stop"] == "budget" else "."), ""
    ]


def markdown(report: dict) -> str:
    """report.md: the winner (or, for a stopped run, how to resume), the Pareto front and every candidate."""
    meta, w, cfg = report["meta"], report.get("winner"), report["meta"]["config"]
    metric = cfg["metric"]
    rules = {
        "point": "the dev point estimate", "interval": "the lower bound of the paired-bootstrap 95% interval",
        "risk": f"at least {1 - FALSE_PASS_TARGET:.0%} of the paired bootstrap's resamples"
    }
    points = f"{cfg['budget']:g} point{'' if cfg['budget'] == 1 else 's'}"
    rule = f"{rules[cfg['decide']]} at most {points} below the teacher's dev {metric}"
    dataset = meta.get("dataset")
    lines = [
        f"# optimize: {dataset['dataset'] if dataset else '(data not read)'}, teacher `{meta['teacher']}`", "",
        f"- machine: {meta['machine']}", f"- timing: {meta['timing']}; runtimes: {', '.join(meta['runtimes'])}" +
        _dropped(meta.get("dropped_runtimes") or {}), f"- pass rule: {rule}",
        *([f"- dev split: {dev_resolution(report)}"] if dataset else []), f"- run time: {_run_time(meta)}" +
        (" (the time budget ran out)" if meta["timed_out"] else ""), f"- ended: {_ending(meta)}", ""
    ]
    lines += _winner(w, cfg) if w else _stopped(report)
    lines += certainty_section(report)
    lines += _front(report)
    lines += [
        "## Candidates", "", f"| candidate | fastest untrained (runtime) | status | dev {metric} | vs teacher, points "
        "[95% CI] | chance the verdict is wrong | passing runtime, ms | why |", "|---|---|---|---|---|---|---|---|"
    ]
    for c in report["candidates"]:
        if c["status"] == "left out":
            lines.append(f"| {c['name']} | - | left out | - | - | - | - | {c['why']} |")
            continue
        dev = c.get("dev")
        shape = f"{c['fastest_ms']:.1f} ({c['fastest_runtime']})" if "fastest_ms" in c else "-"
        lines.append(f"| {c['name']} | {shape} | {c['status']} | " +
                     (f"{dev['dev']:.2%} | {dev['difference_points']:+.2f} [{dev['ci_low_points']:+.2f}, "
                      f"{dev['ci_high_points']:+.2f}] | " if dev else "- | - | ") + f"{_verdict_chance(c)} | " +
                     (f"{c['passing_runtime']}, {c['passing_ms']:.1f}" if c.get("passing_runtime") else "-") +
                     f" | {c.get('why', '')} |")
    teacher = report["teacher"]
    lines += [
        "", f"The teacher: dev {metric} {teacher['dev']:.2%}; untrained-session latency " +
        ", ".join(f"{r} {v:.1f} ms" for r, v in teacher["ms"].items()) + "."
    ] if teacher else []
    lines.append("")
    if report["not_tried"]:
        lines += [
            f"Not tried: {', '.join(report['not_tried'])} (run again with a larger --time-budget: finished "
            "trials are reused).", ""
        ]
    lines += [
        "Dev scores of trained candidates are their fp32 (or static) model's; a candidate passes when any "
        "runtime passes, and is placed by its fastest passing runtime. Untrained candidates were timed as "
        "untrained models of the same shape. The chance a verdict is wrong is the share of the dev bootstrap's "
        "resamples on the other side of the budget, in the runtime the verdict rests on: the passing runtime for a "
        "pass, the runtime closest to passing for a failure.", ""
    ]
    return "\n".join(lines)


def _winner(w: dict, cfg: dict) -> list[str]:
    """The winner's section: its runtime, speed, dev score, export and its one test score."""
    test = w["export"]["test"] or {}
    return [
        "## Winner", "", f"**{w['name']}** served with **{w['runtime']}**: {w['ms']:.1f} ms per batch of "
        f"{cfg['batch_size']}, {w['speedup_vs_teacher_fp32']:.1f}x the teacher in fp32 and "
        f"{w['speedup_vs_teacher_fastest']:.1f}x the teacher in its own fastest runtime within budget "
        f"({w['teacher_fastest_runtime']}), same session; dev {cfg['metric']} {w['dev']['dev']:.2%} "
        f"({w['dev']['difference_points']:+.2f} points [{w['dev']['ci_low_points']:+.2f}, "
        f"{w['dev']['ci_high_points']:+.2f}]).", "",
        f"- exported to `{w['export']['folder']}` ({w['export']['backend']}, {w['export']['disk_mb']:.1f} MiB)" +
        (f"; {w['export']['note']}" if w["export"]["note"] else ""), *([
            f"- {w['overtaken']['name']} passed the search ({w['overtaken']['runtime']}), but timed again beside "
            "the teacher it was no faster than the teacher in its fastest shippable runtime within budget, so the "
            "teacher ships"
        ] if w.get("overtaken") else []),
        f"- test (scored once, at the end, through the exported folder): accuracy {test.get('accuracy', 0):.2%}, "
        f"macro-F1 {test.get('macro_f1', 0):.2%} on {test.get('rows', 0)} texts",
        *([f"- test vs the teacher: {held_on_test(w, cfg)}"] if w["export"].get("test_vs_teacher") else []),
        f"- checkpoint: `{w['model_dir']}`", ""
    ]


def held_on_test(w: dict, cfg: dict) -> str:
    """The winner's paired test difference to the teacher in torch fp32 and whether the budget the search kept on
    dev holds there: the whole 95% interval within it, only the point estimate, or not even that."""
    d, budget = w["export"]["test_vs_teacher"], cfg["budget"]
    line = -budget - 100 * TOLERANCE  # points; the pass rule's float tolerance
    text = (f"{d['metric']} {d['difference_points']:+.2f} points [{d['ci_low_points']:+.2f}, "
            f"{d['ci_high_points']:+.2f}] against the teacher in torch fp32 on the same {d['rows']} texts: ")
    if d["ci_low_points"] >= line:
        text += f"the whole {d['level']:.0%} interval is within the {budget:g}-point budget"
    elif d["difference_points"] >= line:
        text += f"within the {budget:g}-point budget, but the {d['level']:.0%} interval reaches below it"
    else:
        text += f"**outside the {budget:g}-point budget** on test"
    if w["name"] == "teacher":
        text += f" (the teacher itself ships: the difference is what {w['runtime']} changes)"
    return text


def _plot(path: Path, report: dict) -> None:
    """Latency against dev difference: trained candidates with their interval, untried ones as ticks, the budget
    line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report["meta"]["config"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {"passed": "tab:green", "failed": "tab:red"}
    for c in report["candidates"]:
        if c.get("dev"):
            d = c["dev"]
            ax.errorbar(
                c["fastest_ms"], d["difference_points"], fmt="o", color=colours.get(c["status"], "grey"),
                yerr=[[d["difference_points"] - d["ci_low_points"]], [d["ci_high_points"] - d["difference_points"]]])
            ax.annotate(c["name"], (c["fastest_ms"], d["difference_points"]), textcoords="offset points", xytext=(4, 4))
        elif "fastest_ms" in c:
            ax.plot(c["fastest_ms"], 0.02, "|", color="grey", markersize=12, transform=ax.get_xaxis_transform())
    teacher_ms = min(report["teacher"]["ms"].values())
    ax.plot(teacher_ms, 0, "s", color="black", label="teacher")
    ax.axhline(-cfg["budget"], color="tab:orange", linestyle="--", label=f"budget (-{cfg['budget']:g} points)")
    ax.set_xscale("log")
    ax.set_xlabel(f"ms per batch of {cfg['batch_size']} (end to end, fastest runtime of the untrained shape)")
    ax.set_ylabel(f"dev {cfg['metric']} minus teacher's (points)")
    w = report.get("winner")
    ax.set_title(f"optimize: winner {w['name']} ({w['runtime']}); ticks: not trained"
                 if w else "optimize, stopped: what was measured so far; ticks: not trained")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
