"""`optimize`'s search, as pure functions of measured outcomes: which untried candidate to train next (a
bisection over candidates sorted by their fastest shippable runtime), which ones a failure rules out or sends to
the back, and why
each candidate was or was not trained. Nothing here trains or times: the command hands in `run_trial` and
`out_of_time`, so the tests drive it with made-up outcomes."""

from __future__ import annotations

from collections.abc import Callable

# How much faster than the best passing model (at first the teacher in its fastest shippable runtime) a candidate's
# untrained shape must be to be worth a trial: a pruned shape's latency is an estimate (random_compaction), timing
# sessions differ by a few percent, and a trial costs minutes to tens of minutes of training
CLEARLY_FASTER = 1.2


def search(order: list[str], fastest_ms: dict[str, float], teacher_ms: float, tried: dict[str, dict],
           run_trial: Callable[[str], dict[str, dict]], out_of_time: Callable[[], bool],
           family: dict[str, str] | None = None, sources: dict[str, str | None] | None = None) -> bool:
    """Bisect `order` (candidates by their fastest time): train the middle of those that can still win
    (`open_candidates`; `next_candidate`: a model others are built from first), add what `run_trial(name)` returns
    ({name: outcome}: a kdpNN trial adds its kd row too) to `tried`, until none can win. Returns whether it
    stopped because `out_of_time()`."""
    while True:
        candidates = open_candidates(order, fastest_ms, teacher_ms, tried, family, sources)
        if not candidates:
            return False
        if out_of_time():
            return True
        tried.update(run_trial(next_candidate(candidates, sources)))


def next_candidate(candidates: list[str], sources: dict[str, str | None] | None = None) -> str:
    """Which open candidate to train next: one the other open candidates are built from (a kd row a kdpNN prunes
    or a kdlN cuts) first, since any of their trials trains it anyway and, once trained, a kdlN cut from it costs a
    short schedule; else the middle one (the bisection)."""
    built_from = set(filter(None, ((sources or {}).get(name) for name in candidates)))
    return next((name for name in candidates if name in built_from), candidates[len(candidates) // 2])


def train_chain(names: list[str], train_one: Callable[[str], dict], out_of_time: Callable[[], bool]) -> dict[str, dict]:
    """Train `names` in order (a kdpNN's kd row, then the kdpNN built from its trained model), each outcome
    `train_one(name)`; stop after one that errors or fails (what follows is built from it and waits until no other
    candidate is open, `comes_last`) and, between two, when `out_of_time()`."""
    results: dict[str, dict] = {}
    for name in names:
        if results and out_of_time():
            break
        results[name] = train_one(name)
        if not results[name].get("passed"):
            break
    return results


def open_candidates(order: list[str], fastest_ms: dict[str, float], teacher_ms: float, tried: dict[str, dict],
                    family: dict[str, str] | None = None, sources: dict[str, str | None] | None = None) -> list[str]:
    """Untried candidates that could beat the best passing model: faster than it, and not ruled out by a failure
    (`ruled_out`). Those built from a model that failed (`comes_last`) are open only once no other is. A trial that
    errored proves nothing."""
    best = min([teacher_ms] + [o["ms"] for o in tried.values() if o.get("passed")])
    able = [
        n for i, n in enumerate(order)
        if n not in tried and ruled_out(order, i, tried, family) is None and fastest_ms[n] * CLEARLY_FASTER < best
    ]
    return [n for n in able if comes_last(n, tried, sources) is None] or able


def ruled_out(order: list[str], i: int, tried: dict[str, dict], family: dict[str, str] | None) -> str | None:
    """Why `order[i]` is assumed to fail, if a failure says so: a slower candidate of its family failed (accuracy
    is assumed to rise with size within a family: layer students, pruned models, depth+width, static; MahaNews
    showed it does not hold across them, where a 6-layer student kept the accuracy a slower 50%-pruned model lost).
    `family` None: one family."""
    same = (lambda n: True) if family is None else (lambda n: family[n] == family[order[i]])
    failed = [n for n in order[i + 1:] if same(n) and tried.get(n, {}).get("passed") is False]
    return (f"{failed[-1]} is slower and failed (accuracy is assumed to rise with size within a family)"
            if failed else None)


def comes_last(name: str, tried: dict[str, dict], sources: dict[str, str | None] | None) -> str | None:
    """Why `name` waits until no other candidate is open: the model it is built from failed (a kdpNN prunes that
    student further, a kdlN cuts it and distils again from the teacher). It starts below the budget, but a second
    distillation can recover some of it, and a dev verdict near the line is noisy: tried after the others, not
    ruled out."""
    source = (sources or {}).get(name)
    if source and tried.get(source, {}).get("passed") is False:
        return f"{source} failed and it is built from {source}'s trained model, so it comes last"
    return None


def verdicts(order: list[str], fastest_ms: dict[str, float], teacher_ms: float, tried: dict[str, dict], timed_out: bool,
             family: dict[str, str] | None = None, sources: dict[str, str | None] | None = None) -> dict[str, dict]:
    """Why each candidate was or was not trained: passed / failed / error, or not trained because it cannot
    win, was pruned by the search, or the time ran out."""
    best_name, best = min([("the teacher", teacher_ms)] + [(n, o["ms"]) for n, o in tried.items() if o.get("passed")],
                          key=lambda item: item[1])
    out = {}
    for i, name in enumerate(order):
        why_not = ruled_out(order, i, tried, family)
        if name in tried:
            o = tried[name]
            out[name] = {"status": "error" if o.get("error") else "passed" if o["passed"] else "failed"}
        elif fastest_ms[name] * CLEARLY_FASTER >= best:
            out[name] = {
                "status": "cannot win", "why": f"its fastest shippable runtime ({fastest_ms[name]:.1f} ms) "
                f"is not {CLEARLY_FASTER:g}x faster than {best_name} "
                f"({best:.1f} ms), which passed"
            }
        elif why_not is not None:
            out[name] = {"status": "pruned by the search", "why": why_not}
        else:
            last = comes_last(name, tried, sources)
            out[name] = {"status": "out of time" if timed_out else "not tried", **({"why": last} if last else {})}
    return out
