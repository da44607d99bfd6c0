"""Read one labelled (or unlabelled) CSV: its encoding, columns and records, cleaned and counted; label-map files.

Why this module is careful: the public MahaNews/IndicNews files carry measured defects
(repeated header lines, empty texts, cp866 mojibake, records merged by an unbalanced quote; see
shared/data/README.md). Every dropped row is counted in the stats a reader returns, and every
input problem raises `MahaError` naming the file and row, so the CLI prints one line.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..core.errors import MahaError
from ..core.validate import check_input_file

MAX_TEXT_CHARS = 1_000_000
# A field longer than MAX_TEXT_CHARS is rejected by our own check with a clear message; the
# csv limit only has to be above it so that csv does not fail first with a vaguer error.
csv.field_size_limit(max(csv.field_size_limit(), 8 * MAX_TEXT_CHARS))

_MOJIBAKE_RE = re.compile("[\u0400-\u04ff\u2500-\u257f]")
_CP866_RUN_RE = re.compile("[\u0080-\uffff]+")
_DEVANAGARI_RE = re.compile("[\u0900-\u097f]")
_RECORD_END_RE = re.compile(r',[^,\s"]{1,40}\s*$')  # a line ending in ",Label": the end of a CSV record


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


def read_rows(path: Path, text_col: str, label_col: str | None,
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
    stats = {
        "file": str(path), "rows_read": 0, "header_rows_dropped": 0, "empty_dropped": 0, "empty_label_dropped": 0,
        "mojibake_rows": 0
    }
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
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
                      (codecs.BOM_UTF16_BE, "UTF-16"),
                      ):
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
    rows, stats = read_rows(Path(path), text_col, label_col, options)
    stats["final_rows"] = len(rows)
    return [r[1] for r in rows], [r[2] for r in rows], stats


def read_text_column(path: Path, text_col: str, options: str = _COLUMN_OPTIONS) -> list[str]:
    """The non-empty texts of one column of an unlabelled CSV (for prediction), same checks as above."""
    rows, _ = read_rows(Path(path), text_col, None, options)
    return [r[1] for r in rows]


# ---------------------------------------------------------------------------- label maps


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


__all__ = [
    "read_rows", "read_labeled_csv", "read_text_column", "read_label_map", "normalize", "is_mojibake", "MAX_TEXT_CHARS"
]
