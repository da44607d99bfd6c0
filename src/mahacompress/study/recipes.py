"""The grid's row recipes: what a row name asks for (`parse_row`), and for each kind of row (`KINDS`) which
names it takes, which preset settings shape its model (a change rebuilds it), how it is built and what it
needs from the machine.

Row names: `baseline` (the fine-tuned teacher), `mp` (the teacher fine-tuned and run in bf16), `kd` /
`kdN` (a layer-subset student of `student_layers` / N layers distilled from the teacher; evenly spaced
layers, or with `+ends` the bottom and top ones), `pNN` (pruned to NN% encoder sparsity and compacted),
`+kd` (pruned while distilling), `kdpNN` (depth, then width: the `kd` row's student pruned to NN% while
distilling), `kdlN` (depth twice: the `kd` row's trained student cut to N layers, then distilled for `cut_epochs`),
`+tr` (distilled on the preset's transfer set too: unlabelled text the teacher labels), `+aug`
(and on teacher-labelled variants of its training texts, the preset's `augment`), `+mid` (with the
intermediate-layer terms, the preset's `intermediate`), `+el` (a kd student trained with elastic depth, the preset's
`elastic_depths`, and a kdlN cut from it), `+mp` (trained and run in bf16), `static[+tr][+aug]`
(the static-embedding student; `+pre`: its table pre-trained against the teacher's features first), `tfidf`
(the reference), and
`baseline+X` / `best+X` (the teacher, or the fastest compressed model within the preset's accuracy budget
of it on dev, served with bf16, fp16 (a CUDA GPU only), dynamic int8 in PyTorch, int8 in ONNX Runtime plain (`onnx`)
or with
transformer graph fusion (`fused`), or OpenVINO's calibrated int8 (`openvino`)).

A recipe is data: the runner (`grid.Grid`) builds, scores and times every row the same way, so a new kind
of row is one entry of `KINDS`; `build` runs a recipe with the run's `context.RecipeContext`, for the grid and
`optimize` alike. What a row name asks for (`RowSpec`) and its preset sections live in `rowspec.py`; each kind's
builder, in `builders.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from ..core.config import GridConfig, TrainConfig, recorded
from ..core.errors import MahaError
from ..core.hardware import batch_int8_backend, unsupported_reason
from ..core.registry import EXPORT_BACKENDS, SPECS, is_transformer
from ..train.pruning.compact import PRUNED_FORMAT_VERSION
from .builders import (
    build_kdprune,
    build_layers,
    build_mp,
    build_prune,
    build_static,
    build_teacher,
    build_tfidf,
)
from .context import RecipeContext, RowSettings
from .results import BEST
from .rowspec import BUILT_FROM_KD, KD_KINDS, RowSpec, built_from, train_config, transfer_config
from .tfidf import C_GRID, VECTORIZER

SERVING = {s.serves_as: s.name for s in SPECS.values() if s.serves_as}  # modifier -> inference backend
# What identifies the modelling code of pruned folders: part of every pruned row's settings, so folders
# made by older code are rebuilt, not re-timed.
PRUNED_MODEL_SETTINGS = {"format": PRUNED_FORMAT_VERSION}


class Chooser(Protocol):
    """What a served row's source asks of the runner: `best` is the row the grid chooses on dev."""

    def pick_best(self) -> tuple[str, str]:
        ...


@dataclass(frozen=True)
class Kind:
    """One kind of row: its names, what shapes its model (a change rebuilds it) and how it is made."""

    pattern: str  # full match of the name's head; an optional group captures its number
    modifiers: frozenset[str]  # what may follow `+` (serving modifiers: the row is another model served so)
    settings: Callable[[RowSettings, RowSpec], dict]
    build: Callable[[RecipeContext, RowSpec, Path, TrainConfig | None], dict] | None  # None: always served
    source: Callable[[Chooser, RowSpec], tuple[str, str]] | None = None  # served rows: (row, how it was chosen)
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


def _teacher_settings(rs: RowSettings, spec: RowSpec) -> dict:
    return {"teacher": rs.teacher, "finetune": recorded(rs.cfg.finetune)}


def _mp_settings(rs: RowSettings, spec: RowSpec) -> dict:
    return {"finetune": recorded(train_config(rs.cfg, spec)), "base_model": rs.cfg.base_model}


def _transfer_settings(rs: RowSettings, spec: RowSpec) -> dict:
    return {"transfer": asdict(transfer_config(rs.cfg, spec))} if spec.tr else {}


def _layers_settings(rs: RowSettings, spec: RowSpec) -> dict:
    return {
        "distill": recorded(train_config(rs.cfg, spec)), "student_layers": spec.layers(rs.cfg.student_layers),
        **({"layer_choice": "ends"} if spec.ends else {}), **_transfer_settings(rs, spec)
    }


