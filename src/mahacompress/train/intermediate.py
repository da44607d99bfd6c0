"""The intermediate-layer terms `fit` adds beside the soft targets: hidden states and attention relations.

Hidden states (`kd_hidden_weight`) compare each student layer's output with its mapped teacher layer's by
cosine; where the two widths differ, a learned `nn.Linear(student, teacher)` maps the student's states first.
It trains with the student (its own optimizer group) and is thrown away with the run: the saved model is the
student alone, so it runs and exports as before.

Attention relations (`kd_attention_weight`, MiniLMv2) need the query, key and value projections' outputs of the
mapped layers, which no model returns: forward hooks keep them for the one forward they are recorded in. The
hooks sit on the projection modules found by name (`query`/`key`/`value`, `q_proj`/`k_proj`/`v_proj`,
`q_lin`/`k_lin`/`v_lin`); while pruning, those paths hold the masking Linears (`pruning/masks.py`), so what is
captured is the masked, effective output. A compacted layer with no heads left has no projections: it has no
relations to match and is left out.

Both terms need the teacher's every token in every mapped layer, too big to cache, so the teacher runs live
on each batch: a teacher forward per step on top of the student's forward and backward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..core.config import TrainConfig
from ..core.errors import MahaError
from .losses import attention_relation_loss, hidden_state_loss, layer_map
from .pruning.structure import layer_list

PROJECTION_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q_lin", "k_lin", "v_lin"))
OPTIONS = "--hidden-weight / --attention-weight"


def refuse_layerless(cfg: TrainConfig, student: str = "the static student") -> None:
    """One line, before any work, when intermediate terms are asked of a student that has no layers."""
    if cfg.intermediate:
        raise MahaError(f"{student} has no layers: {OPTIONS} do not apply")


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder's layers: the BERT family's through `layer_list`, else the ModuleList as long as the depth."""
    try:
        return list(layer_list(model, "attention relations"))
    except MahaError:
        depth = getattr(model.config, "num_hidden_layers", None)
        for module in model.modules():
            if isinstance(module, nn.ModuleList) and len(module) == depth:
                return list(module)
    raise MahaError(f"{type(model).__name__}: no encoder layers found for the attention relations")


def projections(layer: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module] | None:
    """The (query, key, value) projection modules of one layer, or None (a pruned layer with no heads left)."""
    found = {name.rpartition(".")[2]: module for name, module in layer.named_modules()}
    for names in PROJECTION_NAMES:
        if all(n in found for n in names):
            return found[names[0]], found[names[1]], found[names[2]]
    return None


