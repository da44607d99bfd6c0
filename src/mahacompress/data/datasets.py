"""Read, clean and split labelled Marathi text-classification CSVs.

Why this module is careful: the public MahaNews/IndicNews files carry measured defects
(repeated header lines, duplicate texts, texts shared between Valid and Test, empty texts,
cp866 mojibake; see shared/data/README.md). Every cleaning step is counted in
`Splits.cleaning` so that a reported score says exactly what it was computed on, and every
input problem raises `MahaError` naming the file and row, so the CLI prints one line.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import os
import re
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..core.config import DataConfig
from ..core.errors import MahaError
from ..core.files import atomic_path
from ..core.validate import check_input_file

MAX_TEXT_CHARS = 1_000_000
# A field longer than MAX_TEXT_CHARS is rejected by our own check with a clear message; the
# csv limit only has to be above it so that csv does not fail first with a vaguer error.
csv.field_size_limit(max(csv.field_size_limit(), 8 * MAX_TEXT_CHARS))

_MOJIBAKE_RE = re.compile("[\u0400-\u04ff\u2500-\u257f]")
_CP866_RUN_RE = re.compile("[\u0080-\uffff]+")
_DEVANAGARI_RE = re.compile("[\u0900-\u097f]")
_RECORD_END_RE = re.compile(r',[^,\s"]{1,40}\s*$')  # a line ending in ",Label": the end of a CSV record

_SHC = "https://raw.githubusercontent.com/l3cube-pune/MarathiNLP/main/L3Cube-MahaNews/SHC/"
_LPC = "https://raw.githubusercontent.com/l3cube-pune/indic-nlp/main/L3Cube-IndicNews/Marathi/LPC/"
_MAHASENT = "https://raw.githubusercontent.com/l3cube-pune/MarathiNLP/main/L3Cube-MahaSent-MD/MahaSent_MR/"


@dataclass(frozen=True)
class _Named:
    """A dataset the toolkit knows by name: where its files live and what they are called."""

    folder: str
    train_files: tuple[str, ...]  # training source, in order of preference
    test_file: str
    text_col: str
    label_col: str
    base_url: str | None  # None: no public download; the user must pass --data-dir
    dev_file: str | None = None  # the dataset's own validation split, used as dev when present


NAMED: dict[str, _Named] = {
    # SHC_Train is preferred when a user has it; here only Valid exists, so the protocol
    # trains on Valid minus every text that also occurs in Test.
    "mahanews-shc": _Named("mahanews-shc", ("SHC_Train.csv", "SHC_Valid.csv"), "SHC_Test.csv",
                           "Text", "Label", _SHC),
    "mahanews-lpc": _Named("indicnews-marathi-lpc",
                           ("Marathi_LPC_Train.csv", "Marathi_LPC_Valid.csv"),
                           "Marathi_LPC_Test.csv", "text", "labels", _LPC),
    "mahanews-ldc": _Named("mahanews-ldc", ("LDC_Train.csv", "LDC_Valid.csv"), "LDC_Test.csv",
                           "Text", "Label", None),
    # The sentiment track: a whole training split, its own validation file as dev, a clean test file.
    "mahasent-mr": _Named("mahasent-mr", ("MahaSent_MR_Train.csv",), "MahaSent_MR_Test.csv",
                          "marathi_sentence", "label", _MAHASENT, dev_file="MahaSent_MR_Val.csv"),
}


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
            "dataset": self.name,
            "labels": list(self.labels),
            "splits": {"train": one(self.train), "dev": one(self.dev), "test": one(self.test)},
            "cleaning": self.cleaning,
        }


def normalize(text: str) -> str:
    """Whitespace-normalised key used to compare texts (duplicates, train/test overlap)."""
    return " ".join(text.split())


def is_mojibake(text: str) -> bool:
    """True if `text` looks like UTF-8 Devanagari that was decoded as cp866.

    Cyrillic or box-drawing characters are the symptom; a run of them that re-encodes to
    valid UTF-8 Devanagari is the proof. Genuine Cyrillic (a Russian name) is not flagged.
    """
    if not _MOJIBAKE_RE.search(text):
        return False
    for run in _CP866_RUN_RE.findall(text):
        try:
            if _DEVANAGARI_RE.search(run.encode("cp866").decode("utf-8")):
                return True
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
    return False


_COLUMN_OPTIONS = "--text-col/--label-col"


def _find_col(header: list[str], want: str, path: Path, options: str) -> int:
    """Index of column `want` in `header`, compared case-insensitively (users mistype case); a missing one
    names the `options` that set the columns of this file."""
    lowered = [h.strip().lower() for h in header]
    if want.strip().lower() not in lowered:
        raise MahaError(f"{path}: no column '{want}' (columns: {', '.join(header) or 'none'}); pass {options}")
    return lowered.index(want.strip().lower())


def _read_rows(path: Path, text_col: str, label_col: str | None,
               options: str = _COLUMN_OPTIONS) -> tuple[list[tuple[int, str, str]], dict]:
    """Parse `path` into (row number, text, label) triples and drop-counts.

    Row numbers are CSV records with the header as row 1, so a message points at the record
    a user sees in a spreadsheet. Bytes are decoded with surrogateescape so that a non-UTF-8
    byte can be pinned to its row instead of failing the whole file anonymously.
    """
    check_input_file(path, "CSV file")
    raw = path.read_bytes()
    _check_encoding(path, raw)
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise MahaError(f"{path}: empty file (no header line)") from None
    except csv.Error as e:
        raise MahaError(f"{path}, row 1: bad CSV ({e})") from None
    ti = _find_col(header, text_col, path, options)
    li = ti if label_col is None else _find_col(header, label_col, path, options)  # unlabelled: texts only
    # Header repeats: the label column holds a column name. The LPC files repeat SHC's header
    # ("Text,Label") with an empty text under their own "labels" header, hence the fixed names.
    header_labels = {header[li].strip().lower(), "label", "labels"}
    stats = {"file": str(path), "rows_read": 0, "header_rows_dropped": 0, "empty_dropped": 0,
             "empty_label_dropped": 0, "mojibake_rows": 0}
    rows: list[tuple[int, str, str]] = []
    multiline: list[tuple[int, str]] = []  # judged once the file's labels are known (_looks_merged)
    row = 1  # the header's; after the loop, the last row read
    for row, rec in _records(path, reader, first=2):
        stats["rows_read"] += 1
        if not rec or all(not f.strip() for f in rec):  # blank line
            stats["empty_dropped"] += 1
            continue
        if len(rec) <= max(ti, li):
            if "\n" in rec[-1] and _quote_left_open(text):  # the rest of the file, swallowed by an open quote
                raise _merged(path, row)
            raise MahaError(f"{path}, row {row}: {len(rec)} field(s), expected at least {max(ti, li) + 1}")
        t, lab = rec[ti], (rec[li].strip() if label_col else "-")
        if "\n" in t:
            multiline.append((row, t))
        if len(t) > MAX_TEXT_CHARS:  # a quote that swallowed the file: say so (the file's labels are not known yet)
            if "\n" in t and _looks_merged(t, len(header), li, set()):
                raise _merged(path, row)
            raise MahaError(f"{path}, row {row}: text of {len(t)} characters (limit {MAX_TEXT_CHARS})")
        repeated_header = lab.lower() in header_labels if label_col else t.strip() == header[ti].strip()
        if repeated_header:  # a header line repeated inside the data
            stats["header_rows_dropped"] += 1
        elif not t.strip():
            stats["empty_dropped"] += 1
        elif not lab:
            stats["empty_label_dropped"] += 1
        else:
            stats["mojibake_rows"] += is_mojibake(t)
            rows.append((row, t, lab))
    labels = {lab for _, _, lab in rows} if label_col else set()
    for at, t in multiline:
        if _looks_merged(t, len(header), li, labels) or (at == row and _quote_left_open(text)):
            raise _merged(path, at)
    if label_col is not None:
        _check_text_like_labels(path, rows)
    return rows, stats


def _records(path: Path, reader, first: int) -> Iterator[tuple[int, list[str]]]:
    """A CSV reader's records numbered from `first`; a record the csv module cannot parse, or one holding bytes that
    are not UTF-8 (decoded with surrogateescape), stops the read with one line naming the row."""
    for row, rec in enumerate(_parsed(path, reader, first), start=first):
        if any("\udc80" <= ch <= "\udcff" for f in rec for ch in f):
            raise MahaError(f"{path}, row {row}: bytes that are not UTF-8; re-save the file as UTF-8")
        yield row, rec


def _parsed(path: Path, reader, first: int) -> Iterator[list[str]]:
    row = first
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise MahaError(f"{path}, row {row}: bad CSV ({e})") from None
        row += 1


def _merged(path: Path, row: int) -> MahaError:
    return MahaError(f"{path}, row {row}: a text spans several lines that look like records of their own "
                     f"(an unbalanced quote merged them); fix the quoting at or above this row")


def _looks_merged(text: str, fields: int, label_at: int, labels: set[str]) -> bool:
    """A multi-line text with an inner line that reads as a record of the file: merged records.

    Judged by what a merge leaves behind, not by a quote: properly quoted fields may hold line breaks
    and quotes (written `""`), but an unbalanced quote swallows whole lines of the file, each one
    `fields` wide with a label the file uses at `label_at` (`labels` empty, for unlabelled files or before
    the labels are known: any line of that width ending like a record, ",Label"). A quote left open until
    the end of the file is `_quote_left_open`'s.
    """
    for line in text.split("\n")[:-1]:  # the last line ends the field: a record's end is its own
        rec = next(csv.reader([line]), [])
        if len(rec) == fields and (rec[label_at] in labels if labels else _RECORD_END_RE.search(line)):
            return True
    return False


def _quote_left_open(text: str) -> bool:
    """The file ends inside a quoted field: a quote was opened and never closed (the last record swallowed
    the rest of the file). Only the strict reader says so; the lenient one returns the rest as one text."""
    try:
        for _ in csv.reader(io.StringIO(text, newline=""), strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _check_encoding(path: Path, raw: bytes) -> None:
    """Name UTF-16/32 files (by their byte-order mark, or NUL bytes without one) instead of misreading them."""
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if raw.startswith(bom):
            raise MahaError(f"{path}: this file is {name} (byte-order mark); re-save it as UTF-8")
    if b"\x00" in raw[:4096]:
        raise MahaError(f"{path}: NUL bytes (a UTF-16 file without byte-order mark?); re-save it as UTF-8")


def _check_text_like_labels(path: Path, rows: list[tuple[int, str, str]]) -> None:
    """A label seen once that reads like text is a record swallowed by an unbalanced quote, not a class."""
    counts = Counter(lab for _, _, lab in rows)
    if len(counts) < 2:
        return
    for row, _, lab in rows:
        if counts[lab] == 1 and (len(lab) > 40 or len(lab.split()) > 3):
            shown = lab if len(lab) <= 40 else lab[:37] + "..."
            raise MahaError(f"{path}, row {row}: label '{shown}' occurs once and looks like text; "
                            f"an unquoted comma in a text, or records merged by an unbalanced quote above this row?")


def read_labeled_csv(path: Path, text_col: str, label_col: str,
                     options: str = _COLUMN_OPTIONS) -> tuple[list[str], list[str], dict]:
    """Texts, label names and drop-counts of one CSV (header repeats and empty texts removed); `options`:
    what sets the columns of this file, named when one is missing."""
    rows, stats = _read_rows(Path(path), text_col, label_col, options)
    stats["final_rows"] = len(rows)
    return [r[1] for r in rows], [r[2] for r in rows], stats


def read_text_column(path: Path, text_col: str, options: str = _COLUMN_OPTIONS) -> list[str]:
    """The non-empty texts of one column of an unlabelled CSV (for prediction), same checks as above."""
    rows, _ = _read_rows(Path(path), text_col, None, options)
    return [r[1] for r in rows]


# ---------------------------------------------------------------------------- labels

def read_label_map(path: str | Path) -> dict[str, str]:
    """The `from -> to` renames of a label-map CSV: two columns per row, a first row reading `from,to` is a
    header (any other first row is a mapping), blank lines skipped, each `from` once.

    Why a file and not an option per label: a dataset's splits can disagree on many spellings at once (a
    public emotion set: `sadness` in validation, `Sadness` in training), and the file is recorded with the
    model, so every later command renames the same way. Renames are applied once, not chained.
    """
    path = check_input_file(path, "label map")
    raw = path.read_bytes()
    _check_encoding(path, raw)
    reader = csv.reader(io.StringIO(raw.decode("utf-8-sig", errors="surrogateescape"), newline=""))
    mapping: dict[str, str] = {}
    first_row: dict[str, int] = {}
    for row, rec in _records(path, reader, first=1):
        if not rec or all(not f.strip() for f in rec):
            continue
        if len(rec) != 2:
            raise MahaError(f"{path}, row {row}: {len(rec)} column(s); a label map has two per row: from,to")
        source, target = rec[0].strip(), rec[1].strip()
        if row == 1 and (source.lower(), target.lower()) == ("from", "to"):
            continue
        if not source or not target:
            raise MahaError(f"{path}, row {row}: an empty label; each row renames one label: from,to")
        if source in mapping:
            raise MahaError(f"{path}, row {row}: label '{source}' is mapped again (first at row {first_row[source]})")
        mapping[source], first_row[source] = target, row
    if not mapping:
        raise MahaError(f"{path}: no mappings in the label map (expected rows from,to)")
    return mapping


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


# ---------------------------------------------------------------------------- file lookup

def _download(url: str, dest: Path) -> None:
    """Fetch `url` to `dest` atomically so a broken fetch leaves no half file."""
    with atomic_path(dest) as tmp, tmp.open("wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
        while chunk := resp.read(1 << 20):
            out.write(chunk)


def search_roots() -> list[Path]:
    """Folders that may hold dataset subfolders, in lookup order after an explicit --data-dir."""
    roots = []
    if env := os.environ.get("MAHACOMPRESS_DATA"):
        roots.append(Path(env))
    roots.append((Path(__file__).resolve().parents[3] / ".." / "shared" / "data").resolve())
    roots.append((Path.cwd() / ".." / "shared" / "data").resolve())
    return roots


def _cache_dir(dataset: str) -> Path:
    return Path.home() / ".cache" / "mahacompress" / dataset


def _named_in(folder: Path, spec: _Named) -> dict[str, Path] | None:
    """The spec's files in `folder`, preferring a Train file over Valid, or None if incomplete."""
    test = folder / spec.test_file
    if not test.is_file():
        return None
    dev = {"dev": folder / spec.dev_file} if spec.dev_file and (folder / spec.dev_file).is_file() else {}
    for name in spec.train_files:
        if (folder / name).is_file():
            return {"train": folder / name, "test": test, **dev}
    return None


