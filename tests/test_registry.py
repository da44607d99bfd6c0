"""The backends' one table: every list of backend names elsewhere is derived from it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mahacompress.core.config import OPTIMIZE_RUNTIMES
from mahacompress.core.registry import (
    BACKENDS,
    CALIBRATED_BACKENDS,
    EXPORT_BACKENDS,
    SPECS,
    choices_help,
)
from mahacompress.deploy.export import TRANSFORMER_BACKENDS
from mahacompress.search.scoring import SHIPPABLE
from mahacompress.study.recipes import SERVING


def test_the_derived_lists_are_the_ones_every_caller_has_used():
    """Their order shows in help, error messages and optimize's records, so it is kept, not only the names."""
    assert BACKENDS == ("fp32", "bf16", "fp16", "int8", "onnx", "onnx-int8", "onnx-int8-fused", "onnx-int8-static",
                        "openvino", "openvino-bf16", "openvino-int8", "static", "tfidf",
                        )
    assert CALIBRATED_BACKENDS == ("onnx-int8-static", "openvino-int8")
    assert EXPORT_BACKENDS == ("onnx-int8-fused", "onnx-int8", "onnx", "openvino-int8", "openvino", "openvino-bf16",
                               "static",
                               )
    assert TRANSFORMER_BACKENDS == EXPORT_BACKENDS[:-1]
    assert OPTIMIZE_RUNTIMES == ("onnx", "onnx-int8", "onnx-int8-fused", "openvino", "openvino-int8", "openvino-bf16")
    assert SHIPPABLE == set(EXPORT_BACKENDS)
    assert list(SERVING.items()) == [("bf16", "bf16"), ("fp16", "fp16"), ("int8", "int8"), ("onnx", "onnx-int8"),
                                     ("fused", "onnx-int8-fused"), ("openvino", "openvino-int8"), ]


def test_help_names_each_backend_with_what_it_needs():
    text = choices_help(["fp16", "openvino-int8"])
    assert text == (f"fp16 ({SPECS['fp16'].about}; a CUDA GPU only) | "
                    f"openvino-int8 ({SPECS['openvino-int8'].about}; calibrated on training texts)")


# Run in a fresh interpreter: the table's module is executed with one more spec before anything imports it.
_WITH_ONE_MORE = """
import importlib.util, json, sys
from pathlib import Path

import mahacompress.core

spec = importlib.util.find_spec("mahacompress.core.registry")
source = Path(spec.origin).read_text(encoding="utf-8")
anchor = '    BackendSpec("static",'
assert source.count(anchor) == 1
extra = ('    BackendSpec("onnx-int4", "onnxruntime", "ONNX Runtime, int4", file="onnx-int4", '
         'needs=frozenset({"calibration"}), ships=8, serves_as="int4"),\\n')
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
exec(compile(source.replace(anchor, extra + anchor), spec.origin, "exec"), module.__dict__)

from typer.testing import CliRunner

from mahacompress.cli.app import app
from mahacompress.core.config import BACKENDS, OPTIMIZE_RUNTIMES
from mahacompress.deploy.export import EXPORT_BACKENDS, TRANSFORMER_BACKENDS
from mahacompress.infer import CALIBRATED_BACKENDS
from mahacompress.search.scoring import SHIPPABLE
from mahacompress.study.recipes import SERVING

helps = {c: CliRunner().invoke(app, [c, "--help"], env={"COLUMNS": "400"}).output
         for c in ("evaluate", "export", "optimize")}
print(json.dumps({"backends": BACKENDS, "calibrated": CALIBRATED_BACKENDS, "export": EXPORT_BACKENDS,
                  "transformer": TRANSFORMER_BACKENDS, "optimize": OPTIMIZE_RUNTIMES, "shippable": sorted(SHIPPABLE),
                  "serving": SERVING, "helps": helps}))
"""


@pytest.mark.slow
def test_a_backend_added_to_the_table_is_offered_everywhere_it_fits():
    done = subprocess.run([sys.executable, "-c", _WITH_ONE_MORE], check=False, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["backends"][-3:] == ["onnx-int4", "static", "tfidf"]
    assert seen["calibrated"][-1] == "onnx-int4"
    assert seen["export"] == [*EXPORT_BACKENDS, "onnx-int4"]
    assert seen["transformer"] == [*TRANSFORMER_BACKENDS, "onnx-int4"]
    assert seen["optimize"] == [*OPTIMIZE_RUNTIMES[:-1], "onnx-int4", OPTIMIZE_RUNTIMES[-1]]  # native bf16 last
    assert "onnx-int4" in seen["shippable"] and seen["serving"]["int4"] == "onnx-int4"
    for command, text in seen["helps"].items():
        assert "onnx-int4" in text, (command, text)
