"""`prune`: validate, mask, train with the project's one loop, compact, save a folder that loads anywhere.

Everything a user can get wrong is checked before the first training step, so a bad option costs
seconds, not an epoch. Training differs from fine-tuning only through `PruningHooks`: the scores'
own optimizer group, the cubic schedule, the sigmoid binariser's penalty, the switch to the final
structure at the start of the final warm-up, and "best" checkpoints only from then on.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...core.config import DataConfig, PruneConfig, TrainConfig
from ...core.errors import MahaError
from ...core.files import PRUNING_RECORD, staged_dir, write_json
from ...core.validate import check_prune_config
from ...data.splits import Splits
from ..checkpoints import checkpoints_for, data_record
from ..distill import distillation_inputs
from ..intermediate import check_intermediate
from ..loop import TrainHooks, fit
from ..processes import is_main_process
from .compact import Plan, compact, dense_count, encoder_linear_count, natural_sparsity, plan, save_pruned
from .masks import MaskedModel, make_binarizer
from .schedule import CubicSchedule
from .structure import ARCHITECTURES, structure_of


class PruningHooks(TrainHooks):
    """Plugs pruning into `train.fit`; its state (the frozen plan) is saved in resumable checkpoints."""

    def __init__(self, masked: MaskedModel, schedule: CubicSchedule, cfg: PruneConfig) -> None:
        self.masked, self.schedule, self.cfg = masked, schedule, cfg
        self.plan: Plan | None = None
        self.natural: float | None = None  # what the binariser alone would have removed physically

    def param_groups(self, model: nn.Module) -> list[dict]:
        return [{"params": self.masked.scores(), "lr": self.cfg.score_lr, "weight_decay": 0.0}]

    def on_step(self, step: int, total_steps: int) -> None:
        self.masked.binarizer.progress = self.schedule.progress(step, total_steps)
        if self.plan is None and self.schedule.final_phase(step, total_steps):
            self.freeze()

    def freeze(self) -> None:
        """Calibrate: fix the physical structure that hits the target, from the scores as they are now."""
        self.natural = natural_sparsity(self.masked)
        self.plan = plan(self.masked, self.cfg.sparsity)
        self.masked.freeze(self.plan.removed_heads, self.plan.removed_neurons)

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        return None if self.plan is not None else self.masked.penalty()

    def may_select_best(self, step: int, total_steps: int) -> bool:
        return self.plan is not None  # before the structure is fixed, a "best" model would be a denser one

    def state_dict(self) -> dict:
        return {"plan": asdict(self.plan) if self.plan else None, "natural": self.natural}

    def load_state_dict(self, state: dict) -> None:
        if state.get("plan"):
            self.plan, self.natural = Plan(**state["plan"]), state["natural"]
            self.masked.freeze(self.plan.removed_heads, self.plan.removed_neurons)


def _check_model_config(config, where: str) -> None:
    """Architecture and classification head, from the config alone (before any weights load)."""
    if config.model_type not in ARCHITECTURES:
        raise MahaError(f"{where}: pruning does not support model type '{config.model_type}' "
                        f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    archs = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs) or not getattr(config, "id2label", None):
        raise MahaError(f"{where}: not a sequence classifier (architectures {archs}); fine-tune it first")


def _check_block_size(model: nn.Module, block: int) -> None:
    """Attention matrices are cut into square blocks; FFN neurons need no divisibility."""
    hidden, width = (model.config.hidden_size,
                     model.config.num_attention_heads * (model.config.hidden_size // model.config.num_attention_heads),
                     )
    if hidden % block or width % block:
        raise MahaError(f"block size {block} does not divide the attention matrices ({width}x{hidden})")


def _load(source, tokenizer, splits: Splits, trust_remote_code: bool) -> tuple[nn.Module, object]:
    """The classifier and tokenizer to prune, checked against the task's labels."""
    from ...models.load import config_labels, load_classifier, load_config, load_tokenizer

    if isinstance(source, nn.Module):
        if not type(source).__name__.endswith("ForSequenceClassification") or not source.config.num_labels:
            raise MahaError(f"{type(source).__name__}: not a sequence classifier; fine-tune it first")
        structure_of(source)
        if tokenizer is None:
            raise MahaError("pruning a model object needs its tokenizer (tokenizer=...)")
        model, where = source, type(source).__name__
    else:
        where = str(source)
        _check_model_config(load_config(where, trust_remote_code=trust_remote_code), where)
        model = load_classifier(where, trust_remote_code=trust_remote_code)
        tokenizer = tokenizer or load_tokenizer(where, trust_remote_code=trust_remote_code)
    labels = config_labels(model.config)
    if labels != list(splits.labels):
        raise MahaError(f"{where}: the model's labels {labels} differ from the dataset's {list(splits.labels)}")
    return model, tokenizer


