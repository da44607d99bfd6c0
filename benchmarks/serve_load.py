"""What deploying a model costs: folder size, memory, start-up, and throughput under load over HTTP.

Given a trained classifier folder, this trims its vocabulary to its training corpus (as `mahacompress
export --trim-vocab` does: training split plus recorded transfer set) and exports it as
int8 ONNX (and, for comparison, exports it untrimmed), scores both on the test split, starts
`mahacompress serve` on a free loopback port, and drives it with `--clients` concurrent asynchronous
httpx clients (one process) for `--seconds`, each request carrying `--texts-per-request` test texts.
Everything is bounded in time and count and stays on 127.0.0.1. It records throughput, p50/p99
latency, errors, the client's CPU use, the server's resident memory (VmRSS, VmHWM) after warm-up and
at the end, the time from start to the first answer, and in-process batch-32 throughput of the same
folder for comparison. Writes results.json and report.md (with the command) to `--out`.

    .venv/bin/python benchmarks/serve_load.py --model runs/cpu-quick/models/p25_kd --out reports/serve

Run it on a quiet machine: the client and the server share the cores, as they would on a small box.
"""

from __future__ import annotations

import argparse
import asyncio
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

from mahacompress.config import DataConfig
from mahacompress.data import load_splits
from mahacompress.export import export
from mahacompress.files import write_json, write_text
from mahacompress.runtime import Classifier
from mahacompress.trim import training_corpus


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory(pid: int) -> dict:
    """VmRSS and VmHWM (peak resident) of a process, in MiB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def _start(folder: Path, port: int, args) -> tuple[subprocess.Popen, float]:
    """Start the server; seconds from start until its first answered /predict."""
    cmd = [sys.executable, "-m", "mahacompress", "serve", str(folder), "--port", str(port),
           "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
           "--memory-arena" if args.memory_arena else "--no-memory-arena",
           "--memory-pattern" if args.memory_pattern else "--no-memory-pattern"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


async def _load(url: str, texts: list[str], args) -> dict:
    """`args.clients` clients posting back to back until `args.seconds` pass or `args.max_requests` are sent."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent = 0
    stop = time.perf_counter() + args.seconds
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)

    async def client(client_id: int, http: httpx.AsyncClient) -> None:
        nonlocal sent
        k = client_id * args.texts_per_request
        while time.perf_counter() < stop and sent < args.max_requests:
            sent += 1
            batch = [texts[(k + j) % len(texts)] for j in range(args.texts_per_request)]
            k += args.clients * args.texts_per_request
            t0 = time.perf_counter()
            try:
                code = (await http.post("/predict", json={"texts": batch})).status_code
            except httpx.HTTPError:
                code = 0  # transport failure counts as an error
            latencies.append(time.perf_counter() - t0)
            statuses[code] = statuses.get(code, 0) + 1

    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(args.clients)))
    cpu1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall0
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    ok = statuses.get(200, 0)
    lat = np.array(latencies) * 1000
    return {"clients": args.clients, "seconds": wall, "requests": len(latencies), "texts_per_request":
            args.texts_per_request, "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "errors": len(latencies) - ok, "texts_per_s": ok * args.texts_per_request / wall,
            "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p99": float(np.percentile(lat, 99)),
            "client_cpu_cores": cpu / wall}


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
    test = splits.test.texts
    port = _free_port()
    proc, first_answer_s = _start(trimmed, port, args)
    try:
        url = f"http://127.0.0.1:{port}"
        for i in range(0, min(len(test), 20 * args.texts_per_request), args.texts_per_request):  # warm-up
            httpx.post(f"{url}/predict", json={"texts": test[i:i + args.texts_per_request]}, timeout=30)
        warm = _memory(proc.pid)
        load = asyncio.run(_load(url, test, args))
        end = _memory(proc.pid)
        health = httpx.get(f"{url}/health", timeout=5).status_code
    finally:
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(timeout=60)
    in_process = _in_process(trimmed, test, args.threads)
    return {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "model": args.model, "dataset": args.dataset, "cpus": os.cpu_count(),
        "backend": manifest["backend"],
        "server": {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "memory_arena": args.memory_arena,
                   "memory_pattern": args.memory_pattern,
                   "first_answer_s": first_answer_s,
                   "memory_after_warmup_mib": warm, "memory_at_end_mib": end, "health_after_load": health,
                   "exit_code_after_sigterm": exit_code},
        "load": load,
        "in_process_batch32_texts_per_s": in_process,
        "batching_vs_in_process": load["texts_per_s"] / in_process,
        "trimmed": {"disk_mib": manifest["disk_bytes"] / 2**20, "pieces": manifest["trim"], "test": manifest["test"]},
        "untrimmed": {"disk_mib": untrimmed["disk_bytes"] / 2**20, "test": untrimmed["test"]},
    }


