"""The cubic schedule of movement pruning (Zhu & Gupta 2017; Sanh et al. 2020).

Training is cut into three phases: an initial warm-up with nothing pruned (scores learn which
units matter before any is removed), a cubic ramp that prunes fast while much is left and slowly
near the end, and a final warm-up at the final structure (the model recovers; only there may the
training loop select a "best" checkpoint, because only there is the sparsity fixed).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CubicSchedule:
    """progress(step) rises from 0 to 1; sparsity, threshold and penalty weight all follow it."""

    initial_warmup: float  # fraction of total steps at progress 0
    final_warmup: float  # fraction of total steps at progress 1

    def ramp(self, total_steps: int) -> tuple[int, int]:
        """(first step of the ramp, first step of the final warm-up)."""
        start = int(round(self.initial_warmup * total_steps))
        end = max(start, int(round((1.0 - self.final_warmup) * total_steps)))
        return start, end

    def progress(self, step: int, total_steps: int) -> float:
        start, end = self.ramp(total_steps)
        if step < start:
            return 0.0
        if step >= end:
            return 1.0
        return 1.0 - (1.0 - (step - start) / (end - start))**3

    def final_phase(self, step: int, total_steps: int) -> bool:
        """True from the first step of the final warm-up on."""
        return step >= self.ramp(total_steps)[1]