def _fetch_named(dataset: str, spec: _Named) -> dict[str, Path]:
    """Download a named dataset into the user cache (last resort: nothing local was found)."""
    if spec.base_url is None:
        raise MahaError(f"{dataset}: files not found locally and no public download is known; "
                        f"pass --data-dir (folder holding {spec.test_file})")
    cache = _cache_dir(dataset)
    for name in filter(None, (spec.test_file, spec.dev_file)):
        if not (cache / name).is_file():
            try:
                _download(spec.base_url + name, cache / name)
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise MahaError(f"could not download {spec.base_url + name} ({e}); "
                                f"pass --data-dir with the CSV files") from None
    last_err = ""
    for name in spec.train_files:  # Train may not be published: fall back to Valid
        url = spec.base_url + name
        try:
            _download(url, cache / name)
            return _named_in(cache, spec)
        except (urllib.error.URLError, OSError, ValueError) as e:
            last_err = f"{url} ({e})"
    raise MahaError(f"could not download {last_err}; pass --data-dir with the CSV files")


def _folder_files(folder: Path) -> dict[str, Path]:
    """Train/test CSVs of an arbitrary folder: 'train' in the name, else 'valid'/'dev'; 'test'.

    When there is a train file *and* a validation file ('valid'/'val'/'dev'), the latter is returned
    as "dev": the folder's own development split is used instead of one carved out of train.
    """
    csvs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv" and p.is_file())

    def pick(keys: tuple[str, ...], role: str) -> Path | None:
        for key in keys:
            hits = [p for p in csvs if key in p.name.lower()]
            if len(hits) > 1:
                raise MahaError(f"{folder}: several {role} CSVs match '{key}': "
                                f"{', '.join(p.name for p in hits)}; keep one or pass another folder")
            if hits:
                return hits[0]
        return None

    train, test = pick(("train", "valid", "dev"), "training"), pick(("test",), "test")
    if train is None or test is None:
        missing = "training CSV (name containing train/valid/dev)" if train is None else \
            "test CSV (name containing test)"
        raise MahaError(f"{folder}: no {missing}; CSVs here: {', '.join(p.name for p in csvs) or 'none'}")
    files = {"train": train, "test": test}
    if "train" in train.name.lower() and (dev := pick(("valid", "val", "dev"), "validation")) is not None:
        files["dev"] = dev
    return files


