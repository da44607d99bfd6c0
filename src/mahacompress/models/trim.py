"""Vocabulary trimming: keep only the pieces a language needs, and the embedding rows that go with them.

multilingual-e5-small spends 96M of its 118M parameters on the embedding rows of XLM-R's 250k-piece
vocabulary, of which Marathi news uses about 21k. Trimming (TextPruner; Ushio et al. 2023) keeps

- the special tokens,
- every single-character piece of the scripts seen in the corpus (XLM-R's Unigram model has no byte
  fallback, so these let any text of those scripts still be segmented),
- every piece the tokenizer produces on the corpus,

then rewrites `tokenizer.json` with the `tokenizers` library (only the model's vocabulary and the ids
that point into it change; normaliser, pre-tokeniser and decoder are untouched) and slices the
embedding matrix to the kept rows. A text whose pieces were all kept gets exactly the same ids
(renumbered) and so the same logits; a text that needs a removed piece is segmented with the pieces
that remain. Unigram (XLM-R, SentencePiece) and WordPiece (BERT) tokenizers are supported.
"""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import torch

from ..core.config import DataConfig, TransferConfig
from ..core.errors import MahaError
from ..core.files import TRIM_RECORD, staged_dir, write_json
from ..data.csvfiles import read_text_column
from ..data.splits import Splits, load_splits
from ..data.transfer import TransferSet, for_splits
from .folder import checkpoint_digest

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx")


def read_corpus(paths: Sequence[Path], text_col: str = "text") -> list[str]:
    """Texts of plain-text files (one per line) or CSV files (column `text_col`); one line per bad file."""
    if not paths:
        raise MahaError("no corpus given: name at least one text or CSV file with --corpus")
    texts: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise MahaError(f"{path}: corpus file not found")
        if path.suffix.lower() == ".csv":
            texts += read_text_column(path, text_col, options="--text-col")
            continue
        try:
            lines = path.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise MahaError(f"{path}: not UTF-8 (byte {exc.start}); save the corpus as UTF-8") from None
        found = [line.strip() for line in lines if line.strip()]
        if not found:
            raise MahaError(f"{path}: corpus file is empty")
        texts += found
    return texts


def corpus_texts(splits: Splits, transfer: TransferSet | None) -> list[str]:
    """The texts a model trains on: its training split, then its transfer pieces. The one definition of a
    model's corpus: trim and export rebuild it from the model's record (`training_corpus`), optimize from the
    splits and transfer set it trains with, so a vocabulary is trimmed to exactly what the model saw."""
    return list(splits.train.texts) + (list(transfer.texts) if transfer is not None else [])


def training_corpus(model_dir: Path, with_transfer: bool = True) -> list[str]:
    """What the model was trained on, never dev or test texts: the training split of the dataset named
    in its training.json (pruned folders: pruning.json) plus the transfer set it records, if any. The split
    is rebuilt from the recorded data configuration (folder, columns, seed, cap, dev fraction, label renames;
    records written before it existed name only the dataset), the transfer set from its recorded settings
    (`_recorded_transfer`). `with_transfer=False`: the training split alone (what the grid and `optimize`
    calibrate int8 files on)."""
    records = [Path(model_dir) / name for name in ("training.json", "pruning.json")]
    record = next((p for p in records if p.is_file()), None)
    if record is None:
        raise MahaError(
            f"{records[0]}: not found (nor pruning.json), so the training corpus is unknown; name one with --corpus")
    info = json.loads(record.read_text(encoding="utf-8"))
    given = info.get("data_config") or {"dataset": (info.get("dataset") or {}).get("dataset")}
    if not given.get("dataset"):
        raise MahaError(f"{record}: names no dataset; name a corpus with --corpus")
    splits = load_splits(DataConfig(**_known(DataConfig, given)))
    return corpus_texts(splits, _recorded_transfer(record, info.get("transfer"), splits) if with_transfer else None)


def _known(cls: type, values: dict) -> dict:
    """The entries of a recorded dataclass that `cls` still has (a record may hold a key a version dropped)."""
    return {k: v for k, v in values.items() if k in {f.name for f in fields(cls)}}


