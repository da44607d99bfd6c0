"""`optimize --workers N`: trials as Ray tasks, on a local Ray instance or an existing cluster (`--ray-address`),
choosing the same winner, with the same verdicts, as the search in process.

The rule. The search in process (`bisect.search`) is a sequence: train the open candidate `bisect.next_candidate`
names (a model others are built from, else the middle one), then look at
faster ones if it passed, at slower ones of its family if it failed. Every verdict can change what comes next, so
no two steps of it are independent as such. Workers therefore run it *ahead*: the coordinator replays the
sequential search over the outcomes it already holds (`replay`); where the replay needs an outcome it does not
hold, that candidate's chain (`bisect.train_chain`: a kdpNN's kd row first when it is not trained) is started,
and the free workers take the chains the replay would need next under each outcome of those still running,
breadth first (pass and fail of the nearest first: `to_start`). When a chain comes back its outcomes are added
and the replay runs again from the start. The verdicts and the winner come from the replay alone, so they are the
in-process run's whatever finished first; a trial run ahead that the replay never reached stays in `trials/`
(never lost, and a later run reuses it as it reuses any finished trial) but decides nothing in this run. No two
running chains share a trial (a kdpNN waits while its kd row trains elsewhere: it is built from that model).

A chain that raises, or whose worker dies, is started once more; if it fails again, the trials it recorded
before failing count and the first one it did not finish is an error in the report (an error proves nothing, as
in process). The time budget is checked before starting a chain, never inside one (a started chain finishes);
once it is spent, the run stops where the replay needs an outcome no running chain will give, and chains still
running ahead are cancelled.

Why a module of its own: the scheduling rule is pure (`concurrent_search` over a `Pool`: the tests drive it with
made-up outcomes against `bisect.search`), and Ray is imported only here, only when `--workers` is given: without
it `optimize` runs in process and never imports Ray (the `cluster` extra).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from ..core.errors import MahaError
from .bisect import next_candidate, open_candidates

_console = Console(stderr=True, markup=False, highlight=False)

# How long `--ray-address` gets to answer before the run is refused: an address that does not answer is a typo or
# a cluster not started, and the user should hear it before any shape is built
CONNECT_TIMEOUT_S = 3.0
# How many times a chain whose worker failed is started again before its trial is an error in the report
RETRIES = 1
# Hypothetical outcomes explored per scheduling step: enough to fill far more workers than a search has candidates
LOOKAHEAD_STEPS = 256

Outcomes = dict[str, dict]

# ---------------------------------------------------------------- checks before any work


def check_workers(workers: int | None, ray_address: str | None) -> None:
    """Refuse, in one line and before any work, what cannot run trials on workers: a count below 1, Ray not
    installed, a run under torchrun / accelerate launch (one process schedules; Ray starts the workers), a
    `--ray-address` without `--workers` or one that does not answer within `CONNECT_TIMEOUT_S`."""
    if workers is None:
        if ray_address is not None:
            raise MahaError("--ray-address needs --workers N, how many trials run at once")
        return
    if workers < 1:
        raise MahaError(f"--workers {workers}: expected a value at least 1")
    if importlib.util.find_spec("ray") is None:
        raise MahaError("--workers: the ray package is not installed; install mahacompress[cluster]")
    from ..train.processes import process_count

    if process_count() > 1:
        raise MahaError("--workers: optimize schedules trials from one process and Ray starts the workers; start it "
                        "without torchrun / accelerate launch")
    if ray_address is not None and ray_address != "auto":
        _check_reachable(ray_address)


def _check_reachable(address: str) -> None:
    """A TCP connection to the cluster's head within `CONNECT_TIMEOUT_S`: ray.init itself retries for a long
    time before giving up on an address that does not answer."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise MahaError(f"--ray-address {address}: expected HOST:PORT, the address `ray start --head` prints")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise MahaError(f"--ray-address {address}: no Ray cluster answers there ({why}); start one with "
                        "`ray start --head` on that machine") from None


