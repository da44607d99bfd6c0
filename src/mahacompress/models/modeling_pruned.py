"""Stock BERT-family classifiers whose layers each have their own head count and feed-forward width.

This file is copied beside every compacted checkpoint and named in its config's `auto_map`, so
`AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)` loads the model
anywhere: it imports only torch and transformers (never mahacompress). The forward code is the
stock transformers code, unchanged: in transformers 5 self-attention infers its head count from
the size of its projections (`view(..., -1, head_size)`), so resizing the Linears is all a pruned
layer needs; the attention kernel (SDPA, eager, ...), hidden states, attentions, `problem_type`
and ONNX export behave as for the dense model. The config only adds the per-layer sizes, which a
stock config cannot express (transformers 5 removed `pruned_heads`).

A layer left with no heads (or no neurons) has nothing to project: its attention (or intermediate)
module becomes an empty one and the sub-layer's output dense keeps only its bias, so the sub-layer
adds a constant before the residual LayerNorm, exactly what the masked model computed.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    CamembertConfig,
    CamembertForSequenceClassification,
    CamembertModel,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaModel,
)
from transformers.models.bert.modeling_bert import BertSelfAttention
from transformers.models.camembert.modeling_camembert import CamembertSelfAttention
from transformers.models.roberta.modeling_roberta import RobertaSelfAttention
from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaSelfAttention


class BiasOnly(nn.Module):
    """The output dense of an empty sub-layer: no inputs left, only its (folded) bias."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(*hidden_states.shape[:-1], self.bias.shape[0])


class NoNeurons(nn.Module):
    """The intermediate module of a layer with no feed-forward neurons: passes its input to BiasOnly."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states


class NoHeadsMixin:
    """Self-attention with no heads left. Subclasses the family's attention class (below) so that
    `output_attentions` records it like the other layers, with an empty (batch, 0, seq, seq) map."""

    def __init__(self, config) -> None:
        nn.Module.__init__(self)
        self.config = config

    def forward(self, hidden_states: torch.Tensor, attention_mask=None, **kwargs):
        batch, seq = hidden_states.shape[:2]
        weights = hidden_states.new_zeros(batch, 0, seq, seq) if self.config._attn_implementation == "eager" else None
        return hidden_states, weights  # the output dense (BiasOnly) ignores its input


class BertNoHeads(NoHeadsMixin, BertSelfAttention):
    pass


class RobertaNoHeads(NoHeadsMixin, RobertaSelfAttention):
    pass


class XLMRobertaNoHeads(NoHeadsMixin, XLMRobertaSelfAttention):
    pass


class CamembertNoHeads(NoHeadsMixin, CamembertSelfAttention):
    pass


def resize_layers(encoder: nn.Module, config, no_heads: type) -> None:
    """Give each encoder layer the head count and FFN width the config lists for it."""
    hidden, head_size = config.hidden_size, config.hidden_size // config.num_attention_heads
    for layer, heads, width in zip(encoder.layer, config.heads_per_layer, config.intermediate_sizes):
        attention = layer.attention
        if heads:
            for name in ("query", "key", "value"):
                setattr(attention.self, name, nn.Linear(hidden, heads * head_size))
            attention.output.dense = nn.Linear(heads * head_size, hidden)
        else:
            attention.self = no_heads(config)
            attention.output.dense = BiasOnly(hidden)
        if width:
            layer.intermediate.dense = nn.Linear(hidden, width)
            layer.output.dense = nn.Linear(width, hidden)
        else:
            layer.intermediate = NoNeurons()
            layer.output.dense = BiasOnly(hidden)


class PrunedBertConfig(BertConfig):
    model_type = "pruned_bert"
    heads_per_layer: list[int] | None = None
    intermediate_sizes: list[int] | None = None


class PrunedBertModel(BertModel):
    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        resize_layers(self.encoder, config, BertNoHeads)
        self.post_init()


class PrunedBertForSequenceClassification(BertForSequenceClassification):
    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig) -> None:
        super().__init__(config)
        resize_layers(self.bert.encoder, config, BertNoHeads)
        self.post_init()


class PrunedRobertaConfig(RobertaConfig):
    model_type = "pruned_roberta"
    heads_per_layer: list[int] | None = None
    intermediate_sizes: list[int] | None = None


class PrunedRobertaModel(RobertaModel):
    config_class = PrunedRobertaConfig

    def __init__(self, config: PrunedRobertaConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        resize_layers(self.encoder, config, RobertaNoHeads)
        self.post_init()


class PrunedRobertaForSequenceClassification(RobertaForSequenceClassification):
    config_class = PrunedRobertaConfig

    def __init__(self, config: PrunedRobertaConfig) -> None:
        super().__init__(config)
        resize_layers(self.roberta.encoder, config, RobertaNoHeads)
        self.post_init()


class PrunedXLMRobertaConfig(XLMRobertaConfig):
    model_type = "pruned_xlm-roberta"
    heads_per_layer: list[int] | None = None
    intermediate_sizes: list[int] | None = None


class PrunedXLMRobertaModel(XLMRobertaModel):
    config_class = PrunedXLMRobertaConfig

    def __init__(self, config: PrunedXLMRobertaConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        resize_layers(self.encoder, config, XLMRobertaNoHeads)
        self.post_init()


class PrunedXLMRobertaForSequenceClassification(XLMRobertaForSequenceClassification):
    config_class = PrunedXLMRobertaConfig

    def __init__(self, config: PrunedXLMRobertaConfig) -> None:
        super().__init__(config)
        resize_layers(self.roberta.encoder, config, XLMRobertaNoHeads)
        self.post_init()


class PrunedCamembertConfig(CamembertConfig):
    model_type = "pruned_camembert"
    heads_per_layer: list[int] | None = None
    intermediate_sizes: list[int] | None = None


class PrunedCamembertModel(CamembertModel):
    config_class = PrunedCamembertConfig

    def __init__(self, config: PrunedCamembertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        resize_layers(self.encoder, config, CamembertNoHeads)
        self.post_init()


class PrunedCamembertForSequenceClassification(CamembertForSequenceClassification):
    config_class = PrunedCamembertConfig

    def __init__(self, config: PrunedCamembertConfig) -> None:
        super().__init__(config)
        resize_layers(self.roberta.encoder, config, CamembertNoHeads)
        self.post_init()


# model_type of the dense source -> (config, AutoModel, AutoModelForSequenceClassification) of its pruned form
PRUNED_CLASSES = {
    "bert": (PrunedBertConfig, PrunedBertModel, PrunedBertForSequenceClassification),
    "roberta": (PrunedRobertaConfig, PrunedRobertaModel, PrunedRobertaForSequenceClassification),
    "xlm-roberta": (PrunedXLMRobertaConfig, PrunedXLMRobertaModel, PrunedXLMRobertaForSequenceClassification),
    "camembert": (PrunedCamembertConfig, PrunedCamembertModel, PrunedCamembertForSequenceClassification)
}
