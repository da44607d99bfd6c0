"""The static student's table pre-trained against the teacher's features before its head trains (Tokenlearn's
idea, Model2Vec's POTION models): the table PCA made from single pieces knows each piece alone, not what the
teacher makes of the texts the pieces occur in.

1. the targets: the fine-tuned teacher's feature of every training text, the input of its final classification
   Linear (what its head reads), computed once and cached beside the teacher logits (`distill.cached_teacher_output`);
2. the regression: a text's mean of table rows (`StaticForSequenceClassification.pooled`) -> a learned Linear to the
   teacher's feature width, loss 1 - cosine (scale free: the teacher's feature norms are not the student's business),
   table and projection trained together; the projection starts from the ridge least-squares map of the untouched
   table, so the first steps do not drag the table's rows after a random projection, and the held-out cosine
   before pre-training is that of the best linear reading of the PCA table;
3. the head: the teacher's final Linear composed with the projection (W = W_t P, b = W_t b_P + b_t), the projection
   first rescaled so its outputs have the teacher's feature norms, so the KD stage starts from the teacher's own
   decision over the pre-trained table.
Deterministic for a seed (CPU, seeded shuffles and hold-out); a resumed run does it again rather than storing it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import TrainConfig
from ..core.errors import MahaError
from ..infer.batching import length_sorted_batches
from ..models.load import load_classifier, load_tokenizer
from ..models.modeling_static import StaticForSequenceClassification
from .distill import cached_teacher_output
from .processes import is_main_process

HELD_OUT = 0.05  # share of the texts kept out of the regression, to report its cosine on unseen texts
BATCH_SIZE = 256
PATIENCE = 2  # epochs without a held-out gain before the regression stops
# Adam's step is about lr per coordinate whatever the gradient's scale: 1e-3 moves the table's rows (PCA
# coordinates, SIF-scaled, of order 0.1-1) by a small fraction per step, so a few epochs reshape the table
# without wiping out what PCA put there (Tokenlearn trains its tables at this rate too).
LR = 1e-3
RIDGE = 1e-3  # the least-squares start's ridge, relative to the mean diagonal of X^T X: keeps rare pieces' columns sane


def final_linear(model: nn.Module) -> nn.Linear:
    """The teacher's final classification Linear: the last `nn.Linear` whose outputs are its labels."""
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == model.config.num_labels]
    if not found:
        raise MahaError(f"the teacher ({type(model).__name__}) has no Linear layer with {model.config.num_labels} "
                        "outputs (its labels): its features cannot be found to pre-train the static table on")
    return found[-1]


@torch.inference_mode()
def compute_features(model: nn.Module, tokenizer, texts: Sequence[str], *, max_length: int,
                     batch_size: int = 64) -> np.ndarray:
    """[n, width] inputs of `model`'s final classification Linear over `texts`, in their order (a forward pre-hook
    catches them: the representation the teacher's head reads, whatever its architecture computes before it)."""
    model.eval()
    head = final_linear(model)
    device = next(model.parameters()).device
    out = np.zeros((len(texts), head.in_features), dtype=np.float32)
    caught: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _module, args: caught.append(args[0]))
    try:
        for idx in length_sorted_batches(texts, batch_size):
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(device)
            caught.clear()
            model(**enc)
            if len(caught) != 1 or caught[0].shape != (len(idx), head.in_features):
                raise MahaError(f"the teacher's final Linear does not read one vector per text ({type(model).__name__})"
                                "; the static table cannot be pre-trained on its features")
            out[idx] = caught[0].float().cpu().numpy()
    finally:
        handle.remove()
    return out


def teacher_features(teacher: str, texts: list[str], *, max_length: int, model: nn.Module | None = None,
                     trust_remote_code: bool = False) -> np.ndarray:
    """`compute_features` of `teacher` (a folder or hub id; `model`, when given, is that teacher already loaded),
    cached on disk like the teacher's logits."""

    def compute() -> np.ndarray:
        loaded = model if model is not None else load_classifier(teacher, trust_remote_code=trust_remote_code)
        tokenizer = load_tokenizer(teacher, trust_remote_code=trust_remote_code)
        return compute_features(loaded, tokenizer, texts, max_length=max_length)

    return cached_teacher_output(teacher, texts, max_length=max_length, kind="features", compute=compute)