def _prune_settings(rs: RowSettings, spec: RowSpec) -> dict:
    return {
        "prune_train": recorded(train_config(rs.cfg, spec)), "prune": asdict(rs.cfg.prune), **PRUNED_MODEL_SETTINGS,
        **_transfer_settings(rs, spec)
    }


def _kdprune_settings(rs: RowSettings, spec: RowSpec) -> dict:
    source = parse_row(built_from(spec))
    return {**_prune_settings(rs, spec), "pruned_student": {source.name: settings_of(rs, source)}}


def _kdcut_settings(rs: RowSettings, spec: RowSpec) -> dict:
    source = parse_row(built_from(spec))
    return {**_layers_settings(rs, spec), "cut_student": {source.name: settings_of(rs, source)}}


def _static_settings(rs: RowSettings, spec: RowSpec) -> dict:
    return {
        "static": recorded(train_config(rs.cfg, spec)), "static_dim": rs.cfg.static_dim, **_transfer_settings(rs, spec)
    }


def _tfidf_settings(rs: RowSettings, spec: RowSpec) -> dict:
    return {"tfidf": {"C_grid": list(C_GRID), "vectorizer": VECTORIZER}}


def _best_settings(rs: RowSettings, spec: RowSpec) -> dict:
    """A `best` row depends on every row it may be served from."""
    candidates = [parse_row(n) for n in rs.cfg.rows if is_candidate(parse_row(n))]
    within = {"within_points": rs.cfg.best_within_points} if rs.cfg.best_within_points != 1.0 else {}
    return {"candidates": {c.name: settings_of(rs, c) for c in candidates}, **within}


def _baseline_source(runner: Chooser, spec: RowSpec) -> tuple[str, str]:
    return "baseline", "the teacher"


KINDS: dict[str, Kind] = {
    "baseline": Kind(r"baseline", frozenset(SERVING), _teacher_settings, build_teacher, _baseline_source,
                     seeds_on_request=True),
    "mp": Kind(r"mp", frozenset(), _mp_settings, build_mp, seeded=True),
    "kd": Kind(r"kd([1-9]\d*)?", frozenset({"tr", "ends", "aug", "mid", "el"}), _layers_settings, build_layers,
               seeded=True, compressed=True, distils=True),
    "prune": Kind(r"p([1-9]\d?)", frozenset({"kd", "mp", "tr", "aug", "mid"}), _prune_settings, build_prune,
                  seeded=True, compressed=True),
    # depth and width together: the `kd` row's student pruned with KD from the teacher (`kdp50`)
    "kdprune": Kind(r"kdp([1-9]\d?)", frozenset({"tr", "aug", "mid"}), _kdprune_settings, build_kdprune, seeded=True,
                    compressed=True, distils=True),
    # depth twice: the `kd` row's trained student cut to N layers and distilled for `cut_epochs` (`kdl3`)
    "kdcut": Kind(r"kdl([1-9]\d*)", frozenset({"tr", "ends", "aug", "mid", "el"}), _kdcut_settings, build_layers,
                  seeded=True, compressed=True, distils=True),
    BEST: Kind(BEST, frozenset(SERVING), _best_settings, None, lambda runner, spec: runner.pick_best()),
    # below every transformer: a static-embedding student of the teacher, and the reference a user would
    # pick instead of any transformer (both run with numpy; not `best` candidates, no `served` block)
    "static": Kind(r"static", frozenset({"tr", "aug", "pre"}), _static_settings, build_static, seeded=True,
                   backend="static", distils=True),
    "tfidf": Kind(r"tfidf", frozenset(), _tfidf_settings, build_tfidf, backend="tfidf")
}


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
                and (kind.distils or "kd" in mods or not {"tr", "aug", "mid"} & set(mods))  # these need a teacher
                and not (kind_name == "kdcut" and {"ends", "el"} <= set(mods))):  # an elastic student's cuts are even
            number = match.group(1) if match.groups() else None
            mp = "mp" in mods or kind_name == "mp"
            return RowSpec(name, kind_name,
                           int(number) if number else None, kd="kd" in mods or kind_name in KD_KINDS, mp=mp, tr="tr"
                           in mods, ends="ends" in mods, aug="aug" in mods, mid="mid" in mods, pre="pre" in mods,
                           el="el" in mods, backend=SERVING[serving[0]] if serving else "bf16" if mp else kind.backend,
                           served_from_another=bool(serving))
        break
    raise MahaError(
        f"row '{name}': expected baseline[+{'|+'.join(SERVING)}], mp, kd[N][+ends][+tr][+aug][+mid][+el], "
        f"pNN[+kd[+tr][+aug][+mid]][+mp], kdpNN[+tr][+aug][+mid], kdlN[+ends][+tr][+aug][+mid][+el], "
        f"static[+tr][+aug][+pre], tfidf or "
        f"best+{'|best+'.join(SERVING)} (+aug, +mid: only with a teacher; +mid: not on static, which has no layers; "
        "kdlN: +ends or +el, not both)")


