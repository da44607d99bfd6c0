"""The distillation terms the training loop adds to its task loss: soft targets and hidden states.

They live apart from `distill.py` (which builds students and caches teacher logits) because the one
training loop in `train.py` needs them, and `distill.py` itself calls that loop.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import MahaError

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
                      attention_mask: torch.Tensor, layer_map: list[int]) -> torch.Tensor:
    """Mean over student layers of (1 - cosine) between its output and its teacher layer's, on real tokens.

    The cosine form (DistilBERT's) is blind to the scale of hidden states, so one weight fits any model.
    `student`/`teacher` are `output_hidden_states` tuples (index 0 = embeddings); `layer_map[i]` is the
    teacher index matched to the student's layer i + 1.
    """
    real = attention_mask.bool()
    terms = [(1 - F.cosine_similarity(student[i + 1][real].float(), teacher[t][real].float(), dim=-1)).mean()
             for i, t in enumerate(layer_map)]
    return torch.stack(terms).mean()


def evenly_spaced(n: int, total: int) -> list[int]:
    """`n` layer indices out of `total`, evenly spaced, first and last included (DistilBERT-style students)."""
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, n)})


def layer_map(student_config, teacher_config) -> list[int]:
    """Which teacher hidden state each student layer learns from.

    A layer-subset student knows the teacher layers it was copied from (`distilled_from_layers`); a
    student as deep as its teacher (e.g. one being pruned) matches layer for layer; any other student
    is matched to evenly spaced teacher layers, first and last included.
    """
    s, t = student_config.num_hidden_layers, teacher_config.num_hidden_layers
    kept = getattr(student_config, "distilled_from_layers", None)
    if kept is None:
        kept = evenly_spaced(s, t)
    if len(kept) != s or max(kept) >= t:
        raise MahaError(f"cannot match the student's {s} layers to the teacher's {t} (distilled_from_layers={kept})")
    return [k + 1 for k in kept]
