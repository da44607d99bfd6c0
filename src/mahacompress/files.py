"""Atomic outputs: a crash, a kill or a full disk never leaves a half-written result file or model folder.

Every file the toolkit writes goes through `atomic_path` (or `staged_dir` for a folder): it is filled
under a hidden temporary name beside its destination and renamed into place only when complete. The
rename keeps the temporary file's mode, and `mkstemp`/`mkdtemp` create 0600/0700 entries; so outputs are
given the mode a plain `open()` would have given them under the user's umask, and others can read them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def normal_mode(directory: bool = False) -> int:
    """The mode `open()` (0666) or `mkdir()` (0777) would give under the current umask."""
    return (0o777 if directory else 0o666) & ~_umask()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that infer a format work).

    On success it is given the normal mode and renamed over `path`; on any error (ENOSPC included)
    it is removed and `path` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, normal_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    """Write text atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: object) -> None:
    """Atomic JSON (indented, UTF-8 kept readable)."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces `out_dir`, on error it is removed."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(normal_mode(directory=True))
    try:
        yield tmp
        # what libraries wrote inside keeps their modes too (transformers writes weight shards through a
        # private 0600 temporary file): give every entry the mode a plain open()/mkdir() would have
        for entry in tmp.rglob("*"):
            if not entry.is_symlink():
                entry.chmod(normal_mode(directory=entry.is_dir()))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