def prune(model_dir_or_model, splits: Splits, train_cfg: TrainConfig, prune_cfg: PruneConfig, out_dir: Path, *,
          resume: bool = False, distill_from=None, tokenizer=None, transfer=None, data: DataConfig | None = None,
          trust_remote_code: bool = False) -> dict:
    """Prune a fine-tuned classifier to `prune_cfg.sparsity` and save the compacted folder to `out_dir`.

    `distill_from` (a teacher folder or precomputed train-split logits) adds the KD loss, and
    `transfer` (a `transfer.TransferSet`) adds unlabelled text for that teacher to label. Returns
    the dict written to `out_dir/pruning.json`, which records `data` (the configuration `splits` was
    loaded with) for trim and export. Checkpoints live in `<out_dir>.work/` until success.
    `trust_remote_code` lets the model and teacher folders run the Python code they ship.
    """
    check_prune_config(prune_cfg)
    if train_cfg.augment.per_text > 0 and distill_from is None:
        raise MahaError("augmentation (--augment) is only used for distillation: give --distill-from (the teacher) "
                        "too")
    model, tokenizer = _load(model_dir_or_model, tokenizer, splits, trust_remote_code)
    structure = structure_of(model)
    _check_block_size(model, prune_cfg.block_size)
    if transfer is not None and distill_from is None:
        raise MahaError("a transfer set is only used for distillation: give distill_from (the teacher) too")
    if isinstance(distill_from, (str, Path)):  # before the teacher's logits or augmented texts
        from ...models.load import load_config

        check_intermediate(model.config, load_config(str(distill_from), trust_remote_code=trust_remote_code), train_cfg)
    train_splits, teacher, transfer_record, augment_record = (distillation_inputs(
        distill_from, splits, train_cfg, transfer, trust_remote_code=trust_remote_code) if distill_from is not None else
                                                              (splits, {}, None, None))

    dense, dense_layers = dense_count(model, structure), encoder_linear_count(model, structure)
    binarizer = make_binarizer(prune_cfg.binarizer, prune_cfg.sparsity, prune_cfg.penalty)
    masked = MaskedModel(model, structure, prune_cfg.block_size, binarizer)
    hooks = PruningHooks(masked, CubicSchedule(prune_cfg.initial_warmup, prune_cfg.final_warmup), prune_cfg)
    with checkpoints_for(out_dir) as work:
        result = fit(model, tokenizer, train_splits, train_cfg, work, hooks=hooks, resume=resume, desc="prune",
                     **teacher)
        if hooks.plan is None:  # training ended before the final warm-up: fix the structure now
            hooks.freeze()
        pruned = compact(masked.unwrap().cpu(), structure)

        kept_layers = encoder_linear_count(pruned)
        summary = {
            "target_sparsity": prune_cfg.sparsity, "reached_sparsity": 1 - sum(kept_layers) / dense,
            "binarizer_sparsity_before_calibration": hooks.natural, "calibrated_cut_score": hooks.plan.cut,
            "binarizer": prune_cfg.binarizer, "block_size": prune_cfg.block_size, "dense_encoder_linear_weights": dense,
            "kept_encoder_linear_weights": sum(kept_layers), "layers": [{
                "sparsity": 1 - kept / full, "removed_heads": heads, "heads": n_heads, "ffn_width": width
            } for kept, full, heads, n_heads, width in zip(kept_layers, dense_layers, hooks.plan.removed_heads, pruned.
                                                           config.heads_per_layer, pruned.config.intermediate_sizes)],
            "source_model": str(model_dir_or_model) if not isinstance(model_dir_or_model, nn.Module) else None,
            "distilled_from": "logits" if isinstance(distill_from, np.ndarray) else distill_from and str(distill_from),
            "dataset": splits.summary(), "data_config": data_record(data), "transfer": transfer_record,
            "augment": augment_record, "prune_config": asdict(prune_cfg), "train_config": asdict(train_cfg),
            "result": asdict(result)
        }
        if is_main_process():
            with staged_dir(out_dir, PRUNING_RECORD) as tmp:
                save_pruned(pruned, tmp, tokenizer)
                write_json(tmp / PRUNING_RECORD, summary)
    return summary