# ---------------------------------------------------------------- the rule (pure)


class Pool(Protocol):
    """Where chains of trials run: `capacity` at once; `wait` returns a finished chain with its outcomes, or the
    exception that failed it; `salvage` the outcomes a failed chain recorded; `cancel` stops what still runs."""

    capacity: int

    def submit(self, chain: list[str]) -> None:
        ...

    def wait(self) -> tuple[list[str], Outcomes | BaseException]:
        ...

    def salvage(self, chain: list[str]) -> Outcomes:
        ...

    def cancel(self) -> None:
        ...


@dataclass
class Search:
    """The sequential search's inputs (`bisect.search`'s arguments but the trial runner and the clock)."""

    order: list[str]
    fastest_ms: dict[str, float]
    teacher_ms: float
    family: dict[str, str] | None = None
    sources: dict[str, str | None] | None = None

    def chain(self, name: str, tried: Outcomes) -> list[str]:
        """What a trial of `name` trains, as `optimize`'s run_trial: its kd row first when that is not trained."""
        source = (self.sources or {}).get(name)
        return ([source] if source and source not in tried else []) + [name]

    def replay(self, tried: Outcomes, known: Outcomes) -> tuple[Outcomes, str | None]:
        """`bisect.search` from `tried` with `known` outcomes as its trials: the trials it consumed, and the
        candidate it needs next whose chain's outcome is not known (None: the search is over)."""
        sim = dict(tried)
        while True:
            candidates = open_candidates(self.order, self.fastest_ms, self.teacher_ms, sim, self.family, self.sources)
            if not candidates:
                return sim, None
            name = next_candidate(candidates, self.sources)
            result = _chain_result(self.chain(name, sim), known)
            if result is None:
                return sim, name
            sim.update(result)

    def to_start(self, tried: Outcomes, known: Outcomes, running: set[str], free: int) -> list[list[str]]:
        """Up to `free` chains to start: the one the replay needs now, then those it would need under each outcome
        of the chains it waits for, breadth first; never one sharing a trial with a running or chosen chain."""
        chosen: list[list[str]] = []
        claimed = set(running)
        guesses: deque[Outcomes] = deque([{}])
        for _ in range(LOOKAHEAD_STEPS):
            if not guesses or len(chosen) >= free:
                break
            guess = guesses.popleft()
            sim, name = self.replay(tried, known | guess)
            if name is None:
                continue
            # what the trial trains, by what has really finished: a kdpNN or kdlN whose kd row is only guessed (or
            # running) cannot start, since its worker needs that row's trained model
            chain = [n for n in self.chain(name, tried | known) if n not in known]
            if not claimed & set(chain) and not set(chain) & set(guess):
                chosen.append(chain)
                claimed |= set(chain)
            passed = {n: {"passed": True, "ms": self.fastest_ms.get(n, float("inf"))} for n in chain}
            for k, n in enumerate(chain):  # the chain stops at its first failure: a kd row failing ends a kdpNN's
                guesses.append(guess | dict(list(passed.items())[:k]) | {n: {"passed": False, "ms": None}})
            guesses.append(guess | passed)
        return chosen


def _chain_result(chain: list[str], known: Outcomes) -> Outcomes | None:
    """`bisect.train_chain`'s result over known outcomes (it stops after a failure or an error); None while one it
    would train is unknown."""
    results: Outcomes = {}
    for name in chain:
        if name not in known:
            return None
        results[name] = known[name]
        if not known[name].get("passed"):
            break
    return results


