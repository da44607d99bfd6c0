"""A static-embedding classifier: the mean of per-piece vectors, then a linear head. No attention, no layers.

This file is copied beside every static checkpoint and named in its config's `auto_map`, so
`AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)` loads it anywhere;
it imports only torch and transformers (never mahacompress). The table's rows are the pieces of the
folder's own (trimmed) tokenizer; special tokens (`config.special_ids`) and padding do not count in
the mean, so a text's vector is the average of its real pieces, as in Model2Vec.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class StaticConfig(PretrainedConfig):
    """Table size and which ids are special (left out of the mean)."""

    model_type = "mahacompress-static"

    def __init__(self, vocab_size: int = 2, hidden_size: int = 256, special_ids: list[int] | None = None,
                 **kwargs) -> None:
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.special_ids = list(special_ids or [])
        super().__init__(**kwargs)


class StaticForSequenceClassification(PreTrainedModel):
    """logits = W · mean(table[piece] for the text's non-special pieces) + b."""

    config_class = StaticConfig
    base_model_prefix = "static"

    def __init__(self, config: StaticConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """A text's vector, the mean of its real pieces' rows: what the head reads (and what a table is
        pre-trained on, before there is a head)."""
        # from the config at every call, not a buffer: from_pretrained builds models on the meta device and
        # leaves non-persistent buffers uninitialised
        special = torch.tensor(self.config.special_ids, dtype=input_ids.dtype, device=input_ids.device)
        weight = (~torch.isin(input_ids, special)).to(self.embeddings.weight.dtype)
        if attention_mask is not None:
            weight = weight * attention_mask.to(weight.dtype)
        summed = (self.embeddings(input_ids) * weight.unsqueeze(-1)).sum(1)
        return summed / weight.sum(1, keepdim=True).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> SequenceClassifierOutput:
        logits = self.classifier(self.pooled(input_ids, attention_mask))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


StaticConfig.register_for_auto_class()
StaticForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
