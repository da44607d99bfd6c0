"""When a search stops before its end: the user's signals (SIGINT, SIGTERM) and its `--time-budget`.

Why a module of its own: a search runs for tens of minutes to hours, through phases the search does not own (the
teacher's fine-tune and every trial run the one training loop; the shapes and the winner run the runtimes). A
clean stop must reach into all of them, so it is a signal handler that raises `Stopped` wherever the main thread
is; `optimize` catches it at the top, writes the report of what was measured so far and ends with one line saying
how to resume. Nothing is lost by stopping anywhere: every finished step is on disk (the teacher's folder, the
shapes' timing, each trial's record, written atomically) and a trial in training has its loop's checkpoints.

The handlers are installed explicitly, never inherited: a process started in the background by a shell script
(`cmd &`) inherits SIGINT as ignored, and Python then installs no KeyboardInterrupt handler of its own. A user saw
a signal during a trial end a run with signal 11 instead of a report; the tests reproduced it (SIGSEGV as the
signal arrived, in the kernel's delivery, after an int8 calibration had run in the process): an alternate signal
stack left registered without its memory, which `_own_stack` sets aside while the search runs. The previous
handlers and stack come back when the search ends, so a library caller's own are untouched.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from types import FrameType
from typing import NamedTuple

# The phases of a search, in order, as the report names them: the teacher (data, checks and the teacher's fine-tune
# when it needs one), the untrained shapes timed, the trials, the winner timed again, exported and scored on test
PHASES = ("teacher", "shapes", "trials", "winner")

# Exit statuses of a stopped run: a signal's is 128 + its number, as a shell reports a process it ended; a time
# budget's is timeout(1)'s, so a script tells "ran out of time" from "failed" (2) and "interrupted"
BUDGET_EXIT = 124


class Stopped(KeyboardInterrupt):
    """A search stopped before its end: `reason` "interrupted" (SIGINT, SIGTERM) or "budget" (the time budget ran
    out); `phase` where (set by the catcher), `report` the partial report written. A KeyboardInterrupt, so no
    `except Exception` on the way up (a trial's error handling, a library's) swallows it."""

    def __init__(self, reason: str, signum: int | None = None):
        super().__init__(reason)
        self.reason, self.signum = reason, signum
        self.phase: str | None = None
        self.report: dict | None = None

    @property
    def code(self) -> int:
        """The process's exit status: 130 for SIGINT, 143 for SIGTERM, `BUDGET_EXIT` for the time budget."""
        return 128 + self.signum if self.reason == "interrupted" and self.signum else BUDGET_EXIT

    @property
    def cause(self) -> str:
        """What stopped the run, in words: the signal's name, or the time budget."""
        return signal.Signals(self.signum).name if self.reason == "interrupted" and self.signum else "the time budget"


class Watch:
    """A search's clock, phases and stop handlers, as a context manager over the whole run: SIGINT and SIGTERM
    raise `Stopped("interrupted")`, and with a time budget SIGALRM, armed for the deadline, raises
    `Stopped("budget")` in whatever phase the run is in (the budget bounds the whole run: the teacher's fine-tune
    and the shapes included, not only the trials' starts). Signals are handled only in the main thread (Python's
    rule); elsewhere the budget is still checked at each phase's start and before each trial."""

    def __init__(self, budget_s: float | None, clock):
        self.clock, self.budget_s = clock, budget_s
        self.start = clock()
        self.phase = PHASES[0]
        self.phases: dict[str, float] = {}  # seconds per finished phase, this invocation's
        self.stopping = False
        self._previous: dict[int, object] = {}
        self._stack: _StackT | None = None

    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self) -> float | None:
        """Seconds left of the budget (negative once spent); None without one."""
        return None if self.budget_s is None else self.budget_s - self.elapsed()

    def spent(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def fits(self, seconds: float | None) -> bool:
        """Whether a step estimated to take `seconds` (None: no estimate) can finish within the budget."""
        left = self.remaining()
        return left is None or (left > 0 and (seconds is None or seconds <= left))

    def enter(self, phase: str) -> None:
        """Close the current phase's lap and start `phase`; a spent budget stops the run here, before its work."""
        self.lap()
        self.phase = phase
        self.guard()
        if self.spent():
            self.stop("budget")

    def guard(self) -> None:
        """Disable again an alternate signal stack a native library registered since (`_own_stack`): OpenVINO and
        NNCF do so while building or compiling a model, which a search does in every phase and every trial's dev
        scoring; a deadline that then fires in the next training died with SIGSEGV. Called at each phase and before
        each trial."""
        if self._previous:  # armed: in the main thread, inside the `with`
            _own_stack()

    def lap(self) -> None:
        """Add the seconds since the last lap to the current phase."""
        self.phases[self.phase] = self.phases.get(self.phase, 0.0) + self.elapsed() - sum(self.phases.values())

    def stop(self, reason: str, signum: int | None = None) -> None:
        self.disarm()
        raise Stopped(reason, signum)

    def disarm(self) -> None:
        """No further stop: the deadline's timer is cancelled and later signals are ignored until the handlers
        are restored (a second Ctrl-C while the partial report is written would leave no report)."""
        self.stopping = True
        if signal.SIGALRM in self._previous:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            self.stop("budget" if signum == getattr(signal, "SIGALRM", None) else "interrupted", signum)

    def __enter__(self) -> Watch:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._stack = _own_stack()
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)
        if self.budget_s is not None and hasattr(signal, "setitimer"):
            self._previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_signal)
            try:
                signal.setitimer(signal.ITIMER_REAL, max(self.remaining(), 0.01))
            except Stopped:  # a deadline already past fires at once: the handlers still come back
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc) -> None:
        self.disarm()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        _restore_stack(self._stack)
        self._stack = None


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


