"""Load on loopback: 32 concurrent keep-alive clients on unit pages, their JSON twins and their
images for MICROTOME_LOAD_S seconds (default 20) against `microtome serve` in a child process.
Zero errors allowed."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.web_fixtures import BUILT_UNITS, LAYER, MODEL, free_port

CLIENTS = 32
DURATION_S = float(os.environ.get("MICROTOME_LOAD_S", "20"))


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read()


@pytest.mark.slow
def test_32_clients_for_a_while_get_no_errors(store_root):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from microtome.cli.serve import serve; serve()",
                               "--store", str(store_root), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180  # the server lists the model registry before `/` answers
        while True:
            assert server.poll() is None, server.stderr.read()[-2000:]
            with contextlib.suppress(OSError, http.client.HTTPException):
                if get(http.client.HTTPConnection("127.0.0.1", port, timeout=60), "/")[0] == 200:
                    break
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        paths: list[str] = []
        for unit in BUILT_UNITS:
            page = f"/models/{MODEL}/{LAYER}/{unit}"
            status, body = get(probe, page + ".json")
            assert status == 200
            data = json.loads(body)
            paths += [page, page + ".json", data["feature_vis"]["positive"]["images"][0]["url"],
                      data["connections"]["inputs"][0]["image"]]
        paths += [f"/models/{MODEL}/{LAYER}", f"/models/{MODEL}", "/"]
        probe.close()

        results: list[tuple[int, int, list[float], list[str]]] = []
        stop = time.monotonic() + DURATION_S

        def client(i: int) -> None:
            ok = failed = 0
            times: list[float] = []
            problems: list[str] = []
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            n = i
            while time.monotonic() < stop:
                path = paths[n % len(paths)]
                n += 1
                t0 = time.perf_counter()
                try:
                    status, body = get(conn, path)
                    good = status == 200 and len(body) > 0
                except (OSError, http.client.HTTPException) as exc:
                    good, status = False, repr(exc)
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                times.append(time.perf_counter() - t0)
                ok += good
                failed += not good
                if not good and len(problems) < 5:
                    problems.append(f"{path}: {status}")
            conn.close()
            results.append((ok, failed, times, problems))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DURATION_S + 60)
        ok = sum(r[0] for r in results)
        failed = sum(r[1] for r in results)
        times = sorted(x for r in results for x in r[2])
        problems = [p for r in results for p in r[3]]
        p50, p99 = times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000
        print(f"\n{CLIENTS} clients, {DURATION_S:.0f} s: {ok} ok, {failed} errors, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        assert len(results) == CLIENTS
        assert failed == 0, problems[:10]
        assert ok > CLIENTS * DURATION_S  # at least one answer per client per second
        assert server.poll() is None  # still up
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
