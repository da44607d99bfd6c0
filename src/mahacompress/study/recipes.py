"""The grid's row recipes: what a row name asks for (`parse_row`), and for each kind of row (`KINDS`) which
names it takes, which preset settings shape its model (a change rebuilds it), how it is built and what it
needs from the machine.

Row names: `baseline` (the fine-tuned teacher), `mp` (the teacher fine-tuned and run in bf16), `kd` /
`kdN` (a layer-subset student of `student_layers` / N layers distilled from the teacher; evenly spaced
layers, or with `+ends` the bottom and top ones), `pNN` (pruned to NN% encoder sparsity and compacted),
`+kd` (pruned while distilling), `kdpNN` (depth, then width: the `kd` row's student pruned to NN% while
distilling), `+tr` (distilled on the preset's transfer set too: unlabelled text the teacher labels), `+mp`
(trained and run in bf16), `static[+tr]` (the static-embedding student), `tfidf` (the reference), and
`baseline+X` / `best+X` (the teacher, or the fastest compressed model within the preset's accuracy budget
of it on dev, served with bf16, fp16 (a CUDA GPU only), dynamic int8 in PyTorch, int8 in ONNX Runtime plain (`onnx`) or with
transformer graph fusion (`fused`), or OpenVINO's calibrated int8 (`openvino`)).

A recipe is data: the runner (`grid.Grid`) builds, scores and times every row the same way, so a new kind
of row is one entry of `KINDS`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Protocol, TypeVar

from .tfidf import C_GRID, VECTORIZER, save_tfidf
from ..core.config import DataConfig, GridConfig, TrainConfig, TransferConfig, from_dict
from ..data.datasets import Splits
from ..train.distill import distill
from ..core.errors import MahaError
from ..core.hardware import unsupported_reason
from ..train.pruning.compact import PRUNED_FORMAT_VERSION
from ..train.pruning.prune import prune
from .results import BEST
from ..train.static import distill_static
from ..train.loop import finetune
from ..data.transfer import TransferSet

# How the `served` block of a compressed row runs it: fused ONNX Runtime int8 was the fastest runtime at
# batch 1 and within the noise of OpenVINO int8 at batch 32 on every model measured, at equal accuracy
# (reports/runtimes), and needs no package beyond onnxruntime.
SERVED_BACKEND = "onnx-int8-fused"
SERVING = {"bf16": "bf16", "fp16": "fp16", "int8": "int8", "onnx": "onnx-int8", "fused": "onnx-int8-fused",
           "openvino": "openvino-int8"}  # modifier -> inference backend
# What identifies the modelling code of pruned folders: part of every pruned row's settings, so folders
# made by older code are rebuilt, not re-timed.
PRUNED_MODEL_SETTINGS = {"format": PRUNED_FORMAT_VERSION}


class Runner(Protocol):
    """What a recipe reads from the runner that builds it (`grid.Grid`; `optimize` drives one too): the
    preset, the teacher, the data, the finished rows, and the few answers only the runner has."""

    cfg: GridConfig
    teacher: str  # as given
    teacher_dir: str  # the fine-tuned teacher
    splits: Splits
    data: DataConfig | None  # what `splits` was loaded with: every built folder records it
    rows: dict[str, dict]
    trust_remote_code: bool  # the user let the teacher run its folder's code: so may every model built from it

    def settings_of(self, spec: RowSpec) -> dict: ...

    def transfer_set(self, spec: RowSpec) -> TransferSet: ...

    def base_model(self) -> str: ...

    def pick_best(self) -> tuple[str, str]: ...


@dataclass(frozen=True)
class RowSpec:
    """What a row name asks for."""

    name: str
    kind: str  # a key of KINDS
    number: int | None = None  # the number in the name: pNN's sparsity in percent, kdN's layers
    kd: bool = False
    mp: bool = False
    tr: bool = False  # distilled on the preset's transfer set too
    ends: bool = False  # a layer student of the teacher's bottom and top layers, not evenly spaced ones
    backend: str = "fp32"  # how it is served; a serving modifier makes the row another row's model served so
    served_from_another: bool = False

    @property
    def sparsity(self) -> float | None:
        return self.number / 100 if self.kind in ("prune", "kdprune") else None


@dataclass(frozen=True)
class Kind:
    """One kind of row: its names, what shapes its model (a change rebuilds it) and how it is made."""

    pattern: str  # full match of the name's head; an optional group captures its number
    modifiers: frozenset[str]  # what may follow `+` (serving modifiers: the row is another model served so)
    settings: Callable[[Runner, RowSpec], dict]
    build: Callable[[Runner, RowSpec, Path, TrainConfig | None, str], dict] | None  # None: always served
    source: Callable[[Runner, RowSpec], tuple[str, str]] | None = None  # served rows: (row, how it was chosen)
    seeded: bool = False  # trained: built once per seed, shown as mean and spread
    # trained, but once unless `row_seeds` asks for more: the teacher, whose first seed every student learns from
    seeds_on_request: bool = False
    compressed: bool = False  # a candidate for `best` and given a `served` block
    backend: str = "fp32"  # how its model runs when no modifier says otherwise
    distils: bool = False  # always learns from the teacher, so it may take the transfer set (`+tr`)

    @property
    def trained(self) -> bool:
        """Built by training with its preset section's settings, so each extra seed varies that seed."""
        return self.seeded or self.seeds_on_request


