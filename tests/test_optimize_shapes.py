"""optimize's shapes phase: runtimes beaten everywhere by the probe session are dropped for the run."""

from __future__ import annotations

from mahacompress.search.trials import BEATEN, beaten_everywhere


def test_a_runtime_is_dropped_only_when_a_runtime_as_precise_beats_it_by_the_margin_on_every_probe():
    probes = {
        "teacher": {"fp32": 400.0, "onnx": 300.0, "openvino": 150.0, "onnx-int8": 200.0, "openvino-int8": 100.0},
        "kd2": {"fp32": 80.0, "onnx": 60.0, "openvino": 40.0, "onnx-int8": 29.0, "openvino-int8": 25.0},
    }
    # onnx-int8: 2x on the teacher but within the margin on kd2, so it stays; onnx loses to openvino (fp32 both)
    # on both probes, fp32 too; openvino, slower than openvino-int8, stays: a verdict may need its precision
    assert beaten_everywhere(probes) == ["fp32", "onnx"]
    assert beaten_everywhere(probes, keep=("fp32", "onnx")) == []  # the reference and the fallback stay
    probes["kd2"]["onnx-int8"] = 25.0 * BEATEN * 1.01
    assert beaten_everywhere(probes, keep=("fp32", "onnx")) == ["onnx-int8"]


def test_the_torch_reference_beats_nothing_and_a_runtime_one_probe_lacks_is_kept():
    """torch fp32 ships in no folder (on a GPU it can be the fastest): it drops no runtime."""
    probes = {
        "teacher": {"fp32": 5.0, "onnx": 300.0, "onnx-int8": 100.0},
        "kd2": {"fp32": 2.0, "onnx": 60.0, "onnx-int8": 25.0}
    }
    assert beaten_everywhere(probes, keep=("fp32", )) == []  # onnx is the only shippable fp32 runtime
    assert beaten_everywhere({"a": {"onnx": 10.0, "openvino": 100.0}, "b": {"onnx": 10.0}}) == []
