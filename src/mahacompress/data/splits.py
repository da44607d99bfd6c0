"""Split one dataset into train/dev/test: labels renamed and checked, rows de-duplicated, test kept apart.

Why every step is counted: the public files share texts between their splits and spell labels differently
(see shared/data/README.md), so `Splits.cleaning` records each drop and each rename, and a reported score
says exactly what it was computed on. A label problem raises `MahaError` naming the file, row and fix.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import DataConfig
from ..core.errors import MahaError
from .csvfiles import normalize, read_label_map, read_rows
from .sources import NAMED, resolve_files


@dataclass
class TextSet:
    """One split: parallel lists of texts and label ids (indices into `Splits.labels`)."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Splits:
    """Train/dev/test for one dataset, plus the JSON-able record of how it was cleaned."""

    name: str
    labels: list[str]
    train: TextSet
    dev: TextSet
    test: TextSet
    cleaning: dict

    def summary(self) -> dict:
        """Row and per-label counts of every split plus the cleaning record (written beside runs)."""

        def one(ts: TextSet) -> dict:
            counts = Counter(ts.labels)
            return {"rows": len(ts), "labels": {n: counts.get(i, 0) for i, n in enumerate(self.labels)}}

        return {
            "dataset": self.name, "labels": list(self.labels),
            "splits": {"train": one(self.train), "dev": one(self.dev),
                       "test": one(self.test)}, "cleaning": self.cleaning
        }


# ---------------------------------------------------------------------------- labels


def check_label_map_targets(path: str | Path, labels: list[str], model: str) -> None:
    """A label map may only rename to labels `model` predicts (a model's labels are fixed once trained)."""
    unknown = sorted(set(read_label_map(path).values()) - set(labels))
    if unknown:
        raise MahaError(f"{path}: maps to {', '.join(repr(n) for n in unknown)}, which the model {model} does not "
                        f"have (its labels: {', '.join(labels)})")


def _label_key(label: str) -> str:
    """Labels compared without case or whitespace differences (`sadness`, ` Sadness`, `SADNESS` are one)."""
    return " ".join(label.split()).casefold()


Rows = list[tuple[int, str, str]]


def relabel(cfg: DataConfig, train: Rows, others: list[Rows]) -> tuple[Rows, list[Rows], list[dict]]:
    """`train` and `others` with cfg.label_map applied, then cfg.fold_label_case (each label becomes the
    spelling of its case/whitespace variants that occurs most often in `train`, the first seen on a tie, so
    model labels stay the file's own words); returns the renamed rows and the renames made, counted."""
    mapping = read_label_map(cfg.label_map) if cfg.label_map else {}
    canonical: dict[str, str] = {}
    if cfg.fold_label_case:
        counts = Counter(mapping.get(lab, lab) for _, _, lab in train)
        for lab, _ in sorted(counts.items(), key=lambda kv: -kv[1]):  # stable: ties keep the first seen
            canonical.setdefault(_label_key(lab), lab)
    made: Counter[tuple[str, str]] = Counter()

    def renamed(rows: Rows) -> Rows:
        out = []
        for row, text, lab in rows:
            new = mapping.get(lab, lab)
            new = canonical.get(_label_key(new), new)
            if new != lab:
                made[(lab, new)] += 1
            out.append((row, text, new))
        return out

    if not mapping and not canonical:
        return train, others, []
    train, others = renamed(train), [renamed(rows) for rows in others]
    return train, others, [{"from": a, "to": b, "rows": n} for (a, b), n in sorted(made.items())]


def _unknown_label(path: Path, row: int, label: str, train_file: Path, counts: Counter[str]) -> MahaError:
    """A dev/test label that no training row has, with the training label it probably means (of several
    spellings, the one --fold-label-case would keep: the commonest in `counts`, the training rows' labels)
    and the fix."""
    labels = sorted(counts)
    same = sorted((n for n in labels if _label_key(n) == _label_key(label)), key=lambda n: -counts[n])
    keys = {_label_key(n): n for n in labels}
    close = same or [keys[k] for k in difflib.get_close_matches(_label_key(label), list(keys), n=1, cutoff=0.8)]
    where = f"{path}, row {row}: label '{label}' is not a training label ({train_file.name} has: {', '.join(labels)})"
    if same:
        return MahaError(f"{where}; did you mean '{same[0]}'? pass --fold-label-case, or --label-map FILE "
                         f"with the row {label},{same[0]}")
    if close:
        return MahaError(f"{where}; did you mean '{close[0]}'? pass --label-map FILE with the row {label},{close[0]}")
    return MahaError(f"{where}; fix the file, or rename it with --label-map FILE (rows from,to)")