# ---------------------------------------------------------------- the recipes

def _teacher_settings(grid: Runner, spec: RowSpec) -> dict:
    return {"teacher": grid.teacher, "finetune": asdict(grid.cfg.finetune)}


def _mp_settings(grid: Runner, spec: RowSpec) -> dict:
    return {"finetune": asdict(train_config(grid.cfg, spec)), "base_model": grid.cfg.base_model}


def _transfer_settings(grid: Runner, spec: RowSpec) -> dict:
    return {"transfer": asdict(transfer_config(grid.cfg, spec))} if spec.tr else {}


def _layers_settings(grid: Runner, spec: RowSpec) -> dict:
    return {"distill": asdict(train_config(grid.cfg, spec)), "student_layers": spec.number or grid.cfg.student_layers,
            **({"layer_choice": "ends"} if spec.ends else {}), **_transfer_settings(grid, spec)}


def _prune_settings(grid: Runner, spec: RowSpec) -> dict:
    return {"prune_train": asdict(train_config(grid.cfg, spec)), "prune": asdict(grid.cfg.prune), **PRUNED_MODEL_SETTINGS,
            **_transfer_settings(grid, spec)}


def kdprune_source(spec: RowSpec) -> str:
    """The layer-student row a `kdpNN` row prunes: `kd`, or `kd+tr` when the transfer set is used."""
    return "kd+tr" if spec.tr else "kd"


def _kdprune_settings(grid: Runner, spec: RowSpec) -> dict:
    source = parse_row(kdprune_source(spec))
    return {**_prune_settings(grid, spec), "pruned_student": {source.name: grid.settings_of(source)}}


def _static_settings(grid: Runner, spec: RowSpec) -> dict:
    return {"static": asdict(train_config(grid.cfg, spec)), "static_dim": grid.cfg.static_dim,
            **_transfer_settings(grid, spec)}


def _tfidf_settings(grid: Runner, spec: RowSpec) -> dict:
    return {"tfidf": {"C_grid": list(C_GRID), "vectorizer": VECTORIZER}}


def _best_settings(grid: Runner, spec: RowSpec) -> dict:
    """A `best` row depends on every row it may be served from."""
    candidates = [parse_row(n) for n in grid.cfg.rows if is_candidate(parse_row(n))]
    within = {"within_points": grid.cfg.best_within_points} if grid.cfg.best_within_points != 1.0 else {}
    return {"candidates": {c.name: grid.settings_of(c) for c in candidates}, **within}


def _build_teacher(grid: Runner, spec: RowSpec, out: Path, tcfg: TrainConfig, precision: str) -> dict:
    if grid.teacher_dir == grid.teacher:
        return {"model_dir": grid.teacher, "train_seconds": _recorded_seconds(Path(grid.teacher))}
    return timed(out, finetune, grid.teacher, grid.splits, tcfg, out, resume=True, data=grid.data,
                 trust_remote_code=grid.trust_remote_code)


def _build_mp(grid: Runner, spec: RowSpec, out: Path, tcfg: TrainConfig, precision: str) -> dict:
    return timed(out, finetune, grid.base_model(), grid.splits, replace(tcfg, mixed_precision=precision), out,
                  resume=True, data=grid.data, trust_remote_code=grid.trust_remote_code)