_SS_DISABLE = 2  # Linux and the BSDs alike (<signal.h>)


def _own_stack() -> _StackT | None:
    """Have this thread's signal handlers run on its own stack, returning the alternate signal stack it had.

    Python installs its handlers with SA_ONSTACK, so the kernel builds a handler's frame on the thread's alternate
    signal stack when one is registered. A native library loaded by a search (seen after NNCF's and OpenVINO's int8
    calibration in one process) leaves one registered whose memory is gone: the next signal, Ctrl-C or the
    deadline's SIGALRM, then ends the process with SIGSEGV (signal 11) before any Python code runs. Disabling the
    alternate stack for the search's duration makes a handler run on the ordinary stack, which is always valid."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        old, off = _StackT(), _StackT(None, _SS_DISABLE, 0)
        return old if libc.sigaltstack(ctypes.byref(off), ctypes.byref(old)) == 0 else None
    except (OSError, AttributeError):  # no sigaltstack on this platform: nothing to fix
        return None


def _restore_stack(old: _StackT | None) -> None:
    if old is not None:
        ctypes.CDLL(None).sigaltstack(ctypes.byref(old), None)


class Schedule(NamedTuple):
    """How a candidate trains, as far as its trial's cost goes: its preset section and epochs, and whether a step
    costs what its timed shape's compute says. It does not for a pruning section (the masked model trains at the
    dense width of the model it prunes; the shape timed is the compacted one), an intermediate term (the teacher
    runs live beside the student for its hidden states) or elastic depth (its cuts run beside the student)."""
    section: str
    epochs: float
    steps_as_shape: bool


class TrialTime(NamedTuple):
    """A finished trial's seconds: in all, and those of its training (0 when its record has none); `after` is the
    rest (the served copy, its dev scoring), recorded apart since a trial resumed mid-training counts only this
    process's seconds in `seconds` but every session's in `training`."""
    seconds: float
    training: float = 0.0
    after: float | None = None


def trial_estimate(name: str, family: dict[str, str], train_ms: dict[str, float], finished: dict[str, TrialTime],
                   schedules: dict[str, Schedule] | None = None) -> float | None:
    """How long `name`'s trial should take, from the `finished` trials (this run's and reused ones'); None with none
    finished: the first trial starts, and the deadline stops it cleanly if need be. `train_ms` is the latency of the
    model each candidate's steps run (`optimize._train_ms`): training grows with the compute per text, which the
    latency measures.

    With a finished trial of its own family (layer students, pruned models, depth+width, static: one recipe, one
    schedule), the longest of them, scaled up by the latency ratio when `name` is slower, never scaled down (data,
    the served copy and its dev scoring cost a faster model about as much).

    Else the longest estimate from any finished trial. Where both schedules' steps cost what their shapes say and
    the other trial's training time is known, a cheaper schedule (latency ratio times epochs' ratio below 1) scales
    that training down by it and adds the rest of that trial unscaled: a static table after a 6-layer student costs
    its epochs of millisecond steps, not the student's minutes. Otherwise the other trial is scaled up by latency
    only, and down by epochs only within one preset section (a kdlN after the kd row): a costlier schedule is never
    extrapolated from a cheap one's few seconds, where fixed costs weigh most."""
    same = [n for n in finished if family.get(n) == family.get(name)]
    if same:
        return max(finished[n].seconds * max(1.0, _ratio(name, n, train_ms)) for n in same)
    if not finished:
        return None
    schedules = schedules or {}
    mine = schedules.get(name)

    def from_trial(n: str) -> float:
        theirs, ratio, done = schedules.get(n), _ratio(name, n, train_ms), finished[n]
        if mine and theirs and theirs.epochs:
            factor = ratio * mine.epochs / theirs.epochs
            if mine.steps_as_shape and theirs.steps_as_shape and done.training and factor < 1:
                after = done.after if done.after is not None else max(done.seconds - done.training, 0.0)
                return done.training * factor + after
            if mine.section == theirs.section:
                return done.seconds * min(1.0, mine.epochs / theirs.epochs) * max(1.0, ratio)
        return done.seconds * max(1.0, ratio)

    return max(from_trial(n) for n in finished)


def _ratio(name: str, other: str, train_ms: dict[str, float]) -> float:
    """`name`'s training latency over `other`'s (1 when either is unknown)."""
    return train_ms[name] / train_ms[other] if train_ms.get(other) and train_ms.get(name) else 1.0