# ---------------------------------------------------------------------------- splitting


def _stratified_pick(labels: list[int], size: float | int, seed: int) -> tuple[list[int], list[int]]:
    """Indices (kept, picked) with `size` picked, stratified where possible.

    Classes with fewer than 2 rows cannot be stratified; they stay in `kept` rather than
    crash sklearn. If the pick is too small to hold every class, fall back to a seeded
    random pick (tiny quick-look subsets), still deterministic.
    """
    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    rare = [i for i, y in enumerate(labels) if counts[y] < 2]
    rest = [i for i, y in enumerate(labels) if counts[y] >= 2]
    n_pick = round(size * len(labels)) if isinstance(size, float) else int(size)
    n_pick = min(n_pick, len(rest) - 1)  # `kept` never ends up empty
    if n_pick <= 0:
        return list(range(len(labels))), []
    strat = [labels[i] for i in rest]
    n_cls = len(set(strat))
    ok = n_cls <= n_pick <= len(rest) - n_cls
    kept, picked = train_test_split(rest, test_size=n_pick, random_state=seed, stratify=strat if ok else None)
    return sorted(rare + list(kept)), sorted(picked)


def _subset(texts: list[str], labels: list[int], idx: list[int]) -> TextSet:
    return TextSet([texts[i] for i in idx], [labels[i] for i in idx])