def _build_layers(grid: Runner, spec: RowSpec, out: Path, tcfg: TrainConfig, precision: str) -> dict:
    layers = spec.number or grid.cfg.student_layers
    return timed(out, distill, grid.teacher_dir, f"layers:{layers}" + (":ends" if spec.ends else ""), grid.splits, tcfg, out, resume=True,
                  transfer=grid.transfer_set(spec) if spec.tr else None, data=grid.data,
                  trust_remote_code=grid.trust_remote_code)


def _build_prune(grid: Runner, spec: RowSpec, out: Path, tcfg: TrainConfig, precision: str) -> dict:
    tcfg = replace(tcfg, mixed_precision=precision) if spec.mp else tcfg
    return timed(out, prune, grid.teacher_dir, grid.splits, tcfg, replace(grid.cfg.prune, sparsity=spec.sparsity),
                  out, resume=True, distill_from=grid.teacher_dir if spec.kd else None,
                  transfer=grid.transfer_set(spec) if spec.tr else None, data=grid.data,
                  trust_remote_code=grid.trust_remote_code)


def _build_kdprune(grid: Runner, spec: RowSpec, out: Path, tcfg: TrainConfig, precision: str) -> dict:
    """Depth, then width: the layer student of the `kd` row (its seed of the same index when it has one)
    pruned to NN% of its own encoder weights while distilling from the teacher."""
    source = grid.rows.get(kdprune_source(spec), {})
    if source.get("status") != "done":
        raise MahaError(f"row '{spec.name}' prunes row '{kdprune_source(spec)}', which has not finished")
    index = tcfg.seed - train_config(grid.cfg, spec).seed  # which of this row's seeds is being built
    student = source["seeds"][index]["model_dir"] if index < len(source["seeds"]) else source["model_dir"]
    return timed(out, prune, student, grid.splits, tcfg, replace(grid.cfg.prune, sparsity=spec.sparsity), out,
                  resume=True, distill_from=grid.teacher_dir, transfer=grid.transfer_set(spec) if spec.tr else None,
                  data=grid.data, trust_remote_code=grid.trust_remote_code)


def _build_static(grid: Runner, spec: RowSpec, out: Path, tcfg: TrainConfig, precision: str) -> dict:
    return timed(out, distill_static, grid.teacher_dir, grid.splits, tcfg, out, dim=grid.cfg.static_dim,
                  resume=True, transfer=grid.transfer_set(spec) if spec.tr else None, data=grid.data,
                  trust_remote_code=grid.trust_remote_code)


def _build_tfidf(grid: Runner, spec: RowSpec, out: Path, tcfg: TrainConfig | None, precision: str) -> dict:
    return timed(out, save_tfidf, grid.splits, out)


def _baseline_source(grid: Runner, spec: RowSpec) -> tuple[str, str]:
    return "baseline", "the teacher"


KINDS: dict[str, Kind] = {
    "baseline": Kind(r"baseline", frozenset(SERVING), _teacher_settings, _build_teacher, _baseline_source,
                     seeds_on_request=True),
    "mp": Kind(r"mp", frozenset(), _mp_settings, _build_mp, seeded=True),
    "kd": Kind(r"kd([1-9]\d*)?", frozenset({"tr", "ends"}), _layers_settings, _build_layers, seeded=True, compressed=True,
               distils=True),
    "prune": Kind(r"p([1-9]\d?)", frozenset({"kd", "mp", "tr"}), _prune_settings, _build_prune, seeded=True,
                  compressed=True),
    # depth and width together: the `kd` row's student pruned with KD from the teacher (`kdp50`)
    "kdprune": Kind(r"kdp([1-9]\d?)", frozenset({"tr"}), _kdprune_settings, _build_kdprune, seeded=True,
                    compressed=True, distils=True),
    BEST: Kind(BEST, frozenset(SERVING), _best_settings, None, lambda grid, spec: grid.pick_best()),
    # below every transformer: a static-embedding student of the teacher, and the reference a user would
    # pick instead of any transformer (both run with numpy; not `best` candidates, no `served` block)
    "static": Kind(r"static", frozenset({"tr"}), _static_settings, _build_static, seeded=True, backend="static",
                   distils=True),
    "tfidf": Kind(r"tfidf", frozenset(), _tfidf_settings, _build_tfidf, backend="tfidf"),
}
# which section of a preset trains each trained kind (its seed is varied per run)
_TRAIN_SECTION = {"baseline": "finetune", "mp": "finetune", "kd": "distill", "prune": "prune_train", "kdprune": "prune_train",
                  "static": "static"}


