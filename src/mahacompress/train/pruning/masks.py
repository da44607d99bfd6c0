"""HOW masks are computed: learned scores -> binary masks, with straight-through gradients.

Movement pruning (Sanh et al. 2020) learns one score per prunable unit; the forward pass uses
`weight * mask(scores)` and the backward pass hands the mask's gradient straight to the scores, so
a score grows when its weights move away from zero and shrinks when they move towards it. Block
pruning (Lagunas et al. 2021) makes the unit a block: here attention matrices use square blocks and
the feed-forward network whole neurons, with ONE score per neuron shared by the intermediate layer's
row and the output layer's column (so a masked neuron contributes exactly nothing and can be sliced).

Binarisers are pluggable: they see the pool of all score tensors at once, with each unit's cost in
weights, so "keep a fraction" means a fraction of the encoder's Linear weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from .structure import Structure, encoder_layers, linears, replace_module, role_paths


class _StraightThrough(torch.autograd.Function):
    """Forward: the binary mask. Backward: the mask's gradient passed unchanged to the scores."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mask.to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class Binarizer(ABC):
    """Turns score tensors into {0,1} masks; `progress` (0 -> 1, set by the schedule) drives sparsity."""

    name: str

    def __init__(self) -> None:
        self.progress = 0.0

    @abstractmethod
    def keep(self, scores: list[torch.Tensor], costs: list[int]) -> list[torch.Tensor]:
        """Boolean keep-masks (no gradient), one per score tensor."""

    def masks(self, scores: list[torch.Tensor], costs: list[int]) -> list[torch.Tensor]:
        """Binary masks whose gradient flows straight through to `scores`."""
        kept = self.keep([s.detach() for s in scores], costs)
        return [_StraightThrough.apply(s, k) for s, k in zip(scores, kept)]

    def penalty(self, scores: list[torch.Tensor], costs: list[int]) -> torch.Tensor | None:
        """A term added to the loss (None: this binariser needs none)."""
        return None


class TopKBinarizer(Binarizer):
    """Keep the highest-scored units until a fraction `1 - target * progress` of their cost is kept.

    One global pool over all tensors (Sanh et al. found global selection better at high sparsity);
    with Adam the score scales of different matrices are comparable. For equal costs this keeps
    exactly round(keep * n) units.
    """

    name = "topk"

    def __init__(self, target: float) -> None:
        super().__init__()
        self.target = target

    def keep(self, scores: list[torch.Tensor], costs: list[int]) -> list[torch.Tensor]:
        flat = torch.cat([s.flatten() for s in scores])
        cost = torch.cat([torch.full((s.numel(), ), float(c), device=flat.device) for s, c in zip(scores, costs)])
        order = torch.argsort(flat, descending=True, stable=True)
        kept_cost = torch.cat([cost.new_zeros(1), torch.cumsum(cost[order].double(), 0)])
        budget = (1.0 - self.target * self.progress) * float(cost.sum())
        n_keep = int(torch.argmin((kept_cost - budget).abs()))  # the count whose kept cost is nearest
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[order[:n_keep]] = True
        return [part.view_as(s) for part, s in zip(keep.split([s.numel() for s in scores]), scores)]


class SigmoidThresholdBinarizer(Binarizer):
    """Keep units with sigmoid(score) > threshold; an L1 penalty on sigmoid(scores) drives sparsity.

    Scores start at 0 (sigmoid 0.5); the threshold rises from 0 to `final_threshold` and the penalty
    weight from 0 to `penalty` on the same cubic schedule. Where this lands is not controlled, so
    pruning ends with a calibration step that fixes the physically removed fraction (compact.plan).
    """

    name = "sigmoid"

    def __init__(self, penalty: float, final_threshold: float = 0.5) -> None:
        super().__init__()
        self.weight = penalty
        self.final_threshold = final_threshold

    @property
    def threshold(self) -> float:
        return self.final_threshold * self.progress

    def keep(self, scores: list[torch.Tensor], costs: list[int]) -> list[torch.Tensor]:
        return [torch.sigmoid(s) > self.threshold for s in scores]

    def penalty(self, scores: list[torch.Tensor], costs: list[int]) -> torch.Tensor | None:
        """Penalty weight x the cost-weighted mean of sigmoid(scores): the expected kept weight fraction."""
        total = sum(s.numel() * c for s, c in zip(scores, costs))
        kept = sum(torch.sigmoid(s).sum() * c for s, c in zip(scores, costs))
        return self.weight * self.progress * kept / total


def make_binarizer(name: str, target: float, penalty: float) -> Binarizer:
    """The binariser called `name` (one of config.BINARIZERS, checked by validate.check_prune_config)."""
    return TopKBinarizer(target) if name == "topk" else SigmoidThresholdBinarizer(penalty)


class MaskedLinear(nn.Linear):
    """An nn.Linear whose weight is multiplied by a mask; shares the original weight and bias.

    `layout` says how a unit mask expands to the weight: "block" (scores [out/b, in/b]), "rows"
    (one per output neuron) or "cols" (one per input neuron). `unit_mask` is set before each forward
    by `MaskedModel`; `fixed` (a [out, 1] or [1, in] 0/1 tensor), once set, replaces it.
    """

    def __init__(self, linear: nn.Linear, scores: nn.Parameter, layout: str, block: int) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.scores, self.layout, self.block = scores, layout, block
        self.unit_mask: torch.Tensor | None = None
        self.fixed: torch.Tensor | None = None

    def weight_mask(self) -> torch.Tensor:
        """The mask in the weight's shape (or broadcastable to it)."""
        if self.fixed is not None:
            return self.fixed
        m = self.unit_mask
        if self.layout == "block":
            return m.repeat_interleave(self.block, 0).repeat_interleave(self.block, 1)
        return m[:, None] if self.layout == "rows" else m[None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.weight_mask(), self.bias)

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear holding the masked weight (masks baked in)."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=self.weight.device,
                        dtype=self.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.weight * self.weight_mask())
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out


