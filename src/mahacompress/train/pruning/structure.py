"""WHICH modules are pruned: a table of module names per architecture.

Kept apart from HOW masks are computed (masks.py), as in huggingface/nn_pruning: supporting a new
BERT-like family means adding one row here (and its pruned classes to modeling_pruned.py, the
standalone file saved beside checkpoints). Every supported family shares BERT's layer anatomy
(Q/K/V -> attention output dense -> FFN in -> FFN out, post-LayerNorm); only the name of the base
model differs. Code outside pruning/ reaches encoder layers through `layer_list` / `set_layer_list`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ...core.errors import MahaError


@dataclass(frozen=True)
class Structure:
    """Where the prunable Linears of one architecture live (paths relative to one encoder layer)."""

    base: str  # attribute of the *ForSequenceClassification model holding the encoder
    layers: str = "encoder.layer"
    query: str = "attention.self.query"
    key: str = "attention.self.key"
    value: str = "attention.self.value"
    attn_out: str = "attention.output.dense"
    ffn_in: str = "intermediate.dense"
    ffn_out: str = "output.dense"


_BERT = Structure(base="bert")
_ROBERTA = Structure(base="roberta")

ARCHITECTURES: dict[str,
                    Structure] = {"bert": _BERT, "roberta": _ROBERTA, "xlm-roberta": _ROBERTA, "camembert": _ROBERTA, }


def structure_of(model: nn.Module) -> Structure:
    """The table row for `model`, or a MahaError naming its type and what is supported."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise MahaError(
            f"pruning does not support model type '{model_type}' (supported: {', '.join(sorted(ARCHITECTURES))})")
    return ARCHITECTURES[model_type]


def encoder_layers(model: nn.Module, structure: Structure) -> list[nn.Module]:
    """The encoder's layer modules, in order."""
    return list(model.get_submodule(f"{structure.base}.{structure.layers}"))


def _family(model: nn.Module, purpose: str) -> Structure:
    """The table row of a dense or a compacted (`pruned_<type>`) model of a supported family."""
    model_type = str(getattr(getattr(model, "config", None), "model_type", None))
    structure = ARCHITECTURES.get(model_type.removeprefix("pruned_"))
    if structure is None:
        raise MahaError(f"{purpose} need a BERT-family encoder; model type '{model_type}' is not one "
                        f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    return structure


def layer_list(model: nn.Module, purpose: str = "layer students") -> nn.ModuleList:
    """The encoder's ModuleList of layers, of a dense or a compacted classifier."""
    return model.get_submodule(f"{(s := _family(model, purpose)).base}.{s.layers}")


def set_layer_list(model: nn.Module, layers: nn.ModuleList) -> None:
    """Replace the encoder's layers (a shallower student keeps a subset of them)."""
    s = _family(model, "layer students")
    replace_module(model, f"{s.base}.{s.layers}", layers)


def role_paths(structure: Structure) -> dict[str, str]:
    """Path of each prunable Linear inside a layer, keyed by role."""
    return {
        "q": structure.query, "k": structure.key, "v": structure.value, "o": structure.attn_out,
        "ffn_in": structure.ffn_in, "ffn_out": structure.ffn_out
    }


def linears(layer: nn.Module, structure: Structure) -> dict[str, nn.Module]:
    """The six prunable Linears of one layer, keyed by role (q, k, v, o, ffn_in, ffn_out)."""
    return {role: layer.get_submodule(path) for role, path in role_paths(structure).items()}


def replace_module(layer: nn.Module, path: str, module: nn.Module) -> None:
    """Put `module` at `path` inside `layer`."""
    parent, _, attr = path.rpartition(".")
    setattr(layer.get_submodule(parent), attr, module)
