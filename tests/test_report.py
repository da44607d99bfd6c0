"""The grid's report: its findings computed as data, a few checks of how it renders, the committed reports
re-rendered byte for byte, and results.json's one layout."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from mahacompress.core.errors import MahaError
from mahacompress.report.findings import Difference, Ratio, Verdict, findings
from mahacompress.report.plots import pareto_front, place_labels
from mahacompress.report.render import write_report
from mahacompress.study.results import LAYOUT, read_results, write_results

REPORTS = Path(__file__).resolve().parents[1] / "reports"
GRID_REPORTS = sorted(p.parent for p in REPORTS.rglob("results.json")
                      if {"meta", "rows"} <= set(json.loads(p.read_text(encoding="utf-8"))))


def _d(diff: float, low: float, high: float) -> dict:
    return {"difference": diff, "ci_low": low, "ci_high": high}


def _results(tmp_path: Path, rows: list[dict], config: dict | None = None, **meta) -> Path:
    """A results.json in today's layout, written as the grid writes it."""
    write_results(tmp_path / "results.json", {"config": config or {}, **meta}, rows, [])
    return tmp_path


def _found(tmp_path: Path, rows: list[dict], config: dict | None = None):
    return findings(read_results(_results(tmp_path, rows, config) / "results.json"))


@pytest.mark.parametrize("folder", GRID_REPORTS, ids=lambda p: str(p.relative_to(REPORTS)))
def test_committed_reports_re_render_byte_identical_from_their_results(folder, tmp_path):
    shutil.copy(folder / "results.json", tmp_path)
    write_report(tmp_path)
    for name in ("report.md", "results.csv"):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), f"{folder / name} moved"
    # plots depend on matplotlib's version and fonts: the same ones are drawn, not compared byte for byte
    assert {p.name for p in tmp_path.glob("*.png")} == {p.name for p in folder.glob("*.png")}


def test_every_committed_grid_report_is_checked():
    assert {p.relative_to(REPORTS).as_posix()
            for p in GRID_REPORTS} >= {"cpu-quick", "sentiment-quick", "gpu/paper-e5", "gpu/paper-size", }


def test_a_results_file_of_an_older_layout_is_refused_in_one_line(tmp_path):
    old = {
        "name": "best+onnx", "status": "done", "backend": "onnx-int8", "accuracy": 0.7, "disk_mb": 113.0,
        "accuracy_wo_manoranjan": 0.8
    }  # before layouts were numbered
    (tmp_path / "results.json").write_text(json.dumps({"meta": {}, "rows": [old]}))
    with pytest.raises(
            MahaError, match=r"results.json: written by an older mahacompress \(layout 1; .*re-run "
            r"`mahacompress reproduce` into a new folder") as refused:
        write_report(tmp_path)
    assert "\n" not in str(refused.value) and not (tmp_path / "report.md").exists()
    (tmp_path / "results.json").write_text(json.dumps({"layout": LAYOUT + 1, "meta": {}, "rows": [], "caveats": []}))
    with pytest.raises(MahaError, match=f"written by another mahacompress \\(layout {LAYOUT + 1}"):
        read_results(tmp_path / "results.json")
    (tmp_path / "results.json").write_text(json.dumps({"rows": "nope"}))
    with pytest.raises(MahaError, match="results.json: not a results.json"):
        write_report(tmp_path)
    write_results(tmp_path / "results.json", {}, [old], ["c"])  # today's writer, today's reader
    assert read_results(tmp_path / "results.json")["rows"] == [old]