class MaskedModel:
    """Wraps every encoder Linear of a classifier in place and refreshes all masks before each forward.

    Masks are recomputed from the scores at every forward (a forward pre-hook), so the straight-
    through gradient of the current batch reaches the scores, and a TopK budget is always exact.
    """

    def __init__(self, model: nn.Module, structure: Structure, block_size: int, binarizer: Binarizer) -> None:
        self.model, self.structure, self.block, self.binarizer = model, structure, block_size, binarizer
        self.num_heads = model.config.num_attention_heads
        self.layers: list[dict[str, MaskedLinear]] = []
        for layer in encoder_layers(model, structure):
            lin = linears(layer, structure)
            wrapped: dict[str, MaskedLinear] = {}
            for role in ("q", "k", "v", "o"):
                w = lin[role].weight
                scores = nn.Parameter(torch.zeros(w.shape[0] // block_size, w.shape[1] // block_size))
                wrapped[role] = MaskedLinear(lin[role], scores, "block", block_size)
            neuron = nn.Parameter(torch.zeros(lin["ffn_in"].out_features))  # shared by row and column
            wrapped["ffn_in"] = MaskedLinear(lin["ffn_in"], neuron, "rows", block_size)
            wrapped["ffn_out"] = MaskedLinear(lin["ffn_out"], neuron, "cols", block_size)
            for role, path in role_paths(structure).items():
                replace_module(layer, path, wrapped[role])
            self.layers.append(wrapped)
        self._hook = model.register_forward_pre_hook(lambda module, args: self.refresh())

    def units(self) -> list[tuple[MaskedLinear, int]]:
        """Every distinct scored module with the cost (in weights) of one of its units."""
        out = []
        for layer in self.layers:
            out += [(layer[r], self.block * self.block) for r in ("q", "k", "v", "o")]
            out.append((layer["ffn_in"], 2 * layer["ffn_in"].in_features))  # neuron: a row + a column
        return out

    def scores(self) -> list[nn.Parameter]:
        return [m.scores for m, _ in self.units()]

    def refresh(self) -> None:
        """Recompute every unit mask from the current scores (skipped once the structure is frozen)."""
        units = self.units()
        if units[0][0].fixed is not None:
            return
        masks = self.binarizer.masks([m.scores for m, _ in units], [c for _, c in units])
        for (module, _), mask in zip(units, masks):
            module.unit_mask = mask
        for layer in self.layers:
            layer["ffn_out"].unit_mask = layer["ffn_in"].unit_mask

    def penalty(self) -> torch.Tensor | None:
        units = self.units()
        return self.binarizer.penalty([m.scores for m, _ in units], [c for _, c in units])

    def head_rows(self, head: int) -> slice:
        dim = self.layers[0]["q"].out_features // self.num_heads
        return slice(head * dim, (head + 1) * dim)

    def head_scores(self, i: int) -> torch.Tensor:
        """Per head of layer i: the score at which it goes, max over its Q/K/V blocks.

        A head disappears when all its Q/K/V blocks are masked, i.e. once the global threshold
        passes the largest of their scores.
        """
        layer, out = self.layers[i], []
        for h in range(self.num_heads):
            rows = self.head_rows(h)
            band = slice(rows.start // self.block, (rows.stop - 1) // self.block + 1)
            out.append(torch.stack([layer[r].scores.detach()[band].max() for r in ("q", "k", "v")]).max())
        return torch.stack(out)

    def neuron_scores(self, i: int) -> torch.Tensor:
        return self.layers[i]["ffn_in"].scores.detach()

    def freeze(self, removed_heads: list[list[int]], removed_neurons: list[list[int]]) -> None:
        """Fix the masks to a physical structure: removed heads (Q/K/V rows, O columns) and neurons.

        Blocks inside kept heads are filled again (Lagunas et al.'s "hybrid filled"): zeros there
        would save nothing once compacted, so the remaining training may use them.
        """
        for layer, heads, neurons in zip(self.layers, removed_heads, removed_neurons):
            dev = layer["q"].weight.device
            head_mask = torch.ones(layer["q"].out_features, device=dev)
            for h in heads:
                head_mask[self.head_rows(h)] = 0
            for r in ("q", "k", "v"):
                layer[r].fixed = head_mask[:, None]
            layer["o"].fixed = head_mask[None, :]
            ffn = torch.ones(layer["ffn_in"].out_features, device=dev)
            ffn[list(neurons)] = 0
            layer["ffn_in"].fixed, layer["ffn_out"].fixed = ffn[:, None], ffn[None, :]

    def unwrap(self) -> nn.Module:
        """Bake the masks into plain nn.Linear weights and remove the wrappers; returns the model."""
        self.refresh()
        self._hook.remove()
        for layer_module, wrapped in zip(encoder_layers(self.model, self.structure), self.layers):
            for role, path in role_paths(self.structure).items():
                replace_module(layer_module, path, wrapped[role].to_linear())
        return self.model
