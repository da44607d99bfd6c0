"""Teacher-labelled data augmentation for distillation (TinyBERT's, Jiao et al. 2020): more inputs, same labels.

Why: a small student copies its teacher's function only where it sees inputs, and a few thousand labelled
headlines are few. Variants of the training texts (and of the transfer pieces) are new inputs near the task's own,
and the teacher labels them for free: they join the training split unlabelled, so only the KD term sees them.

How a variant is made, seeded per text so a text's variants do not depend on the others:
- a crop (a share `crop_rate` of the variants): a contiguous span of 60-90% of the words;
- otherwise each word that has neighbours is replaced, with chance `replace_rate`, by one of its `neighbours`
  nearest words, and each word is deleted with chance `delete_rate` (never every word).
The neighbours come from the fine-tuned teacher itself (the words' `[CLS] pieces [SEP]` mean-pooled last hidden
states, cosine), so a replacement is a word the teacher reads as close: TinyBERT's GloVe lookup without an outside
vector file, in the language of any teacher. Only the `vocabulary` most frequent words get vectors.

Leakage and waste: a variant equal to a source text or to an earlier variant is dropped, and one sharing `ngram`
consecutive words with a dev or test text (`data.transfer.OverlapFilter`, as the transfer set is filtered) is
dropped, both counted in the record.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from accelerate.utils import broadcast_object_list

from ..core.config import AugmentConfig
from ..core.errors import MahaError
from ..data.transfer import OverlapFilter
from ..models.load import load_classifier, load_tokenizer
from .processes import process_state

CROP_SHARE = (0.6, 0.9)  # a crop keeps this share of the words (at least one)
MAX_WORD_PIECES = 32  # a longer "word" (a URL, a run of digits) is embedded by its first pieces


@dataclass
class Augmented:
    """The variants kept (new training inputs, unlabelled) and what was asked, dropped and spent."""

    texts: list[str]
    record: dict


def frequent_words(texts: Sequence[str], limit: int) -> list[str]:
    """The distinct whitespace words of `texts`, the `limit` most frequent; ties in the order of first appearance."""
    counts = Counter(w for text in texts for w in text.split())
    return [w for w, _ in counts.most_common(limit)]  # most_common is stable: ties keep first-seen order


@torch.inference_mode()
def mean_last_hidden(model: torch.nn.Module, sequences: Sequence[Sequence[int]], batch_size: int = 256) -> np.ndarray:
    """Mean last hidden state of each id sequence (special tokens included), one row per sequence, input order.

    Batches hold sequences of one length, so nothing is padded and every mean is over the sequence's own tokens
    (the same figures, batch for batch, as an unpadded forward pass of each).
    """
    model.eval()
    device = next(model.parameters()).device
    out: np.ndarray | None = None
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    start = 0
    while start < len(order):
        length = len(sequences[order[start]])
        idx = [order[start]]
        while (start + len(idx) < len(order) and len(idx) < batch_size
               and len(sequences[order[start + len(idx)]]) == length):
            idx.append(order[start + len(idx)])
        chunk = torch.tensor([list(sequences[i]) for i in idx], device=device)
        hidden = model(input_ids=chunk, attention_mask=torch.ones_like(chunk), output_hidden_states=True)
        rows = hidden.hidden_states[-1].float().mean(1).cpu().numpy()
        if out is None:
            out = np.zeros((len(sequences), rows.shape[1]), dtype=np.float32)
        out[idx] = rows
        start += len(idx)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def word_vectors(model: torch.nn.Module, tokenizer, words: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Each word's `[CLS] word-pieces [SEP]` mean-pooled last hidden state (the tokenizer's own special tokens)."""
    template = tokenizer("")["input_ids"]
    pieces = tokenizer(list(words), add_special_tokens=False)["input_ids"] if words else []
    return mean_last_hidden(model, [template[:1] + ids[:MAX_WORD_PIECES] + template[1:] for ids in pieces], batch_size)


