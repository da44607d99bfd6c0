"""Training progress for a log file: the heartbeat line a run without a terminal prints (a terminal has rich's
live bar)."""

from __future__ import annotations

import time

# Without a terminal (a log file, a CI job) rich shows no live bar: a plain progress line at least this often.
LOG_EVERY_SECONDS = 30.0


class Heartbeat:
    """Progress lines for a log file: step, rate and time left, at most every `LOG_EVERY_SECONDS`.

    A terminal has rich's live bar (which shows the same) and gets none; the rate is this process's own,
    so a resumed run's estimate is not skewed by the steps it skipped.
    """

    def __init__(self, desc: str, total: int, first_step: int, enabled: bool) -> None:
        self.desc, self.total, self.first_step, self.enabled = desc, total, first_step, enabled
        self.started = self.last = time.monotonic()

    def line(self, step: int, loss: float, now: float | None = None) -> str | None:
        """The line to print after `step`, or None when the last one is recent enough."""
        now = time.monotonic() if now is None else now
        if not self.enabled or now - self.last < LOG_EVERY_SECONDS:
            return None
        self.last = now
        rate = (step - self.first_step) / max(now - self.started, 1e-9)
        left = (self.total - step) / rate / 60 if rate > 0 else float("inf")
        return (f"{self.desc}: step {step}/{self.total} ({100 * step / self.total:.0f}%), {rate:.2f} steps/s, "
                f"loss {loss:.3f}, {left:.1f} min left")