class ProjectionCapture:
    """Forward hooks keeping the query, key and value projection outputs of chosen layers, while recording.

    Outputs are kept only inside `recording()` (dev evaluation runs the same modules and keeps nothing), and one
    forward's worth at a time.
    """

    def __init__(self, model: nn.Module, layers: list[int]) -> None:
        every = encoder_layers(model)
        found = [projections(every[i]) for i in layers]
        if all(f is None for f in found):
            raise MahaError(f"{type(model).__name__}: attention relations need query/key/value projections "
                            f"({', '.join('/'.join(n) for n in PROJECTION_NAMES)}); none found in its layers")
        self.present = [f is not None for f in found]
        self.outputs: dict[tuple[int, int], torch.Tensor] = {}
        self.on = False
        self.handles = [
            module.register_forward_hook(self._keeper(slot, role)) for slot, modules in enumerate(found)
            if modules is not None for role, module in enumerate(modules)
        ]

    def _keeper(self, slot: int, role: int):

        def keep(module: nn.Module, args, output: torch.Tensor) -> None:
            if self.on:
                self.outputs[(slot, role)] = output

        return keep

    @contextmanager
    def recording(self) -> Iterator[None]:
        self.outputs.clear()
        self.on = True
        try:
            yield
        finally:
            self.on = False

    def taken(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
        """The recorded outputs per chosen layer (None for a layer without projections); forgotten here."""
        out = [
            tuple(self.outputs[(slot, role)] for role in range(3)) if present else None
            for slot, present in enumerate(self.present)
        ]
        self.outputs.clear()
        return out

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class IntermediateTerms:
    """The hidden-state and attention-relation terms of one `fit`, with their weights, map, projection and hooks."""

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: TrainConfig) -> None:
        self.hidden_weight, self.attention_weight = cfg.kd_hidden_weight, cfg.kd_attention_weight
        self.relation_heads = cfg.relation_heads
        self.map = check_intermediate(student.config, teacher.config, cfg)
        self.projection: nn.Linear | None = None
        s_width, t_width = student.config.hidden_size, teacher.config.hidden_size
        if self.hidden_weight > 0 and s_width != t_width:
            self.projection = nn.Linear(s_width, t_width)  # created after fit's set_seed: the same in every process
        self.captures: tuple[ProjectionCapture, ProjectionCapture] | None = None
        if self.attention_weight > 0:
            self.captures = (ProjectionCapture(student, list(range(len(self.map)))),
                             ProjectionCapture(teacher, [t - 1 for t in self.map]))

    @property
    def hidden_states(self) -> bool:
        """Whether the models must return their hidden states."""
        return self.hidden_weight > 0

    def parameters(self) -> list[nn.Parameter]:
        """What trains beside the student: the hidden-state projection, if any."""
        return list(self.projection.parameters()) if self.projection is not None else []

    def to(self, device: torch.device) -> IntermediateTerms:
        if self.projection is not None:
            self.projection.to(device)
        return self

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Around the student's and teacher's training forwards: the projection outputs are kept."""
        if self.captures is None:
            yield
            return
        with self.captures[0].recording(), self.captures[1].recording():
            yield

    def loss(self, student_out, teacher_out, attention_mask: torch.Tensor) -> torch.Tensor:
        """The weighted sum of the terms asked for, from the forwards just recorded."""
        total = attention_mask.new_zeros((), dtype=torch.float32)
        if self.hidden_weight > 0:
            total = total + self.hidden_weight * hidden_state_loss(student_out.hidden_states, teacher_out.hidden_states,
                                                                   attention_mask, self.map, self.projection)
        if self.captures is not None:
            student, teacher = (c.taken() for c in self.captures)
            total = total + self.attention_weight * attention_relation_loss(student, teacher, attention_mask,
                                                                            self.relation_heads)
        return total

    def state_dict(self) -> dict:
        return self.projection.state_dict() if self.projection is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.projection is not None and state:
            self.projection.load_state_dict(state)

    def remove(self) -> None:
        """Take the hooks off both models (the student is saved and used without them)."""
        for capture in self.captures or ():
            capture.remove()


def check_intermediate(student_config, teacher_config, cfg: TrainConfig) -> list[int] | None:
    """The layer map of the terms `cfg` asks for (None: neither weight is above 0), from the two configs alone, so
    a step may call it before its costly work (teacher logits, augmentation): one line for a layer map that does not
    fit the two depths or is given with no term to map, a student without layers, or relation heads that do not
    divide the dense widths (a pruned layer's narrower width falls back, `losses.relation_head_count`)."""
    if not cfg.intermediate:
        if cfg.kd_layer_map is not None:
            raise MahaError(f"--layer-map {','.join(map(str, cfg.kd_layer_map))} maps the intermediate terms: give "
                            f"{OPTIONS} above 0 too")
        return None
    if getattr(student_config, "num_hidden_layers", None) is None:
        model_type = str(getattr(student_config, "model_type", "this student"))
        refuse_layerless(cfg, "the static student" if "static" in model_type else model_type)
    mapped = layer_map(student_config, teacher_config, cfg.kd_layer_map)
    if cfg.kd_attention_weight > 0:
        for who, config in (("teacher", teacher_config), ("student", student_config)):
            if config.hidden_size % cfg.relation_heads:
                raise MahaError(f"--relation-heads {cfg.relation_heads} does not divide the {who}'s width "
                                f"{config.hidden_size}: choose a divisor of it")
    return mapped


def intermediate_terms(student: nn.Module, teacher: nn.Module | None, cfg: TrainConfig) -> IntermediateTerms | None:
    """The terms `cfg` asks for (None: neither weight is above 0), refused in one line before any work when the
    student has no layers, no live teacher is given, or `check_intermediate` refuses the settings."""
    asked = cfg.intermediate
    if asked and teacher is None and getattr(student.config, "num_hidden_layers", None) is not None:
        raise MahaError(f"{OPTIONS}: intermediate-layer distillation needs a teacher model")
    if check_intermediate(student.config, teacher.config if teacher is not None else None, cfg) is None:
        return None
    return IntermediateTerms(student, teacher, cfg)
