"""The CLI, as torchrun starts it in tests/test_multiprocess.py, recording what each process did.

Not a test module (no `test_` prefix): `python tests/mp_worker.py finetune ...` or
`torchrun --nproc_per_node 2 tests/mp_worker.py finetune ...`. Each process writes
`$MP_RECORD/rank<N>.json`: the training rows it took at each step and the folders it saved.
With `MP_OOM_RANK=N`, process N runs out of memory at its second step.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from mahacompress.cli import app as cli
from mahacompress.models import load as models
from mahacompress.train import loop as train


def main() -> None:
    rank = int(os.environ.get("RANK", 0))
    record: dict[str, list] = {"rows": [], "saved": []}
    local_rows, save_classifier = train.local_rows, models.save_classifier

    def rows(batch, process, processes):
        if str(rank) == os.environ.get("MP_OOM_RANK") and len(record["rows"]) == 1:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        record["rows"].append(local_rows(batch, process, processes).tolist())
        return record["rows"][-1]

    def save(model, tokenizer, out_dir, info):
        record["saved"].append(str(out_dir))
        save_classifier(model, tokenizer, out_dir, info)

    train.local_rows, models.save_classifier = rows, save
    sys.argv = ["mahacompress", *sys.argv[1:]]
    try:
        cli.main()
    finally:
        out = Path(os.environ["MP_RECORD"]) / f"rank{rank}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record))


if __name__ == "__main__":
    main()
