"""A grid preset: loaded from the shipped ones or a YAML file, and checked before any work.

What a preset may say is `core.config.GridConfig`; this module adds what one field cannot check alone (a row
named in `train_overrides` must be a trained row of the preset, a kdpNN or kdlN row needs its kd row listed first)
and, before `reproduce` builds anything, what needs the teacher (its training sections' lengths).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from ..core.config import GridConfig, TrainConfig, TransferConfig, from_dict
from ..core.errors import MahaError
from ..core.model_source import check_model
from ..core.validate import check_layer_map, check_max_length, check_train_config, model_config
from ..train.elastic import check_elastic
from .recipes import KINDS, parse_row, served_backend
from .rowspec import KD_KINDS, LAYER_KINDS, built_from, train_config


def load_preset(preset: str | Path) -> tuple[GridConfig, str]:
    """A preset by name (shipped in mahacompress/presets) or a YAML path; unknown keys stop here."""
    path = Path(preset)
    if not path.is_file():
        shipped = resources.files("mahacompress.study") / "presets" / f"{preset}.yaml"
        if not shipped.is_file():
            names = sorted(
                p.name.removesuffix(".yaml") for p in (resources.files("mahacompress.study") / "presets").iterdir()
                if p.name.endswith(".yaml"))
            raise MahaError(f"preset '{preset}': not a file and not one of {', '.join(names)}")
        path = Path(str(shipped))
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise MahaError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    cfg = from_dict(GridConfig, values, str(path))
    _check_overrides(cfg, str(path))
    _check_shapes(cfg, str(path))
    for i, row in enumerate(cfg.rows):
        spec = parse_row(row)
        if spec.tr and cfg.transfer.path is None:
            raise MahaError(f"{path}: row '{row}' uses the transfer set, but the preset names none (transfer.path)")
        source = built_from(spec)
        if source and source not in cfg.rows[:i]:
            raise MahaError(f"{path}: row '{row}' is built from the student of row '{source}': list that row before it")
    return cfg, path.stem


def _check_overrides(cfg: GridConfig, where: str) -> None:
    """Each `train_overrides` entry names a trained row of the preset other than the baseline (whose settings
    are the `finetune` section itself) with valid training settings; each `transfer_overrides` entry a row
    marked +tr with valid transfer settings; each `row_seeds` entry names a trained row, the baseline
    included, with a number of seeds of 1 or more."""
    for key, entries, rows in (("train_overrides", cfg.train_overrides, [
            r for r in cfg.rows if KINDS[parse_row(r).kind].seeded
    ]), ("transfer_overrides", cfg.transfer_overrides, [r for r in cfg.rows if parse_row(r).tr]),
                               ("row_seeds", cfg.row_seeds, [r for r in cfg.rows if KINDS[parse_row(r).kind].trained]),
                               ):
        for row in entries:
            if row not in rows:
                what = "a row marked +tr" if key == "transfer_overrides" else "a trained row"
                raise MahaError(f"{where}: {key} names '{row}', not {what} of this preset ({', '.join(rows)})")
    for row, values in cfg.train_overrides.items():
        from_dict(TrainConfig, values, f"{where}: train_overrides.{row}")
    for row, values in cfg.transfer_overrides.items():
        from_dict(TransferConfig, values, f"{where}: transfer_overrides.{row}")
    for row, n in cfg.row_seeds.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise MahaError(f"{where}: row_seeds.{row} is {n!r}: expected a whole number of 1 or more")


def _check_shapes(cfg: GridConfig, where: str) -> None:
    """A layer student has a layer and a static table a dimension (whether the teacher is deep or wide enough is
    the teacher's question: `recipes.left_out`), elastic depths only layer students shallower than them, and the
    served blocks a runtime this machine runs."""
    kinds = {parse_row(r).kind for r in cfg.rows}
    if kinds & KD_KINDS and cfg.student_layers < 1:
        raise MahaError(f"{where}: student_layers {cfg.student_layers}: expected 1 or more")
    if cfg.cut_epochs <= 0:  # optimize's kdlN candidates use it whatever the preset's rows
        raise MahaError(f"{where}: cut_epochs {cfg.cut_epochs}: expected a number above 0")
    served_backend(cfg, where)
    if "static" in kinds and cfg.static_dim < 1:
        raise MahaError(f"{where}: static_dim {cfg.static_dim}: expected 1 or more")
    specs = [parse_row(r) for r in cfg.rows]
    if any(s.aug for s in specs) and cfg.augment.per_text < 1:
        raise MahaError(f"{where}: augment.per_text {cfg.augment.per_text}: rows marked +aug need 1 or more")
    for spec in (s for s in specs if KINDS[s.kind].seeded):  # `+el`, or a row's train_overrides
        tcfg = train_config(cfg, spec)
        what = f"{where}: row '{spec.name}': elastic_depths"
        if tcfg.elastic_depths is not None and spec.kind not in LAYER_KINDS:
            raise MahaError(f"{what}: elastic depth trains a layer student (kd, kdN, kdlN rows)")
        check_elastic(spec.layers(cfg.student_layers), tcfg, where=what)
    mid = cfg.intermediate
    if any(s.mid for s in specs) and mid.hidden_weight <= 0 and mid.attention_weight <= 0:
        raise MahaError(f"{where}: rows marked +mid need intermediate.hidden_weight or intermediate.attention_weight "
                        "above 0")


def check_for_teacher(cfg: GridConfig, name: str, teacher: str, *, trust_remote_code: bool = False) -> None:
    """Before any work: the teacher loads, and every training section (and row override) is valid and within
    the teacher's maximum length."""
    check_model(teacher, trust_remote_code=trust_remote_code)
    for key in ("finetune", "distill", "prune_train", "static"):
        check_train_config(getattr(cfg, key), where=f"preset {name}: {key}")
        check_max_length(teacher, getattr(cfg, key).max_length)
    depth = model_config(teacher).get("num_hidden_layers") if Path(teacher).is_dir() else None
    for row in cfg.rows:
        spec = parse_row(row)
        if spec.mid and cfg.intermediate.layer_map is not None and depth:
            layers = spec.layers(cfg.student_layers) or depth
            check_layer_map(cfg.intermediate.layer_map, layers, depth, f"preset {name}: intermediate.layer_map")
    for row in cfg.train_overrides:
        tcfg = train_config(cfg, parse_row(row))
        check_train_config(tcfg, where=f"preset {name}: train_overrides.{row}")
        check_max_length(teacher, tcfg.max_length)
