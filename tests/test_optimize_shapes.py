"""optimize's shapes phase: runtimes beaten everywhere by the probe session are dropped for the run."""

from __future__ import annotations

from mahacompress.search.trials import BEATEN, beaten_everywhere


def test_a_runtime_is_dropped_only_when_beaten_by_the_margin_on_every_probe():
    probes = {
        "teacher": {"fp32": 400.0, "onnx": 300.0, "onnx-int8": 200.0, "openvino-int8": 100.0},
        "kd2": {"fp32": 80.0, "onnx": 60.0, "onnx-int8": 29.0, "openvino-int8": 25.0},
    }
    # onnx-int8: 2x on the teacher but within the margin on kd2, so it stays; fp32 and onnx lose on both
    assert sorted(beaten_everywhere(probes)) == ["fp32", "onnx"]
    assert sorted(beaten_everywhere(probes, keep=("fp32", "onnx"))) == []  # the reference and the fallback stay
    probes["kd2"]["onnx-int8"] = 25.0 * BEATEN * 1.01
    assert "onnx-int8" in beaten_everywhere(probes)
    # a runtime one probe lacks (a package missing for it) is neither compared nor dropped
    assert beaten_everywhere({"a": {"x": 10.0, "y": 100.0}, "b": {"x": 10.0}}) == []
