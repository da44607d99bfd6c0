"""What a row name asks for (`RowSpec`, which `recipes.parse_row` makes) and the preset settings that follow from
it: its training section with the row's overrides (`train_config`), its transfer set with the row's overrides
(`transfer_config`, `transfer_set`), and the row a `kdpNN` row prunes or a `kdlN` row cuts (`built_from`).

Why a module of its own: the builders (`builders.py`) and the recipes' table (`recipes.KINDS`) both read these,
and the table holds the builders, so these sit below both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

from ..core.config import GridConfig, TrainConfig, TransferConfig, from_dict
from ..data.transfer import TransferSet
from .context import RecipeContext


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
    aug: bool = False  # distilled on teacher-labelled variants of its training texts too (the preset's `augment`)
    mid: bool = False  # with the intermediate-layer terms (the preset's `intermediate`)
    pre: bool = False  # a static table pre-trained against the teacher's features (`static_pretrain_epochs`)
    el: bool = False  # a kd student trained with elastic depth (`elastic_depths`), or a kdlN cut from that student
    backend: str = "fp32"  # how it is served; a serving modifier makes the row another row's model served so
    served_from_another: bool = False

    @property
    def sparsity(self) -> float | None:
        return self.number / 100 if self.kind in ("prune", "kdprune") else None

    def layers(self, student_layers: int) -> int | None:
        """How many layers this row's student has: a kdN's or kdlN's N (the preset's `student_layers` where the name
        has none), a kdpNN's the kd student's it prunes; None for the teacher's depth (a pruned teacher, the teacher)
        and for a static table."""
        if self.kind in LAYER_KINDS:
            return self.number or student_layers
        return student_layers if self.kind == "kdprune" else None


# which section of a preset trains each trained kind (its seed is varied per run)
_TRAIN_SECTION = {
    "baseline": "finetune", "mp": "finetune", "kd": "distill", "kdcut": "distill", "prune": "prune_train",
    "kdprune": "prune_train", "static": "static"
}
# the kinds built from the trained model of another row (`built_from`)
BUILT_FROM_KD = frozenset({"kdprune", "kdcut"})
# the kinds that are a layer student of the teacher or built from one, so trained with its KD term
KD_KINDS = BUILT_FROM_KD | {"kd"}
# the kinds whose model is a stack of N layers of the teacher's width: copied from the teacher or cut from its kd row
LAYER_KINDS = frozenset({"kd", "kdcut"})


def built_from(spec: RowSpec) -> str | None:
    """The layer-student row whose trained model a `kdpNN` row prunes or a `kdlN` row cuts: `kd`, or `kd+tr` when the
    transfer set is used (with `+el`: the elastic one); None for the kinds built from the teacher."""
    if spec.kind not in BUILT_FROM_KD:
        return None
    return ("kd+tr" if spec.tr else "kd") + ("+el" if spec.el else "")


def train_section(spec: RowSpec) -> str:
    """The preset section a trained row's kind trains with (`distill` for kd and kdlN rows, `prune_train`, ...)."""
    return _TRAIN_SECTION[spec.kind]


def train_config(cfg: GridConfig, spec: RowSpec) -> TrainConfig:
    """The training settings of a trained row: its kind's preset section, with the levers its name turns on
    (`+aug`, `+mid`, `+pre`, `+el`), then the row's overrides."""
    section = getattr(cfg, train_section(spec))
    if spec.kind == "kdcut":
        section = replace(section, epochs=cfg.cut_epochs)
    if spec.aug:
        section = replace(section, augment=cfg.augment)
    if spec.mid:
        mid = cfg.intermediate
        section = replace(section, kd_hidden_weight=mid.hidden_weight, kd_attention_weight=mid.attention_weight,
                          relation_heads=mid.relation_heads, kd_layer_map=mid.layer_map)
    if spec.pre:
        section = replace(section, pretrain_epochs=cfg.static_pretrain_epochs)
    if spec.el and spec.kind == "kd":  # a kdlN+el is cut from the elastic student and trains as any kdlN
        section = replace(section, elastic_depths=list(cfg.elastic_depths))
    return _overridden(section, cfg.train_overrides, "train_overrides", spec)


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


def transfer_set(ctx: RecipeContext, spec: RowSpec) -> TransferSet:
    """The transfer set a `+tr` row distils on (the run's, with the row's `transfer_overrides`)."""
    return ctx.transfer_set(transfer_config(ctx.cfg, spec))