def concurrent_search(search: Search, tried: Outcomes, pool: Pool, out_of_time: Callable[[], bool]) -> bool:
    """`bisect.search` with its trials run on `pool` ahead of the search (the module docstring's rule): adds to
    `tried` the outcomes the sequential search consumed. Returns whether it stopped because `out_of_time()`."""
    known: Outcomes = {}
    running: list[list[str]] = []
    failures: dict[tuple[str, ...], int] = {}
    try:
        while True:
            sim, need = search.replay(tried, known)
            tried.update(sim)  # the search's state is `tried` alone: a run stopped now reports what it consumed
            if need is None:
                return False
            late = out_of_time()
            if not late:
                busy = {n for c in running for n in c}
                for chain in search.to_start(tried, known, busy, pool.capacity - len(running)):
                    pool.submit(chain)
                    running.append(chain)
            if late and need not in {n for c in running for n in c}:
                return True
            if not running:  # a chain the replay needs is always startable when no other runs
                raise RuntimeError(f"optimize --workers: nothing runs while {need} is needed")
            chain, result = pool.wait()
            running.remove(chain)
            if isinstance(result, BaseException):
                key = tuple(chain)
                why = _one_line(result)
                if failures.get(key, 0) < RETRIES:
                    failures[key] = failures.get(key, 0) + 1
                    _console.print(f"{', '.join(chain)}: its worker failed ({why}); starting it once more")
                    pool.submit(chain)
                    running.append(chain)
                    continue
                result = _after_failure(chain, pool.salvage(chain), why)
            known.update(result)
    finally:
        if running:
            pool.cancel()


def _after_failure(chain: list[str], recorded: Outcomes, why: str) -> Outcomes:
    """A chain that failed twice: the trials it recorded count, the first it did not finish is an error (which
    proves nothing, as a trial that errors in process), and what follows it was not trained."""
    results: Outcomes = {}
    for name in chain:
        results[name] = recorded.get(name) or {"passed": None, "ms": None, "error": f"its worker failed twice ({why})"}
        if not results[name].get("passed"):
            break
    return results


def _one_line(exc: BaseException) -> str:
    """The cause of a failed task in one line (a Ray task error's text carries the worker's traceback)."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__


# ---------------------------------------------------------------- Ray


@dataclass
class TrialJob:
    """What a worker needs to train and judge a chain as `optimize` does in process: sent once per run
    (`ray.put`), its paths absolute, so a worker on another node finds the same folders."""

    out: Path
    ctx: Any  # the run's study.context.RecipeContext
    specs: dict[str, Any]  # candidate name -> study.rowspec.RowSpec
    runtimes: list[str]
    shape_ms: dict[str, dict[str, float]]
    reference: list[int]  # the teacher's torch fp32 dev predictions
    cfg: Any  # core.config.OptimizeConfig
    cwd: str  # the coordinator's working directory: relative paths a user gave resolve against it


def _train_chain(job: TrialJob, chain: list[str], finished: dict[str, list[str]], threads: int | None) -> dict:
    """In a worker: train `chain` as `bisect.train_chain` does (stop after a failure), each trial with
    `trials.train_trial` into the run's folder; {name: {"trial", "outcome"} or {"error"}}."""
    import torch

    from ..train.precision import training_precision
    from .scoring import outcome
    from .trials import train_trial

    if os.path.isdir(job.cwd):
        os.chdir(job.cwd)
    if threads:
        torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # this worker's, not the coordinator's
    ctx = replace(job.ctx, finished=job.ctx.finished | finished, precision=training_precision("auto", device))
    results: dict[str, dict] = {}
    for name in chain:
        print(f"training {name} on a worker", flush=True)
        try:
            trial = train_trial(job.out, ctx, job.specs[name], job.runtimes)
        except MahaError as exc:
            results[name] = {"error": str(exc)}
            break
        o = outcome(trial, job.shape_ms[name], job.reference, ctx.splits, job.cfg)
        results[name] = {"trial": trial, "outcome": o}
        if not o["passed"]:
            break
    return results