def nearest(vectors: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """For each row its `k` nearest other rows by cosine, nearest first (ties: the lower index); [n, k] indices."""
    n = len(vectors)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), dtype=np.int64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    out = np.zeros((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        sims = unit[start:start + chunk] @ unit.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # never a word's own neighbour
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for r, cand in enumerate(top):  # nearest first, ties by index: the same table on every run
            out[start + r] = cand[np.lexsort((cand, -sims[r, cand]))]
    return out


def variants_of(words: list[str], neighbours: dict[str, list[str]], cfg: AugmentConfig,
                rng: np.random.Generator) -> list[str]:
    """Up to `cfg.per_text` variants of one text's words (repeats are left for the caller to drop)."""
    out = []
    n = len(words)
    for _ in range(cfg.per_text):
        if n == 0:
            break
        if rng.random() < cfg.crop_rate:
            span = max(1, round(n * rng.uniform(*CROP_SHARE)))
            begin = int(rng.integers(0, n - span + 1))
            out.append(" ".join(words[begin:begin + span]))
            continue
        deleted = rng.random(n) < cfg.delete_rate
        if deleted.all():
            deleted[int(rng.integers(n))] = False
        replaced = rng.random(n) < cfg.replace_rate
        pick = rng.integers(0, 1 << 30, n)  # which neighbour, drawn for every word alike
        kept = []
        for word, gone, swap, choice in zip(words, deleted, replaced, pick):
            near = neighbours.get(word)
            if not gone:
                kept.append(near[choice % len(near)] if near and swap else word)
        out.append(" ".join(kept))
    return out


def augment(model: torch.nn.Module, tokenizer, sources: Sequence[str], protected: Sequence[str],
            cfg: AugmentConfig) -> Augmented:
    """Variants of `sources` (see the module), none repeating a source or each other, none overlapping `protected`.

    Raises a one-line `MahaError` when none is left.
    """
    t0 = time.perf_counter()
    vocab = frequent_words(sources, cfg.vocabulary)
    _say(f"augment: embedding the {len(vocab)} most frequent words of {len(sources)} texts with the teacher")
    near = nearest(word_vectors(model, tokenizer, vocab), cfg.neighbours)
    neighbours = {w: [vocab[j] for j in row] for w, row in zip(vocab, near) if len(row)}
    t1 = time.perf_counter()
    _say(f"augment: words embedded in {t1 - t0:.0f} s; making up to {cfg.per_text} variants of each text")
    overlap = OverlapFilter(protected, cfg.ngram)
    protected_keys = {" ".join(t.split()) for t in protected}
    seen = {" ".join(t.split()) for t in sources}
    kept: list[str] = []
    duplicates = overlapping = 0
    for i, text in enumerate(sources):
        rng = np.random.default_rng([cfg.seed, i])
        for variant in variants_of(text.split(), neighbours, cfg, rng):
            if variant in seen:
                duplicates += 1
                continue
            seen.add(variant)
            if variant in protected_keys or overlap.hits(variant):
                overlapping += 1
            else:
                kept.append(variant)
    asked = len(sources) * cfg.per_text
    record = {
        "sources": len(sources), "asked": asked, "made": len(kept), "dropped_duplicate": duplicates,
        "dropped_overlap": overlapping, "dropped_empty": asked - len(kept) - duplicates - overlapping,
        "words_with_vectors": len(vocab), "vector_seconds": t1 - t0, "variant_seconds": time.perf_counter() - t1,
        "settings": asdict(cfg)
    }
    _say(f"augment: {len(kept)} new texts of {asked} asked ({duplicates} repeats and {overlapping} overlapping "
         "dev/test dropped)")
    if not kept:
        raise MahaError(f"augmentation made no new text: of {asked} variants asked, {duplicates} repeated a training "
                        f"text or an earlier variant and {overlapping} overlapped dev/test; raise augment.replace_rate "
                        "or augment.delete_rate, or give more (or longer) training texts")
    return Augmented(kept, record)


def _say(line: str) -> None:
    """A progress line that stays (a log file shows it too), from the main process only."""
    if process_state().is_main_process:
        print(line, flush=True)


def teacher_augmented(teacher: str, sources: Sequence[str], protected: Sequence[str], cfg: AugmentConfig, *,
                      trust_remote_code: bool = False) -> Augmented:
    """`augment` with the teacher folder / hub id's model and tokenizer (on the GPU when there is one).

    Launched as several processes, the main one augments and sends the result to the others (a failure too, so
    every process stops with the same line): every process then trains on the very same texts.
    """
    state = process_state()
    result: list = [None]
    if state.is_main_process:
        try:
            model = load_classifier(teacher, trust_remote_code=trust_remote_code)
            if torch.cuda.is_available():
                model = model.to("cuda")
            result = [
                augment(model, load_tokenizer(teacher, trust_remote_code=trust_remote_code), sources, protected, cfg)
            ]
            del model
        except Exception as exc:
            if state.num_processes == 1:
                raise
            result = [
                str(exc) if isinstance(exc, MahaError) else
                f"{teacher}: augmenting the training texts failed on the main process ({type(exc).__name__})"
            ]
    if state.num_processes > 1:
        broadcast_object_list(result)
    if isinstance(result[0], str):
        raise MahaError(result[0])
    return result[0]


__all__ = [
    "Augmented", "augment", "teacher_augmented", "frequent_words", "word_vectors", "mean_last_hidden", "nearest",
    "variants_of"
]
