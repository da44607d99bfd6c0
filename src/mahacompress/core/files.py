"""Atomic outputs: a crash, a kill or a full disk never leaves a half-written result file or model folder.

Every file the toolkit writes goes through `atomic_path` (or `staged_dir` for a folder): it is filled
under a hidden temporary name beside its destination and renamed into place only when complete. The
rename keeps the temporary file's mode, and `mkstemp`/`mkdtemp` create 0600/0700 entries; so outputs are
given the mode a plain `open()` would have given them under the user's umask, and others can read them.

A folder is replaced only when it is a previous output of the same kind: it holds that kind's record
(the `*_RECORD` names below). The old folder is renamed aside before the new one is renamed in, so a
crash at any point leaves one complete folder (the aside one is put back or removed by the next run).

One writer per output: a command holds `output_lock` on what it writes while it runs, so a second run into the
same folder or file (another seed, a resumed grid) is refused at once instead of sharing its checkpoints.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import MahaError

# The record each folder-writing command puts in its folder: a folder holding it is a previous output of that kind.
TRAINING_RECORD = "training.json"  # finetune, distill
PRUNING_RECORD = "pruning.json"  # prune (and distill into a pruned teacher)
TRIM_RECORD = "trim.json"
EXPORT_RECORD = "export.json"
RESULTS_RECORD = "results.json"  # the grid's out folder (grown in place, never replaced)
E5_RECORD = "SOURCE.md"  # models build-e5
TFIDF_RECORD = "tfidf.json"  # the grid's tfidf row (baseline.save_tfidf)
SEARCH_RECORD = "search.json"  # optimize's out folder (grown in place; names the teacher and data it searches for)


def cache_root() -> Path:
    """`$MAHACOMPRESS_CACHE`, by default ~/.cache/mahacompress: the one root of everything the toolkit can
    rebuild (teacher logits, the files backends serve), each kind in its own subfolder."""
    return Path(os.environ.get("MAHACOMPRESS_CACHE") or Path.home() / ".cache" / "mahacompress")


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


def aside_name(out_dir: Path) -> Path:
    """Where `staged_dir` parks the previous folder during a swap (hidden, beside it, named by us alone)."""
    return out_dir.with_name(f".{out_dir.name}.old")


def _settle_aside(out_dir: Path, aside: Path) -> None:
    """Finish a swap a crash interrupted: without `out_dir` the aside folder is the complete old one and goes
    back; beside a new `out_dir` it is the replaced one and goes. Only our own aside folder is touched."""
    if not aside.is_dir():
        return
    if out_dir.exists():
        shutil.rmtree(aside)
    else:
        os.rename(aside, out_dir)


@contextmanager
def staged_dir(out_dir: Path, marker: str) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces `out_dir`, on error it is removed.

    An existing `out_dir` is replaced only when it is empty or holds `marker` (the record the caller
    writes): `validate.check_output_dir` refuses other folders before any work, and this refuses them
    again here, so no caller can delete a folder the toolkit did not write.
    """
    out_dir = Path(os.path.abspath(out_dir))  # '..' resolved too: the folder is renamed by its real name
    aside = aside_name(out_dir)
    _settle_aside(out_dir, aside)
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
        _swap_in(tmp, out_dir, aside, marker)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, out_dir: Path, aside: Path, marker: str) -> None:
    """Rename the old folder aside, the new one in, then delete the old: never a moment without a whole folder."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    if not out_dir.is_dir() or not (out_dir / marker).is_file():
        raise MahaError(f"{out_dir}: not replaced: it holds no {marker}, so mahacompress did not write it")
    os.rename(out_dir, aside)
    try:
        os.rename(tmp, out_dir)
    except OSError:
        os.rename(aside, out_dir)
        raise
    shutil.rmtree(aside)


def lock_name(out: Path) -> Path:
    """The file `output_lock` locks for `out`: a hidden sibling named by us alone, as `aside_name`'s folder is."""
    return out.with_name(f".{out.name}.lock")


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold `out`'s one-writer lock while the block runs; while another process holds it, refuse in one line.

    Two runs into one output (a folder or a file) would share its `.work/` checkpoints and leave whichever
    finished last, so the second is refused before any work, naming the first's pid. The lock is the OS's
    (flock, through filelock, timeout 0): a run that dies, even by SIGKILL, holds nothing, and a later run
    into the same output (a resume) takes it. The lock file goes when the block ends, and so do the folders
    made for it that are still empty (a refused run leaves nothing); one a killed run left is taken over by
    the next. Launched with torchrun / accelerate, only process 0 writes (`train.is_main_process`), so it
    alone locks and the other processes of the same run are not refused.
    """
    if int(os.environ.get("RANK", "0")) > 0:
        yield
        return
    path = lock_name(Path(os.path.abspath(out)))
    made = [folder for folder in path.parents if not folder.exists()]  # the nearest first
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0, on_acquired=_write_pid)
    try:
        lock.acquire()
    except Timeout:
        raise MahaError(f"{out}: another mahacompress run{_holder(path)} is writing it; wait for it to finish "
                        f"or choose another output") from None
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
        raise MahaError(f"{out}: the filesystem there has no file locks (flock), so two runs writing it could "
                        f"not be kept apart; choose an output on a local disk") from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # before the unlock: a run that opened this file finds it unlinked and retries
        lock.release()
        for folder in made:
            with suppress(OSError):  # not empty: the output is in it
                folder.rmdir()


def _write_pid(fd: int) -> None:
    """Put our pid in the lock file we now hold (filelock opens it without truncating, so a run it refuses reads
    it; written in place, not renamed in: a new file would be a new, unlocked inode)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _holder(path: Path) -> str:
    """The holder's pid as the refusal shows it, " (pid N)"; empty when unknown (between locking and writing it)."""
    try:
        pid = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
