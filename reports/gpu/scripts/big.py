"""A randomly initialised BERT of the study's teacher's size (BERT-base, MuRIL's 197,285-row vocabulary:
238M parameters, 64% in the embedding) with the trimmed e5 tokenizer: speed and memory only."""
import shutil
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

tok_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
small = len(sys.argv) > 3  # a tiny model of the same make, to try the run on a CPU
torch.manual_seed(0)
cfg = BertConfig(vocab_size=197285, hidden_size=64 if small else 768, num_hidden_layers=2 if small else 12,
                 num_attention_heads=4 if small else 12, intermediate_size=128 if small else 3072,
                 max_position_embeddings=514, type_vocab_size=2, pad_token_id=1)
model = BertForSequenceClassification(cfg)
print("parameters", sum(p.numel() for p in model.parameters()))
model.save_pretrained(out)
for name in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(tok_dir / name, out / name)
