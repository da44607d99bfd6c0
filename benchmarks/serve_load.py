"""What deploying a model costs: folder size, memory, start-up, and throughput under load over HTTP.

Given a trained classifier folder, this trims its vocabulary to its training corpus (as `mahacompress
export --trim-vocab` does: training split plus recorded transfer set) and exports it as
int8 ONNX (and, for comparison, exports it untrimmed), scores both on the test split, starts
`mahacompress serve` on a free loopback port, and drives it with `--clients` concurrent asynchronous
httpx clients (one process) for `--warmup-seconds` (not counted) and then `--seconds`, each request carrying
`--texts-per-request` test texts (`--mixed-lengths`: each text is 1 to 8 test texts joined, so batches come in
every length up to the model's maximum, as a service sees them). Everything is bounded in time and count and
stays on 127.0.0.1. It records throughput, p50/p99 latency, errors, the client's CPU use, the server's
resident memory (VmRSS summed over the server and its worker processes) every `--sample-seconds` from the
start of the load (the figure after warm-up is the one at the end of `--warmup-seconds` of full load, when the
service has seen its batch shapes), the time from start to the first answer, and in-process batch-32
throughput of the same folder for comparison. `--workers 1,2` runs the same load against each worker count in
turn, in one session. `--bad-clients K` adds K clients that send, concurrently with the good ones, a request
whose text is a lone surrogate (valid JSON, invalid Unicode): their statuses are counted apart, and every good
request must still be answered. `--soak` is 20 minutes of mixed lengths with a bad client. `--server-env`
sets environment variables of the server (e.g. `MALLOC_ARENA_MAX=2`, to test whether the C allocator's
per-thread arenas are what grows). Writes results.json and report.md (with the command) to `--out`.

    .venv/bin/python benchmarks/serve_load.py --model runs/cpu-quick/models/p25_kd --out reports/serve
    .venv/bin/python benchmarks/serve_load.py --model DIR --soak --workers 1,2 --out reports/serve

Run it on a quiet machine: the client and the server share the cores, as they would on a small box.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from mahacompress.core.config import DataConfig
from mahacompress.core.files import atomic_path, write_json, write_text
from mahacompress.data.splits import load_splits
from mahacompress.deploy.export import export
from mahacompress.infer.runtime import Classifier
from mahacompress.models.trim import training_corpus


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's supervisor and its workers), from /proc."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*/children"):
            pids += [int(c) for c in task.read_text().split()]
        i += 1
    return pids


def _memory(pid: int) -> dict:
    """VmRSS and VmHWM (peak resident) in MiB, summed over the process and its descendants, from /proc."""
    fields = {"VmRSS": 0.0, "VmHWM": 0.0}
    for p in _tree(pid):
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except FileNotFoundError:  # a worker that exited between the listing and the read
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key in fields:
                fields[key] += int(value.split()[0]) / 1024
    return fields


def _start(folder: Path, port: int, workers: int, args) -> tuple[subprocess.Popen, float]:
    """Start the server; seconds from start until its first answered /predict."""
    cmd = [
        sys.executable, "-m", "mahacompress", "serve",
        str(folder), "--port",
        str(port), "--max-batch",
        str(args.max_batch), "--max-wait-ms",
        str(args.max_wait_ms), "--workers",
        str(workers), "--memory-arena" if args.memory_arena else "--no-memory-arena",
        "--memory-pattern" if args.memory_pattern else "--no-memory-pattern"
    ]
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in args.server_env))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = start + 120
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: run `{shlex.join(cmd)}` to see why")
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"texts": ["नमस्कार"]}, timeout=5)
            if r.status_code == 200:
                return proc, time.perf_counter() - start
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not answer within 120 s")


BAD_TEXT = "\udfff\ud800"  # lone surrogates: valid JSON once escaped, not valid Unicode


def mixed_lengths(texts: list[str], n: int, seed: int = 0) -> list[str]:
    """`n` texts, each 1 to 8 of `texts` joined by a space (seeded), so lengths vary up to the model's maximum."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(texts, size=int(rng.integers(1, 9)))) for _ in range(n)]


