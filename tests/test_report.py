"""The report's Pareto plot: a crowded cluster of rows still leaves every name readable."""

from __future__ import annotations

import random

import matplotlib.pyplot as plt

from mahacompress.report.render import _place_labels


def test_crowded_points_get_numbers_and_a_key_while_the_names_that_matter_never_overlap():
    rng = random.Random(0)
    cluster = [(f"row{i}", 2 + rng.random(), 70 + 2 * rng.random()) for i in range(20)]  # like p25..p50+kd
    named = [("baseline", 1.0, 72.0), ("kd+tr (served)", 2.5, 71.0), ("tfidf", 90.0, 70.5)]
    fig, ax = plt.subplots(figsize=(12, 6.5))
    ax.set_xscale("log")
    ax.scatter([x for _, x, _ in cluster + named], [y for _, _, y in cluster + named])
    _place_labels(ax, cluster + named, {name for name, _, _ in named})
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


def test_the_transfer_line_names_each_rows_cap_when_rows_used_different_ones():
    from mahacompress.report.render import _transfer_lines

    common = {"file": "/data/unlabelled.csv", "texts_read": 10, "pieces": 50, "dropped_overlap": 1,
              "dropped_duplicate": 2, "teacher_agreement_with_file_labels": None}
    capped, every = {**common, "kept": 20}, {**common, "kept": 47}
    one = _transfer_lines([{"name": "kd+tr", "transfer": capped}, {"name": "kd2+tr", "transfer": capped}])
    assert one == ["- Rows marked `+tr` also distil on a transfer set: `unlabelled.csv`, 10 texts cut into 50 word "
                   "windows; 1 shared a word run with a dev or test text and 2 were duplicates (both dropped); 20 used."]
    two = _transfer_lines([{"name": "kd+tr", "transfer": capped}, {"name": "static+tr", "transfer": every},
                           {"name": "kd2+tr", "transfer": capped}, {"name": "baseline"}])[0]
    assert two.endswith("`kd+tr`, `kd2+tr`: 20 used; `static+tr`: 47 used.")
    assert _transfer_lines([{"name": "baseline"}]) == []
