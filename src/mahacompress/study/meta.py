"""What `results.json` says beside its rows: the machine line and the package versions its `meta` records (so a
reader knows where the figures were measured), and the caveats a report prints above them.
"""

from __future__ import annotations

import os
from importlib import metadata

import torch


def machine() -> str:
    """CPU model with its instruction sets (what bf16/int8 rows can use), core count and torch threads
    (plus the GPU when one is used)."""
    from ..core.hardware import describe

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{describe()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads{gpu}"


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def caveats(rows: list[dict], unlearnable: list[str]) -> list[str]:
    """The notes on reading `rows`: classes no model can predict, estimated energy, rows not run, timings' scope."""
    notes = []
    if unlearnable:
        notes.append(f"No training row of {', '.join(unlearnable)} is left after cleaning, so no model can "
                     "predict it: the 'w/o untrained classes' columns leave its test rows out.")
    if any(r.get("energy_measured") is False for r in rows):
        notes.append("Energy is CodeCarbon's estimate (no hardware power counters readable here), not a "
                     "measurement; CO2 uses the configured country's grid intensity.")
    for status, what in (("failed", "could not run"),
                         ("skipped",
                          "were not run (this machine cannot run them, or the teacher cannot give them their shape)"),
                         ):
        names = [r["name"] for r in rows if r.get("status") == status]
        if names:
            notes.append(f"Rows that {what} stay in the table with their reason: {', '.join(names)}.")
    notes.append("Timings are ratios from one process on this machine; absolute milliseconds depend on it.")
    return notes
