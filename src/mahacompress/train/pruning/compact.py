"""From masks to a physically smaller model, and the accounting that makes the target honest.

Why a plan: a block mask only shrinks a model when whole heads or whole neurons go, so a block
sparsity of 50% may remove far less once compacted. `plan` therefore chooses the final structure
in units that really disappear - attention heads (their Q/K/V rows and O columns, 4 * hidden *
head_dim weights) and FFN neurons (a row and a column, 2 * hidden weights) - walking them from the
lowest score up, removing each head that still fits in the budget and each neuron that brings the
removed weight count closer to it. Heads never overshoot and neurons fill what is left, so the
target is hit within half a neuron's cost (0.02 pp for the default e5 layout) for either
binariser: for the sigmoid binariser it is the calibration of the threshold (`Plan.cut`), with
neurons filling the gap a head is too coarse for. A head's score is the largest score among its
Q/K/V blocks: the global threshold at which it would vanish from the block masks.

`compact` then slices any baked BERT-family classifier: a head goes when its V rows or its O
columns are all zero, a neuron when its input row or its output column is zero. Zero V rows
make the head output the constant V bias (softmax weights sum to 1), so that constant is folded
into the O bias; a zero input row makes the neuron a constant act(bias), folded into the FFN
output bias. So the compacted logits equal the masked model's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN

from ...core.errors import MahaError
from ...models import modeling_pruned
from ...models.modeling_pruned import PRUNED_CLASSES
from .masks import MaskedModel
from .structure import Structure, encoder_layers, layer_list, linears, role_paths

# Recorded in each pruned grid row's settings: folders made by another format are rebuilt, not re-timed.
# 1: a hand-written BERT re-implementation (eager attention); 2: the stock classes with resized Linears.
PRUNED_FORMAT_VERSION = 2
# Config entries that belong to the dense source, not to its compacted form.
_NOT_COPIED = ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path")


@dataclass
class Plan:
    """The final structure: what goes in each layer, and the score at which the cut fell."""

    removed_heads: list[list[int]]
    removed_neurons: list[list[int]]
    cut: float | None  # score of the last removed unit (the calibrated threshold); None if nothing goes


def dense_count(model: nn.Module, structure: Structure) -> int:
    """Weights in the encoder's prunable Linears of the unpruned model."""
    layers = encoder_layers(model, structure)
    return sum(m.weight.numel() for layer in layers for m in linears(layer, structure).values())