def test_verdicts_against_the_budget_and_the_run_to_run_spread(tmp_path):
    rows = [
        {"name": "baseline", "status": "done", "vs_baseline": _d(0, 0, 0)},
        {"name": "kd", "status": "done", "vs_baseline": _d(0.005, -0.005, 0.015)},  # in, sure, within spread
        {
            "name": "p50",
            "status": "done",
            "vs_baseline": _d(-0.005, -0.02, 0.01),  # in by estimate only
            "served": {"backend": "onnx-int8-fused", "vs_baseline": _d(-0.02, -0.03, -0.012)}
        },  # out, sure
        {"name": "p75", "status": "done", "vs_baseline": _d(-0.015, -0.03, 0.0)},  # out by estimate only
        {"name": "best+fused", "status": "done", "source_row": "kd", "vs_baseline": _d(0.0, -0.01, 0.01)},
        {"name": "mp", "status": "failed", "reason": "bf16 unsupported"}
    ]
    found = _found(tmp_path, rows, {"run_to_run_points": 2.0})
    assert found.within == 1.0 and found.spread.points == 2.0 and found.spread.seeds is None
    by = {(v.row, v.served): v for v in found.verdicts}
    assert set(by) == {("kd", False), ("p50", False), ("p50", True), ("p75", False), ("best+fused", False)}
    assert by["kd", False] == Verdict("kd", False, Difference(0.005, -0.005, 0.015), True, True, True)
    assert (by["p50", False].estimate_within, by["p50", False].interval_agrees) == (True, False)
    assert (by["p50", True].estimate_within, by["p50", True].interval_agrees) == (False, True)
    assert not by["p50", True].within_spread  # 2 points off: clears the spread
    assert (by["p75", False].estimate_within, by["p75", False].interval_agrees) == (False, False)
    assert not by["best+fused", False].within_spread  # serves kd's model: not trained again by a re-run


def test_seeded_rows_measure_the_spread_and_the_reference_is_against_the_teachers_first_seed(tmp_path):

    def row(name, acc, diff, seeds=(), **extra):
        return {
            "name": name, "status": "done", "accuracy": acc, "macro_f1": acc,
            "seeds": [{"accuracy": a, "macro_f1": a} for a in seeds], "e2e_ms_b32_p50": 10.0, "e2e_ms_b1_p50": 1.0,
            "e2e_speedup_b32": 1.0, "e2e_speedup_b1": 1.0, "vs_baseline": _d(diff, diff - 0.01, diff + 0.01), **extra
        }

    rows = [
        row("baseline", 0.72, -0.008, seeds=(0.73, 0.715, 0.715)),
        row("kd", 0.715, -0.012, seeds=(0.71, 0.725, 0.71)),
        row("p50", 0.70, -0.03),
        row("tfidf", 0.64, -0.09)
    ]
    found = _found(tmp_path, rows)
    assert [(s.row, s.seeds) for s in found.seed_ranges] == [("baseline", 3), ("kd", 3)]
    assert found.seed_ranges[1].low == pytest.approx(71.0) and found.seed_ranges[1].high == pytest.approx(72.5)
    assert found.spread.points == pytest.approx(1.5) and found.spread.preset is None
    verdict = {v.row: v for v in found.verdicts}
    assert verdict["kd"].within_spread and not verdict["p50"].within_spread
    ref = found.reference  # tfidf's difference is against the first seed (73%), so that is the teacher beside it
    assert (ref.accuracy, ref.teacher_accuracy) == (0.64, 0.73) and ref.teacher_mean == (3, 0.72, 0.72)
    assert ref.versus_teacher == Ratio(10.0, 10.0)
    assert _found(tmp_path, rows, {"run_to_run_points": 2.2}).spread.points == 2.2  # the larger source wins


