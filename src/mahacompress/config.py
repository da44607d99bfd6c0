"""The dataclasses every step takes.

One object per step, plain defaults, no magic: the CLI builds them from options, presets
(YAML) load into them, and `dataclasses.asdict` writes them beside every output so a run
says how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .errors import MahaError


@dataclass
class DataConfig:
    """Which data to read and how to split it."""

    dataset: str = "mahanews-shc"  # a named dataset, or a folder of CSVs
    data_dir: str | None = None  # explicit folder that holds the dataset's files
    text_col: str | None = None  # for a folder of CSVs; named datasets know theirs
    label_col: str | None = None
    dev_fraction: float = 0.1
    seed: int = 42
    dedup_test: bool = False  # evaluate on the de-duplicated test split
    max_train_rows: int | None = None  # for tests and quick looks: a stratified slice


@dataclass
class TrainConfig:
    """One training loop's settings (fine-tuning, pruning and distillation share them)."""

    epochs: float = 3.0
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 64
    # On CPU the 96M-row embedding matrix dominates the optimizer step; freezing it costs
    # little accuracy on a small training set.
    freeze_embeddings: bool = True
    early_stopping_patience: int = 2  # evaluations without dev macro-F1 gain; 0 disables
    evals_per_epoch: int = 1
    checkpoint_every: int = 100  # optimizer steps between resumable checkpoints
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16"
    kd_alpha: float = 0.5  # weight of the distillation term when teacher logits are given
    kd_temperature: float = 2.0
    seed: int = 42


@dataclass
class PruneConfig:
    """Block movement pruning (Sanh et al. 2020; Lagunas et al. 2021)."""

    sparsity: float = 0.5  # fraction of the encoder's Linear weights removed in the final model
    binarizer: str = "topk"  # "topk" | "sigmoid"
    block_size: int = 32  # square blocks for attention matrices; FFN pruned by neuron
    score_lr: float = 1e-2
    initial_warmup: float = 0.1  # fraction of steps at zero sparsity
    final_warmup: float = 0.2  # fraction of steps at the final sparsity
    penalty: float = 1.0  # L1 weight on sigmoid scores (sigmoid binariser only)


def from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from a dict, refusing unknown keys (named in the error)."""
    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            raise MahaError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
    return cls(**values)


__all__ = ["DataConfig", "TrainConfig", "PruneConfig", "from_dict"]