def resolve_files(dataset: str, data_dir: str | None = None) -> dict[str, Path]:
    """Find {"train": path, "test": path}: --data-dir, $MAHACOMPRESS_DATA, ../shared/data, cache, download.

    An explicit --data-dir is final (a wrong path should fail, not silently download). It may
    be the dataset's folder itself or a folder holding dataset subfolders.
    """
    spec = NAMED.get(dataset)
    if spec is None:
        if Path(dataset).is_dir():
            return _folder_files(Path(dataset))
        if Path(dataset).exists():
            raise MahaError(f"{dataset}: a file, not a folder of CSVs; pass the folder that holds it")
        if data_dir is None and ("/" in dataset or dataset.startswith(".")):
            raise MahaError(f"{dataset}: no such folder of CSVs")
        if data_dir is None:
            raise MahaError(f"unknown dataset '{dataset}': not a folder and not one of "
                            f"{', '.join(NAMED)}; pass a folder of CSVs or --data-dir")
        d = Path(data_dir)
        if not d.is_dir():
            raise MahaError(f"{d}: data folder not found")
        return _folder_files(d / dataset if (d / dataset).is_dir() else d)
    if data_dir is not None:
        d = Path(data_dir)
        for folder in (d, d / spec.folder):
            if found := _named_in(folder, spec):
                return found
        raise MahaError(f"{d}: no {spec.test_file} with {' or '.join(spec.train_files)} "
                        f"(looked in {d} and {d / spec.folder})")
    for root in search_roots():
        if found := _named_in(root / spec.folder, spec):
            return found
    if found := _named_in(_cache_dir(dataset), spec):
        return found
    return _fetch_named(dataset, spec)


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
    kept, picked = train_test_split(rest, test_size=n_pick, random_state=seed,
                                    stratify=strat if ok else None)
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

    tr_rows, tr_stats = _read_rows(files["train"], text_col, label_col)
    te_rows, te_stats = _read_rows(files["test"], text_col, label_col)
    dv_rows, dv_stats = _read_rows(files["dev"], text_col, label_col) if "dev" in files else ([], {})
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
        raise MahaError(f"{files['train']}: max_train_rows {cfg.max_train_rows} is more than the {len(tr_idx)} training "
                        f"rows left after cleaning{' and the dev split' if dev_idx else ''}; lower the cap or drop it")
    if cfg.max_train_rows is not None and cfg.max_train_rows < len(tr_idx):
        # Pick the rows to drop, so the subsample is `kept` and keeps singleton classes.
        sub_y = [y[i] for i in tr_idx]
        keep, _ = _stratified_pick(sub_y, len(tr_idx) - int(cfg.max_train_rows), cfg.seed)
        tr_idx = [tr_idx[i] for i in keep]

    cleaning = {
        "files": {role: str(path) for role, path in files.items()},
        "train_source": tr_stats,
        "test": te_stats,
        "dev_source": dev_source,
        **({"dev": dv_stats} if dv_rows else {}),
        "dev_fraction": cfg.dev_fraction,
        "seed": cfg.seed,
        "dedup_test": cfg.dedup_test,
        "max_train_rows": cfg.max_train_rows,
        "label_map": cfg.label_map,
        "fold_label_case": cfg.fold_label_case,
        "labels_renamed": renames,
        "labels_without_training_rows": starved,
        "notes": ["mojibake_rows (Devanagari decoded as cp866) are counted and kept, not repaired",
                  "test keeps internal duplicates" if not cfg.dedup_test else "test de-duplicated",
                  "duplicates and train/test overlap compared after whitespace normalisation"]
        + [f"label '{n}' has no training rows left after cleaning (every copy was a duplicate, "
           f"conflicting or also in the test file): the model cannot predict it" for n in starved],
    }
    return Splits(name=name, labels=label_names, train=_subset(texts, y, tr_idx),
                  dev=TextSet([t for _, t, _ in dv_rows], [ids[lab] for _, _, lab in dv_rows]) if dv_rows
                  else _subset(texts, y, dev_idx),
                  test=TextSet([t for _, t, _ in te_rows], [ids[lab] for _, _, lab in te_rows]),
                  cleaning=cleaning)


__all__ = ["TextSet", "Splits", "resolve_files", "load_splits", "read_labeled_csv", "normalize",
           "is_mojibake", "NAMED", "MAX_TEXT_CHARS", "read_label_map", "check_label_map_targets"]
