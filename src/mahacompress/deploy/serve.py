"""HTTP service for an exported folder: Starlette on uvicorn, with concurrent requests batched together.

    POST /predict  {"texts": ["...", ...]} -> {"predictions": [{"label", "probabilities"}, ...]}
    GET  /health   -> {"status": "ok"}       (answered by the event loop, even while the model is busy)
    GET  /info     -> labels, limits and the folder's manifest facts (source, trim, test accuracy)
    GET  /metrics  -> Prometheus text: requests by path and status, latency and batch-size histograms,
                      queued texts

With an API key, every path but /health needs it, /metrics included: its counts tell an outsider how the
service is used, and Prometheus scrapes with a bearer token as easily as without (`authorization:` in the
scrape config). Without a key everything is open, which is what loopback-only serving (the default) wants;
any other address without a key is warned about at start.

Why this shape: one ONNX session runs far more texts per second at batch 32 than at batch 1, and
requests from many clients are small, so a single worker task collects whatever is queued (up to
`max_batch` texts, waiting at most `max_wait_ms` for more) and runs it in one call on a worker thread
(onnxruntime releases the GIL, so the event loop keeps answering). Every limit is checked before any
tokenising, each refusal is one line of JSON: a body or text too large or too many texts -> 413; not
UTF-8, not JSON, or JSON too deep for the parser -> 400; the wrong shape or a text with a lone surrogate
-> 422; more texts queued than `max_queued_texts` -> 429 with Retry-After (a 4xx: the client should slow
down; the service itself is fine and /health says so). A request is never failed by its batch-mates: a
failing model call is split and re-run until only the request that fails it gets the 500. uvicorn shuts
the process down cleanly on SIGTERM (in-flight requests finish).

This file is the one implementation of the service, run two ways: `mahacompress serve FOLDER ...` (the CLI
hands its arguments to `main`), and, copied by `mahacompress export` into every exported folder as
`server.py`, `python server.py --port 8000` there. So it imports nothing from mahacompress but runtime.py
(the folder's copy beside it): the folder serves with its requirements.txt alone (onnxruntime, tokenizers,
numpy, starlette, uvicorn, prometheus_client; a static-embedding student's folder needs no onnxruntime),
no torch, no transformers, no mahacompress. Which model kind the folder holds is runtime.py's business.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hmac
import ipaddress
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

try:
    from ..infer.runtime import MANIFEST, Classifier
except ImportError:  # the copy in an exported folder (server.py), beside that folder's runtime.py
    from runtime import MANIFEST, Classifier

API_KEY_ENV = "MAHACOMPRESS_API_KEY"


class ServeError(Exception):
    """How the service was asked to run is wrong (folder, option, address): printed as one `error:` line,
    exit 2; the mahacompress CLI re-raises it as its own one-line error."""


@dataclass(frozen=True)
class Limits:
    """What one request and the whole service may ask for; all enforced before tokenising."""

    max_texts: int = 64  # texts in one request (413 above)
    max_text_chars: int = 10_000  # characters in one text (413 above)
    max_body_bytes: int = 2 * 2**20  # request body (413 above; checked on Content-Length and while reading)
    max_queued_texts: int = 512  # texts admitted and not yet answered (429 + Retry-After above)
    max_batch: int = 32  # texts run together in one model call
    max_wait_ms: float = 5.0  # how long the first queued request waits for others to join its batch
    retry_after_s: int = 1


class _Refused(Exception):
    """A request refused with `status` and a one-line reason."""

    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


class Batcher:
    """Queue of (texts, future); one task runs queued texts together, up to `max_batch` per call."""

    def __init__(self, classifier: Classifier, limits: Limits, on_call: Callable[[int], None] = lambda n: None):
        """`on_call(n)` is told the number of texts of every model call (the batch-size metric)."""
        self.classifier, self.limits, self.on_call = classifier, limits, on_call
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pending = 0  # texts admitted and not yet answered
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def submit(self, texts: list[str]) -> list[dict]:
        if self.pending + len(texts) > self.limits.max_queued_texts:
            raise _Refused(429,
                           f"busy: {self.pending} texts queued (limit {self.limits.max_queued_texts}); retry later",
                           {"Retry-After": str(self.limits.retry_after_s)})
        self.pending += len(texts)
        future = asyncio.get_running_loop().create_future()
        try:
            await self.queue.put((texts, future))
            return await future
        finally:
            self.pending -= len(texts)

    def _count(self, items: list) -> int:
        return sum(len(texts) for texts, _ in items)

    def _drain(self, items: list) -> None:
        """Move queued requests into `items` until it holds `max_batch` texts (no await: nothing is lost
        to a cancelled get)."""
        while self._count(items) < self.limits.max_batch and not self.queue.empty():
            items.append(self.queue.get_nowait())

    async def run(self) -> None:
        while True:
            items = [await self.queue.get()]
            self._drain(items)
            if self._count(items) < self.limits.max_batch:  # give other requests a moment to join
                await asyncio.sleep(self.limits.max_wait_ms / 1000)
                self._drain(items)
            await self._answer(items)

    async def _answer(self, items: list) -> None:
        """Run `items` in one model call. If it fails, run each half of the requests on its own (and so on),
        so only a request whose own texts make the model fail gets the error (a 500), never its batch-mates;
        one bad request among n costs about 2*log2(n) extra calls, a good batch none."""
        texts = [t for batch, _ in items for t in batch]
        self.on_call(len(texts))
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.executor, self.classifier.predict, texts,
                                                                       self.limits.max_batch)
        except Exception as exc:  # noqa: BLE001 - the service stays up; the failing request gets a 500
            if len(items) == 1:
                if not items[0][1].done():
                    items[0][1].set_exception(exc)
                return
            half = len(items) // 2
            await self._answer(items[:half])
            await self._answer(items[half:])
            return
        start = 0
        for batch, future in items:
            if not future.done():  # a client that went away leaves a cancelled future
                future.set_result(results[start:start + len(batch)])
            start += len(batch)


async def _read_texts(request: Request, limits: Limits) -> list[str]:
    """The request's texts, or _Refused with the first limit or format rule it breaks."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise _Refused(413, f"body of {declared} bytes exceeds the limit of {limits.max_body_bytes}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.max_body_bytes:
            raise _Refused(413, f"body exceeds the limit of {limits.max_body_bytes} bytes")
    payload = _parse(bytes(body))
    if not isinstance(payload, dict) or "texts" not in payload:
        raise _Refused(422, 'expected a JSON object {"texts": [...]}')
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise _Refused(422, f'"texts" must be a list of strings, not {type(texts).__name__}')
    if len(texts) > limits.max_texts:
        raise _Refused(413, f"{len(texts)} texts in one request (limit {limits.max_texts})")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise _Refused(422, f"text {i} is {type(text).__name__}, not a string")
        if len(text) > limits.max_text_chars:
            raise _Refused(413, f"text {i} has {len(text)} characters (limit {limits.max_text_chars})")
        _check_unicode(i, text)
    return texts


