"""`optimize --workers`: the concurrent search gives the sequential search's verdicts whatever order its chains
finish in (made-up outcomes, no Ray), a failed worker's chain is retried once then reported, the one-line
refusals, Ray never imported without --workers, and one short run on a local Ray instance against the run in
process."""

from __future__ import annotations

import importlib.util
import json
import random
import socket
import subprocess
import sys

import pytest
from clirun import one_line_error
from test_optimize import _config, toy_data  # noqa: F401  (toy_data: a module fixture)
from typer.testing import CliRunner

from mahacompress.cli.app import app
from mahacompress.core.config import DataConfig
from mahacompress.search.bisect import search, train_chain, verdicts
from mahacompress.search.workers import Search, concurrent_search


class FakePool:
    """Chains "run" at once, finish in a seeded random order; `truth` is each trial's outcome; a chain containing
    a name in `crashes` raises on its first `crashes[name]` attempts. A trial built from another's model (`sources`)
    starts only after that one was trained, earlier in its chain or by a finished chain (a worker needs its files)."""

    def __init__(self, capacity: int, truth: dict, seed: int, crashes: dict | None = None,
                 sources: dict | None = None):
        self.capacity, self.truth, self.rng = capacity, truth, random.Random(seed)
        self.crashes, self.running, self.trained = dict(crashes or {}), [], []
        self.sources = sources or {}

    def submit(self, chain):
        assert len(self.running) < self.capacity and not {n for c in self.running for n in c} & set(chain)
        for i, name in enumerate(chain):
            source = self.sources.get(name)
            assert source is None or source in chain[:i] or source in self.trained, f"{chain} before {source}"
        self.running.append(chain)

    def wait(self):
        chain = self.running.pop(self.rng.randrange(len(self.running)))
        broken = [n for n in chain if self.crashes.get(n, 0) > 0]
        if broken:
            self.crashes[broken[0]] -= 1
            return chain, RuntimeError(f"worker died training {broken[0]}")
        result = train_chain(chain, self.truth.__getitem__, lambda: False)
        self.trained += list(result)
        return chain, result

    def salvage(self, chain):
        return {}

    def cancel(self):
        self.running.clear()


def _scenario(seed: int):
    """Candidates of four families (kdpNN built from a kd row), with random speeds and outcomes."""
    rng = random.Random(seed)
    names = ["kd1", "kd2", "kd3", "p30", "p50", "kdp30", "kdp50", "static"]
    family = {
        "kd1": "kd", "kd2": "kd", "kd3": "kd", "p30": "prune", "p50": "prune", "kdp30": "kdprune", "kdp50": "kdprune",
        "static": "static"
    }
    sources = {n: ("kd2" if n.startswith("kdp") else None) for n in names}
    fastest = {n: rng.uniform(1, 20) for n in names}
    truth = {}
    for n in names:
        verdict = rng.choice([True, True, False, None])  # None: the trial errors
        truth[n] = ({"passed": None, "ms": None, "error": "boom"}
                    if verdict is None else {"passed": verdict, "ms": fastest[n] * 1.1 if verdict else None})
    return sorted(names, key=fastest.get), fastest, rng.uniform(10, 40), family, sources, truth


def _sequential(order, fastest, teacher_ms, family, sources, truth):
    tried: dict = {}

    def run_trial(name):
        chain = ([sources[name]] if sources[name] and sources[name] not in tried else []) + [name]
        return train_chain(chain, truth.__getitem__, lambda: False)

    search(order, fastest, teacher_ms, tried, run_trial, lambda: False, family, sources)
    return tried, verdicts(order, fastest, teacher_ms, tried, False, family, sources)


@pytest.mark.parametrize("seed", range(40))
def test_the_concurrent_search_gives_the_sequential_verdicts_whatever_finishes_first(seed):
    order, fastest, teacher_ms, family, sources, truth = _scenario(seed)
    expected = _sequential(order, fastest, teacher_ms, family, sources, truth)
    for capacity in (1, 2, 3, 8):
        pool, tried = FakePool(capacity, truth, seed, sources=sources), {}
        assert not concurrent_search(Search(order, fastest, teacher_ms, family, sources), tried, pool, lambda: False)
        assert (tried, verdicts(order, fastest, teacher_ms, tried, False, family, sources)) == expected
        assert set(expected[0]) <= set(pool.trained) and len(pool.trained) == len(set(pool.trained))