async def _load(url: str, texts: list[str], pid: int, args) -> dict:
    """`args.clients` good clients (and `args.bad_clients` bad ones) posting back to back for
    `args.warmup_seconds` (not counted) and then `args.seconds` or until `args.max_requests` good requests are
    counted; the server's memory sampled every `args.sample_seconds` from the start of the load."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    bad_statuses: dict[int, int] = {}
    sent = 0
    t_start = time.perf_counter()
    measure_from = t_start + args.warmup_seconds
    stop = measure_from + args.seconds
    memory: list[dict] = []
    limits = httpx.Limits(max_connections=args.clients + args.bad_clients,
                          max_keepalive_connections=args.clients + args.bad_clients)

    async def client(client_id: int, http: httpx.AsyncClient) -> None:
        nonlocal sent
        k = client_id * args.texts_per_request
        while time.perf_counter() < stop and sent < args.max_requests:
            batch = [texts[(k + j) % len(texts)] for j in range(args.texts_per_request)]
            k += args.clients * args.texts_per_request
            t0 = time.perf_counter()
            try:
                code = (await http.post("/predict", json={"texts": batch})).status_code
            except httpx.HTTPError:
                code = 0  # transport failure counts as an error
            if t0 >= measure_from:
                sent += 1
                latencies.append(time.perf_counter() - t0)
                statuses[code] = statuses.get(code, 0) + 1

    async def bad_client(http: httpx.AsyncClient) -> None:
        body = json.dumps({"texts": [BAD_TEXT]}).encode()  # ensure_ascii escapes the surrogates
        while time.perf_counter() < stop and sent < args.max_requests:
            try:
                code = (await http.post("/predict", content=body,
                                        headers={"content-type": "application/json"})).status_code
            except httpx.HTTPError:
                code = 0
            bad_statuses[code] = bad_statuses.get(code, 0) + 1
            await asyncio.sleep(0.05)  # a steady trickle, not a flood: the point is sharing batches

    async def sampler() -> None:
        while time.perf_counter() < stop and sent < args.max_requests:
            memory.append({"s": round(time.perf_counter() - t_start, 1), **_memory(pid)})
            await asyncio.sleep(args.sample_seconds)

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        tasks = [client(i, http) for i in range(args.clients)] + [bad_client(http) for _ in range(args.bad_clients)]
        runs = asyncio.gather(*tasks, sampler())  # scheduled now, run while the warm-up sleeps
        await asyncio.sleep(args.warmup_seconds)
        warm = _memory(pid)
        cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        await runs
    cpu1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall0
    end = _memory(pid)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    ok = statuses.get(200, 0)
    if not ok:  # no good answer to take percentiles of: say so instead of reporting failures as latencies
        raise SystemExit(f"error: no good request finished in the {wall:.0f} measured seconds "
                         f"(statuses {dict(statuses)}); raise --seconds or check the server")
    lat = np.array(latencies) * 1000
    return {
        "clients": args.clients, "bad_clients": args.bad_clients, "warmup_seconds": args.warmup_seconds,
        "seconds": wall, "requests": len(latencies), "texts_per_request": args.texts_per_request,
        "mixed_lengths": args.mixed_lengths, "statuses": {str(k): v
                                                          for k, v in sorted(statuses.items())}, "bad_statuses": {
                                                              str(k): v
                                                              for k, v in sorted(bad_statuses.items())
                                                          }, "errors": len(latencies) - ok, "texts_per_s": ok *
        args.texts_per_request / wall, "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p99": float(
            np.percentile(lat, 99)), "client_cpu_cores": cpu / wall, "memory_after_warmup_mib": warm,
        "memory_at_end_mib": end, "rss_growth": end["VmRSS"] / warm["VmRSS"] - 1, "memory_timeline_mib": memory
    }


def _in_process(folder: Path, texts: list[str], threads: int | None) -> float:
    """Texts per second of the same folder called in-process at batch 32 (no HTTP), one pass."""
    clf = Classifier(folder, threads=threads)
    clf.logits(texts[:64])  # warm-up
    start = time.perf_counter()
    clf.logits(texts, batch_size=32)
    return len(texts) / (time.perf_counter() - start)


def run(args) -> dict:
    splits = load_splits(DataConfig(dataset=args.dataset))
    work = Path(args.work)
    trimmed, full = work / "export-trimmed", work / "export-full"
    extra = args.extra_corpus_datasets.split(",") if args.extra_corpus_datasets else []
    corpus = training_corpus(Path(args.model))  # what `export --trim-vocab` uses by default
    corpus += [t for name in extra for t in load_splits(DataConfig(dataset=name)).train.texts]
    names = ["the model's training corpus"] + [f"{name} training split" for name in extra]
    manifest = export(Path(args.model), trimmed, corpus=corpus, corpus_names=names, splits=splits)
    untrimmed = export(Path(args.model), full, splits=splits)
    test = mixed_lengths(splits.test.texts, len(splits.test.texts)) if args.mixed_lengths else splits.test.texts
    loads = [serve_and_load(trimmed, test, int(w), args) for w in args.workers.split(",")]
    in_process = _in_process(trimmed, test, args.threads)
    return {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]), "model": args.model, "dataset": args.dataset,
        "cpus": os.cpu_count(), "backend": manifest["backend"], "server": {
            "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "memory_arena": args.memory_arena,
            "memory_pattern": args.memory_pattern, "env": args.server_env
        }, "loads": loads, "in_process_batch32_texts_per_s": in_process, "trimmed": {
            "disk_mib": manifest["disk_bytes"] / 2**20, "pieces": manifest["trim"], "test": manifest["test"]
        }, "untrimmed": {"disk_mib": untrimmed["disk_bytes"] / 2**20, "test": untrimmed["test"]}
    }


def serve_and_load(folder: Path, texts: list[str], workers: int, args) -> dict:
    """Start `serve` with `workers` processes, drive it, stop it: one load's figures."""
    port = _free_port()
    proc, first_answer_s = _start(folder, port, workers, args)
    try:
        url = f"http://127.0.0.1:{port}"
        load = asyncio.run(_load(url, texts, proc.pid, args))
        health = httpx.get(f"{url}/health", timeout=5).status_code
    finally:
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(timeout=60)
    return {
        "workers": workers, "first_answer_s": first_answer_s, "health_after_load": health,
        "exit_code_after_sigterm": exit_code, **load
    }


