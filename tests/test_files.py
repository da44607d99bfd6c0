"""Outputs cannot destroy user data: only a previous output of the same kind is replaced, and crash-safely.

The folder-writing commands refuse `.`, the input model, a parent of it and a folder holding the user's
files before any work (one line, exit 2, every file kept); they replace a previous output of their own
kind. The swap in `files.staged_dir` renames the old folder aside before renaming the new one in, so a
failure or a crash between the two renames leaves one complete folder (tests/bad_inputs.py has the
refusals of each command beside the rest of the bad-input corpus). One writer per output: while a run
holds an output's lock (`files.output_lock`), every command writing it is refused in one line.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs import MODEL_COMMANDS, make_template
from typer.testing import CliRunner

from mahacompress.cli.app import app
from mahacompress.core.errors import MahaError
from mahacompress.core.files import aside_name, output_lock, staged_dir

WRITERS = ("finetune", "distill", "prune", "trim", "export", "reproduce")
# what makes each command quick on the template's tiny model
_TRAIN = ["--epochs", "1", "--batch-size", "16", "--max-length", "32", "--max-train-rows", "24"]
QUICK = {"finetune": _TRAIN, "distill": _TRAIN, "prune": _TRAIN, "export": ["--backend", "onnx"], "trim": []}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return make_template(tmp_path_factory.mktemp("outputs") / "template")


def _argv(cmd: str, root: Path, out: str) -> list[str]:
    subs = {"{M}": str(root / "model"), "{D}": str(root / "data"), "{P}": str(root / "tiny.yaml"), "{O}": out}
    argv = []
    for arg in MODEL_COMMANDS[cmd]:
        for key, value in subs.items():
            arg = arg.replace(key, value)
        argv.append(arg)
    return argv


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _user_files(folder: Path) -> dict[str, str]:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    files = {"notes.txt": "मराठी टिपा\n", "sub/y.txt": "y\n"}
    for rel, text in files.items():
        (folder / rel).write_text(text, encoding="utf-8")
    return files


@pytest.mark.parametrize("cmd", WRITERS)
def test_out_dot_is_refused_and_the_folder_kept(cmd, template, tmp_path, monkeypatch):
    root = tmp_path / "ws"
    shutil.copytree(template, root)
    files = _user_files(root / "mine")
    monkeypatch.chdir(root / "mine")
    line = _one_error_line(CliRunner().invoke(app, _argv(cmd, root, ".")))
    assert "is the current folder" in line
    assert {rel: (root / "mine" / rel).read_text(encoding="utf-8") for rel in files} == files
    assert sorted(p.name for p in (root / "mine").iterdir()) == ["notes.txt", "sub"]


def test_build_e5_into_the_current_folder_is_refused(tmp_path, monkeypatch):
    _user_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert "is the current folder" in _one_error_line(CliRunner().invoke(app, ["models", "build-e5", "."]))
    assert (tmp_path / "notes.txt").is_file() and (tmp_path / "sub" / "y.txt").is_file()


@pytest.mark.parametrize(
    "cmd", [pytest.param(c, marks=pytest.mark.slow) if c in ("finetune", "distill", "prune") else c
            for c in QUICK])  # the three that train are slow
def test_a_previous_output_of_the_same_kind_is_replaced(cmd, template, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(template, root)
    argv = _argv(cmd, root, str(root / "out")) + QUICK[cmd]
    first = CliRunner().invoke(app, argv)
    assert first.exit_code == 0, first.output
    (root / "out" / "stale.json").write_text("{}\n")  # a name the toolkit could have written: not the user's
    again = CliRunner().invoke(app, argv)
    assert again.exit_code == 0, again.output
    assert not (root / "out" / "stale.json").exists()
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # no aside or staged folder


def test_a_previous_output_of_another_kind_is_refused(template, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(template, root)
    shutil.copytree(root / "model", root / "finetuned")  # holds training.json, not trim.json
    line = _one_error_line(CliRunner().invoke(app, _argv("trim", root, str(root / "finetuned"))))
    assert "finetuned: holds files but no trim.json" in line
    assert (root / "finetuned" / "training.json").is_file()


# ---------------------------------------------------------------------------- the swap itself


def _previous(out: Path) -> None:
    out.mkdir()
    (out / "trim.json").write_text('{"old": true}')
    (out / "model.safetensors").write_text("old weights")


def _fill(tmp: Path) -> None:
    (tmp / "trim.json").write_text('{"new": true}')
    (tmp / "model.safetensors").write_text("new weights")


def _whole(folder: Path) -> str:
    """Which complete folder this is ("old" or "new"), failing on a partial one."""
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["model.safetensors", "trim.json"], names
    return (folder / "model.safetensors").read_text().split()[0]


def test_staged_dir_replaces_a_previous_output(tmp_path):
    _previous(tmp_path / "out")
    with staged_dir(tmp_path / "out", "trim.json") as tmp:
        _fill(tmp)
    assert _whole(tmp_path / "out") == "new" and os.listdir(tmp_path) == ["out"]


def test_staged_dir_refuses_a_folder_without_the_marker(tmp_path):
    files = _user_files(tmp_path / "out")
    with pytest.raises(MahaError, match="holds no trim.json"):
        with staged_dir(tmp_path / "out", "trim.json") as tmp:
            _fill(tmp)
    assert {rel: (tmp_path / "out" / rel).read_text(encoding="utf-8") for rel in files} == files
    assert os.listdir(tmp_path) == ["out"]


def _failing_second_rename(monkeypatch, error: BaseException) -> None:
    """os.rename works once (the old folder goes aside), then fails as the new one is renamed in."""
    real, calls = os.rename, []

    def rename(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise error
        real(src, dst)

    monkeypatch.setattr(os, "rename", rename)


def test_a_failed_rename_between_the_two_puts_the_old_folder_back(tmp_path, monkeypatch):
    _previous(tmp_path / "out")
    _failing_second_rename(monkeypatch, OSError(5, "Input/output error"))
    with pytest.raises(OSError):
        with staged_dir(tmp_path / "out", "trim.json") as tmp:
            _fill(tmp)
    assert _whole(tmp_path / "out") == "old" and os.listdir(tmp_path) == ["out"]


class Crash(BaseException):
    """The process dying between the renames (nothing after it runs but `finally` blocks)."""


def test_a_crash_between_the_renames_leaves_the_old_folder_whole_and_the_next_run_recovers(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _previous(out)
    _failing_second_rename(monkeypatch, Crash())
    with pytest.raises(Crash):
        with staged_dir(out, "trim.json") as tmp:
            _fill(tmp)
    monkeypatch.undo()
    assert not out.exists() and _whole(aside_name(out)) == "old"  # one complete folder, under the name we gave it
    with staged_dir(out, "trim.json") as tmp:  # the next run puts it back, then replaces it
        assert _whole(out) == "old"
        _fill(tmp)
    assert _whole(out) == "new" and os.listdir(tmp_path) == ["out"]


def test_a_crash_after_the_swap_leaves_the_new_folder_and_the_aside_one_goes_next_time(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _previous(out)
    real = shutil.rmtree

    def crash(path, *args, **kwargs):
        if Path(path) == aside_name(out):
            raise Crash()
        real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", crash)
    with pytest.raises(Crash):
        with staged_dir(out, "trim.json") as tmp:
            _fill(tmp)
    monkeypatch.undo()
    assert _whole(out) == "new" and _whole(aside_name(out)) == "old"
    with staged_dir(out, "trim.json") as tmp:
        _fill(tmp)
    assert _whole(out) == "new" and os.listdir(tmp_path) == ["out"]


# ---------------------------------------------------------------------------- one writer per output

SRC = str(Path(__file__).resolve().parents[1] / "src")
_HOLD = ("import sys, time\nfrom mahacompress.core.files import output_lock\n"
         "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


@pytest.fixture
def holder():
    """Start another process that holds an output's lock, as a running command does, until it is killed."""
    procs: list[subprocess.Popen] = []

    def start(out: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": SRC})
        procs.append(proc)
        assert proc.stdout.readline() == "held\n"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _contents(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


@pytest.mark.slow
def test_a_second_run_into_the_same_output_is_refused_until_the_first_dies(template, tmp_path, holder):
    root = tmp_path / "ws"
    shutil.copytree(template, root)
    out = root / "out"
    _previous(out)  # a previous trim output: the refused run must neither replace nor delete it
    first = holder(out)
    before = _contents(root)
    line = _one_error_line(CliRunner().invoke(app, _argv("trim", root, str(out))))
    assert line == (f"error: {out}: another mahacompress run (pid {first.pid}) is writing it; wait for it to finish "
                    f"or choose another output")
    assert _contents(root) == before
    other = CliRunner().invoke(app, _argv("trim", root, str(root / "other")))  # another output: not blocked
    assert other.exit_code == 0, other.output
    first.kill()  # SIGKILL: no `finally` runs, the OS releases the lock; its lock file stays until the next run
    first.wait()
    again = CliRunner().invoke(app, _argv("trim", root, str(out)))
    assert again.exit_code == 0, again.output
    assert json.loads((out / "trim.json").read_text())["pieces_kept"] > 0
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # no lock file left


def _locked_argv(cmd: str, root: Path) -> tuple[list[str], Path]:
    """`cmd`'s arguments on the workspace and the output it writes (report: a grid folder holding results.json)."""
    if cmd == "models build-e5":
        return ["models", "build-e5", str(root / "out")], root / "out"
    if cmd == "report":
        (root / "out").mkdir()
        (root / "out" / "results.json").write_text("{}")
        return ["report", "--out", str(root / "out")], root / "out"
    return _argv(cmd, root, str(root / "out")), root / "out" / ("metrics.json" if cmd == "compare" else "")


@pytest.mark.parametrize("cmd", [*WRITERS, "compare", "optimize", "models build-e5", "report"])
def test_every_command_that_writes_takes_its_outputs_lock_before_any_work(cmd, template, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(template, root)
    argv, out = _locked_argv(cmd, root)
    before = _contents(root)
    with output_lock(out):  # held here, as another process would: flock refuses a second open file too
        held = _contents(root)
        line = _one_error_line(CliRunner().invoke(app, argv))
        assert _contents(root) == held  # the refused command wrote and deleted nothing
    assert line.startswith(f"error: {out}: another mahacompress run (pid {os.getpid()}) is writing it")
    assert _contents(root) == before  # the lock file (and compare's out/, made for it) went with the block


def test_only_the_main_process_of_a_multi_process_run_locks(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with output_lock(out):
        monkeypatch.setenv("RANK", "1")  # torchrun's process 1 of the run that holds it: process 0 writes, not it
        with output_lock(out):
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(MahaError, match="another mahacompress run"):
            with output_lock(out):
                pass
    assert os.listdir(tmp_path) == []


def test_a_filesystem_without_file_locks_is_one_line(tmp_path, monkeypatch):

    def no_flock(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with pytest.raises(MahaError, match="out: the filesystem there has no file locks"):
        with output_lock(tmp_path / "out"):
            pass
    assert not (tmp_path / "out").exists()
