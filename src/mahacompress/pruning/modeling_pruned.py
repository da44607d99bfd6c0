"""A BERT-family classifier whose layers each have their own head count and feed-forward width.

This file is copied beside every compacted checkpoint and named in its config's `auto_map`, so
`AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)` loads the model
anywhere: it imports only torch and transformers (never mahacompress). It is plain tensor code
(explicit attention, no fused kernels) so it exports to ONNX. Parameter names follow BERT's, so a
compacted state dict is the original one with rows and columns sliced away.

A layer with no heads (or no neurons) keeps only its output bias: the sub-layer then adds a
constant before the residual LayerNorm, exactly what the masked model computed.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput


class PrunedBertConfig(BertConfig):
    """BertConfig plus the per-layer sizes and the family's embedding/head conventions."""

    model_type = "pruned_bert"
    heads_per_layer: list[int] | None = None
    intermediate_sizes: list[int] | None = None
    head_dim: int | None = None
    position_offset: bool = False  # RoBERTa/XLM-R: positions start at pad_token_id + 1, padding skipped
    classifier_head: str = "pooler"  # "pooler" (BERT) | "roberta" (dense + tanh + out_proj on <s>)


class BiasOnly(nn.Module):
    """The output dense of an empty sub-layer: no inputs left, only its (folded) bias."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(size))


class Embeddings(nn.Module):
    def __init__(self, config: PrunedBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pad, self.offset = config.pad_token_id, config.position_offset

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        if self.offset:
            not_pad = input_ids.ne(self.pad).long()
            positions = torch.cumsum(not_pad, dim=1) * not_pad + self.pad
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x + self.position_embeddings(positions)))


class SelfAttention(nn.Module):
    def __init__(self, config: PrunedBertConfig, heads: int) -> None:
        super().__init__()
        self.heads, self.dim = heads, config.head_dim
        width = heads * config.head_dim
        self.query = nn.Linear(config.hidden_size, width)
        self.key = nn.Linear(config.hidden_size, width)
        self.value = nn.Linear(config.hidden_size, width)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, self.dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.dim ** -0.5 + additive_mask
        probs = self.dropout(torch.softmax(scores, dim=-1))
        return torch.matmul(probs, v).transpose(1, 2).reshape(b, n, self.heads * self.dim)


class SubLayerOutput(nn.Module):
    """dense -> dropout -> LayerNorm(. + residual); `dense` is BiasOnly for an empty sub-layer."""

    def __init__(self, config: PrunedBertConfig, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, config.hidden_size) if width else BiasOnly(config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h: torch.Tensor | None, residual: torch.Tensor) -> torch.Tensor:
        out = self.dense(h) if h is not None else self.dense.bias
        return self.LayerNorm(self.dropout(out) + residual)


class Attention(nn.Module):
    def __init__(self, config: PrunedBertConfig, heads: int) -> None:
        super().__init__()
        self.self = SelfAttention(config, heads) if heads else None
        self.output = SubLayerOutput(config, heads * config.head_dim)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, additive_mask) if self.self is not None else None, x)


class Intermediate(nn.Module):
    def __init__(self, config: PrunedBertConfig, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, width)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class Layer(nn.Module):
    def __init__(self, config: PrunedBertConfig, heads: int, width: int) -> None:
        super().__init__()
        self.attention = Attention(config, heads)
        self.intermediate = Intermediate(config, width) if width else None
        self.output = SubLayerOutput(config, width)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, additive_mask)
        return self.output(self.intermediate(x) if self.intermediate is not None else None, x)


class Encoder(nn.Module):
    def __init__(self, config: PrunedBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(config, h, w) for h, w in zip(config.heads_per_layer,
                                                                       config.intermediate_sizes))


class PrunedBertPreTrainedModel(PreTrainedModel):
    config_class = PrunedBertConfig
    base_model_prefix = "bert"


class PrunedBertModel(PrunedBertPreTrainedModel):
    """Embeddings + encoder (+ BERT's pooler when the classifier uses it); returns the hidden states."""

    def __init__(self, config: PrunedBertConfig) -> None:
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = nn.Module() if config.classifier_head == "pooler" else None
        if self.pooler is not None:
            self.pooler.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embeddings(input_ids, token_type_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        additive = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.encoder.layer:
            x = layer(x, additive)
        return x


class RobertaHead(nn.Module):
    def __init__(self, config: PrunedBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if config.classifier_dropout is None
                                  else config.classifier_dropout)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(first_token)))))


class PrunedBertForSequenceClassification(PrunedBertPreTrainedModel):
    """Sequence classifier on the pruned encoder; BERT or RoBERTa head as the source model had."""

    def __init__(self, config: PrunedBertConfig) -> None:
        super().__init__(config)
        self.bert = PrunedBertModel(config)
        if config.classifier_head == "pooler":
            self.dropout = nn.Dropout(config.hidden_dropout_prob if config.classifier_dropout is None
                                      else config.classifier_dropout)
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        else:
            self.classifier = RobertaHead(config)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **kwargs) -> SequenceClassifierOutput:
        first = self.bert(input_ids, attention_mask, token_type_ids)[:, 0]
        if self.config.classifier_head == "pooler":
            logits = self.classifier(self.dropout(torch.tanh(self.bert.pooler.dense(first))))
        else:
            logits = self.classifier(first)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