def report(r: dict) -> str:
    t, u, s = r["trimmed"], r["untrimmed"], r["server"]
    first = r["loads"][0]
    cols = [f"{x['workers']} worker{'s' if x['workers'] > 1 else ''}" for x in r["loads"]]

    def row(name: str, cell) -> str:
        return f"| {name} | " + " | ".join(cell(x) for x in r["loads"]) + " |"

    def mib(m: dict) -> str:
        return f"{m['VmRSS']:.0f} / {m['VmHWM']:.0f} MiB"

    lines = [
        "# Serving the exported model", "",
        f"Model `{r['model']}`, dataset {r['dataset']}, {r['cpus']} CPUs shared by server and client; vocabulary "
        f"trimmed to {', '.join(t['pieces']['corpus'])}. Made with:", "", f"    {r['command']}", "",
        "| folder | disk | test accuracy | macro-F1 | test texts with a removed piece |",
        "| --- | --- | --- | --- | --- |",
        f"| {r['backend']}, trimmed ({t['pieces']['pieces_kept']} of {t['pieces']['pieces_before']} pieces) | "
        f"{t['disk_mib']:.1f} MiB | {t['test']['accuracy']:.4f} | {t['test']['macro_f1']:.4f} | "
        f"{t['test']['texts_with_removed_pieces']} of {t['test']['rows']} |",
        f"| {r['backend']}, untrimmed | {u['disk_mib']:.1f} MiB | {u['test']['accuracy']:.4f} "
        f"| {u['test']['macro_f1']:.4f} | - |", "", f"Load: {first['clients']} concurrent clients" +
        (f" and {first['bad_clients']} bad one(s) (a lone-surrogate text every 50 ms)" if first["bad_clients"] else "")
        + f", {first['warmup_seconds']:.0f} s of warm-up under the same load (not counted), then "
        f"{first['seconds']:.0f} s measured; {first['texts_per_request']} text(s) per request" +
        (" (each 1 to 8 test texts joined: mixed lengths)" if first["mixed_lengths"] else "") +
        f"; server max batch {s['max_batch']}, max wait {s['max_wait_ms']} ms, onnxruntime memory arena "
        f"{'on' if s['memory_arena'] else 'off'}, per-shape memory patterns {'on' if s['memory_pattern'] else 'off'}" +
        (f", server environment {' '.join(s['env'])}" if s["env"] else "") + ". Memory is summed over the "
        "server's processes.", "", "| measure | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols),
        row("throughput", lambda x: f"{x['texts_per_s']:.1f} texts/s ({x['requests']} requests)"),
        row("latency p50 / p99", lambda x: f"{x['latency_ms_p50']:.1f} / {x['latency_ms_p99']:.1f} ms"),
        row("errors of good requests", lambda x: f"{x['errors']} (statuses {x['statuses']})"),
        row("bad requests' statuses", lambda x: str(x["bad_statuses"]) if x["bad_clients"] else "-"),
        row("client CPU", lambda x: f"{x['client_cpu_cores']:.2f} cores"),
        row(
            "served vs in-process batch 32", lambda x: (f"{x['texts_per_s'] / r['in_process_batch32_texts_per_s']:.0%} "
                                                        f"of {r['in_process_batch32_texts_per_s']:.1f} texts/s")),
        row("start to first answer", lambda x: f"{x['first_answer_s']:.2f} s"),
        row("server RSS / peak after warm-up", lambda x: mib(x["memory_after_warmup_mib"])),
        row("server RSS / peak at the end", lambda x: mib(x["memory_at_end_mib"])),
        row("RSS growth after warm-up", lambda x: f"{x['rss_growth']:+.0%}"),
        row("/health after the load; exit after SIGTERM",
            lambda x: f"{x['health_after_load']}; {x['exit_code_after_sigterm']}"), ""
    ]
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    """Server RSS over time, one line per worker count, the warm-up's end marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for x in r["loads"]:
        ax.plot([m["s"] / 60 for m in x["memory_timeline_mib"]], [m["VmRSS"] for m in x["memory_timeline_mib"]],
                label=f"{x['workers']} worker(s)")
    ax.axvline(r["loads"][0]["warmup_seconds"] / 60, color="grey", linestyle=":", label="end of warm-up")
    ax.set_xlabel("minutes under load")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="trained classifier folder (e.g. runs/cpu-quick/models/p25_kd)")
    p.add_argument("--dataset", default="mahanews-shc")
    p.add_argument(
        "--extra-corpus-datasets", default=None,
        help="comma-separated datasets whose training splits are added to the trimming corpus "
        "(default corpus: the model's training split and transfer set)")
    p.add_argument("--seconds", type=float, default=60.0, help="measured seconds of load (after the warm-up)")
    p.add_argument("--warmup-seconds", type=float, default=30.0, help="seconds of the same load before measuring")
    p.add_argument("--sample-seconds", type=float, default=10.0, help="how often the server's memory is read")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--bad-clients", type=int, default=0, help="clients sending a lone-surrogate text alongside")
    p.add_argument("--mixed-lengths", action="store_true", help="each text 1 to 8 test texts joined")
    p.add_argument("--soak", action="store_true",
                   help="20 minutes measured, mixed lengths, one bad client (overrides --seconds)")
    p.add_argument("--workers", default="1", help="comma-separated worker counts, each loaded in turn (e.g. 1,2)")
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable of the server (repeatable)")
    p.add_argument("--texts-per-request", type=int, default=1)
    p.add_argument("--max-requests", type=int, default=1_000_000, help="upper bound on measured requests")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--no-memory-arena", dest="memory_arena", action="store_false",
                   help="serve with onnxruntime's CPU memory arena off")
    p.add_argument("--memory-pattern", action="store_true",
                   help="serve with onnxruntime's per-shape memory patterns on (the server's default is off)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads of the in-process comparison")
    p.add_argument("--work", default="runs/serve", help="where the exported folders are written")
    p.add_argument("--out", default="reports/serve")
    args = p.parse_args()
    if args.soak:
        args.seconds, args.mixed_lengths, args.bad_clients = 1200.0, True, max(args.bad_clients, 1)
    if any("=" not in kv for kv in args.server_env):
        p.error("--server-env takes KEY=VALUE")
    result = run(args)
    write_json(Path(args.out) / "results.json", result)
    write_text(Path(args.out) / "report.md", report(result))
    plot(result, Path(args.out) / "memory.png")
    print(report(result))


if __name__ == "__main__":
    main()