def parse_row(name: str) -> RowSpec:
    """`p25+kd+mp` -> RowSpec(kind="prune", number=25, kd=True, mp=True, backend="bf16")."""
    head, *mods = name.split("+")
    for kind_name, kind in KINDS.items():
        match = re.fullmatch(kind.pattern, head)
        if not match:
            continue
        serving = [m for m in mods if m in SERVING]
        # a serving modifier stands alone (the row is another row's model served so); others need a build
        if (len(set(mods)) == len(mods) and set(mods) <= kind.modifiers
                and (len(mods) == 1 if serving else kind.build is not None)
                and ("tr" not in mods or "kd" in mods or kind.distils)):  # a transfer set needs a teacher
            number = match.group(1) if match.groups() else None
            mp = "mp" in mods or kind_name == "mp"
            return RowSpec(name, kind_name, int(number) if number else None,
                           kd="kd" in mods or kind_name in ("kd", "kdprune"),
                           mp=mp, tr="tr" in mods, ends="ends" in mods,
                           backend=SERVING[serving[0]] if serving else "bf16" if mp else kind.backend,
                           served_from_another=bool(serving))
        break
    raise MahaError(f"row '{name}': expected baseline[+{'|+'.join(SERVING)}], mp, kd[N][+ends][+tr], pNN[+kd[+tr]][+mp], "
                    f"kdpNN[+tr], static[+tr], tfidf or best+{'|best+'.join(SERVING)}")


def is_candidate(spec: RowSpec) -> bool:
    """Rows `best` may serve: compressed models trained and run in fp32."""
    return KINDS[spec.kind].compressed and not spec.mp and not spec.served_from_another


def unsupported(spec: RowSpec) -> str | None:
    """Why this machine cannot run `spec` natively (its backend or training precision needs a CPU or GPU
    feature that is missing here), or None. Such a row is recorded as skipped with this reason instead of
    running for hours on an emulated path (bf16 on an AVX2-only CPU runs 8-95x slower than fp32)."""
    return unsupported_reason(spec.backend) or (unsupported_reason("bf16") if spec.mp else None)


def train_config(cfg: GridConfig, spec: RowSpec) -> TrainConfig:
    """The training settings of a trained row: its kind's preset section with the row's overrides."""
    return _overridden(getattr(cfg, _TRAIN_SECTION[spec.kind]), cfg.train_overrides, "train_overrides", spec)


def transfer_config(cfg: GridConfig, spec: RowSpec) -> TransferConfig:
    """The transfer set a `+tr` row distils on: the preset's `transfer` section with the row's overrides."""
    return _overridden(cfg.transfer, cfg.transfer_overrides, "transfer_overrides", spec)


_Section = TypeVar("_Section", TrainConfig, TransferConfig)


def _overridden(base: _Section, overrides: dict[str, dict], key: str, spec: RowSpec) -> _Section:
    """`base` (a preset section) with the values `overrides` gives for the row replaced, each checked against
    the section's own field types, so an override can change only what the section has."""
    values = overrides.get(spec.name, {})
    checked = from_dict(type(base), values, f"{key}.{spec.name}")
    return replace(base, **{name: getattr(checked, name) for name in values})


def timed(out: Path, fn: Callable, *args, **kwargs) -> dict:
    """Run a builder; the model folder and its training seconds (as the trainer recorded them, else wall time)."""
    t0 = time.time()
    info = fn(*args, **kwargs)
    info = info if isinstance(info, dict) else {}
    seconds = info.get("result", {}).get("seconds")
    transfer = {"transfer": info["transfer"]} if info.get("transfer") else {}
    history = info.get("result", {}).get("dev_history")  # (step, dev macro-F1): did training converge?
    return {"model_dir": str(out), "train_seconds": seconds if seconds is not None else time.time() - t0, **transfer,
            **({"dev_history": history} if history else {})}


def _recorded_seconds(model_dir: Path) -> float | None:
    record = model_dir / "training.json"
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8")).get("result", {}).get("seconds")
    return None
