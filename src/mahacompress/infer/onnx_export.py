"""The one ONNX export every ONNX Runtime and OpenVINO file is made from.

TorchScript export (`dynamo=False`) with eager attention, symbolic batch and sequence axes, one file
(BERT-family classifiers stay far below protobuf's 2 GB limit). Why this exporter and not torch's dynamo
one: both export every class here (stock BERT/XLM-R, layer subsets, and the pruned per-layer-size
classes of pruning/modeling_pruned.py, down to a layer with no heads and one with no FFN:
tests/test_pruning.py and tests/test_runtimes.py run them), but only this graph's attention is matched by
ONNX Runtime's transformer optimizer (checked with onnxruntime 1.32, transformers 5.24), and fused
attention is what makes `onnx-int8-fused`, the served and exported default, the fastest at batch 1.
Stock models are switched to eager attention (the pattern the optimizer knows); pruned checkpoints'
own code is explicit attention already.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

from ..core.files import atomic_path
from ..models.load import load_classifier, load_tokenizer
from .base import quiet_logs

ONNX_OPSET = 17  # the TorchScript exporter's highest
# Two texts of different lengths, so batch and sequence both vary in the example batch.
EXAMPLE_TEXTS = ["नमस्कार, आज पुण्यात पाऊस पडला आणि वाहतूक मंदावली.", "नमस्कार"]


def export_onnx(model_dir: str | Path, out: Path, *, trust_remote_code: bool = False) -> Path:
    """Export the classifier of `model_dir` to `out` (written atomically), fp32, inputs named as the tokenizer's."""
    import torch

    model = load_classifier(str(model_dir), trust_remote_code=trust_remote_code).float().eval()
    if getattr(model.config, "heads_per_layer", None) is None:
        model.set_attn_implementation("eager")
    encoded = load_tokenizer(str(model_dir), trust_remote_code=trust_remote_code)(EXAMPLE_TEXTS, padding=True,
                                                                                  return_tensors="pt")
    # Passed by position, so in the order forward() takes them (a BERT tokenizer returns token_type_ids
    # before attention_mask; forward takes attention_mask second).
    example = {k: encoded[k] for k in inspect.signature(model.forward).parameters if k in encoded}
    with atomic_path(out) as tmp, warnings.catch_warnings(), quiet_logs():
        warnings.simplefilter("ignore")  # tracer chatter about transformers internals, not about the result
        torch.onnx.export(model, tuple(example.values()), str(tmp), dynamo=False, input_names=list(example),
                          output_names=["logits"], opset_version=ONNX_OPSET,
                          dynamic_axes={k: {0: "batch", 1: "sequence"}
                                        for k in example})
    return out