def is_candidate(spec: RowSpec) -> bool:
    """Rows `best` may serve: compressed models trained and run in fp32."""
    return KINDS[spec.kind].compressed and not spec.mp and not spec.served_from_another


def served_backend(cfg: GridConfig, where: str = "preset") -> str:
    """The runtime of a compressed row's `served` block, as a user deploys it: the preset's `served_backend`, or
    with "auto" the int8 runtime an exported folder ships that serves batches fastest on this CPU (the report's
    headline is batch 32). One this machine cannot run (a missing package, bf16 without native bf16) is refused
    here, before any row trains."""
    if cfg.served_backend == "auto":
        return batch_int8_backend()
    shipped = [n for n in EXPORT_BACKENDS if is_transformer(n)]
    if cfg.served_backend not in shipped:
        raise MahaError(f"{where}: served_backend '{cfg.served_backend}': expected auto or one of {', '.join(shipped)}")
    reason = unsupported_reason(cfg.served_backend)
    if reason:
        raise MahaError(f"{where}: served_backend '{cfg.served_backend}' {reason}")
    return cfg.served_backend


def unsupported(spec: RowSpec) -> str | None:
    """Why this machine cannot run `spec` natively (its backend or training precision needs a CPU or GPU
    feature that is missing here), or None. Such a row is recorded as skipped with this reason instead of
    running for hours on an emulated path (bf16 on an AVX2-only CPU runs 8-95x slower than fp32)."""
    return unsupported_reason(spec.backend) or (unsupported_reason("bf16") if spec.mp else None)


def settings_of(rs: RowSettings, spec: RowSpec) -> dict:
    """Everything in the run's settings that shapes a row's model (a re-run rebuilds the row, or retrains the
    trial, when this changes), computed once per row and kept in `rs.known`."""
    if spec.name not in rs.known:
        n = seeds_of(rs.cfg, spec)
        rs.known[spec.name] = {
            "dataset": rs.dataset, "max_train_rows": rs.cfg.max_train_rows, **KINDS[spec.kind].settings(rs, spec),
            **({"seeds": n} if n > 1 else {})
        }
    return rs.known[spec.name]


def seeds_of(cfg: GridConfig, spec: RowSpec) -> int:
    """How many seeds the row is built with: `row_seeds` for it, else `seeds`; 1 for untrained kinds and,
    unless `row_seeds` names it, for the teacher (each extra seed is one more fine-tuning to show its
    spread; the students all learn from the first)."""
    kind = KINDS[spec.kind]
    if kind.seeded:
        return cfg.row_seeds.get(spec.name, cfg.seeds)
    return cfg.row_seeds.get(spec.name, 1) if kind.seeds_on_request else 1


def build(ctx: RecipeContext, spec: RowSpec, folder: Path, seed_index: int = 0) -> dict:
    """Build `spec`'s model (its seed `seed_index`: the section's seed plus it) into `folder`, unscored,
    resuming a checkpoint there: the one way a row's model is made, by the grid and by `optimize`. The
    caller records it in `ctx.finished` once the row is done, so a row built from it finds it."""
    kind = KINDS[spec.kind]
    tcfg = None
    if kind.trained:
        base = train_config(ctx.cfg, spec)
        tcfg = replace(base, seed=base.seed + seed_index)
    return kind.build(ctx, spec, Path(folder), tcfg)


def left_out(spec: RowSpec, cfg: GridConfig, teacher_layers: int | None, teacher_hidden: int | None) -> str | None:
    """Why the teacher cannot give `spec` its shape (a layer student deeper than it, a static table wider than its
    hidden size), or None. The grid and `optimize` both leave such a row out with this reason, before any work, and
    go on with the rest: a preset or a candidate list names sizes for the teachers it was written for (cpu-quick's
    6-layer `kd`, optimize's default candidates), and a shallower teacher still answers with every other row."""
    # a kdpNN or kdlN needs its kd student (student_layers deep) first
    layers = cfg.student_layers if spec.kind in BUILT_FROM_KD else spec.layers(cfg.student_layers)
    if layers is not None and teacher_layers is not None and layers > teacher_layers:
        return f"a {layers}-layer student of a {teacher_layers}-layer teacher"
    if spec.kind == "kdcut" and spec.number > cfg.student_layers:
        return f"{spec.number} layers cut from the {cfg.student_layers}-layer kd student"
    if spec.kind == "static" and teacher_hidden is not None and cfg.static_dim > teacher_hidden:
        return f"static_dim {cfg.static_dim} exceeds the teacher's hidden size {teacher_hidden}"
    return None