class RayPool:
    """Chains as Ray tasks: one task a chain, one GPU a task where the cluster has GPUs, else its CPUs shared
    among `workers` tasks (a local instance: this machine's cores // workers each)."""

    def __init__(self, workers: int, address: str | None, job: TrialJob):
        import ray

        self.ray, self.job, self.capacity = ray, job, workers
        self.started = not ray.is_initialized()  # a caller's own instance (ray.init before optimize) is kept
        if self.started:
            try:
                if address:
                    ray.init(address=address, logging_level=logging.WARNING)
                else:
                    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level=logging.WARNING)
            except Exception as exc:  # ray raises ConnectionError, RuntimeError or its own
                raise MahaError(f"--ray-address {address}: {_one_line(exc)}"
                                if address else f"--workers: Ray did not start ({_one_line(exc)})") from None
        resources = ray.cluster_resources()
        if resources.get("GPU", 0) >= 1:
            self.options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
            self.threads = None
        else:
            largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
            per_task = int(max(1, min(largest, resources.get("CPU", 1) // workers)))
            self.options, self.threads = {"num_cpus": per_task}, per_task
        self.task = ray.remote(_train_chain).options(max_retries=0, **self.options)  # retries: concurrent_search's
        self.job_ref = ray.put(job)
        self.refs: dict[Any, list[str]] = {}

    def submit(self, chain: list[str]) -> None:
        _console.print(f"training {', '.join(chain)} on a worker ({len(self.refs) + 1} of {self.capacity} running)")
        self.refs[self.task.remote(self.job_ref, chain, dict(self.job.ctx.finished), self.threads)] = chain

    def wait(self) -> tuple[list[str], Outcomes | BaseException]:
        (ref, ), _ = self.ray.wait(list(self.refs), num_returns=1)
        chain = self.refs.pop(ref)
        try:
            results = self.ray.get(ref)
        except Exception as exc:  # the task raised, or its worker died
            return chain, exc
        return chain, {name: self._record(name, r) for name, r in results.items()}

    def _record(self, name: str, result: dict) -> dict:
        """A trial's outcome as the coordinator keeps it: its model a later kdpNN prunes, and its line."""
        if "error" in result:
            _console.print(f"{name}: error on its worker: {result['error']}")
            return {"passed": None, "ms": None, "error": result["error"]}
        self.job.ctx.finished[name] = [result["trial"]["model_dir"]]
        o, metric = result["outcome"], self.job.cfg.metric
        _console.print(f"{name}: dev {metric} {o['dev']['dev']:.2%}, {o['dev']['difference_points']:+.2f} points "
                       f"[{o['dev']['ci_low_points']:+.2f}, {o['dev']['ci_high_points']:+.2f}]: " +
                       (f"passes in {o['runtime']} ({o['ms']:.1f} ms)" if o["passed"] else "fails"))
        return o

    def salvage(self, chain: list[str]) -> Outcomes:
        """The trials of a failed chain that a worker recorded before it failed (`trials/`, written atomically)."""
        from .scoring import outcome
        from .trials import saved_trial

        recorded = {}
        for name in chain:
            trial = saved_trial(self.job.out, self.job.ctx, self.job.specs[name])
            if trial is not None:
                self.job.ctx.finished[name] = [trial["model_dir"]]
                recorded[name] = outcome(trial, self.job.shape_ms[name], self.job.reference, self.job.ctx.splits,
                                         self.job.cfg)
        return recorded

    def cancel(self) -> None:
        """Stop the chains still running ahead of a search that no longer needs them (their folders resume later)."""
        for ref in list(self.refs):
            self.ray.cancel(ref, force=True)
        self.refs.clear()

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def search_on_workers(workers: int, ray_address: str | None, search: Search, tried: Outcomes,
                      out_of_time: Callable[[], bool], job: TrialJob) -> bool:
    """`concurrent_search` on Ray: a local instance of this machine's cores, or the cluster at `ray_address`; the
    instance this starts is shut down when the search ends. Ray starts only when a trial must train (a resumed
    search whose trials are all finished never starts it)."""
    if search.replay(tried, {})[1] is None:
        return False
    if out_of_time():
        return True
    job = replace(job, out=Path(job.out).resolve(), cwd=str(Path.cwd()))
    pool = RayPool(workers, ray_address, job)
    try:
        return concurrent_search(search, tried, pool, out_of_time)
    finally:
        pool.close()