def report(r: dict) -> str:
    t, u, s, load = r["trimmed"], r["untrimmed"], r["server"], r["load"]
    return "\n".join([
        "# Serving the exported model", "",
        f"Model `{r['model']}`, dataset {r['dataset']}, {r['cpus']} CPUs shared by server and client; vocabulary "
        f"trimmed to {', '.join(t['pieces']['corpus'])}. Made with:", "",
        f"    {r['command']}", "",
        "| folder | disk | test accuracy | macro-F1 | test texts with a removed piece |",
        "| --- | --- | --- | --- | --- |",
        f"| {r['backend']}, trimmed ({t['pieces']['pieces_kept']} of {t['pieces']['pieces_before']} pieces) | "
        f"{t['disk_mib']:.1f} MiB | {t['test']['accuracy']:.4f} | {t['test']['macro_f1']:.4f} | "
        f"{t['test']['texts_with_removed_pieces']} of {t['test']['rows']} |",
        f"| {r['backend']}, untrimmed | {u['disk_mib']:.1f} MiB | {u['test']['accuracy']:.4f} | {u['test']['macro_f1']:.4f} | - |",
        "",
        f"Load: {load['clients']} concurrent clients for {load['seconds']:.0f} s, {load['texts_per_request']} "
        f"text(s) per request, server max batch {s['max_batch']}, max wait {s['max_wait_ms']} ms, onnxruntime memory "
        f"arena {'on' if s['memory_arena'] else 'off'}, per-shape memory patterns "
        f"{'on' if s.get('memory_pattern', True) else 'off'}.", "",
        "| measure | value |", "| --- | --- |",
        f"| throughput | {load['texts_per_s']:.1f} texts/s ({load['requests']} requests) |",
        f"| latency p50 / p99 | {load['latency_ms_p50']:.1f} / {load['latency_ms_p99']:.1f} ms |",
        f"| errors | {load['errors']} (statuses {load['statuses']}) |",
        f"| client CPU | {load['client_cpu_cores']:.2f} cores |",
        f"| in-process batch 32 | {r['in_process_batch32_texts_per_s']:.1f} texts/s "
        f"(served throughput is {r['batching_vs_in_process']:.0%} of it) |",
        f"| start to first answer | {s['first_answer_s']:.2f} s |",
        f"| server RSS / peak (VmHWM) after warm-up | {s['memory_after_warmup_mib']['VmRSS']:.0f} / "
        f"{s['memory_after_warmup_mib']['VmHWM']:.0f} MiB |",
        f"| server RSS / peak at the end | {s['memory_at_end_mib']['VmRSS']:.0f} / "
        f"{s['memory_at_end_mib']['VmHWM']:.0f} MiB |",
        f"| /health after the load; exit after SIGTERM | {s['health_after_load']}; {s['exit_code_after_sigterm']} |",
        ""])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="trained classifier folder (e.g. runs/cpu-quick/models/p25_kd)")
    p.add_argument("--dataset", default="mahanews-shc")
    p.add_argument("--extra-corpus-datasets", default=None,
                   help="comma-separated datasets whose training splits are added to the trimming corpus "
                        "(default corpus: the model's training split and transfer set)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--texts-per-request", type=int, default=1)
    p.add_argument("--max-requests", type=int, default=1_000_000, help="upper bound on requests sent")
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
    result = run(args)
    write_json(Path(args.out) / "results.json", result)
    write_text(Path(args.out) / "report.md", report(result))
    print(report(result))


if __name__ == "__main__":
    main()