def test_the_frontier_names_the_fastest_model_per_budget_and_merges_equal_winners(tmp_path):

    def row(name, acc, e2e_ms, **extra):
        return {
            "name": name, "status": "done", "accuracy": acc, "macro_f1": acc - 0.01, "e2e_ms_b32_p50": e2e_ms,
            "e2e_ms_b1_p50": e2e_ms / 10, "e2e_speedup_b32": 100 / e2e_ms, "e2e_speedup_b1": 10 / e2e_ms,
            "vs_baseline": _d(acc - 0.80, acc - 0.81, acc - 0.79), **extra
        }

    rows = [
        row("baseline", 0.80, 100.0),
        row("kd", 0.805, 20.0, disk_mb=100.0, peak_rss_mb=500.0),
        row("kd2", 0.785, 8.0),
        row("static", 0.77, 1.0),
        row("tfidf", 0.76, 2.0),
        row("best+fused", 0.80, 10.0, source_row="kd"),
        row("baseline+openvino", 0.80, 40.0, source_row="baseline"),
        row("baseline+fused", 0.78, 25.0, source_row="baseline")
    ]  # faster, but its interval reaches -3
    rows[0]["vs_baseline"] = _d(0, 0, 0)
    found = _found(tmp_path, rows)
    assert found.reference.versus_teacher == Ratio(2.0, 100.0)  # tfidf is 50x faster than the teacher
    b32 = [line for line in found.frontier if line.batch == 32]
    assert [(line.budgets, line.winner.row) for line in b32] == [((1.0, 2.0), "best+fused"), ((3.0, ), "kd2")]
    first, second = b32[0].winner, b32[1].winner
    assert first.e2e_speedup == 10.0 and first.teacher == ("baseline+openvino", Ratio(10.0, 40.0))
    assert second.teacher == ("baseline+fused", Ratio(8.0, 25.0))
    accuracy, macro_f1, versus = second.versus_reference
    assert (accuracy, macro_f1) == pytest.approx((2.5, 2.5)) and versus == Ratio(8.0, 2.0)
    # static is fastest, but its interval reaches 4 points below the teacher: no budget takes it
    assert all(line.winner.row != "static" for line in found.frontier)
    assert _found(tmp_path, [row("baseline", 0.8, 100.0)]).frontier == ()  # nothing to compare


def test_fastest_serving_of_best_is_chosen_on_dev_within_the_budget(tmp_path):

    def best(name, dev, b32, b1):
        return {
            "name": name, "status": "done", "source_row": "kd", "backend": name.split("+")[1], "dev_accuracy": dev,
            "speedup_b32": b32, "speedup_b1": b1
        }

    rows = [{"name": "kd", "status": "done", "dev_accuracy": 0.90},
            best("best+fused", 0.895, 3.0, 1.5),
            best("best+openvino", 0.90, 2.5, 2.0),
            best("best+int8", 0.85, 9.0, 9.0), ]  # fastest, but 5 points down on dev
    rows[1]["chosen_by"] = "fewest encoder weights"
    found = _found(tmp_path, rows)
    assert [(f.batch, f.row, f.others) for f in found.fastest] == [(32, "best+fused", (("best+openvino", 2.5), )),
                                                                   (1, "best+openvino", (("best+fused", 1.5), )), ]
    assert found.not_considered == ("best+int8", )
    assert [(c.row, c.source_row) for c in found.chosen] == [("best+fused", "kd")]


def test_the_transfer_finding_names_each_rows_cap_when_rows_used_different_ones(tmp_path):
    common = {
        "file": "/data/unlabelled.csv", "texts_read": 10, "pieces": 50, "dropped_overlap": 1, "dropped_duplicate": 2,
        "teacher_agreement_with_file_labels": None
    }
    capped, every = {**common, "kept": 20}, {**common, "kept": 47}
    rows = [{"name": "kd+tr", "status": "done",
             "transfer": capped}, {"name": "static+tr", "status": "done", "transfer": every},
            {"name": "kd2+tr", "status": "done", "transfer": capped}, {"name": "baseline", "status": "done"}, ]
    found = _found(tmp_path, rows).transfer
    assert (found.file, found.pieces, found.dropped_overlap) == ("/data/unlabelled.csv", 50, 1)
    assert [(u.rows, u.kept) for u in found.uses] == [(("kd+tr", "kd2+tr"), 20), (("static+tr", ), 47)]
    assert _found(tmp_path, rows[3:]).transfer is None