def _encode(tokenizer, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def _pooled(model: StaticForSequenceClassification, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([
            model.pooled(ids[s:s + BATCH_SIZE], mask[s:s + BATCH_SIZE]) for s in range(0, len(ids), BATCH_SIZE)
        ])


def _cosine(projection: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float | None:
    if len(x) == 0:
        return None
    with torch.no_grad():
        return float(F.cosine_similarity(projection(x), y, dim=-1).mean())


def _state(table: torch.Tensor, projection: nn.Linear) -> tuple[torch.Tensor, dict]:
    """A copy of what the regression trains, to go back to its best epoch."""
    return table.detach().clone(), {k: v.detach().clone() for k, v in projection.state_dict().items()}


def least_squares_projection(x: torch.Tensor, y: torch.Tensor) -> nn.Linear:
    """The ridge least-squares Linear from pooled vectors `x` [n, dim] to features `y` [n, width]."""
    x1 = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
    gram = x1.T @ x1
    ridge = RIDGE * gram.diagonal().mean().clamp(min=1e-12)
    solution = torch.linalg.solve(gram + ridge * torch.eye(len(gram), dtype=torch.float64), x1.T @ y.double())
    projection = nn.Linear(x.shape[1], y.shape[1])
    with torch.no_grad():
        projection.weight.copy_(solution[:-1].T.float())
        projection.bias.copy_(solution[-1].float())
    return projection


def pretrain_table(model: StaticForSequenceClassification, tokenizer, texts: Sequence[str], targets: np.ndarray,
                   cfg: TrainConfig) -> tuple[nn.Linear, dict]:
    """Train `model`'s table (in place) and a projection to regress `targets` (one teacher feature per text) for
    `cfg.pretrain_epochs` epochs, seeded by `cfg.seed`; the projection (rescaled to the targets' norms) and a record."""
    if len(targets) != len(texts):
        raise MahaError(f"{len(targets)} teacher features for {len(texts)} texts")
    started = time.monotonic()
    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(texts), generator=generator)
    held = min(len(texts) - 1, max(1, round(HELD_OUT * len(texts)))) if len(texts) > 1 else 0
    held_idx, train_idx = order[:held], order[held:]
    ids, mask = _encode(tokenizer, texts, cfg.max_length)
    y = torch.from_numpy(np.asarray(targets, dtype=np.float32))
    pooled = _pooled(model, ids, mask)
    projection = least_squares_projection(pooled[train_idx], y[train_idx])
    before = _cosine(projection, pooled[held_idx], y[held_idx])

    table = model.embeddings.weight
    was_trainable = table.requires_grad
    table.requires_grad_(True)
    # no weight decay: the loss is scale free, so decay would only shrink the rows that SIF weighted
    optimizer = torch.optim.AdamW([table, *projection.parameters()], lr=LR, weight_decay=0.0)
    per_epoch = math.ceil(len(train_idx) / BATCH_SIZE)
    total = max(1, math.ceil(per_epoch * cfg.pretrain_epochs))
    # The table has far more parameters than a labelled set has texts, so it can learn the training texts' features
    # by heart: the held-out cosine after each epoch chooses the epoch kept (the best so far), and two epochs
    # without a gain stop the regression.
    best = (before if before is not None else -1.0, 0, _state(table, projection))
    step, epoch, history = 0, 0, []
    while step < total:
        shuffled = train_idx[torch.randperm(len(train_idx), generator=generator)]
        losses = []
        for start in range(0, len(shuffled), BATCH_SIZE):
            if step >= total:
                break
            batch = shuffled[start:start + BATCH_SIZE]
            predicted = projection(model.pooled(ids[batch], mask[batch]))
            loss = 1 - F.cosine_similarity(predicted, y[batch], dim=-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
        epoch += 1
        held_cosine = _cosine(projection, _pooled(model, ids[held_idx], mask[held_idx]), y[held_idx])
        history.append((epoch, None if held_cosine is None else round(held_cosine, 5)))
        if is_main_process():
            print(
                f"pretrain static table: epoch {epoch}/{math.ceil(total / per_epoch)}, step {step}/{total}, "
                f"cosine loss {np.mean(losses):.4f}, held-out cosine {held_cosine or 0:.4f}", flush=True)
        if held_cosine is None or held_cosine > best[0]:
            best = (held_cosine if held_cosine is not None else -1.0, epoch, _state(table, projection))
        elif epoch - best[1] >= PATIENCE:
            break
    with torch.no_grad():
        table.copy_(best[2][0])
        projection.load_state_dict(best[2][1])
    table.requires_grad_(was_trainable)

    pooled = _pooled(model, ids, mask)
    after = _cosine(projection, pooled[held_idx], y[held_idx])
    with torch.no_grad():  # the teacher's head reads features of the teacher's norm: give it those
        scale = y[train_idx].norm(dim=-1).mean() / projection(pooled[train_idx]).norm(dim=-1).mean().clamp(min=1e-12)
        projection.weight.mul_(scale)
        projection.bias.mul_(scale)
    record = {
        "epochs": cfg.pretrain_epochs, "steps": step, "texts": len(texts), "held_out_texts": held,
        "feature_width": int(y.shape[1]), "lr": LR, "batch_size": BATCH_SIZE, "held_out_cosine_before": before,
        "held_out_cosine_after": after, "epoch_kept": best[1], "held_out_history": history, "seconds": round(
            time.monotonic() - started, 3)
    }
    return projection, record


def compose_head(model: StaticForSequenceClassification, teacher_head: nn.Linear, projection: nn.Linear) -> None:
    """Set `model`'s head to `teacher_head` ∘ `projection` (W = W_t P, b = W_t b_P + b_t)."""
    with torch.no_grad():
        w_t = teacher_head.weight.float().cpu()
        b_t = teacher_head.bias.float().cpu() if teacher_head.bias is not None else torch.zeros(len(w_t))
        model.classifier.weight.copy_(w_t @ projection.weight)
        model.classifier.bias.copy_(w_t @ projection.bias + b_t)


def pretrain(model: StaticForSequenceClassification, tokenizer, teacher: str, texts: list[str], cfg: TrainConfig, *,
             trust_remote_code: bool = False) -> dict:
    """Pre-train `model`'s table on `teacher`'s features of `texts` and start its head from the teacher's; the record
    (its `seconds` include computing the teacher's features when they were not cached)."""
    started = time.monotonic()
    teacher_model = load_classifier(teacher, trust_remote_code=trust_remote_code)
    head = final_linear(teacher_model)
    targets = teacher_features(teacher, texts, max_length=cfg.max_length, model=teacher_model,
                               trust_remote_code=trust_remote_code)
    projection, record = pretrain_table(model, tokenizer, texts, targets, cfg)
    compose_head(model, head, projection)
    return {**record, "seconds": round(time.monotonic() - started, 3)}
