"""Elastic depth (DynaBERT's depth dimension, trained with BigNAS's sandwich rule): one layer student trained so
that its shallower sub-networks work too, each a candidate without a training of its own.

A sub-network of depth d keeps the layers `losses.evenly_spaced(d, depth)` picks, the very layers a `kdlN` cut
(`distill.layer_student`, choice `even`) copies, so cutting the trained student to d layers yields the
sub-network that was trained. On every step the loop adds, beside the full student's loss, the same loss of two
sub-networks: the shallowest of `TrainConfig.elastic_depths` and one other drawn from the list (the torch random
state the loop's checkpoints hold, so a resumed run draws the same depths). Each sub-network shares every weight
with the full student; nothing is saved but the full student.

Why the sandwich and not LayerDrop's independent drops: LayerDrop samples random layer sets, so the fixed cuts a
search serves are rarely the ones trained; training the served cuts themselves is what DynaBERT does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..core.config import TrainConfig
from ..core.errors import MahaError
from .losses import evenly_spaced
from .pruning.structure import layer_list, set_layer_list


def check_elastic(depth: int | None, cfg: TrainConfig, processes: int = 1, where: str = "--elastic-depths") -> None:
    """Refuse, in one line before any work, elastic depths a student of `depth` layers cannot have: each 1 or more
    and below its own depth, none twice; a student with no layers (`depth` None: static) and a run over several
    processes (each sub-network is a second forward pass of the same DDP model, which DDP does not allow) too."""
    depths = cfg.elastic_depths
    if depths is None:
        return
    if depth is None:
        raise MahaError(f"{where}: the student has no transformer layers (a static student); leave it out")
    if depth < 2:
        raise MahaError(f"{where}: a {depth}-layer student has no shallower cut; leave it out")
    if not depths or len(set(depths)) != len(depths) or not all(1 <= d < depth for d in depths):
        raise MahaError(f"{where} {','.join(map(str, depths))}: expected different layer counts from 1 to "
                        f"{depth - 1} (below the student's {depth} layers)")
    if processes > 1:
        raise MahaError(f"{where} trains in one process; this run has {processes} (leave out torchrun)")


def step_depths(depths: list[int]) -> list[int]:
    """The sub-network depths of one step: the shallowest, and one of the others drawn from torch's random state."""
    shallowest, *others = sorted(depths)
    if not others:
        return [shallowest]
    return [shallowest, others[int(torch.randint(len(others), ()).item())]]


@contextlib.contextmanager
def shallower(model: torch.nn.Module, depth: int) -> Iterator[None]:
    """Run `model` as its sub-network of `depth` layers (those a `kdlN` cut keeps), its full layers restored after."""
    layers = layer_list(model)
    config = model.config
    full, kept = config.num_hidden_layers, evenly_spaced(depth, len(layers))
    set_layer_list(model, torch.nn.ModuleList([layers[i] for i in kept]))
    config.num_hidden_layers = len(kept)
    try:
        yield
    finally:
        set_layer_list(model, layers)
        config.num_hidden_layers = full