def _recorded_transfer(record: Path, recorded: dict | None, splits: Splits) -> TransferSet | None:
    """The transfer set `record` says the model distilled on, rebuilt with its recorded settings (`config`).

    Records written before the settings were recorded name the file alone: it is rebuilt with the default
    settings, which is the same set only if training used them, so the rebuilt set must have the number of
    pieces the record counted (when it counted them); otherwise one line says so and how to go on.
    """
    if not recorded or not recorded.get("file"):
        return None
    if recorded.get("config"):
        return for_splits(TransferConfig(**_known(TransferConfig, recorded["config"])), splits)
    older = (f"{record}: the transfer set {recorded['file']} is recorded by its file name only (written by an older "
             "mahacompress)")
    fix = "name the texts to keep with --corpus FILE (the training split and the transfer texts)"
    try:
        transfer = for_splits(TransferConfig(path=recorded["file"]), splits)
    except MahaError as exc:  # its own fix names options of distill, not of trim or export
        raise MahaError(
            f"{older}, and the default settings cannot rebuild it ({str(exc).split('; ')[0]}); {fix}") from None
    if recorded.get("kept") not in (None, len(transfer.texts)):
        raise MahaError(f"{older}, and the default settings rebuild {len(transfer.texts)} pieces of it, not the "
                        f"{recorded['kept']} the model distilled on; {fix}")
    return transfer


def _scripts(text: str) -> set[str]:
    """Unicode script-ish names (first word of the character name: DEVANAGARI, LATIN, DIGIT...)."""
    return {unicodedata.name(ch, "?").split()[0] for ch in text if not ch.isspace()}


def _fast_tokenizer(model_dir: Path, trust_remote_code: bool):
    """The folder's tokenizer, refused unless it is a fast one backed by a tokenizer.json file."""
    from .load import load_tokenizer

    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise MahaError(f"{path}: not found; trimming needs a fast tokenizer (save the tokenizer with "
                        "transformers' fast tokenizer class first)")
    tokenizer = load_tokenizer(str(model_dir), trust_remote_code=trust_remote_code)
    if not getattr(tokenizer, "is_fast", False):
        raise MahaError(f"{path}: the folder's tokenizer loads as a slow tokenizer; trimming needs a fast one")
    return tokenizer


def kept_ids(spec: dict, tokenizer, texts: Sequence[str]) -> list[int]:
    """Sorted ids of the pieces to keep: specials, single characters of the scripts seen, pieces used."""
    model = spec["model"]
    pieces = _pieces(model)
    keep = {t["id"] for t in spec.get("added_tokens", [])}
    keep |= {tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens}
    scripts: set[str] = set()
    for enc in tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=True):
        keep.update(enc.ids)
    for text in texts:
        scripts |= _scripts(text)
    prefixes = ("▁", model.get("continuing_subword_prefix") or "##")
    for i, piece in enumerate(pieces):
        bare = piece
        for p in prefixes:
            if bare.startswith(p) and len(bare) > len(p):
                bare = bare[len(p):]
        if len(bare) == 1 and _scripts(bare) & scripts:
            keep.add(i)
    return sorted(i for i in keep if 0 <= i < len(pieces))


def _pieces(model: dict) -> list[str]:
    """The model's pieces in id order (Unigram stores a list, WordPiece a piece -> id map)."""
    if model["type"] == "Unigram":
        return [p for p, _ in model["vocab"]]
    if model["type"] == "WordPiece":
        pieces = [""] * len(model["vocab"])
        for piece, i in model["vocab"].items():
            pieces[i] = piece
        return pieces
    raise MahaError(f"tokenizer model {model['type']}: trimming supports Unigram (XLM-R) and WordPiece (BERT)")


def trimmed_spec(spec: dict, keep: list[int]) -> dict:
    """A copy of a tokenizer.json dict with only the `keep` pieces, every id renumbered consistently."""
    spec = json.loads(json.dumps(spec))
    model = spec["model"]
    old = _pieces(model)
    new_id = {old_id: new for new, old_id in enumerate(keep)}
    by_piece = {old[i]: new for i, new in new_id.items()}
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in keep]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    else:
        model["vocab"] = {old[i]: new for i, new in new_id.items()}
    for tok in spec.get("added_tokens", []):
        if tok["content"] not in by_piece:
            raise MahaError(f"added token {tok['content']!r} is not in the tokenizer's vocabulary; cannot renumber it")
        tok["id"] = by_piece[tok["content"]]
    _renumber_processor(spec.get("post_processor"), by_piece)
    return spec


