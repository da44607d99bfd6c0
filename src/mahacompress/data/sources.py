"""Where a dataset's CSV files are: a named dataset's (`NAMED`) found locally or downloaded, or a folder's own.

Why one place: every command names data the same way (a known name, a folder, `--data-dir`), and the lookup
order (an explicit `--data-dir` is final; then `$MAHACOMPRESS_DATA`, `../shared/data`, the user cache, and a
download last) decides which files a score was computed on.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import MahaError
from ..core.files import atomic_path

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
    "mahanews-shc": _Named("mahanews-shc", ("SHC_Train.csv", "SHC_Valid.csv"), "SHC_Test.csv", "Text", "Label", _SHC),
    "mahanews-lpc": _Named("indicnews-marathi-lpc", ("Marathi_LPC_Train.csv", "Marathi_LPC_Valid.csv"),
                           "Marathi_LPC_Test.csv", "text", "labels", _LPC),
    "mahanews-ldc": _Named("mahanews-ldc", ("LDC_Train.csv", "LDC_Valid.csv"), "LDC_Test.csv", "Text", "Label", None),
    # The sentiment track: a whole training split, its own validation file as dev, a clean test file.
    "mahasent-mr": _Named("mahasent-mr", ("MahaSent_MR_Train.csv", ), "MahaSent_MR_Test.csv", "marathi_sentence",
                          "label", _MAHASENT, dev_file="MahaSent_MR_Val.csv")
}


def download(url: str, dest: Path) -> None:
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
                download(spec.base_url + name, cache / name)
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise MahaError(
                    f"could not download {spec.base_url + name} ({e}); pass --data-dir with the CSV files") from None
    last_err = ""
    for name in spec.train_files:  # Train may not be published: fall back to Valid
        url = spec.base_url + name
        try:
            download(url, cache / name)
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

    train, test = pick(("train", "valid", "dev"), "training"), pick(("test", ), "test")
    if train is None or test is None:
        missing = ("training CSV (name containing train/valid/dev)"
                   if train is None else "test CSV (name containing test)")
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
        raise MahaError(
            f"{d}: no {spec.test_file} with {' or '.join(spec.train_files)} (looked in {d} and {d / spec.folder})")
    for root in search_roots():
        if found := _named_in(root / spec.folder, spec):
            return found
    if found := _named_in(_cache_dir(dataset), spec):
        return found
    return _fetch_named(dataset, spec)


__all__ = ["NAMED", "resolve_files", "search_roots", "download"]