def test_the_report_renders_its_tables_findings_and_plots(tmp_path):
    rows = [{
        "name": "baseline", "status": "done", "accuracy": 0.8, "macro_f1": 0.7, "e2e_speedup_b32": 1.0,
        "accuracy_learnable": 0.81, "disk_mb": 400.0, "co2_kg": 0.01, "vs_baseline": _d(0, 0, 0)
    }, {
        "name": "p50", "status": "done", "accuracy": 0.75, "macro_f1": 0.7, "e2e_speedup_b32": 1.8, "disk_mb": 380.0,
        "co2_kg": 0.02, "vs_baseline": _d(-0.005, -0.02, 0.01), "served": {
            "backend": "onnx-int8-fused", "accuracy": 0.74, "e2e_speedup_b32": 2.5,
            "vs_baseline": _d(-0.02, -0.03, -0.012)
        }
    }, {"name": "mp", "status": "failed", "reason": "bf16 unsupported"},
            {"name": "p75", "status": "skipped", "reason": "needs VNNI"}, ]
    write_results(
        tmp_path / "results.json", {
            "preset": "x", "unlearnable_classes": ["Film"], "timing_texts": "a seeded random sample of 256 test texts",
            "config": {"measure": {"texts": 256, "batch1_texts": 64}}
        }, rows, ["c1"])
    report = write_report(tmp_path).read_text()
    table = report.split("## All figures")[1].split("\n\n")[1].splitlines()
    assert [line.split(" | ")[0].strip("| ") for line in table[2:]] == ["baseline", "p50", "mp", "p75"]
    assert "not run: bf16 unsupported" in table[4] and "w/o untrained classes: Film" in table[0]
    choice = report.split("## Choosing a model")[1].split("## All figures")[0]  # fastest end to end first
    assert [
        line.split(" | ")[0].strip("| ") for line in choice.splitlines()
        if line.startswith("| ") and not line.startswith("| model")
    ] == ["p50 (served)", "p50", "baseline"]
    verdicts = report.split("## Within 1 point of the baseline?")[1].split("\n\n")[1].splitlines()
    assert [line.split("**")[1] for line in verdicts] == ["p50", "p50 (served)"]
    assert "-2.00 [-3.00, -1.20]" in verdicts[1] and "- c1" in report.split("## Caveats")[1]
    assert (tmp_path / "results.csv").read_text().splitlines()[0].startswith("name,")
    assert "served_e2e_speedup_b32" in (tmp_path / "results.csv").read_text().splitlines()[0]
    for png in ("accuracy_vs_speedup.png", "size.png", "co2.png"):
        assert (tmp_path / png).stat().st_size > 1000 and f"]({png})" in report


def test_pareto_front():
    points = [("a", 1.0, 0.9), ("b", 2.0, 0.85), ("c", 1.5, 0.8), ("d", 3.0, 0.7)]
    assert pareto_front(points) == ["a", "b", "d"]


def test_crowded_points_get_numbers_and_a_key_while_the_names_that_matter_never_overlap():
    rng = random.Random(0)
    cluster = [(f"row{i}", 2 + rng.random(), 70 + 2 * rng.random()) for i in range(20)]  # like p25..p50+kd
    named = [("baseline", 1.0, 72.0), ("kd+tr (served)", 2.5, 71.0), ("tfidf", 90.0, 70.5)]
    fig, ax = plt.subplots(figsize=(12, 6.5))
    ax.set_xscale("log")
    ax.scatter([x for _, x, _ in cluster + named], [y for _, _, y in cluster + named])
    place_labels(ax, cluster + named, {name for name, _, _ in named})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts if "\n" not in t.get_text()}
    key = next(t.get_text() for t in ax.texts if "\n" in t.get_text()).splitlines()
    plt.close(fig)

    assert {name for name, _, _ in named} <= set(labels)  # the names that matter are written out
    boxes = [labels[name] for name, _, _ in named]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    # every other row is a number beside its point, listed once in the key by speed
    assert sorted(line.split()[1] for line in key) == sorted(name for name, _, _ in cluster)
    assert {line.split()[0] for line in key} <= set(labels) and len(key) == len(cluster)