def _renumber_processor(node, by_piece: dict[str, int]) -> None:
    """Post-processors name special tokens with ids: TemplateProcessing {tokens, ids},
    BERT/RoBERTa processors [token, id] pairs, Sequence processors nest them."""
    if isinstance(node, dict):
        if isinstance(node.get("tokens"), list) and isinstance(node.get("ids"), list):
            node["ids"] = [by_piece[t] for t in node["tokens"]]
        for key, value in node.items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
                node[key] = [value[0], by_piece[value[0]]]
            else:
                _renumber_processor(value, by_piece)
    elif isinstance(node, list):
        for item in node:
            _renumber_processor(item, by_piece)


def texts_with_removed_pieces(original, trimmed, texts: Sequence[str]) -> int:
    """How many texts the `original` tokenizer splits into at least one piece that `trimmed` lacks."""
    kept = set(trimmed.get_vocab())
    return sum(
        any(piece not in kept for piece in enc.tokens)
        for enc in original.backend_tokenizer.encode_batch(list(texts), add_special_tokens=True))


def trimmed_tokenizer(model_dir: Path, texts: Sequence[str], *, trust_remote_code: bool = False):
    """The folder's tokenizer cut to the pieces `texts` need (kept_ids), the kept old ids in new-id order,
    and the original tokenizer.json spec (`trust_remote_code`: the folder's code may load its tokenizer)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = _fast_tokenizer(model_dir, trust_remote_code)
    spec = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    keep = kept_ids(spec, tokenizer, texts)
    new_tok = Tokenizer.from_str(json.dumps(trimmed_spec(spec, keep), ensure_ascii=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=new_tok, model_max_length=tokenizer.model_max_length,
                                   **{k: v
                                      for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)})
    return fast, keep, spec


def trim(model_dir: Path, texts: Sequence[str], out_dir: Path, *, corpus_names: Sequence[str] = (),
         trust_remote_code: bool = False) -> dict:
    """Write a trimmed copy of the classifier folder `model_dir` to `out_dir`; returns the trim record.

    Works for any AutoModelForSequenceClassification folder (dense, layer subsets, pruned models with
    their own code): the input embedding is replaced through `set_input_embeddings` and
    `config.vocab_size` updated, so nothing model-specific is needed. `trust_remote_code` lets a folder
    run the Python code it ships (mahacompress's own pruned and static classes never need it).
    """
    from .load import load_classifier

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not texts:
        raise MahaError(f"{', '.join(corpus_names) or model_dir}: the corpus holds no text")
    fast, keep, spec = trimmed_tokenizer(model_dir, texts, trust_remote_code=trust_remote_code)
    model = load_classifier(str(model_dir), trust_remote_code=trust_remote_code).eval()
    old = model.get_input_embeddings()
    if old.weight.shape[0] < len(_pieces(spec["model"])):
        raise MahaError(f"{model_dir}: embedding has {old.weight.shape[0]} rows but the tokenizer "
                        f"{len(_pieces(spec['model']))} pieces")
    index = torch.tensor(keep)
    pad = fast.pad_token_id
    new = torch.nn.Embedding(len(keep), old.weight.shape[1], padding_idx=pad)
    with torch.no_grad():
        new.weight.copy_(old.weight[index])
    model.set_input_embeddings(new)
    model.config.vocab_size = len(keep)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        old_id = getattr(model.config, name, None)
        if old_id is not None:
            setattr(model.config, name, keep.index(old_id) if old_id in keep else None)

    record = {
        "source": str(model_dir), "source_checkpoint": checkpoint_digest(model_dir), "pieces_before": len(
            _pieces(spec["model"])), "pieces_kept": len(keep), "embedding_rows_before": int(old.weight.shape[0]),
        "corpus": list(corpus_names), "corpus_texts": len(texts), "tokenizer_model": spec["model"]["type"]
    }
    with staged_dir(out_dir, TRIM_RECORD) as tmp:
        for path in model_dir.iterdir():  # records and modelling code (training.json, pruning.json, *.py)
            if (path.is_file() and not path.name.startswith(".") and path.suffix not in _WEIGHT_SUFFIXES
                    and path.name not in _TOKENIZER_FILES and path.name != "config.json"):
                shutil.copy2(path, tmp / path.name)
        model.save_pretrained(tmp)
        fast.save_pretrained(tmp)
        write_json(tmp / TRIM_RECORD, record)
    return record
