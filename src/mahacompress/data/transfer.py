"""A transfer set for distillation: unlabelled in-domain text that the teacher labels.

Why: with ~2k labelled headlines a student sees too few inputs to copy its teacher's function; the
teacher can label any text, so knowledge distillation can train on text nobody labelled (soft
labels only, Hinton et al. 2015; the "transfer set"). Long documents are cut into word windows of
about the length of the task's texts, since a student trained on headlines should see headline-sized
inputs (news paragraphs here have almost no sentence punctuation, so windows, not sentences).

Leakage: the development split chooses models and the test split scores them, so every piece that
shares a run of `ngram` words with a dev or test text (or contains a whole shorter one) is dropped
and counted, not only exact copies. The code knows no dataset by name: a preset or the user names
the file.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..core.config import TransferConfig
from ..core.errors import MahaError
from .csvfiles import normalize, read_labeled_csv, read_text_column
from .sources import search_roots
from .splits import Splits

_PUNCT = "\"'“”‘’.,;:!?()[]{}-–—।॥|/\\"
_MIN_SHORT_WORDS = 4  # a dev/test text shorter than `ngram` blocks pieces that contain it whole, if this long


@dataclass
class TransferSet:
    """Pieces ready to train on, their source labels where the file has them, and what was dropped."""

    texts: list[str]
    source_labels: list[str] | None  # the file's own label per piece (agreement check; use_labels)
    use_labels: bool = False  # train on source_labels as hard labels too
    counts: dict = field(default_factory=dict)
    config: TransferConfig | None = None  # what built it, its file made absolute: recorded so it can be rebuilt

    def record(self) -> dict:
        """What a model folder records of it: the counts, and every setting that shapes the pieces (`config`),
        so trim and export rebuild exactly these pieces (`for_splits` with the recorded configuration)."""
        return {
            **self.counts, "use_labels": self.use_labels, **({"config": asdict(self.config)} if self.config else {})
        }


def resolve(path: str, data_dir: str | None = None) -> Path:
    """`path` as given, else under --data-dir / the data roots (so a preset can name a shipped file)."""
    given = Path(path).expanduser()
    if given.is_absolute() or given.exists():
        return given
    roots = ([Path(data_dir)] if data_dir else []) + search_roots()
    for root in roots:
        if (root / given).exists():
            return root / given
    raise MahaError(
        f"transfer set {path}: file not found (looked in the current folder and in {', '.join(str(r) for r in roots)})")


def read_texts(path: Path, text_col: str | None, label_col: str | None) -> tuple[list[str], list[str] | None]:
    """The texts (and labels, when asked) of a CSV column, or of a plain file with one text per line."""
    if not path.is_file():
        raise MahaError(f"{path}: transfer set file not found")
    if path.suffix.lower() == ".csv":
        options = "--transfer-text-col/--transfer-label-col (a preset: transfer.text_col/label_col)"
        if label_col:
            texts, labels, _ = read_labeled_csv(path, text_col or "text", label_col, options)
        else:
            texts, labels = read_text_column(path, text_col or "text", options), None
    else:
        if text_col or label_col:
            raise MahaError(f"{path}: columns were named, but only a .csv file has columns "
                            "(a plain text file holds one text per line)")
        texts, labels = [], None
        for row, raw in enumerate(path.read_bytes().split(b"\n"), 1):
            try:
                line = raw.decode("utf-8-sig" if row == 1 else "utf-8").strip()
            except UnicodeDecodeError:
                raise MahaError(f"{path}, line {row}: bytes that are not UTF-8; re-save the file as UTF-8") from None
            if line:
                texts.append(line)
    if not texts:
        raise MahaError(f"{path}: no texts in the transfer set")
    return texts, labels


def words(text: str) -> list[str]:
    """Whitespace words with surrounding punctuation removed: the unit of windows and overlap checks."""
    return [w for w in (t.strip(_PUNCT) for t in text.split()) if w]


def windows(text: str, size: int) -> list[str]:
    """Consecutive windows of `size` words; a short tail joins the window before it."""
    ws = normalize(text).split()
    if len(ws) <= size:
        return [" ".join(ws)] if ws else []
    cuts = list(range(0, len(ws), size))
    if len(ws) - cuts[-1] < size // 2:  # a tail of a few words is no headline: merge it
        cuts.pop()
    return [" ".join(ws[a:b]) for a, b in zip(cuts, cuts[1:] + [len(ws)])]


class OverlapFilter:
    """Does a piece share `n` consecutive words with a protected text, or contain a shorter one whole?"""

    def __init__(self, protected: Sequence[str], n: int):
        self.n = n
        self.grams: dict[int, set[tuple[str, ...]]] = {}
        for text in protected:
            ws = words(text)
            k = min(n, len(ws))
            if k < min(n, _MIN_SHORT_WORDS):
                continue
            self.grams.setdefault(k, set()).update(tuple(ws[i:i + k]) for i in range(len(ws) - k + 1))

    def hits(self, text: str) -> bool:
        ws = words(text)
        return any(tuple(ws[i:i + k]) in grams for k, grams in self.grams.items() for i in range(len(ws) - k + 1))


def build_transfer(cfg: TransferConfig, protected: Sequence[str], *, labelled: Sequence[str] = (),
                   data_dir: str | None = None) -> TransferSet:
    """Read `cfg.path`, cut it into windows, drop pieces overlapping `protected` texts, dedupe, cap.

    `labelled` are the training texts the student already sees with their labels: a piece that repeats
    one is dropped and counted (the training file beyond a row cap is a transfer set; its labelled part
    is not). The cap keeps a seeded random sample (so a small cap still spans the whole file's topics).
    """
    for name, value in (("window_words", cfg.window_words), ("ngram", cfg.ngram), ("max_pieces", cfg.max_pieces)):
        if value is not None and value < 1:
            raise MahaError(f"transfer set {cfg.path}: {name} must be at least 1, got {value}")
    path = resolve(cfg.path, data_dir)
    texts, labels = read_texts(path, cfg.text_col, cfg.label_col)
    overlap = OverlapFilter(protected, cfg.ngram)
    protected_keys = {normalize(t) for t in protected}
    labelled_keys = {normalize(t) for t in labelled}
    seen: set[str] = set()
    pieces: list[tuple[str, str | None]] = []
    counts = {
        "file": str(path), "texts_read": len(texts), "pieces": 0, "dropped_overlap": 0, "dropped_labelled": 0,
        "dropped_duplicate": 0
    }
    for i, text in enumerate(texts):
        for piece in windows(text, cfg.window_words):
            counts["pieces"] += 1
            if piece in protected_keys or overlap.hits(piece):
                counts["dropped_overlap"] += 1
            elif piece in labelled_keys:
                counts["dropped_labelled"] += 1
            elif piece in seen:
                counts["dropped_duplicate"] += 1
            else:
                seen.add(piece)
                pieces.append((piece, labels[i] if labels else None))
    if cfg.max_pieces is not None and len(pieces) > cfg.max_pieces:
        pieces = random.Random(cfg.seed).sample(pieces, cfg.max_pieces)
    counts["dropped_by_cap"] = len(seen) - len(pieces)
    counts["kept"] = len(pieces)
    if not pieces:
        raise MahaError(f"{path}: no transfer piece is left after dropping overlap with the dev/test texts "
                        f"({counts['dropped_overlap']}) and repeats of labelled training texts "
                        f"({counts['dropped_labelled']})")
    if cfg.use_labels and labels is None:
        raise MahaError(f"{path}: use_labels needs label_col, the column that holds the labels")
    return TransferSet([p for p, _ in pieces], [lab for _, lab in pieces] if labels else None, cfg.use_labels, counts,
                       replace(cfg, path=str(path.resolve())))


def for_splits(cfg: TransferConfig, splits: Splits, data_dir: str | None = None) -> TransferSet:
    """The transfer set a model distils on beside `splits`: dev and test texts protected, the labelled
    training texts not repeated. The one way it is built, in training and when trim, export and optimize
    rebuild a model's corpus, so the pieces are the same each time."""
    return build_transfer(cfg, splits.dev.texts + splits.test.texts, labelled=splits.train.texts, data_dir=data_dir)


__all__ = ["TransferSet", "build_transfer", "for_splits", "windows", "OverlapFilter", "resolve", "read_texts"]