def plan(masked: MaskedModel, target: float) -> Plan:
    """Choose heads and neurons to remove so that a fraction `target` of the Linear weights goes."""
    hidden = masked.layers[0]["q"].in_features
    head_cost = 4 * hidden * (masked.layers[0]["q"].out_features // masked.num_heads)
    units = []  # (score, cost, layer, kind, index)
    for i in range(len(masked.layers)):
        units += [(float(s), head_cost, i, "head", h) for h, s in enumerate(masked.head_scores(i))]
        units += [(float(s), 2 * hidden, i, "neuron", n) for n, s in enumerate(masked.neuron_scores(i))]
    units.sort(key=lambda u: u[0])
    budget = target * dense_count(masked.model, masked.structure)
    heads: list[list[int]] = [[] for _ in masked.layers]
    neurons: list[list[int]] = [[] for _ in masked.layers]
    removed, cut = 0, None
    for score, cost, i, kind, idx in units:
        fits = removed + cost <= budget if kind == "head" else removed + cost / 2 < budget
        if fits:
            (heads if kind == "head" else neurons)[i].append(idx)
            removed, cut = removed + cost, score
    return Plan([sorted(h) for h in heads], [sorted(n) for n in neurons], cut)


def natural_sparsity(masked: MaskedModel) -> float:
    """Fraction of weights the binariser's own current masks would remove physically (before calibration)."""
    masked.refresh()
    removed = 0
    for layer in masked.layers:
        v = layer["v"].weight_mask().expand_as(layer["v"].weight)
        o = layer["o"].weight_mask().expand_as(layer["o"].weight)
        hidden = layer["q"].in_features
        for h in range(masked.num_heads):
            rows = masked.head_rows(h)
            if not v[rows].any() or not o[:, rows].any():
                removed += 4 * hidden * (rows.stop - rows.start)
        removed += 2 * hidden * int((layer["ffn_in"].unit_mask == 0).sum())
    return removed / dense_count(masked.model, masked.structure)


def compact(model: PreTrainedModel, structure: Structure) -> PreTrainedModel:
    """Slice a baked (plain, zero-holding) classifier into its family's pruned class (modeling_pruned.py)."""
    cfg = model.config
    if cfg.model_type not in PRUNED_CLASSES:
        raise MahaError(f"compaction does not support model type '{cfg.model_type}' "
                        f"(supported: {', '.join(sorted(PRUNED_CLASSES))})")
    heads_total, act = cfg.num_attention_heads, ACT2FN[cfg.hidden_act]
    paths = role_paths(structure)
    state = model.state_dict()
    heads_per_layer, widths = [], []
    for i, layer in enumerate(encoder_layers(model, structure)):
        lin = {
            role: (m.weight.detach().clone(), m.bias.detach().clone())  # biases get folded constants
            for role, m in linears(layer, structure).items()
        }
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = lin["q"], lin["k"], lin["v"], lin["o"]
        (wi, bi), (wf, bf) = lin["ffn_in"], lin["ffn_out"]
        dim = wq.shape[0] // heads_total
        keep_rows = []
        for h in range(heads_total):
            rows = slice(h * dim, (h + 1) * dim)
            v_zero, o_zero = not wv[rows].any(), not wo[:, rows].any()
            if v_zero and not o_zero:
                bo += wo[:, rows] @ bv[rows]
            if not (v_zero or o_zero):
                keep_rows += range(rows.start, rows.stop)
        in_zero, out_zero = ~wi.any(dim=1), ~wf.any(dim=0)
        fold = in_zero & ~out_zero
        if fold.any():
            bf += wf[:, fold] @ act(bi[fold])
        keep_n = torch.nonzero(~(in_zero | out_zero)).flatten()
        r = torch.tensor(keep_rows, dtype=torch.long)
        sliced = {
            "q": (wq[r], bq[r]), "k": (wk[r], bk[r]), "v": (wv[r], bv[r]), "o": (wo[:, r], bo),
            "ffn_in": (wi[keep_n], bi[keep_n]), "ffn_out": (wf[:, keep_n], bf)
        }
        prefix = f"{structure.base}.{structure.layers}.{i}."
        for role, (w, b) in sliced.items():
            state[f"{prefix}{paths[role]}.weight"] = w
            state[f"{prefix}{paths[role]}.bias"] = b
        heads_per_layer.append(len(keep_rows) // dim)
        widths.append(len(keep_n))

    config_class, _, model_class = PRUNED_CLASSES[cfg.model_type]
    values = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_COPIED}
    config = config_class(**values, heads_per_layer=heads_per_layer, intermediate_sizes=widths)
    pruned = model_class(config)
    # Same parameter names as the source; an empty sub-layer has no weight left, only its output bias.
    pruned.load_state_dict({k: state[k] for k in pruned.state_dict()}, strict=True)
    return pruned.eval()


def encoder_linear_count(model: nn.Module, structure: Structure | None = None) -> list[int]:
    """Weights per encoder layer in its Linears (of a compacted or an original model)."""
    layers = layer_list(model, "weight counts") if structure is None else encoder_layers(model, structure)
    return [sum(m.weight.numel() for m in layer.modules() if isinstance(m, nn.Linear)) for layer in layers]


def save_pruned(model: PreTrainedModel, out_dir: Path, tokenizer=None) -> None:
    """Write weights, config (with auto_map) and the modelling code, so the folder loads without mahacompress."""
    out_dir = Path(out_dir)
    classes = next(c for c in PRUNED_CLASSES.values() if isinstance(model, c[2]))
    model.config.auto_map = {
        auto: f"modeling_pruned.{cls.__name__}"
        for auto, cls in zip(("AutoConfig", "AutoModel", "AutoModelForSequenceClassification"), classes)
    }
    model.save_pretrained(out_dir)
    shutil.copyfile(modeling_pruned.__file__, out_dir / "modeling_pruned.py")
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
