"""Every inference backend in one table: its name, the engine that runs it, the file it serves, what it needs,
and where else its name is offered (an exported folder, the grid's serving rows, `optimize`, the CLI's help).

Plain data, importable without torch (`config.BACKENDS` is this table's names, so the CLI checks
`--backend` before loading anything). `load.py` reads it to build a backend's file and pick its runner;
`hardware.unsupported_reason` reads `packages`; the grid reads `needs` for the calibrated ones. Every other
list of backend names is derived from it (`EXPORT_BACKENDS`, `config.OPTIMIZE_RUNTIMES`, `recipes.SERVING`,
`scoring.SHIPPABLE`, the CLI's help), so a backend added here is offered everywhere it fits.

Needs (`needs`):
- "gpu": runs on a CUDA GPU only (fp16);
- "native-bf16": bf16 on a device that only emulates it is refused (unless forced): many times slower
  (torch's bf16; OpenVINO's bf16 inference precision, which an exported folder can ship);
- "vnni": int8 weights at full range need VNNI on x86; without it they get 7 bits (the file name says -r7);
- "calibration": activation ranges learnt from training texts, needed the first time its file is built.

Served files (`file`, built from the checkpoint and kept in the derived-file cache, cache.py):
- "onnx": the ONNX export (onnx_export.py), which every other file is made from;
- "onnx-int8": dynamic int8 weights; "onnx-int8-fused": transformer graph fusion, then dynamic int8;
- "onnx-int8-static": static int8 (QDQ), calibrated; "openvino-int8": NNCF int8 in OpenVINO IR, calibrated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NUMPY = "numpy"  # the engine of the models that are no transformer


@dataclass(frozen=True)
class BackendSpec:
    """One way to run a classifier."""

    name: str
    engine: str  # "torch", "onnxruntime", "openvino" or NUMPY (models that are no transformer)
    about: str  # what runs, in a phrase (the CLI's help)
    file: str | None = None  # the derived file it serves; None: it runs the checkpoint itself
    needs: frozenset[str] = frozenset()
    packages: tuple[str, ...] = ()  # optional packages beyond the base install
    # its place among export's backends, 1 the default (the order shows in help and error messages);
    # None: no exported folder runs it
    ships: int | None = None
    serves_as: str | None = None  # the grid's modifier that serves a row with it (`baseline+X`, `best+X`)
    precision: str = "fp32"  # its arithmetic: "fp32", "bf16", "fp16" or "int8" (what it may cost in accuracy)


SPECS: dict[str, BackendSpec] = {
    s.name: s
    for s in (
        BackendSpec("fp32", "torch", "PyTorch"),
        BackendSpec("bf16", "torch", "PyTorch, weights cast to bf16", needs=frozenset({"native-bf16"}),
                    serves_as="bf16", precision="bf16"),
        BackendSpec("fp16", "torch", "PyTorch in fp16", needs=frozenset({"gpu"}), serves_as="fp16", precision="fp16"),
        # dynamic quantisation; torch's dynamic Linear always uses 7-bit activations
        BackendSpec("int8", "torch", "PyTorch dynamic int8", serves_as="int8", precision="int8"),
        BackendSpec("onnx", "onnxruntime", "ONNX Runtime, fp32", file="onnx", ships=3),
        BackendSpec("onnx-int8", "onnxruntime", "ONNX Runtime, dynamic int8", file="onnx-int8", needs=frozenset(
            {"vnni"}), ships=2, serves_as="onnx", precision="int8"),
        BackendSpec("onnx-int8-fused", "onnxruntime", "ONNX Runtime, graph fusion then dynamic int8",
                    file="onnx-int8-fused", needs=frozenset({"vnni"}), ships=1, serves_as="fused", precision="int8"),
        BackendSpec("onnx-int8-static", "onnxruntime", "ONNX Runtime, static int8, QDQ", file="onnx-int8-static",
                    needs=frozenset({"vnni", "calibration"}), precision="int8"),
        BackendSpec("openvino", "openvino", "OpenVINO, fp32", file="onnx", packages=("openvino", ), ships=5),
        # the ONNX export compiled by OpenVINO with bf16 inference precision (runtime.openvino_config)
        BackendSpec("openvino-bf16", "openvino", "OpenVINO in bf16", file="onnx", needs=frozenset({"native-bf16"}),
                    packages=("openvino", ), ships=6, precision="bf16"),
        BackendSpec("openvino-int8", "openvino", "NNCF int8 OpenVINO IR", file="openvino-int8", needs=frozenset(
            {"vnni", "calibration"}), packages=("openvino", "nncf"), ships=4, serves_as="openvino", precision="int8"),
        BackendSpec("static", NUMPY, "numpy, a static-embedding student", ships=7),  # train/static.py
        BackendSpec("tfidf", NUMPY, "numpy, the TF-IDF reference"),  # study/tfidf.py: TF-IDF + logistic regression
    )
}
BACKENDS = tuple(SPECS)
CALIBRATED_BACKENDS = tuple(n for n, s in SPECS.items() if "calibration" in s.needs)
# what `export` writes a folder for, its default first
EXPORT_BACKENDS = tuple(s.name
                        for s in sorted((s for s in SPECS.values() if s.ships is not None), key=lambda s: s.ships))
# the needs a user must know of before choosing a backend, as the CLI's help says them (vnni only changes a file)
_NEED_NOTES = {
    "gpu": "a CUDA GPU only", "native-bf16": "native bf16 only", "calibration": "calibrated on training texts"
}


def is_transformer(name: str) -> bool:
    """Whether backend `name` runs a transformer (not a static student's table or the TF-IDF reference)."""
    return SPECS[name].engine != NUMPY


def choices_help(names: Iterable[str]) -> str:
    """`NAME (what runs; what it needs)` for each backend of `names`, in their order: the CLI's help for an option
    that takes one of them."""

    def one(spec: BackendSpec) -> str:
        notes = [note for need, note in _NEED_NOTES.items() if need in spec.needs]
        return f"{spec.name} ({'; '.join([spec.about, *notes])})"

    return " | ".join(one(SPECS[n]) for n in names)
