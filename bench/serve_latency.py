"""Latency of the web microscope under load, against a static file server measured in the same run.

Runs `microtome serve` (uvicorn) in a child process over a store (a fake one of 64 built units,
bench/fake_store.py, unless --store is given), then keeps CONCURRENCY keep-alive connections busy on loopback for
DURATION seconds per scenario and prints p50/p99: built unit pages, their JSON twins, and
the same unit page saved as a file and served by Python's `http.server` (the reference; with
Nagle off, see STATIC_SERVER).
Target: p99 <= 50 ms for built unit pages.

    python bench/serve_latency.py                     # fake store, 32 connections, 10 s each
    python bench/serve_latency.py --store ./microtome-store --duration 20
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from fake_store import make_store  # bench/fake_store.py, beside this script

from microtome.store import Store

ROOT = Path(__file__).resolve().parents[1]  # the child servers run here (this checkout's microtome)


# `python -m http.server --protocol HTTP/1.1`, with two fixes so that it measures serving a file
# and not TCP corner cases: Nagle off (headers and body are separate writes: with Nagle, every
# keep-alive response waits for a 40 ms delayed ACK) and an accept backlog above 5.
STATIC_SERVER = """
import functools, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
SimpleHTTPRequestHandler.protocol_version = "HTTP/1.1"
SimpleHTTPRequestHandler.disable_nagle_algorithm = True
SimpleHTTPRequestHandler.log_message = lambda *args: None
ThreadingHTTPServer.request_queue_size = 128
handler = functools.partial(SimpleHTTPRequestHandler, directory=sys.argv[1])
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, path: str, timeout: float = 180.0) -> None:
    """Until `path` answers 200 (the server has also loaded its model registry by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not answer {path} within {timeout:.0f} s")


@contextlib.contextmanager
def running(cmd: list[str], port: int, ready_path: str) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        try:
            wait_ready(port, ready_path)
        except SystemExit:
            proc.terminate()
            print(proc.communicate(timeout=10)[1][-2000:], file=sys.stderr)
            raise
        yield proc
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


def load(port: int, paths: list[str], concurrency: int, duration: float) -> tuple[list[float], int]:
    """(latencies in seconds, errors) of `concurrency` keep-alive clients cycling through `paths`."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def connect() -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", paths[0])  # one request, so the server has surely accepted it
        conn.getresponse().read()
        return conn

    # Connections are opened one by one before the clock starts (http.server's accept backlog is 5).
    conns = [connect() for _ in range(concurrency)]

    def client(i: int) -> None:
        conn = conns[i]
        n = i
        start.wait()
        while time.monotonic() < stop_at[0]:
            path = paths[n % len(paths)]
            n += 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                if resp.getheader("connection", "").lower() == "close" or resp.version == 10:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies[i].append(time.perf_counter() - t0)
            errors[i] += not ok
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + duration
    start.wait()
    for t in threads:
        t.join()
    return [x for per in latencies for x in per], sum(errors)


def report(label: str, latencies: list[float], errors: int) -> float:
    xs = sorted(latencies)
    p50 = xs[len(xs) // 2] * 1000 if xs else float("nan")
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000 if xs else float("nan")
    print(f"{label:<14s}p50 {p50:5.1f} ms  p99 {p99:5.1f} ms  ({len(xs)} requests, {errors} errors)", flush=True)
    return p99


def unit_paths(store_root: Path, limit: int = 64) -> list[str]:
    """Permalinks of built units (those with a feature visualization)."""
    with Store(store_root, create=False) as store:
        units = sorted({(a.key.model, a.key.layer, a.key.unit) for a in store.find(technique="feature_vis")
                        if a.key.unit is not None})
    if not units:
        raise SystemExit(f"{store_root} has no built units (feature_vis); build some first")
    return [f"/models/{m}/{layer}/{u}" for m, layer, u in units[:limit]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="store to serve (default: a fresh fake store)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=float(os.environ.get("MICROTOME_BENCH_S", 10)))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="microtome-bench-") as tmp:
        store_root = args.store
        if store_root is None:
            store_root = Path(tmp) / "store"
            make_store(store_root).close()
        paths = unit_paths(store_root)
        port = free_port()
        serve = [sys.executable, "-c", "from microtome.cli.serve import serve; serve()",
                 "--store", str(store_root), "--port", str(port)]
        print(f"{len(paths)} built unit pages, {args.concurrency} connections, {args.duration:.0f} s per run, "
              f"{os.cpu_count()} CPUs", flush=True)
        with running(serve, port, "/"):
            load(port, paths, args.concurrency, 1.0)  # warm up: templates compiled, caches filled
            p99 = report("unit page", *load(port, paths, args.concurrency, args.duration))
            report("unit .json", *load(port, [p + ".json" for p in paths], args.concurrency, args.duration))
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", paths[0])
            page = conn.getresponse().read()
        site = Path(tmp) / "site"
        site.mkdir()
        (site / "unit.html").write_bytes(page)
        port = free_port()
        static = [sys.executable, "-c", STATIC_SERVER, str(site), str(port)]
        with running(static, port, "/unit.html"):
            load(port, ["/unit.html"], args.concurrency, 1.0)
            ref = report("static file", *load(port, ["/unit.html"], args.concurrency, args.duration))
        print(f"unit page p99 / static file p99: {p99 / ref:.2f}x; target p99 <= 50 ms: "
              f"{'met' if p99 <= 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
