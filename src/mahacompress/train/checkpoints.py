"""Where a training run keeps its state, and what a trained folder records of its data.

`checkpoints_for` is the one `<out>.work/` checkpoint folder every trained folder (fine-tune, distil, prune,
static) fits in, removed once the folder is saved; the loop's checkpoints hold only the trainable state (a frozen
embedding is skipped), each saved atomically; `data_record` is the data configuration a trained folder records,
so trim and export rebuild its training split.

Why a module of its own: the loop (`loop.fit`) reads top to bottom as training; where its state goes and how
it is read back is decided here, once.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from ..core.config import DataConfig
from ..core.errors import MahaError
from ..core.files import atomic_path
from .processes import is_main_process


def atomic_save(obj: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict minus frozen parameters: checkpoints skip the 96M-row frozen embedding (~370 MB)."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    if unexpected or set(missing) - frozen:
        raise MahaError(f"checkpoint does not fit the model (missing {sorted(set(missing) - frozen)[:3]}, "
                        f"unexpected {unexpected[:3]})")


def data_record(data: DataConfig | None) -> dict | None:
    """The data configuration as given (columns, seed, cap, dev fraction, label renames), its folders and
    label map made absolute.

    Written into training.json / pruning.json so that trim and export rebuild the very training split
    later, from any working folder: the summary's dataset name alone is a folder's last component for a
    user's folder of CSVs, which names nothing.
    """
    if data is None:
        return None
    record = asdict(data)
    for key in ("dataset", "data_dir", "label_map"):
        path = Path(record[key]).expanduser() if record[key] else None
        if path is not None and path.exists():
            record[key] = str(path.resolve())
    return record


def work_dir(out_dir: Path) -> Path:
    """Where the checkpoints of an unfinished run that writes `out_dir` live (`checkpoints_for`)."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".work")


@contextmanager
def checkpoints_for(out_dir: Path) -> Iterator[Path]:
    """The checkpoint folder of a run that writes `out_dir`: `<out_dir>.work/`, kept while the run is
    unfinished (so `resume` continues from it, and a crash leaves it) and removed once the block that fits
    and saves has finished without an error. Every trained folder (fine-tune, distil, prune, static) goes
    through here, so where checkpoints live and when they go is decided once."""
    work = work_dir(out_dir)
    yield work
    if is_main_process():
        shutil.rmtree(work, ignore_errors=True)  # the finished folder exists: checkpoints are no longer needed