def load_splits(cfg: DataConfig) -> Splits:
    """Resolve, read, clean and split one dataset as the data README's protocol says.

    Training source: drop header repeats, empty texts, duplicate texts (all copies of a text
    seen with two labels), and every text also in the test file (else test scores leak).
    Test keeps its internal duplicates unless cfg.dedup_test, so figures compare with the
    published ones. Dev is a stratified, seeded slice of the cleaned training source.
    """
    if not 0.0 <= cfg.dev_fraction < 1.0:
        raise MahaError(f"dev_fraction must be in [0, 1), got {cfg.dev_fraction}")
    if cfg.max_train_rows is not None and cfg.max_train_rows < 1:
        raise MahaError(f"max_train_rows must be at least 1, got {cfg.max_train_rows}")
    files = resolve_files(cfg.dataset, cfg.data_dir)
    spec = NAMED.get(cfg.dataset)
    text_col = cfg.text_col or (spec.text_col if spec else "text")
    label_col = cfg.label_col or (spec.label_col if spec else "label")
    name = cfg.dataset if spec else (Path(cfg.dataset).name if Path(cfg.dataset).is_dir() else cfg.dataset)

    tr_rows, tr_stats = read_rows(files["train"], text_col, label_col)
    te_rows, te_stats = read_rows(files["test"], text_col, label_col)
    dv_rows, dv_stats = read_rows(files["dev"], text_col, label_col) if "dev" in files else ([], {})
    tr_rows, (te_rows, dv_rows), renames = relabel(cfg, tr_rows, [te_rows, dv_rows])

    # Duplicates in the training source: keep the first copy; a text with two labels is
    # unusable evidence either way, so every copy goes.
    by_key: dict[str, set[str]] = {}
    for _, t, lab in tr_rows:
        by_key.setdefault(normalize(t), set()).add(lab)
    seen: set[str] = set()
    kept: list[tuple[int, str, str]] = []
    dup = conflict = 0
    for r in tr_rows:
        k = normalize(r[1])
        if len(by_key[k]) > 1:
            conflict += 1
        elif k in seen:
            dup += 1
        else:
            seen.add(k)
            kept.append(r)
    test_keys = {normalize(t) for _, t, _ in te_rows}
    if dv_rows:  # the folder's validation file: de-duplicated, disjoint from test, and train disjoint from it
        dv_seen: set[str] = set()
        dv_kept = []
        for r in dv_rows:
            if (k := normalize(r[1])) not in dv_seen and k not in test_keys:
                dv_seen.add(k)
                dv_kept.append(r)
        dv_stats.update(dropped_duplicates_or_in_test=len(dv_rows) - len(dv_kept), final_rows=len(dv_kept))
        dv_rows = dv_kept
        test_keys = test_keys | dv_seen
    train_rows = [r for r in kept if normalize(r[1]) not in test_keys]
    tr_stats.update(duplicates_dropped=dup, conflicting_dropped=conflict,
                    overlap_with_test_dropped=len(kept) - len(train_rows), final_rows=len(train_rows))
    if not train_rows:
        raise MahaError(f"{files['train']}: no usable rows after cleaning")

    # Label ids come from the whole training file, not from what survives the overlap
    # filter: in SHC every Manoranjan text of Valid also occurs in Test, so the class has no
    # training rows left, yet it is a real test label. It is kept (scored, never predicted)
    # and listed in cleaning["labels_without_training_rows"] so reports can exclude it.
    label_names = sorted({lab for _, _, lab in tr_rows})
    if len(label_names) < 2:
        raise MahaError(f"{files['train']}: every row has the label '{label_names[0]}'; "
                        f"a classifier needs at least two classes (wrong --label-col?)")
    ids = {n: i for i, n in enumerate(label_names)}
    left = {lab for _, _, lab in train_rows}
    starved = [n for n in label_names if n not in left]
    te_dups = len(te_rows) - len({normalize(t) for _, t, _ in te_rows})
    if cfg.dedup_test:
        seen_t: set[str] = set()
        deduped = []
        for r in te_rows:
            if (k := normalize(r[1])) not in seen_t:
                seen_t.add(k)
                deduped.append(r)
        te_rows = deduped
    te_stats.update(duplicate_rows_in_file=te_dups, duplicates_dropped=te_dups if cfg.dedup_test else 0,
                    final_rows=len(te_rows))
    if not te_rows:
        raise MahaError(f"{files['test']}: no usable rows after cleaning")
    for role, role_rows in (("test", te_rows), ("dev", dv_rows)):
        for row, _, lab in role_rows:
            if lab not in ids:
                raise _unknown_label(files[role], row, lab, files["train"], Counter(lab for _, _, lab in tr_rows))

    texts = [t for _, t, _ in train_rows]
    y = [ids[lab] for _, _, lab in train_rows]
    if dv_rows:
        tr_idx, dev_idx = list(range(len(y))), []
        dev_source = f"the folder's validation file {files['dev'].name}"
    else:
        tr_idx, dev_idx = _stratified_pick(y, float(cfg.dev_fraction), cfg.seed)
        dev_source = f"a stratified {cfg.dev_fraction:.0%} of the training source (seed {cfg.seed})"
    if cfg.max_train_rows is not None and cfg.max_train_rows > len(tr_idx):
        raise MahaError(
            f"{files['train']}: max_train_rows {cfg.max_train_rows} is more than the {len(tr_idx)} training "
            f"rows left after cleaning{' and the dev split' if dev_idx else ''}; lower the cap or drop it")
    if cfg.max_train_rows is not None and cfg.max_train_rows < len(tr_idx):
        # Pick the rows to drop, so the subsample is `kept` and keeps singleton classes.
        sub_y = [y[i] for i in tr_idx]
        keep, _ = _stratified_pick(sub_y, len(tr_idx) - int(cfg.max_train_rows), cfg.seed)
        tr_idx = [tr_idx[i] for i in keep]

    cleaning = {
        "files": {role: str(path)
                  for role, path in files.items()}, "train_source": tr_stats, "test": te_stats,
        "dev_source": dev_source, **({"dev": dv_stats} if dv_rows else {}), "dev_fraction": cfg.dev_fraction,
        "seed": cfg.seed, "dedup_test": cfg.dedup_test, "max_train_rows": cfg.max_train_rows,
        "label_map": cfg.label_map, "fold_label_case": cfg.fold_label_case, "labels_renamed": renames,
        "labels_without_training_rows": starved, "notes": [
            "mojibake_rows (Devanagari decoded as cp866) are counted and kept, not repaired",
            "test keeps internal duplicates" if not cfg.dedup_test else "test de-duplicated",
            "duplicates and train/test overlap compared after whitespace normalisation"
        ] + [
            f"label '{n}' has no training rows left after cleaning (every copy was a duplicate, "
            f"conflicting or also in the test file): the model cannot predict it" for n in starved
        ]
    }
    return Splits(
        name=name, labels=label_names, train=_subset(texts, y, tr_idx),
        dev=TextSet([t for _, t, _ in dv_rows], [ids[lab]
                                                 for _, _, lab in dv_rows]) if dv_rows else _subset(texts, y, dev_idx),
        test=TextSet([t for _, t, _ in te_rows], [ids[lab] for _, _, lab in te_rows]), cleaning=cleaning)


__all__ = ["TextSet", "Splits", "load_splits", "relabel", "check_label_map_targets"]