def test_a_chain_whose_worker_fails_is_retried_once_then_reported_as_an_error():
    order, fastest, teacher_ms, family, sources, truth = _scenario(3)
    expected = _sequential(order, fastest, teacher_ms, family, sources, truth)
    first = next(iter(expected[0]))  # a trial the search needs
    once, tried = FakePool(2, truth, 0, crashes={first: 1}), {}
    concurrent_search(Search(order, fastest, teacher_ms, family, sources), tried, once, lambda: False)
    assert tried == expected[0]  # one crash: the retry gives its outcome
    twice, tried = FakePool(2, truth, 0, crashes={first: 2}), {}
    concurrent_search(Search(order, fastest, teacher_ms, family, sources), tried, twice, lambda: False)
    assert tried[first]["passed"] is None and "its worker failed twice (RuntimeError" in tried[first]["error"]


def test_a_spent_time_budget_starts_nothing():
    order, fastest, teacher_ms, family, sources, truth = _scenario(1)
    pool, tried = FakePool(2, truth, 0), {}
    assert concurrent_search(Search(order, fastest, teacher_ms, family, sources), tried, pool, lambda: True)
    assert not tried and not pool.trained


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, env, message", [
    (["--workers", "0"], {}, "--workers 0: expected a value at least 1"),
    (["--workers", "-1"], {}, "--workers -1: expected a value at least 1"),
    (["--workers", "two"], {}, "Invalid value for '--workers'"),
    (["--workers", "2"], {"ray": None}, "install mahacompress[cluster]"),
    (["--workers", "2"], {"WORLD_SIZE": "2"}, "without torchrun / accelerate launch"),
    (["--workers", "2", "--ray-address", "127.0.0.1:{port}"], {}, "--ray-address 127.0.0.1:{port}: no Ray cluster"),
    (["--ray-address", "127.0.0.1:6379"], {}, "--ray-address needs --workers"),
])
def test_bad_worker_options_are_refused_in_one_line_before_any_work(args, env, message, tmp_path, monkeypatch):
    if importlib.util.find_spec("ray") is None and ("WORLD_SIZE" in env or "--ray-address" in args[2:]):
        pytest.skip("without the cluster extra (ray), --workers is refused for that first")
    for key, value in env.items():
        if key == "ray":
            monkeypatch.setitem(sys.modules, "ray", None)  # as if the package were not installed
        else:
            monkeypatch.setenv(key, value)
    port = _closed_port()
    result = CliRunner().invoke(app, [
        "optimize", "--teacher",
        str(tmp_path / "no-such-teacher"), "--out",
        str(tmp_path / "out"), *(a.format(port=port) for a in args)
    ])
    assert message.format(port=port) in one_line_error(result) and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ray_is_not_imported_without_workers():
    code = ("import sys, mahacompress.cli.app, mahacompress.search.optimize, mahacompress.search.workers; "
            "sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the cluster extra (ray) is not installed")
def test_two_ray_workers_choose_the_winner_and_verdicts_of_the_run_in_process(teacher_dir, toy_data, tmp_path,
                                                                              monkeypatch):
    """Both shapes clearly faster than the teacher (timings made up on the coordinator, where all timing
    happens), so the search needs both trials: in process one after the other, on two workers at once."""
    import ray

    import mahacompress.search.optimize as optimize
    import mahacompress.search.trials as search_trials

    ms = {"teacher": 10.0, "kd1": 1.0, "kd2": 2.0}
    for module in (optimize, search_trials):
        monkeypatch.setattr(module, "time_models",
                            lambda models, *a: {name: {"fp32": ms[name], "onnx": ms[name]}
                                                for name in models})
    data, preset = toy_data
    imported = "ray" in sys.modules
    alone = optimize.optimize(str(teacher_dir), DataConfig(str(data)), _config(preset), tmp_path / "alone")
    assert imported or "ray" not in sys.modules
    try:
        pooled = optimize.optimize(str(teacher_dir), DataConfig(str(data)), _config(preset), tmp_path / "pooled",
                                   workers=2)
    finally:
        assert not ray.is_initialized()  # the instance it started is shut down
        ray.shutdown()
    status = lambda report: {c["name"]: c["status"] for c in report["candidates"]}  # noqa: E731
    assert pooled["winner"]["name"] == alone["winner"]["name"] and status(pooled) == status(alone)
    assert {p.stem for p in (tmp_path / "pooled" / "trials").glob("*.json")} == {"kd1", "kd2"}
    # the workers' trials are the folder's, as in process: a re-run reuses them without training
    monkeypatch.setattr(search_trials, "build", lambda *a, **k: pytest.fail("a finished trial was trained again"))
    again = optimize.optimize(str(teacher_dir), DataConfig(str(data)), _config(preset), tmp_path / "pooled")
    assert again["winner"]["name"] == pooled["winner"]["name"]
    assert json.loads((tmp_path / "pooled" / "optimize.json").read_text())["winner"]["name"] == alone["winner"]["name"]