def _parse(body: bytes) -> object:
    """The body as JSON, or a 400 naming why not: not UTF-8, not JSON, or JSON this parser cannot hold
    (nested deeper than the recursion limit, an integer beyond Python's digit limit)."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _Refused(400, f"body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise _Refused(400, f"body is not JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:
        raise _Refused(400, "body is JSON nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer literal over sys.get_int_max_str_digits()
        raise _Refused(400, f"body is JSON this server cannot read ({str(exc).splitlines()[0]})") from None


def _check_unicode(index: int, text: str) -> None:
    """Refuse a text the tokenizer cannot take: JSON escapes can spell lone surrogates ("\\udfff"), which are
    not Unicode scalar values; checked here so the request gets a 422 instead of failing its batch."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Refused(422, f"text {index} is not valid Unicode (lone surrogate at character {exc.start})") from None


Handler = Callable[[Request], Awaitable[Response]]


class Metrics:
    """The service's Prometheus series, in a registry of the app's own: the global registry would refuse a
    second app's series of the same name (tests, several apps in one process)."""

    def __init__(self, max_batch: int):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("mahacompress_requests", "HTTP requests answered, by path and status",
                                ["path", "status"], registry=self.registry)
        self.seconds = Histogram("mahacompress_request_seconds", "Time to answer an HTTP request, by path", ["path"],
                                 registry=self.registry)
        buckets = sorted({2**k for k in range(max_batch.bit_length())} | {max_batch})
        self.batch_texts = Histogram("mahacompress_batch_texts", "Texts run together in one model call",
                                     buckets=buckets, registry=self.registry)
        self.queued = Gauge("mahacompress_queued_texts", "Texts admitted and not yet answered", registry=self.registry)

    def measured(self, path: str, handler: Handler) -> Handler:
        """`handler`, counted by status and timed."""

        async def timed(request: Request) -> Response:
            start = time.perf_counter()
            response = await handler(request)
            self.seconds.labels(path).observe(time.perf_counter() - start)
            self.requests.labels(path, str(response.status_code)).inc()
            return response

        return timed

    async def exposition(self, _: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _guarded(handler: Handler, api_key: str | None) -> Handler:
    """`handler`, answering 401 unless the request carries `api_key` (Authorization: Bearer KEY or X-API-Key:
    KEY), compared in constant time so response timing does not leak how much of a guess was right."""
    if api_key is None:
        return handler
    wanted = api_key.encode()

    async def checked(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = request.headers.get("x-api-key") or (token.strip() if scheme.lower() == "bearer" else "")
        if not hmac.compare_digest(given.encode(), wanted):
            return JSONResponse({"error": "missing or wrong API key (send Authorization: Bearer KEY or X-API-Key)"},
                                401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return checked


def create_app(folder: str | Path, limits: Limits = Limits(), threads: int | None = None, memory_arena: bool = True,
               api_key: str | None = None, memory_pattern: bool = False) -> Starlette:
    """The ASGI app serving the exported `folder` (the model is loaded here, before the first request).
    With `api_key`, /predict, /info and /metrics need it; /health stays open for load balancers and probes."""
    folder = _check_folder(Path(folder))
    classifier = Classifier(folder, threads=threads, memory_arena=memory_arena, memory_pattern=memory_pattern)
    classifier.reserve(limits.max_batch)  # memory at start-up is memory under load (runtime.Classifier.reserve)
    metrics = Metrics(limits.max_batch)
    batcher = Batcher(classifier, limits, metrics.batch_texts.observe)
    metrics.queued.set_function(lambda: batcher.pending)
    manifest = classifier.manifest
    info = {
        "labels": classifier.labels, "limits": asdict(limits), "intra_op_threads": classifier.threads,
        **{k: manifest[k]
           for k in ("backend", "source", "made_with", "trim", "test", "disk_bytes") if k in manifest}
    }

    async def predict(request: Request) -> JSONResponse:
        try:
            texts = await _read_texts(request, limits)
            return JSONResponse({"predictions": await batcher.submit(texts) if texts else []})
        except _Refused as refused:
            return JSONResponse({"error": refused.reason}, refused.status, headers=refused.headers)
        except Exception as exc:  # noqa: BLE001 - a failing model call must not take the service down
            return JSONResponse({"error": f"model failed: {str(exc).splitlines()[0] if str(exc) else type(exc)}"}, 500)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "queued_texts": batcher.pending})

    async def describe(_: Request) -> JSONResponse:
        return JSONResponse(info)

    @asynccontextmanager
    async def lifespan(_: Starlette):
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        batcher.executor.shutdown(wait=True)

    handlers = {
        "/predict": _guarded(predict, api_key), "/health": health, "/info": _guarded(describe, api_key),
        "/metrics": _guarded(metrics.exposition, api_key)
    }
    return Starlette(
        routes=[
            Route(path, metrics.measured(path, handler), methods=["POST"] if path == "/predict" else ["GET"])
            for path, handler in handlers.items()
        ], lifespan=lifespan)


def serve(folder: str | Path, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits(),
          threads: int | None = None, memory_arena: bool = True, api_key: str | None = None, workers: int = 1,
          memory_pattern: bool = False) -> None:
    """Run the service until SIGINT/SIGTERM (uvicorn finishes in-flight requests, then re-raises the signal,
    so one worker exits -15 after a clean shutdown; the `workers` supervisor exits 0).

    The socket is bound before the model is loaded, so a bad address fails at once. With `workers` > 1,
    uvicorn's supervisor runs that many processes on the one socket, each loading its own model with
    cores // workers onnxruntime threads (unless `threads` says otherwise), so they do not oversubscribe
    the cores; each has its own batch queue, limits and /metrics."""
    import uvicorn

    sock = _listen(host, port)
    warning = exposure_warning(sock.getsockname()[0], port, api_key)
    if warning:
        print(warning, file=sys.stderr)
    options = dict(host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=10)
    if workers == 1:
        uvicorn.Server(
            uvicorn.Config(create_app(folder, limits, threads, memory_arena, api_key, memory_pattern),
                           **options)).run(sockets=[sock])
        return
    from uvicorn.supervisors import Multiprocess

    threads = threads or max(1, _cores() // workers)
    factory = functools.partial(
        create_app,
        folder,
        limits,
        threads,
        memory_arena,
        api_key,  # pickled to each
        memory_pattern)
    Multiprocess(uvicorn.Config(factory, factory=True, workers=workers, **options), sockets=[sock]).run()


def _cores() -> int:
    """CPUs this process may run on (its affinity mask: a container's cpuset, taskset), else all of them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port. Bound here, not by uvicorn, so an address that does not resolve or a port
    in use is one ServeError line naming both (uvicorn logs several lines and exits 3)."""
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart over TIME_WAIT
        sock.bind(address)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def exposure_warning(address: str, port: int, api_key: str | None) -> str | None:
    """One line when the service is reachable from other machines and needs no key: a stray `--host 0.0.0.0`
    should be visible, not silent."""
    if api_key is not None or ipaddress.ip_address(address.split("%")[0]).is_loopback:
        return None
    return (f"warning: serving on {address}:{port} without an API key: anyone who can reach it can use the "
            "model (set --api-key or MAHACOMPRESS_API_KEY)")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a ServeError (one line, exit 2) instead of usage text and a message."""

    def error(self, message: str):
        raise ServeError(message)


def _parser(prog: str, folder: Path | None) -> _Parser:
    d = Limits()
    p = _Parser(prog=prog,
                description="Serve an exported folder over HTTP: POST /predict, GET /health, GET /info, GET /metrics.")
    p.add_argument("folder", type=Path, nargs="?" if folder else None, default=folder,
                   help="a folder written by `mahacompress export`" + (" (default: this file's)" if folder else ""))
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    p.add_argument("--threads", type=int, default=None,
                   help="onnxruntime threads per worker (default: one per core, shared out among --workers)")
    p.add_argument("--workers", type=int, default=1, help="server processes on the one port (default: 1)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="most texts in one model call")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help="longest wait for a batch to fill")
    p.add_argument("--max-texts", type=int, default=d.max_texts, help="most texts in one request (413 above)")
    p.add_argument("--max-text-chars", type=int, default=d.max_text_chars, help="longest text (413 above)")
    p.add_argument("--max-queued-texts", type=int, default=d.max_queued_texts, help="most texts waiting (429 above)")
    p.add_argument(
        "--memory-arena", action=argparse.BooleanOptionalAction, default=True,
        help="onnxruntime's CPU memory arena: off returns memory after each batch instead of keeping "
        "the largest batch shape's")
    p.add_argument(
        "--memory-pattern", action=argparse.BooleanOptionalAction, default=False,
        help="onnxruntime's per-shape allocation plans: on keeps one per (batch, length) shape served, "
        "so memory grows with the shapes seen")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or None,
                   help=f"key /predict, /info and /metrics require (default: ${API_KEY_ENV})")
    return p


def _check_folder(folder: Path) -> Path:
    """`folder`, if it holds an export manifest (checked before binding and loading, for a one-line error)."""
    if not (folder / MANIFEST).is_file():
        raise ServeError(f"{folder / MANIFEST}: not found (make the folder with `mahacompress export`)")
    return folder


def _check_range(name: str, value: float, lo: float, hi: float | None = None) -> None:
    """Refuse an option outside [lo, hi], worded like mahacompress's own checks."""
    if value < lo or (hi is not None and value > hi) or value != value:
        wanted = f"at least {lo:g}" if hi is None else f"in [{lo:g}, {hi:g}]"
        raise ServeError(f"{name} {value:g}: expected a value {wanted}")


def main(argv: list[str] | None = None, prog: str = "server.py", folder: Path | None = None) -> None:
    """Parse the command line, check it before anything is loaded, and serve. `folder` is the default model
    folder (the exported copy passes its own, so `python server.py` needs no argument)."""
    args = _parser(prog, folder).parse_args(argv)
    _check_folder(args.folder)
    _check_range("--port", args.port, 1, 65535)
    for name in ("max_batch", "max_texts", "max_text_chars", "max_queued_texts", "threads", "workers"):
        if getattr(args, name) is not None:
            _check_range("--" + name.replace("_", "-"), getattr(args, name), 1)
    _check_range("--max-wait-ms", args.max_wait_ms, 0)
    limits = Limits(max_texts=args.max_texts, max_text_chars=args.max_text_chars,
                    max_queued_texts=args.max_queued_texts, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    serve(args.folder, args.host, args.port, limits, threads=args.threads, memory_arena=args.memory_arena,
          api_key=args.api_key, workers=args.workers, memory_pattern=args.memory_pattern)


if __name__ == "__main__":
    try:
        main(folder=Path(__file__).resolve().parent)
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
