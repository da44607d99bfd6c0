"""The processes a training run was launched as (torchrun, accelerate launch, or none): how many, whether this
one writes, and each one's share of a batch.

Why apart from the loop: the steps that save a trained folder (fine-tune, distil, prune, static) and the CLI ask
the same questions (only the main process writes or prints), and they must get the loop's answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from accelerate import PartialState

from ..core.errors import MahaError


def process_count() -> int:
    """How many processes torchrun / accelerate launch started for this run (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def cpu_processes() -> bool:
    """Whether this is one of several processes on a machine without a CUDA GPU.

    Accelerate joins CPU processes (gloo) only when told the run is on CPU; without it, each
    process that torchrun starts would train alone on all the data and write the same folder.
    """
    return process_count() > 1 and not torch.cuda.is_available()


def process_state() -> PartialState:
    """Accelerate's (process-wide) view of the processes this run was launched as."""
    return PartialState(cpu=cpu_processes())


def is_main_process() -> bool:
    """Whether this process writes outputs (the only one when not launched with torchrun / accelerate)."""
    return process_state().is_main_process


def local_rows(batch: np.ndarray, process: int, processes: int) -> np.ndarray:
    """This process's contiguous share of a global batch.

    A batch with fewer rows than processes repeats rows from its start (as Accelerate's
    `even_batches` does), so every process takes part in every step and none waits for ever.

    Not Accelerate's `split_batches` (accelerate 1.x `BatchSamplerShard`): it refuses a global batch that is
    not a multiple of the process count, yields a short batch only when it comes last (the length-bucketed
    order here puts the short one anywhere) and fills the last one with repeated rows that then count twice
    in the loss, so a run on several processes would no longer follow the single-process run's steps
    (tests/test_multiprocess.py checks that it does).
    """
    if len(batch) < processes:
        batch = np.resize(batch, processes)
    return np.array_split(batch, processes)[process]


@contextmanager
def failures_named(rank: int, processes: int, step_of) -> Iterator[None]:
    """Out of memory, or a peer process gone, becomes one line that names the process and the step."""
    where = f"process {rank} of {processes}, " if processes > 1 else ""
    try:
        yield
    except (MemoryError, torch.OutOfMemoryError):
        raise MahaError(f"{where}step {step_of() + 1}: out of memory; use a smaller --batch-size or "
                        f"--max-length (checkpoints so far are kept, no model written)") from None
    except RuntimeError as exc:  # gloo: "Connection closed by peer"; NCCL: a DistBackendError
        gone = isinstance(exc, torch.distributed.DistError) or "closed by peer" in str(exc)
        if processes == 1 or not gone:
            raise
        raise MahaError(
            f"{where}step {step_of() + 1}: another process stopped (its message says why); no model written") from None
