"""The distillation terms the training loop adds to its task loss: soft targets, hidden states, attention relations.

They live apart from `distill.py` (which builds students and caches teacher logits) because the one
training loop in `train.py` needs them, and `distill.py` itself calls that loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import MahaError
from ..core.validate import check_layer_map

UNLABELLED = -100  # label id of a transfer-set text: the KD term uses it, cross-entropy skips it


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
            temperature: float) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * cross-entropy.

    T^2 keeps the soft-target gradients on the scale of the hard-label ones (Hinton et al. 2015), so
    alpha means the same thing at every temperature. Rows labelled UNLABELLED (transfer-set text)
    count in the KL term only; the cross-entropy averages over the labelled rows of the batch (zero
    when it has none, instead of the NaN of an empty mean).
    """
    t = temperature
    kl = F.kl_div(F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1), log_target=True,
                  reduction="batchmean")
    labelled = (labels != UNLABELLED).sum().clamp(min=1)
    ce = F.cross_entropy(student, labels, ignore_index=UNLABELLED, reduction="sum") / labelled
    return alpha * t * t * kl + (1 - alpha) * ce


def hidden_state_loss(student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...],
                      attention_mask: torch.Tensor, layer_map: list[int],
                      projection: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Mean over student layers of (1 - cosine) between its output and its teacher layer's, on real tokens.

    The cosine form (DistilBERT's) is blind to the scale of hidden states, so one weight fits any model.
    `student`/`teacher` are `output_hidden_states` tuples (index 0 = embeddings); `layer_map[i]` is the
    teacher index matched to the student's layer i + 1. A student narrower or wider than its teacher
    passes its states through `projection` (a learned student-to-teacher Linear, TinyBERT's W_h) first:
    a cosine needs vectors of one width.
    """
    real = attention_mask.bool()
    project = projection or (lambda x: x)
    terms = [(1 - F.cosine_similarity(project(student[i + 1][real]).float(), teacher[t][real].float(), dim=-1)).mean()
             for i, t in enumerate(layer_map)]
    return torch.stack(terms).mean()


def relation_head_count(student_width: int, teacher_width: int, relation_heads: int) -> int:
    """The relation heads one layer pair is split into: `relation_heads`, or where a pruned layer's width is not a
    multiple of it, the largest count below it that divides both widths (1 at worst, which always does).

    Both sides need the same count, as the relations are compared head by head; each side splits its own width,
    so a pruned student with fewer attention heads still yields [seq, seq] relations like its teacher's.
    """
    common = math.gcd(student_width, teacher_width)
    return next(h for h in range(min(relation_heads, common), 0, -1) if common % h == 0)


def _log_relations(x: torch.Tensor, heads: int, real: torch.Tensor) -> torch.Tensor:
    """log softmax(X X^T / sqrt(d)) per relation head, over the real key tokens: [batch, heads, seq, seq]."""
    batch, seq, width = x.shape
    d = width // heads
    x = x.float().view(batch, seq, heads, d).transpose(1, 2)
    scores = x @ x.transpose(-1, -2) / math.sqrt(d)
    scores = scores.masked_fill(~real[:, None, None, :], torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)


def attention_relation_loss(student_qkv: Sequence[tuple[torch.Tensor, ...] | None],
                            teacher_qkv: Sequence[tuple[torch.Tensor, ...]], attention_mask: torch.Tensor,
                            relation_heads: int) -> torch.Tensor:
    """MiniLMv2's self-attention relation term (Wang et al. 2021): KL(teacher relation || student relation).

    Each entry is one mapped layer pair's (query, key, value) projection outputs, [batch, seq, width] each; a
    relation is softmax(X X^T / sqrt(d)) within each of the pair's `relation_head_count` heads, over real keys,
    so query-query, key-key and value-value relations compare two models whatever their widths or head counts.
    The KL is averaged over real query tokens, heads, the three relations and the layers. A student layer whose
    every attention head was pruned (None) has no relations and is left out of the mean; with none left the term
    is 0.
    """
    real = attention_mask.bool()
    queries = real.sum().clamp(min=1)
    terms = []
    for student, teacher in zip(student_qkv, teacher_qkv):
        if student is None:
            continue
        heads = relation_head_count(student[0].shape[-1], teacher[0].shape[-1], relation_heads)
        for s, t in zip(student, teacher):
            log_s, log_t = _log_relations(s, heads, real), _log_relations(t, heads, real)
            kl = torch.where(real[:, None, None, :], log_t.exp() * (log_t - log_s), 0.0).sum(-1)  # [batch, heads, seq]
            terms.append((kl * real[:, None, :]).sum() / (queries * heads))
    return torch.stack(terms).mean() if terms else attention_mask.new_zeros((), dtype=torch.float32)


def evenly_spaced(n: int, total: int) -> list[int]:
    """`n` layer indices out of `total`, evenly spaced, first and last included (DistilBERT-style students)."""
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, n)})


def layer_map(student_config, teacher_config, explicit: list[int] | None = None) -> list[int]:
    """Which teacher hidden state (`output_hidden_states` index: teacher layer + 1) each student layer learns from.

    An `explicit` map (`--layer-map`, 0-based teacher layers) wins, checked against both depths; otherwise a
    layer-subset student knows the teacher layers it was copied from (`distilled_from_layers`); a
    student as deep as its teacher (e.g. one being pruned) matches layer for layer; any other student
    is matched to evenly spaced teacher layers, first and last included.
    """
    s, t = student_config.num_hidden_layers, teacher_config.num_hidden_layers
    if explicit is not None:
        check_layer_map(list(explicit), s, t)
        return [k + 1 for k in explicit]
    kept = getattr(student_config, "distilled_from_layers", None)
    if kept is None:
        kept = evenly_spaced(s, t)
    if len(kept) != s or max(kept) >= t:
        raise MahaError(f"cannot match the student's {s} layers to the teacher's {t} (distilled_from_layers={kept})")
    return [k + 1 for k in kept]
